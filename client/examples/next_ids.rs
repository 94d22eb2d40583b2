//! Takes IDs from a pool and prints them, with what the pool holds.
//!
//! ```sh
//! counterctl serve &                        # or an AWS stack's invoke URL
//! cargo run -p counterctl-client --example next_ids -- http://127.0.0.1:8080 tenants 5
//! ```
//!
//! With an API key: `COUNTERCTL_API_KEY=KEY cargo run … -- URL COUNTER N`.

use counterctl_client::{Auth, Client, Endpoint, Pool, PoolOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let counter = args.next().unwrap_or_else(|| "tenants".to_owned());
    let how_many: usize = args.next().map_or(Ok(5), |n| n.parse())?;
    let auth = std::env::var("COUNTERCTL_API_KEY").map_or(Auth::None, Auth::ApiKey);

    let pool = Pool::new(Client::new(Endpoint::new(&url, auth)?), counter.as_str(), PoolOptions::default());
    for _ in 0..how_many {
        println!("{}", pool.next().await?);
    }
    eprintln!("{} more IDs of {counter} held; they are never handed out once this process ends", pool.buffered());
    Ok(())
}
