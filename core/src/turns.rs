//! Which waiting input a node takes next (SPEC.md §7.1): one policy for every driver and
//! for the simulator, so the simulator's busy node serves its inputs in the order a real
//! one does.
//!
//! Control-lane frames (membership) always go first: they decide who is alive and are
//! small and rare, so serving them first costs the rest nothing and keeps a node that is
//! busy with clients from being declared dead. The other sources take turns, one input
//! each, so neither a flood of client lines nor a burst of bulk peer traffic starves the
//! other. Overdue timers are not a source here: a driver fires them before taking any
//! input at all.

/// Where a waiting input comes from.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Source {
    /// Frames that arrived on a peer's control lane.
    Control,
    /// Frames that arrived on a peer's data lane (or over datagrams).
    Peers,
    /// Client streams: opens, bytes, closes.
    Clients,
    /// The node's own program: commands and effect outcomes.
    Local,
}

/// The sources that take turns, in rotation order.
const ROTATION: [Source; 3] = [Source::Peers, Source::Clients, Source::Local];

/// Round-robin state of one node's input loop.
#[derive(Clone, Debug, Default)]
pub struct Turns {
    /// Index in [`ROTATION`] of the source served last.
    last: usize,
}

impl Turns {
    /// A fresh rotation (peers first).
    pub fn new() -> Self {
        Turns {
            last: ROTATION.len() - 1,
        }
    }

    /// The source to serve now among those `waiting` says have input: control if it
    /// has any, else the next waiting source after the one served last. `None` when
    /// nothing waits.
    pub fn next(&mut self, waiting: impl Fn(Source) -> bool) -> Option<Source> {
        if waiting(Source::Control) {
            return Some(Source::Control);
        }
        for step in 1..=ROTATION.len() {
            let k = (self.last + step) % ROTATION.len();
            if waiting(ROTATION[k]) {
                self.last = k;
                return Some(ROTATION[k]);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_always_goes_first() {
        let mut t = Turns::new();
        for _ in 0..10 {
            assert_eq!(t.next(|_| true), Some(Source::Control));
        }
        assert_eq!(t.next(|_| false), None);
    }

    #[test]
    fn the_rest_take_turns() {
        let mut t = Turns::new();
        let all_but_control = |s| s != Source::Control;
        let got: Vec<_> = (0..6).map(|_| t.next(all_but_control).unwrap()).collect();
        use Source::*;
        assert_eq!(got, [Peers, Clients, Local, Peers, Clients, Local]);
        // An idle source is skipped without losing the others' places.
        assert_eq!(t.next(|s| s == Clients || s == Local), Some(Clients));
        assert_eq!(t.next(|s| s == Clients || s == Local), Some(Local));
    }

    proptest! {
        /// Whatever waits, a waiting non-control source is served within three turns
        /// while control is quiet: no source starves another.
        #[test]
        fn no_source_waits_more_than_three_turns(
            busy in proptest::collection::vec(any::<[bool; 3]>(), 1..60)
        ) {
            let mut t = Turns::new();
            let mut waited = [0usize; 3];
            for b in busy {
                let served = t.next(|s| match s {
                    Source::Control => false,
                    Source::Peers => b[0],
                    Source::Clients => b[1],
                    Source::Local => b[2],
                });
                for k in 0..3 {
                    if !b[k] || served == Some(ROTATION[k]) {
                        waited[k] = 0;
                    } else {
                        waited[k] += 1;
                        prop_assert!(waited[k] < 3, "{:?} waited {} turns", ROTATION[k], waited[k]);
                    }
                }
                prop_assert_eq!(served.is_none(), !b.iter().any(|x| *x));
            }
        }
    }
}
