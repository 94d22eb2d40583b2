//! Many clients at once, through several Lambda execution environments or one `serve`
//! process: never a duplicate.

use std::collections::BTreeSet;

use crate::support::Backend;
use crate::support::backend::{assert_unique_gapless_increments, on_both_backends};

on_both_backends! {
    concurrent async fn sixteen_clients_get_1600_unique_gapless_increasing_values(api) {
        assert_unique_gapless_increments(api, "shared", 16, 100).await;
    }
}

on_both_backends! {
    concurrent async fn count_ranges_never_overlap_other_increments(api) {
        let clients: Vec<_> = (0..8u32)
            .map(|client| {
                let api = std::sync::Arc::clone(&api);
                tokio::spawn(async move {
                    let mut ranges = Vec::new();
                    for round in 0..20u32 {
                        // Half the clients reserve ranges of varying size, half take single values.
                        let count = if client % 2 == 0 { 1 + (client * 7 + round * 13) % 50 } else { 1 };
                        let (status, body) =
                            api.post(&format!("/counter/increment?counter=mixed&count={count}")).await;
                        assert_eq!(status, 200, "{body}");
                        let last = body["new_value"].as_i64().unwrap();
                        assert_eq!(body["first_value"].as_i64().unwrap(), last - i64::from(count) + 1);
                        ranges.push(body["first_value"].as_i64().unwrap()..=last);
                    }
                    ranges
                })
            })
            .collect();
        let mut all = BTreeSet::new();
        for client in clients {
            for range in client.await.unwrap() {
                for value in range {
                    assert!(all.insert(value), "{value} was reserved twice");
                }
            }
        }
        let total = i64::try_from(all.len()).unwrap();
        assert_eq!(all, (1..=total).collect(), "ranges tile the sequence without gaps");
        assert_eq!(api.value("mixed").await, Some(total));
    }
}
