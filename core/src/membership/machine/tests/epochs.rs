//! Epochs (SPEC.md §9.2): a proposal is above every epoch its proposer has heard of, in
//! whatever message it heard it; the consistency check says so of the state.

use core::time::Duration;

use super::{Net, addr};
use crate::machine::{Input, Machine, Output};
use crate::membership::machine::{Membership, MembershipSettings};
use crate::membership::msg::{ClusterConfig, MemberMsg};
use crate::membership::view::{Member, View, ViewId};
use crate::rng::Rng;
use crate::time::Instant;

fn stranger(name: &str, i: usize) -> Member {
    Member {
        name: name.to_string(),
        incarnation: 0x7700 + i as u64,
        addr: addr(i),
    }
}

fn id(epoch: u64, m: &Member) -> ViewId {
    ViewId {
        epoch,
        coordinator: m.name.clone(),
        incarnation: m.incarnation,
    }
}

fn view_of(epoch: u64, members: &[Member]) -> View {
    View {
        id: id(epoch, &members[0]),
        members: members.to_vec(),
        primary: true,
        basis: members.iter().map(|m| m.name.clone()).collect(),
        config_version: 0,
    }
}

/// Every message that carries an epoch, telling of `e`, from daemons that are not in
/// alpha's view (nothing in them concerns alpha but the epoch).
fn messages_telling_of(e: u64) -> Vec<MemberMsg> {
    let (x, y) = (stranger("xray", 5), stranger("yankee", 6));
    let v = view_of(e, &[x.clone(), y.clone()]);
    vec![
        MemberMsg::Heartbeat {
            view: id(e, &x),
            from: x.clone(),
        },
        MemberMsg::Report {
            view: id(e, &x),
            suspects: Vec::new(),
        },
        MemberMsg::ReportAck { view: id(e, &x) },
        MemberMsg::Gather {
            nonce: 9,
            view: id(e, &x),
        },
        MemberMsg::Here {
            nonce: 9,
            from: x.clone(),
            view: id(e, &x),
        },
        MemberMsg::Elect {
            members: vec![x.clone(), y.clone()],
            epoch: e,
        },
        MemberMsg::Propose {
            view: v.clone(),
            config: None,
        },
        MemberMsg::Ack {
            id: id(e, &x),
            from: y.clone(),
            last_primary: id(e, &x),
            basis: Vec::new(),
        },
        MemberMsg::Nack {
            id: id(1, &x),
            higher: id(e, &y),
        },
        MemberMsg::Commit {
            view: v.clone(),
            config: None,
        },
        MemberMsg::Hello {
            view: id(e, &x),
            from: x.clone(),
            size: 2,
        },
        MemberMsg::ViewState {
            view: v,
            config: ClusterConfig::default(),
        },
    ]
}

/// The epoch of the next proposal `m` makes: a daemon asks to join, and the proposal
/// goes one retry period later.
fn next_proposal_epoch(m: &mut Membership, now: Instant) -> u64 {
    while m.poll_output().is_some() {}
    let joiner = stranger("zulu", 9);
    let frame = MemberMsg::Join { member: joiner }.to_frame();
    m.handle(
        now,
        Input::Frame {
            from: addr(9),
            frame,
        },
    )
    .expect("a join is a good frame");
    m.handle_timeout(now + m.timing().retry);
    let epoch = std::iter::from_fn(|| m.poll_output())
        .find_map(|o| match o {
            Output::Transmit(t) => match MemberMsg::decode(&t.frame) {
                Ok(MemberMsg::Propose { view, .. }) => Some(view.id.epoch),
                _ => None,
            },
            _ => None,
        })
        .expect("a join brings a proposal");
    m.check_invariants().expect("consistent");
    epoch
}

/// Every kind of message that tells of an epoch raises the next proposal above it.
#[test]
fn a_proposal_is_above_every_epoch_heard_in_any_message() {
    for e in [12, 1 << 40] {
        for msg in messages_telling_of(e) {
            assert_eq!(msg.epoch_heard(), e, "{msg:?}");
            let now = Instant::ZERO;
            let s = MembershipSettings::new("alpha", addr(0));
            let mut m = Membership::new(s, now, Rng::from_seed(7));
            let from = addr(5);
            let _ = m.handle(
                now,
                Input::Frame {
                    from,
                    frame: msg.to_frame(),
                },
            );
            m.check_invariants().expect("consistent");
            let proposed = next_proposal_epoch(&mut m, now + Duration::from_millis(1));
            assert!(
                proposed > e,
                "after hearing of epoch {e} in {msg:?}, alpha proposed epoch {proposed}"
            );
        }
    }
}

/// The coordinator of one side of a partition merges the other side's view, which went
/// through more epochs than its own: the merged proposal is above that view's epoch at
/// once (no refusal and second proposal needed; issue 16, finding 7: "a merge proposed
/// epoch 12 after hearing of epoch 12").
#[test]
fn a_merge_proposes_above_the_view_it_merges() {
    let mut net = Net::new();
    let a = net.add(MembershipSettings::new("alpha", addr(0)));
    let (x, y) = (stranger("xray", 5), stranger("yankee", 6));
    let theirs = view_of(12, &[x.clone(), y]);
    // A greeting from the other side's coordinator: alpha asks for its view...
    let hello = MemberMsg::Hello {
        view: id(11, &x),
        from: x.clone(),
        size: 2,
    };
    net.handle(
        a,
        Input::Frame {
            from: x.addr,
            frame: hello.to_frame(),
        },
    )
    .unwrap();
    assert!(net.m(a).merge_asked.contains_key(&x.addr));
    // ...and is told it (epoch 12 now).
    let state = MemberMsg::ViewState {
        view: theirs,
        config: ClusterConfig::default(),
    };
    net.handle(
        a,
        Input::Frame {
            from: x.addr,
            frame: state.to_frame(),
        },
    )
    .unwrap();
    net.run_for(Duration::from_millis(60));
    let p = net
        .m(a)
        .proposing
        .as_ref()
        .expect("alpha proposes the merge");
    assert_eq!(p.view.members.len(), 3, "{:?}", p.view);
    assert!(
        p.view.id.epoch > 12,
        "the merge proposed epoch {} after hearing of epoch 12",
        p.view.id.epoch
    );
}

/// The check fires on a state whose epochs are not what it heard: an installed view, a
/// highest id or a last primary view above the highest epoch heard or the highest id,
/// a proposal in flight that is not the highest id.
#[test]
fn the_check_fires_on_epochs_beyond_what_was_heard() {
    let formed = || {
        let mut net = super::formed();
        net.run_for(Duration::from_millis(10));
        assert!(net.m(0).check().is_ok());
        net
    };
    let mut net = formed();
    net.nodes[0].m.max_epoch = 0;
    let e = net.m(0).check().expect_err("a view above the epochs heard");
    assert!(e.contains("above what this daemon has seen"), "{e}");

    let mut net = formed();
    let m = &mut net.nodes[0].m;
    m.highest.epoch = m.max_epoch + 1;
    let e = m.check().expect_err("a highest id above the epochs heard");
    assert!(e.contains("highest"), "{e}");

    let mut net = formed();
    let m = &mut net.nodes[0].m;
    m.last_primary.0.epoch = m.max_epoch + 1;
    let e = m
        .check()
        .expect_err("a last primary view above everything heard");
    assert!(e.contains("last primary"), "{e}");

    // A proposal in flight below the highest id seen: it should have given way.
    let mut net = super::formed();
    let i = (0..3)
        .find(|&i| net.m(i).is_coordinator())
        .expect("a coordinator");
    let stranger = stranger("xray", 5);
    net.nodes[i].m.merge.insert(stranger.name.clone(), stranger);
    net.nodes[i].m.propose(net.now);
    assert!(net.m(i).proposing.is_some());
    assert!(net.m(i).check().is_ok());
    let m = &mut net.nodes[i].m;
    m.highest.epoch += 1;
    m.max_epoch += 1;
    let e = m.check().expect_err("a proposal below the highest id");
    assert!(e.contains("proposal"), "{e}");
}
