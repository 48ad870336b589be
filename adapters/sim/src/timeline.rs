//! What happened in a run, kept for drawing: one lane per node, messages between lanes,
//! spans when a node was down or paused, partitions, and marks for events, faults and
//! check verdicts at their virtual time. Recorded only when asked (`--svg`, `--html`);
//! [`crate::svg`] draws it.

use flotilla_core::Instant;

/// Most messages kept; later ones are counted but not drawn, so a long run still makes
/// a file a browser opens.
pub const MAX_MESSAGES: usize = 20_000;
/// Most marks kept, for the same reason.
pub const MAX_MARKS: usize = 20_000;

/// One frame between two nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender's lane.
    pub from: usize,
    /// The receiver's lane.
    pub to: usize,
    /// When it was sent.
    pub sent: Instant,
    /// When it reached the receiver — delivered, or dropped there because the receiver
    /// had crashed — or `None` if the network dropped it on the way (or it was still in
    /// flight when the run ended).
    pub arrived: Option<Instant>,
    /// What it was (the frame kind, e.g. `0x0201`).
    pub label: String,
    /// Why it was dropped (`partition`, `lost`, `receiver crashed`, …), if it was.
    pub dropped: Option<String>,
}

/// Why a lane is shaded for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// The node was crashed (no machine).
    Crashed,
    /// The node was paused (its events held).
    Paused,
}

/// A stretch of time on one lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The lane.
    pub node: usize,
    /// What.
    pub kind: SpanKind,
    /// From when.
    pub from: Instant,
    /// Until when; `None` if it lasted to the end of the run.
    pub to: Option<Instant>,
}

/// A stretch of time during which the network was split (or links blocked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// From when.
    pub from: Instant,
    /// Until when (a heal); `None` if it lasted to the end of the run.
    pub to: Option<Instant>,
    /// How, e.g. `{n1} {n2 n3}` or `n2 -> n3 blocked`.
    pub what: String,
}

/// What kind of thing a mark shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// An event the machine reported.
    Event,
    /// A fault or scripted action (crash, restart, pause, partition…).
    Fault,
    /// A client opened, wrote, or closed a stream, or the machine wrote to one.
    Client,
    /// An effect was asked for or finished.
    Effect,
    /// A check passed at this time.
    Pass,
    /// A check failed at this time.
    Fail,
}

/// A point in time, on a lane or across all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// When.
    pub at: Instant,
    /// The lane, or `None` for the whole run (check verdicts, partitions).
    pub node: Option<usize>,
    /// What kind.
    pub kind: MarkKind,
    /// The text shown on hover.
    pub text: String,
}

/// A run, as drawn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Lane names, in order (`n1`, `n2`… or the scenario's node names).
    pub nodes: Vec<String>,
    /// When the run ended.
    pub end: Instant,
    /// Frames, in the order sent (at most [`MAX_MESSAGES`]).
    pub messages: Vec<Message>,
    /// Frames sent but not kept.
    pub messages_omitted: u64,
    /// Crashed and paused stretches.
    pub spans: Vec<Span>,
    /// Partitions and blocks.
    pub cuts: Vec<Cut>,
    /// Events, faults, client traffic, effects and verdicts (at most [`MAX_MARKS`]).
    pub marks: Vec<Mark>,
    /// Marks not kept.
    pub marks_omitted: u64,
}

impl Timeline {
    /// An empty timeline for `nodes`.
    pub fn new(scenario: &str, seed: u64, nodes: Vec<String>) -> Self {
        Timeline {
            scenario: scenario.to_string(),
            seed,
            nodes,
            ..Timeline::default()
        }
    }

    /// Records a frame sent; returns its index so its arrival can be filled in.
    pub fn send(
        &mut self,
        from: usize,
        to: usize,
        sent: Instant,
        label: String,
        dropped: Option<String>,
    ) -> Option<usize> {
        if self.messages.len() >= MAX_MESSAGES {
            self.messages_omitted += 1;
            return None;
        }
        self.messages.push(Message {
            from,
            to,
            sent,
            arrived: None,
            label,
            dropped,
        });
        Some(self.messages.len() - 1)
    }

    /// The frame at `index` reached its receiver at `at` (and was dropped there, `why`,
    /// if it was).
    pub fn arrive(&mut self, index: usize, at: Instant, dropped: Option<String>) {
        if let Some(m) = self.messages.get_mut(index) {
            m.arrived = Some(at);
            m.dropped = dropped;
        }
    }

    /// Adds a mark.
    pub fn mark(&mut self, at: Instant, node: Option<usize>, kind: MarkKind, text: String) {
        if self.marks.len() >= MAX_MARKS {
            self.marks_omitted += 1;
            return;
        }
        self.marks.push(Mark {
            at,
            node,
            kind,
            text,
        });
    }

    /// Marks a check's verdict. Never dropped for lack of room: a run has few verdicts,
    /// and a failure is what the drawing is for.
    pub fn verdict(&mut self, at: Instant, pass: bool, text: String) {
        let kind = if pass { MarkKind::Pass } else { MarkKind::Fail };
        self.marks.push(Mark {
            at,
            node: None,
            kind,
            text,
        });
    }

    /// A crashed or paused stretch begins on `node`.
    pub fn begin_span(&mut self, node: usize, kind: SpanKind, at: Instant) {
        self.spans.push(Span {
            node,
            kind,
            from: at,
            to: None,
        });
    }

    /// The open stretch of `kind` on `node`, if any, ends at `at`.
    pub fn end_span(&mut self, node: usize, kind: SpanKind, at: Instant) {
        if let Some(s) = self
            .spans
            .iter_mut()
            .rev()
            .find(|s| s.node == node && s.kind == kind && s.to.is_none())
        {
            s.to = Some(at);
        }
    }

    /// The network's rules changed at `at`: the cut in force ends, and `what` (if the
    /// network is still cut: a partition, blocked links) begins.
    pub fn recut(&mut self, at: Instant, what: Option<String>) {
        self.end_cuts(at);
        if let Some(what) = what {
            self.cuts.push(Cut {
                from: at,
                to: None,
                what,
            });
        }
    }

    /// Every open cut ends at `at` (a heal).
    pub fn end_cuts(&mut self, at: Instant) {
        for c in self.cuts.iter_mut().filter(|c| c.to.is_none()) {
            c.to = Some(at);
        }
    }
}
