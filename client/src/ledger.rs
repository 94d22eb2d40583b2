//! The ranges one pool received from its upstream, to refuse an answer that would hand
//! out a value twice.
//!
//! The upstream reserves values with one atomic add, so a request sent after an answer
//! arrived must get values above that answer's; requests in flight at the same time may
//! be answered in any order, but never with overlapping ranges. Hence two rules:
//! an answer to a new reservation must lie above everything received before it was
//! sent, and no answer may overlap a range received since, except a replay of the same
//! `Idempotency-Key`, which is the same reservation answered again. A third rule spans
//! restarts: with a [`LedgerFile`](crate::LedgerFile), no answer may lie at or below what
//! the process received before it last stopped (its floor).

use std::collections::VecDeque;
use std::ops::RangeInclusive;

/// How many recent ranges are kept for the overlap rule: more than can be in flight at
/// once for one counter.
const RECENT: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The highest value received, 0 before any.
    high: i64,
    /// The highest value received before this process started, as recorded on disk.
    floor: i64,
    recent: VecDeque<Received>,
}

#[derive(Debug)]
struct Received {
    range: RangeInclusive<i64>,
    /// The caller's `Idempotency-Key`, for a request passed through with one.
    key: Option<String>,
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Overlap {
    #[error(
        "the range {first}-{last} is not above {floor}, the highest value received before this process last \
         stopped: the upstream went back since (restored from a backup, or replaced by a new one)"
    )]
    WentBack { first: i64, last: i64, floor: i64 },
    #[error("the range {first}-{last} is not above {high}, which had already been received when it was asked for")]
    NotAbove { first: i64, last: i64, high: i64 },
    #[error("the range {first}-{last} overlaps {other_first}-{other_last}, already received")]
    Overlaps { first: i64, last: i64, other_first: i64, other_last: i64 },
}

impl Ledger {
    /// A ledger that refuses every range at or below `floor`, what was received before
    /// this process started.
    pub(crate) fn above(floor: i64) -> Self {
        Self { high: floor, floor, recent: VecDeque::new() }
    }

    /// What a request sent now must get values above.
    pub(crate) fn high(&self) -> i64 {
        self.high
    }

    /// Records `range`, answered to a request sent when [`high`](Self::high) was
    /// `high_when_sent` (`None` for a caller's keyed request, which may replay an old
    /// reservation), unless it breaks a rule.
    pub(crate) fn admit(
        &mut self,
        range: RangeInclusive<i64>,
        high_when_sent: Option<i64>,
        key: Option<&str>,
    ) -> Result<(), Overlap> {
        let (first, last) = (*range.start(), *range.end());
        // Even a keyed replay: this process cannot tell an old reservation from the
        // values of an upstream that went back.
        if first <= self.floor {
            return Err(Overlap::WentBack { first, last, floor: self.floor });
        }
        if let Some(high) = high_when_sent
            && first <= high
        {
            return Err(Overlap::NotAbove { first, last, high });
        }
        let replay = |received: &Received| key.is_some() && received.key.as_deref() == key && received.range == range;
        if let Some(other) = self
            .recent
            .iter()
            .find(|received| !replay(received) && first <= *received.range.end() && *received.range.start() <= last)
        {
            let (other_first, other_last) = (*other.range.start(), *other.range.end());
            return Err(Overlap::Overlaps { first, last, other_first, other_last });
        }
        if self.recent.iter().any(replay) {
            return Ok(());
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Received { range, key: key.map(str::to_owned) });
        // A keyed answer may be a replay from any time, so it sets no floor: one that
        // could not be right must not make every later block look wrong.
        if key.is_none() {
            self.high = self.high.max(last);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_reservation_must_lie_above_what_was_received_before_it_was_sent() {
        let mut ledger = Ledger::default();
        ledger.admit(1..=10, Some(ledger.high()), None).unwrap();
        let sent_at = ledger.high();
        assert_eq!(ledger.admit(5..=14, Some(sent_at), None), Err(Overlap::NotAbove { first: 5, last: 14, high: 10 }));
        assert_eq!(
            ledger.admit(10..=19, Some(sent_at), None),
            Err(Overlap::NotAbove { first: 10, last: 19, high: 10 })
        );
        ledger.admit(31..=40, Some(sent_at), None).unwrap();
        assert_eq!(ledger.high(), 40);
    }

    #[test]
    fn requests_in_flight_together_may_arrive_in_any_order_but_never_overlap() {
        let mut ledger = Ledger::default();
        let sent_at = ledger.high();
        ledger.admit(21..=30, Some(sent_at), None).unwrap();
        // Sent before 21-30 arrived, so below it is fine.
        ledger.admit(11..=20, Some(sent_at), None).unwrap();
        assert_eq!(
            ledger.admit(15..=24, Some(sent_at), None),
            Err(Overlap::Overlaps { first: 15, last: 24, other_first: 21, other_last: 30 })
        );
    }

    #[test]
    fn a_keyed_answer_sets_no_floor_for_later_blocks() {
        let mut ledger = Ledger::default();
        ledger.admit(1_000..=1_004, None, Some("k1")).unwrap();
        assert_eq!(ledger.high(), 0);
        ledger.admit(1..=10, Some(ledger.high()), None).unwrap();
        assert!(ledger.admit(1_002..=1_011, Some(ledger.high()), None).is_err(), "it still may not overlap");
    }

    #[test]
    fn a_floor_from_before_a_restart_refuses_every_range_at_or_below_it() {
        let mut ledger = Ledger::above(100);
        assert_eq!(ledger.high(), 100);
        let went_back = |first, last| Err(Overlap::WentBack { first, last, floor: 100 });
        assert_eq!(ledger.admit(1..=10, Some(ledger.high()), None), went_back(1, 10));
        assert_eq!(ledger.admit(91..=110, Some(ledger.high()), None), went_back(91, 110));
        assert_eq!(ledger.admit(1..=10, None, Some("k1")), went_back(1, 10), "keyed answers too");
        ledger.admit(101..=110, Some(ledger.high()), None).unwrap();
        ledger.admit(500..=504, None, Some("k2")).unwrap();
    }

    #[test]
    fn a_keyed_request_may_replay_its_own_range_only() {
        let mut ledger = Ledger::default();
        ledger.admit(1..=5, None, Some("k1")).unwrap();
        ledger.admit(6..=10, Some(ledger.high()), None).unwrap();
        ledger.admit(1..=5, None, Some("k1")).unwrap();
        assert!(ledger.admit(1..=5, None, Some("k2")).is_err(), "another key's range");
        assert!(ledger.admit(6..=10, None, Some("k1")).is_err(), "a block's range");
        assert!(ledger.admit(1..=6, None, Some("k1")).is_err(), "not the same range");
    }
}
