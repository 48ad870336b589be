//! The groups machine's own check (`Groups::check` and `fifo_check`) fed corrupted
//! states: every clause is seen to fire, at its edge where it has one, and a state just
//! inside the edge is seen to pass. (Declared from `fifo.rs`, so that it reaches the FIFO
//! state's fields as well as the machine's.)

use bytes::Bytes;

use super::super::{Flush, Groups, GroupsSettings, LOG_BYTES, MAX_PENDING, Sequencer, Timer};
use super::{FIFO_LOG_BYTES, FIFO_WINDOW, Inbound};
use crate::backoff::Backoff;
use crate::groups::msg::{GroupMsg, Item, MAX_PAYLOAD, MsgId, What};
use crate::groups::tests::{member, view};
use crate::machine::{Input, Machine};
use crate::membership::view::View;
use crate::time::Instant;

fn data(origin: &str, lseq: u64, payload: Bytes) -> Item {
    Item {
        id: MsgId {
            origin: origin.into(),
            incarnation: member(origin).incarnation,
            lseq,
        },
        group: "g".into(),
        what: What::Data {
            sender: "#x#a".into(),
            payload,
        },
    }
}

fn small(origin: &str, lseq: u64) -> Item {
    data(origin, lseq, Bytes::from_static(b"x"))
}

/// A flush to `v` just begun (its state as the machine keeps it).
fn flush(v: View) -> Flush {
    let pace = core::time::Duration::from_millis(1);
    Flush {
        view: v,
        since: Instant::ZERO,
        states: Default::default(),
        asks: Backoff::new(pace, pace, Instant::ZERO),
        asked: false,
    }
}

fn fires(g: &Groups, what: &str) {
    match g.check_invariants() {
        Err(e) => assert!(e.contains(what), "expected {what:?}, the check said {e:?}"),
        Ok(()) => panic!("the check passed a state that should fail with {what:?}"),
    }
}

fn passes(g: &Groups) {
    if let Err(e) = g.check_invariants() {
        panic!("the check failed a sound state: {e}");
    }
}

/// b, a member of view 1 {a, b} whose sequencer is a: orders 1 to 3 delivered with a
/// stability mark of 1 (so 2 and 3 are held), and 5 waiting past the gap at 4.
fn member_b() -> Groups {
    let mut g = Groups::new(
        GroupsSettings {
            me: member("b"),
            canary_deliver_early: false,
        },
        Instant::ZERO,
    );
    g.view = view(1, &["a", "b"]);
    g.seq = None;
    passes(&g);
    for (seq, stable) in [(1, 0), (2, 1), (3, 1), (5, 1)] {
        let order = GroupMsg::Order {
            view: g.view.id.clone(),
            seq,
            stable,
            items: vec![small("a", seq)],
        };
        let from = member("a").addr;
        g.handle(
            Instant::ZERO,
            Input::Frame {
                from,
                frame: order.to_frame(),
            },
        )
        .unwrap();
    }
    assert_eq!((g.delivered, g.stable), (3, 1));
    assert_eq!(g.held.keys().copied().collect::<Vec<_>>(), [2, 3]);
    assert_eq!(g.ahead.keys().copied().collect::<Vec<_>>(), [5]);
    passes(&g);
    g
}

/// a, alone in its view and so its sequencer, after three sends: delivered 3, the log
/// holding 2 and 3 above a stable point of 1 (set by hand, as acknowledgements would).
fn sequencer_a() -> Groups {
    let mut g = Groups::new(
        GroupsSettings {
            me: member("a"),
            canary_deliver_early: false,
        },
        Instant::ZERO,
    );
    for k in 0..3u8 {
        let send = crate::groups::GroupsCommand::Send {
            group: "g".into(),
            sender: "#x#a".into(),
            payload: Bytes::from(vec![k]),
        };
        g.handle(Instant::ZERO, Input::Command(send)).unwrap();
    }
    assert_eq!(g.delivered, 3);
    let s = g.seq.as_mut().unwrap();
    assert_eq!(s.next, 4);
    // Alone, a is stable as it delivers; put the stable point back to 1 as if a member
    // had acknowledged only the first item.
    g.stable = 1;
    let s = g.seq.as_mut().unwrap();
    s.log = (2..=3).map(|k| (k, small("a", k))).collect();
    s.log_bytes = 2;
    g.held = (2..=3).map(|k| (k, small("a", k))).collect();
    passes(&g);
    g
}

#[test]
fn a_view_without_this_daemon_is_caught() {
    let mut g = member_b();
    g.view = view(1, &["a", "c"]);
    fires(&g, "does not hold this daemon");
    // Another life of this daemon in the view is not this daemon either.
    let mut g = member_b();
    g.view.members[1].incarnation += 1;
    fires(&g, "does not hold this daemon");
}

#[test]
fn a_stable_point_above_delivery_is_caught() {
    let mut g = member_b();
    g.held.clear();
    g.stable = g.delivered;
    passes(&g);
    g.stable = g.delivered + 1;
    fires(&g, "above delivered");
}

#[test]
fn held_items_outside_stable_and_delivered_are_caught() {
    let mut g = member_b();
    g.stable = 2;
    fires(&g, "item 2 held though stable");
    let mut g = member_b();
    g.held.insert(4, small("a", 4));
    fires(&g, "item 4 held though not delivered");
}

#[test]
fn an_item_waiting_though_it_is_next_is_caught_except_in_the_canary() {
    let mut g = member_b();
    g.ahead.insert(4, small("a", 4));
    fires(&g, "item 4 waits though it is next");
    let mut g = member_b();
    g.ahead.insert(3, small("a", 3));
    fires(&g, "item 3 waits though it is next");
    // The canary delivers early on purpose: its check must not stop the sweep.
    let mut g = member_b();
    g.canary = true;
    g.ahead.insert(4, small("a", 4));
    passes(&g);
}

#[test]
fn a_sequencer_behind_its_deliveries_is_caught() {
    let mut g = sequencer_a();
    g.seq.as_mut().unwrap().next = g.delivered;
    fires(&g, "delivered past what it ordered");
}

#[test]
fn a_log_outside_stable_and_next_is_caught() {
    let mut g = sequencer_a();
    g.seq.as_mut().unwrap().log.insert(1, small("a", 1));
    fires(&g, "log holds items outside");
    let mut g = sequencer_a();
    let next = g.seq.as_ref().unwrap().next;
    g.seq.as_mut().unwrap().log.insert(next, small("a", next));
    fires(&g, "log holds items outside");
}

#[test]
fn unstable_bytes_past_the_window_and_one_item_are_caught() {
    let mut g = sequencer_a();
    g.seq.as_mut().unwrap().log_bytes = LOG_BYTES + MAX_PAYLOAD;
    passes(&g);
    g.seq.as_mut().unwrap().log_bytes = LOG_BYTES + MAX_PAYLOAD + 1;
    fires(&g, "unstable bytes ordered");
}

#[test]
fn sequencer_state_that_disagrees_with_the_view_is_caught() {
    let mut g = member_b();
    g.seq = Some(Sequencer::default());
    fires(&g, "sequencer state disagrees");
    let mut g = sequencer_a();
    g.seq = None;
    fires(&g, "sequencer state disagrees");
}

#[test]
fn a_flush_to_a_view_not_above_the_current_one_is_caught() {
    let mut g = member_b();
    g.flush = Some(flush(view(2, &["a", "b"])));
    passes(&g);
    g.flush = Some(flush(view(1, &["a", "b"])));
    fires(&g, "a flush to a view not above");
}

#[test]
fn too_many_pending_items_are_caught_but_disconnections_are_allowed_past_the_bound() {
    let mut g = member_b();
    let own = |lseq: u64, what: What| Item {
        id: MsgId {
            origin: "b".into(),
            incarnation: member("b").incarnation,
            lseq,
        },
        group: "g".into(),
        what,
    };
    for lseq in 1..=MAX_PENDING as u64 {
        g.pending.insert(lseq, small("b", lseq));
    }
    passes(&g);
    let gone = What::Gone {
        client: "#y#b".into(),
    };
    g.pending
        .insert(MAX_PENDING as u64 + 1, own(MAX_PENDING as u64 + 1, gone));
    passes(&g);
    let over = MAX_PENDING as u64 + 2;
    g.pending.insert(over, small("b", over));
    fires(&g, "too many items pending");
}

#[test]
fn a_missing_periodic_timer_is_caught() {
    for timer in [Timer::Retry, Timer::Ack] {
        let mut g = member_b();
        g.timers.cancel(&timer);
        fires(&g, "a periodic timer is missing");
    }
}

// ----- the FIFO state (`fifo_check`) -----

/// b as above, with its own FIFO items 1 to 3 sent and 1 stable (2 and 3 in its log).
fn fifo_b() -> Groups {
    let mut g = member_b();
    for k in 0..3u8 {
        g.submit_fifo("g".into(), "#x#b".into(), Bytes::from(vec![k]))
            .unwrap();
    }
    let f = &mut g.fifo;
    assert_eq!(f.next, 4);
    f.stable = 1;
    f.log.remove(&1);
    f.log_bytes = 2;
    passes(&g);
    g
}

#[test]
fn a_fifo_log_outside_stable_and_next_is_caught() {
    let mut g = fifo_b();
    g.fifo.log.insert(1, small("b", 1));
    g.fifo.log_bytes += 1;
    fires(&g, "FIFO log holds items outside");
    let mut g = fifo_b();
    g.fifo.log.insert(4, small("b", 4));
    g.fifo.log_bytes += 1;
    fires(&g, "FIFO log holds items outside");
}

#[test]
fn a_fifo_byte_count_that_is_off_is_caught() {
    let mut g = fifo_b();
    g.fifo.log_bytes += 1;
    fires(&g, "byte count is off");
    let mut g = fifo_b();
    g.fifo.log_bytes -= 1;
    fires(&g, "byte count is off");
}

#[test]
fn unstable_fifo_items_past_the_window_are_caught() {
    // FIFO_WINDOW items unstable is the bound; one more is caught.
    let mut g = fifo_b();
    g.fifo.next = FIFO_WINDOW + 2;
    passes(&g);
    g.fifo.next = FIFO_WINDOW + 3;
    fires(&g, "FIFO items");
    // And by bytes: one item may pass the byte window.
    let mut g = fifo_b();
    let big = Bytes::from(vec![0u8; FIFO_LOG_BYTES + MAX_PAYLOAD - 1]);
    g.fifo.log.insert(3, data("b", 3, big));
    g.fifo.log_bytes = FIFO_LOG_BYTES + MAX_PAYLOAD;
    passes(&g);
    let bigger = Bytes::from(vec![0u8; FIFO_LOG_BYTES + MAX_PAYLOAD]);
    g.fifo.log.insert(3, data("b", 3, bigger));
    g.fifo.log_bytes = FIFO_LOG_BYTES + MAX_PAYLOAD + 1;
    fires(&g, "FIFO items");
}

#[test]
fn too_many_waiting_fifo_messages_are_caught() {
    let mut g = fifo_b();
    // Waiting is sound only while a flush runs (or the window is full).
    g.flush = Some(flush(view(2, &["a", "b"])));
    for k in 0..MAX_PENDING as u64 {
        g.fifo_pending.push_back(small("b", k));
    }
    passes(&g);
    g.fifo_pending.push_back(small("b", 0));
    fires(&g, "too many FIFO messages waiting");
}

#[test]
fn a_fifo_message_waiting_with_room_to_go_is_caught() {
    let mut g = fifo_b();
    g.fifo_pending.push_back(small("b", 0));
    fires(&g, "waits though it could be sent");
    // With the window full it may wait.
    let mut g = fifo_b();
    g.fifo.next = FIFO_WINDOW + 2;
    g.fifo_pending.push_back(small("b", 0));
    passes(&g);
}

#[test]
fn fifo_state_for_a_non_member_or_this_daemon_is_caught() {
    let mut g = fifo_b();
    g.fifo.from.insert("a".into(), Inbound::default());
    passes(&g);
    g.fifo.from.insert("c".into(), Inbound::default());
    fires(&g, "FIFO state for c");
    let mut g = fifo_b();
    g.fifo.from.insert("b".into(), Inbound::default());
    fires(&g, "FIFO state for b");
}

#[test]
fn inbound_fifo_items_held_outside_stable_and_delivered_are_caught() {
    let inbound = || Inbound {
        delivered: 3,
        stable: 1,
        held: (2..=3).map(|k| (k, small("a", k))).collect(),
        ..Inbound::default()
    };
    let mut g = fifo_b();
    g.fifo.from.insert("a".into(), inbound());
    passes(&g);
    for corrupt in [
        (|i: &mut Inbound| i.stable = 4) as fn(&mut Inbound),
        |i| i.stable = 2,
        |i| {
            i.held.insert(4, small("a", 4));
        },
        |i| {
            i.held.insert(1, small("a", 1));
        },
    ] {
        let mut i = inbound();
        corrupt(&mut i);
        g.fifo.from.insert("a".into(), i);
        fires(&g, "FIFO items of a held outside");
    }
}

#[test]
fn an_inbound_fifo_item_waiting_though_it_is_next_is_caught_except_in_the_canary() {
    let mut g = fifo_b();
    let mut i = Inbound {
        delivered: 3,
        ..Inbound::default()
    };
    i.ahead.insert(5, small("a", 5));
    g.fifo.from.insert("a".into(), i);
    passes(&g);
    for next in [4, 3] {
        let mut i = Inbound {
            delivered: 3,
            ..Inbound::default()
        };
        i.ahead.insert(next, small("a", next));
        g.fifo.from.insert("a".into(), i);
        fires(&g, "a FIFO item of a waits though it is next");
    }
    g.canary = true;
    passes(&g);
}
