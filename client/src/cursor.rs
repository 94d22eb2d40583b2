//! A pool's current block as one atomic word, so that handing out an ID is one atomic
//! add and a few plain loads, with no lock and no reference count.
//!
//! The word holds the block's generation (high 32 bits) and the offset of its next value
//! (low 32 bits). Each generation's bounds sit in a small ring of slots, written before
//! the generation is published and guarded like a seqlock: a reader that finds its slot
//! reused (it stalled while several blocks were spent) drops the value it claimed, a
//! gap, and claims again. A claim that finds the block spent brings the offset back to
//! its end, so callers that keep finding it spent cannot carry the offset into the
//! generation bits.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering, fence};

const SLOTS: usize = 4;
/// A slot being rewritten.
const REWRITING: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct Cursor {
    word: AtomicU64,
    slots: [Slot; SLOTS],
}

#[derive(Debug, Default)]
struct Slot {
    generation: AtomicU64,
    first: AtomicI64,
    /// Size (high 32 bits) and the offset whose taking starts the next fetch (low).
    shape: AtomicU64,
}

/// One generation's bounds, as read from its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) generation: u64,
    pub(crate) first: i64,
    pub(crate) size: u32,
    refill_at: u32,
}

/// What claiming found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// These values; `refill` when taking them passed the refill point.
    Taken { range: RangeInclusive<i64>, refill: bool },
    /// The block of this generation is spent.
    Spent(u64),
    /// Fewer values left than asked for.
    TooFew,
}

fn unpack(word: u64) -> (u64, u32) {
    (word >> 32, word as u32)
}

fn pack(generation: u64, offset: u32) -> u64 {
    (generation << 32) | u64::from(offset)
}

impl Cursor {
    /// Generation 0: an empty block, spent from the start.
    pub(crate) fn new() -> Self {
        Self { word: AtomicU64::new(0), slots: Default::default() }
    }

    /// One value: the hot path.
    pub(crate) fn claim_one(&self) -> Result<(i64, bool), u64> {
        loop {
            // Acquire: the slot of the generation read was written before it was
            // published (release sequences carry through the adds).
            let (generation, offset) = unpack(self.word.fetch_add(1, Ordering::Acquire));
            match self.bounds(generation) {
                Some(bounds) if offset < bounds.size => {
                    return Ok((bounds.first + i64::from(offset), offset == bounds.refill_at));
                }
                Some(bounds) => {
                    // Past the end the add is undone, so however often callers find the
                    // block spent, the offset stays within a few of its end.
                    self.settle_at(generation, bounds.size);
                    return Err(generation);
                }
                // The slot was reused: the value claimed is dropped.
                None => {}
            }
        }
    }

    /// `count` consecutive values, if the current block has them.
    pub(crate) fn claim(&self, count: u32) -> Claimed {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let (generation, offset) = unpack(word);
            let Some(bounds) = self.bounds(generation) else {
                word = self.word.load(Ordering::Acquire);
                continue;
            };
            if offset >= bounds.size {
                return Claimed::Spent(generation);
            }
            if bounds.size - offset < count {
                return Claimed::TooFew;
            }
            let claimed = pack(generation, offset + count);
            match self.word.compare_exchange_weak(word, claimed, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => {
                    let first = bounds.first + i64::from(offset);
                    let refill = (offset..offset + count).contains(&bounds.refill_at);
                    return Claimed::Taken { range: first..=first + i64::from(count) - 1, refill };
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// The bounds of `generation`, unless its slot has been reused since.
    fn bounds(&self, generation: u64) -> Option<Bounds> {
        let slot = &self.slots[generation as usize % SLOTS];
        if slot.generation.load(Ordering::Acquire) != generation {
            return None;
        }
        let first = slot.first.load(Ordering::Relaxed);
        let (size, refill_at) = unpack(slot.shape.load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        let unchanged = slot.generation.load(Ordering::Relaxed) == generation;
        unchanged.then_some(Bounds { generation, first, size: size as u32, refill_at })
    }

    /// The current block's bounds and how many of its values are taken.
    pub(crate) fn current(&self) -> (Bounds, u32) {
        loop {
            let (generation, offset) = unpack(self.word.load(Ordering::Acquire));
            if let Some(bounds) = self.bounds(generation) {
                return (bounds, offset.min(bounds.size));
            }
        }
    }

    /// Makes `range` the current block, as `generation`. Only one caller at a time (the
    /// pool's lock), and only once the block before is spent.
    pub(crate) fn install(&self, generation: u64, range: &RangeInclusive<i64>, refill_share: f64) {
        let first = *range.start();
        let size = u32::try_from(range.end() - first + 1).expect("a block is at most MAX_COUNT values");
        let refill_at = ((f64::from(size) * refill_share) as u32).min(size.saturating_sub(1));
        let slot = &self.slots[generation as usize % SLOTS];
        slot.generation.store(REWRITING, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.first.store(first, Ordering::Relaxed);
        slot.shape.store(pack(u64::from(size), refill_at), Ordering::Relaxed);
        slot.generation.store(generation, Ordering::Release);
        self.word.store(pack(generation, 0), Ordering::Release);
    }

    /// Brings a spent block's offset back to its end `size`.
    fn settle_at(&self, generation: u64, size: u32) {
        let _ = self.word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let (current, offset) = unpack(word);
            (current == generation && offset > size).then(|| pack(generation, size))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_in_order_until_the_block_is_spent() {
        let cursor = Cursor::new();
        assert_eq!(cursor.claim_one(), Err(0), "the first block is empty");
        cursor.install(1, &(101..=105), 0.2);
        let taken: Vec<_> = (0..5).map(|_| cursor.claim_one().unwrap()).collect();
        assert_eq!(taken, [(101, false), (102, true), (103, false), (104, false), (105, false)]);
        assert_eq!(cursor.claim_one(), Err(1));
        assert_eq!(cursor.current().1, 5);
    }

    #[test]
    fn ranges_fit_or_are_refused_whole() {
        let cursor = Cursor::new();
        cursor.install(1, &(1..=10), 0.2);
        assert_eq!(cursor.claim(4), Claimed::Taken { range: 1..=4, refill: true });
        assert_eq!(cursor.claim(7), Claimed::TooFew);
        assert_eq!(cursor.claim(6), Claimed::Taken { range: 5..=10, refill: false });
        assert_eq!(cursor.claim(1), Claimed::Spent(1));
    }

    #[test]
    fn claims_on_a_spent_block_never_move_its_offset_past_the_end() {
        let cursor = Cursor::new();
        cursor.install(1, &(1..=2), 0.2);
        for _ in 0..10 {
            let _ = cursor.claim_one();
        }
        assert_eq!(unpack(cursor.word.load(Ordering::Relaxed)), (1, 2));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..100_000).for_each(|_| assert_eq!(cursor.claim_one(), Err(1))));
            }
        });
        assert_eq!(unpack(cursor.word.load(Ordering::Relaxed)), (1, 2));
    }

    #[test]
    fn a_reused_slot_is_never_read_as_its_old_block() {
        let cursor = Cursor::new();
        cursor.install(1, &(1..=10), 0.2);
        // Generation 5 takes generation 1's slot.
        cursor.install(5, &(500..=510), 0.2);
        assert_eq!(cursor.bounds(1), None);
        assert_eq!(cursor.claim_one(), Ok((500, false)));
    }

    #[test]
    fn threads_never_share_a_value() {
        let cursor = Cursor::new();
        cursor.install(1, &(1..=400_000), 0.2);
        let taken: Vec<i64> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| std::iter::from_fn(|| cursor.claim_one().ok()).map(|(v, _)| v).collect::<Vec<_>>())
                })
                .collect();
            threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect()
        });
        let mut sorted = taken.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!((taken.len(), sorted.len()), (400_000, 400_000));
    }
}
