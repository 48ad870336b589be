//! The event queue: a min-heap keyed by `(time, seq)`.
//!
//! `seq` is a global insertion counter, so events scheduled for the same instant run in
//! the order they were scheduled and never depend on the heap's internal layout. That
//! total order is what makes a seed replay exactly.

use core::cmp::Ordering;
use std::collections::BinaryHeap;

use flotilla_core::Instant;

struct Entry<T> {
    time: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// A totally ordered queue of future events.
pub struct Queue<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> Queue<T> {
    /// Schedules `item` at `time`, after everything already scheduled for that instant.
    pub fn push(&mut self, time: Instant, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { time, seq, item });
    }

    /// When the earliest event is due.
    pub fn peek_time(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.time)
    }

    /// Removes the earliest event.
    pub fn pop(&mut self) -> Option<(Instant, T)> {
        self.heap.pop().map(|e| (e.time, e.item))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_insertion_order() {
        let mut q = Queue::default();
        q.push(Instant::from_secs(2), "late");
        q.push(Instant::from_secs(1), "a");
        q.push(Instant::from_secs(1), "b");
        q.push(Instant::from_secs(1), "c");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, x)| x).collect();
        assert_eq!(order, ["a", "b", "c", "late"]);
        assert!(q.is_empty());
    }
}
