//! One membership machine fed frames by hand: the probes it relays for others, the
//! refusals it takes, and the settings it refuses. (Each kills survivors of the mutation
//! run over `membership/machine.rs`, TESTING.md.)

use core::net::SocketAddr;

use super::super::{Membership, MembershipSettings, check_config};
use crate::machine::{Input, Machine, Output};
use crate::membership::msg::{ClusterConfig, MAX_MEMBERS, MemberMsg};
use crate::membership::view::Member;
use crate::rng::Rng;
use crate::time::Instant;

fn at(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6000 + i))
}

fn stranger(i: u16) -> Member {
    Member {
        name: format!("x{i}"),
        incarnation: u64::from(i) + 1,
        addr: at(i),
    }
}

fn alone() -> Membership {
    Membership::new(
        MembershipSettings::new("alpha", at(0)),
        Instant::ZERO,
        Rng::from_seed(1),
    )
}

fn hand(m: &mut Membership, from: SocketAddr, msg: &MemberMsg) {
    m.handle(
        Instant::ZERO,
        Input::Frame {
            from,
            frame: msg.to_frame(),
        },
    )
    .expect("taken");
}

/// Client `c` connects over the Unix socket and sends `bytes`.
fn client_says(m: &mut Membership, c: crate::machine::ClientId, bytes: &'static [u8]) {
    use crate::machine::{ClientOrigin, ListenerId};
    let origin = ClientOrigin::unix(ListenerId(0));
    m.handle(Instant::ZERO, Input::ClientOpened { client: c, origin })
        .unwrap();
    m.handle(
        Instant::ZERO,
        Input::ClientData(c, bytes::Bytes::from_static(bytes)),
    )
    .unwrap();
}

/// The frames `m` sent, decoded, with their addresses.
fn sent(m: &mut Membership) -> Vec<(SocketAddr, MemberMsg)> {
    std::iter::from_fn(|| m.poll_output())
        .filter_map(|o| match o {
            Output::Transmit(t) => Some((t.to, MemberMsg::decode(&t.frame).unwrap())),
            _ => None,
        })
        .collect()
}

/// Probes made for two askers at once each carry a nonce of their own, so each answer
/// goes back to its own asker with the asker's nonce; frames sent are counted. (Guards
/// `nonce` and the `frames_sent` count.)
#[test]
fn probes_relayed_for_two_askers_answer_each_its_own() {
    let mut m = alone();
    sent(&mut m);
    let (frames, bytes) = (m.stats().frames_sent, m.stats().bytes_sent);
    hand(
        &mut m,
        at(1),
        &MemberMsg::ProbeFor {
            nonce: 7,
            target: stranger(3),
        },
    );
    hand(
        &mut m,
        at(2),
        &MemberMsg::ProbeFor {
            nonce: 9,
            target: stranger(4),
        },
    );
    let probes = sent(&mut m);
    assert_eq!(m.stats().frames_sent - frames, 2);
    let probe_bytes = MemberMsg::Probe { nonce: 1 }.to_frame().encoded_len() as u64;
    assert_eq!(m.stats().bytes_sent - bytes, 2 * probe_bytes);
    let nonce_to = |a: SocketAddr| {
        probes
            .iter()
            .find_map(|(to, msg)| match msg {
                MemberMsg::Probe { nonce } if *to == a => Some(*nonce),
                _ => None,
            })
            .expect("a probe")
    };
    let (n3, n4) = (nonce_to(at(3)), nonce_to(at(4)));
    assert_ne!(n3, n4);
    for (target, nonce, asker, theirs) in [(3, n3, 1, 7), (4, n4, 2, 9)] {
        hand(
            &mut m,
            at(target),
            &MemberMsg::ProbeAck {
                nonce,
                from: stranger(target),
            },
        );
        let out = sent(&mut m);
        assert!(
            matches!(&out[..], [(to, MemberMsg::ProbeAck { nonce, .. })] if *to == at(asker) && *nonce == theirs),
            "the answer of {target} goes to {asker}: {out:?}"
        );
    }
}

/// Probes made for others are remembered up to 256 at once: the 257th forgets the
/// oldest. (Guards `while relays.len() > MAX_RELAYS`.)
#[test]
fn at_most_256_relayed_probes_are_remembered() {
    let mut m = alone();
    for i in 0..=256u64 {
        hand(
            &mut m,
            at(1),
            &MemberMsg::ProbeFor {
                nonce: i,
                target: stranger(3),
            },
        );
    }
    assert_eq!(m.relays.len(), 256);
    let oldest = *m.relays.keys().next().unwrap();
    assert!(
        m.relays.values().all(|(theirs, _)| *theirs != 0),
        "the first asker's probe is forgotten"
    );
    assert!(oldest > 1);
}

/// A refusal from a stranger does not stop a daemon, alone or not (only a daemon that
/// is asking to join takes one from whoever answers). (Guards the `Refuse` guard.)
#[test]
fn a_strangers_refusal_does_not_stop_a_daemon_alone() {
    let mut m = alone();
    assert_eq!(m.view().members.len(), 1);
    hand(
        &mut m,
        at(9),
        &MemberMsg::Refuse {
            reason: "go away".into(),
        },
    );
    assert!(!m.stopped(), "stopped by a stranger");
    assert!(m.active());
}

/// Settings are refused past `MAX_MEMBERS` daemons listed (exactly that many pass), with
/// a name that is not one, or one listed twice; a bad own name too. (Guards
/// `check_config` and `validate`.)
#[test]
fn settings_are_refused_past_their_bounds() {
    let listing = |n: usize| ClusterConfig {
        daemons: (0..n).map(|i| (format!("d{i}"), at(1))).collect(),
        ..ClusterConfig::default()
    };
    assert!(check_config(&listing(MAX_MEMBERS)).is_ok());
    let e = check_config(&listing(MAX_MEMBERS + 1)).unwrap_err();
    assert!(e.contains("at most 4096"), "{e}");
    let mut twice = listing(2);
    twice.daemons[1].0 = "d0".into();
    assert!(check_config(&twice).unwrap_err().contains("listed twice"));
    let mut bad = listing(1);
    bad.daemons[0].0 = "not a name".into();
    assert!(check_config(&bad).unwrap_err().contains("is not a name"));
    let mut s = MembershipSettings::new("alpha", at(0));
    assert!(s.validate().is_ok());
    s.config = listing(MAX_MEMBERS + 1);
    assert!(s.validate().is_err(), "the listing is checked too");
    s.config = ClusterConfig::default();
    s.name = "no such name".into();
    assert!(s.validate().unwrap_err().contains("is not a daemon name"));
}

/// A daemon that left takes no command any more: a reload changes nothing. A reload
/// whose listing breaks the bounds is refused with a typed error and changes nothing.
/// (Guards `handle`'s `stopped` and `check_config` guards.)
#[test]
fn a_stopped_daemon_or_a_bad_listing_changes_nothing_on_reload() {
    use crate::membership::MembershipCommand;
    let listing = |n: usize| ClusterConfig {
        daemons: (0..n).map(|i| (format!("d{i}"), at(1))).collect(),
        ..ClusterConfig::default()
    };
    let mut m = alone();
    let r = m.handle(
        Instant::ZERO,
        Input::Command(MembershipCommand::Reload(listing(MAX_MEMBERS + 1))),
    );
    assert!(r.is_err(), "{r:?}");
    assert!(m.config().daemons.is_empty());
    m.handle(Instant::ZERO, Input::Command(MembershipCommand::Leave))
        .unwrap();
    let later = Instant::from_secs(60);
    m.handle_timeout(later);
    assert!(m.stopped(), "an alone daemon's leave ends");
    m.handle(later, Input::Command(MembershipCommand::Reload(listing(3))))
        .unwrap();
    assert!(
        m.config().daemons.is_empty(),
        "a stopped daemon took a reload"
    );
    assert!(m.pending_config.is_none(), "nor will it propose one");
    // Nor does it leave again (its timers stay stopped: the check runs in `handle`).
    let frames = m.stats().frames_sent;
    m.handle(later, Input::Command(MembershipCommand::Leave))
        .unwrap();
    assert!(m.check_invariants().is_ok());
    assert_eq!(m.stats().frames_sent, frames);
    assert_eq!(m.poll_timeout(), None, "no timer armed");
}

/// A client waiting for a reload's answer while the daemon leaves is told the reload is
/// refused, and a client that closed is no longer waiting. (Guards `handle`'s first
/// `stopped` guard and `ClientClosed`'s removal from those waiting.)
#[test]
fn clients_waiting_for_a_reload_are_answered_or_forgotten() {
    use crate::machine::ClientId;
    use crate::membership::MembershipCommand;
    let mut m = alone();
    for c in [ClientId(1), ClientId(2)] {
        client_says(&mut m, c, b"reload\n");
    }
    assert_eq!(m.reload_waiting, [ClientId(1), ClientId(2)]);
    m.handle(Instant::ZERO, Input::ClientClosed(ClientId(2)))
        .unwrap();
    assert_eq!(
        m.reload_waiting,
        [ClientId(1)],
        "a closed client waits no more"
    );
    m.handle(Instant::ZERO, Input::Command(MembershipCommand::Leave))
        .unwrap();
    let later = Instant::from_secs(60);
    m.handle_timeout(later);
    assert!(m.stopped());
    let _ = std::iter::from_fn(|| m.poll_output()).count();
    m.handle(
        later,
        Input::Command(MembershipCommand::Reload(ClusterConfig::default())),
    )
    .unwrap();
    let told: Vec<u8> = std::iter::from_fn(|| m.poll_output())
        .filter_map(|o| match o {
            Output::ToClient(ClientId(1), data) => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    let told = String::from_utf8(told).unwrap();
    assert!(
        told.starts_with("451 reload refused: this daemon is out"),
        "{told:?}"
    );
}

/// The machine's own check runs through `check_invariants`, sees a view out of name
/// order even when small, and the machine claims only membership frames (0x04).
/// (Guards `check_invariants`, the sortedness check's size bound and `owns_family`.)
#[test]
fn the_check_sees_a_small_unsorted_view_and_the_machine_owns_its_family() {
    use crate::compose::Part;
    let mut m = alone();
    assert!(m.check_invariants().is_ok());
    assert!(m.owns_family(crate::membership::msg::FAMILY));
    assert!(!m.owns_family(0x05), "the groups family");
    m.view.members.insert(0, stranger(5));
    m.view.members[0].name = "zulu".into();
    let e = m.check_invariants().unwrap_err();
    assert!(e.contains("not sorted by name"), "{e}");
}

/// A view of `n` daemons (this one, alpha, among them) installed by hand in `m`, with
/// its ring neighbours and a heartbeat heard from each: a sound state.
fn installed(m: &mut Membership, n: u16) {
    use crate::membership::view::{self, View, ViewId};
    let mut members: Vec<Member> = (1..n).map(stranger).collect();
    members.push(m.me.clone());
    view::normalise(&mut members);
    let v = View {
        id: ViewId {
            epoch: 1,
            coordinator: members[0].name.clone(),
            incarnation: members[0].incarnation,
        },
        basis: members.iter().map(|x| x.name.clone()).collect(),
        primary: true,
        config_version: 0,
        members,
    };
    m.neighbours = view::neighbours(&v, "alpha").into_iter().cloned().collect();
    m.heard = m
        .neighbours
        .iter()
        .map(|x| (x.name.clone(), Instant::ZERO))
        .collect();
    m.max_epoch = 1;
    m.highest = v.id.clone();
    m.view = v;
    assert!(m.check_invariants().is_ok(), "{:?}", m.check_invariants());
    assert_eq!(m.highest_seen(), &m.view.id);
}

fn fires(m: &Membership, what: &str) {
    let e = m.check_invariants().expect_err(what);
    assert!(e.contains(what), "expected {what:?}, got {e:?}");
}

/// Neighbours are checked against the ring recomputed in a view of up to 128 daemons,
/// and by their number and membership in a larger one: a neighbour swapped for a
/// stranger, one too few, or another life of a member, are caught. (Guards the check's
/// neighbour clauses in both branches.)
#[test]
fn the_check_sees_neighbours_that_disagree_with_the_view_small_or_large() {
    let mut m = alone();
    installed(&mut m, 3);
    m.neighbours[0] = stranger(99);
    fires(&m, "neighbours disagree with the view's ring");
    for n in [129, 200] {
        let sound = || {
            let mut m = alone();
            installed(&mut m, n);
            m
        };
        let mut m = sound();
        m.neighbours.pop();
        m.heard.pop_first();
        fires(&m, "neighbours disagree with the view");
        let mut m = sound();
        let gone = m.neighbours[0].name.clone();
        m.neighbours[0] = stranger(999);
        m.heard.remove(&gone);
        m.heard.insert("x999".into(), Instant::ZERO);
        fires(&m, "neighbours disagree with the view");
        let mut m = sound();
        m.neighbours[0].incarnation += 1;
        fires(&m, "neighbours disagree with the view");
    }
}

/// A proposal in flight must be this daemon's own and above the installed view.
/// (Guards `p.view.id <= v.id || p.view.id.coordinator != me`.)
#[test]
fn the_check_sees_a_proposal_of_another_coordinator() {
    use super::super::{Proposing, Timer};
    let mut m = alone();
    installed(&mut m, 3);
    let mut next = m.view.clone();
    next.id.epoch = 2;
    next.id.coordinator = "alpha".into();
    m.max_epoch = 2;
    m.highest = next.id.clone();
    m.timers.set(Timer::ProposeRetry, Instant::from_secs(1));
    m.proposing = Some(Proposing {
        view: next.clone(),
        config: None,
        acks: Default::default(),
        asked: Default::default(),
        deadline: Instant::from_secs(1),
        extensions: 0,
    });
    assert!(m.check_invariants().is_ok(), "{:?}", m.check_invariants());
    next.id.coordinator = "x1".into();
    m.highest = next.id.clone();
    m.proposing.as_mut().unwrap().view = next;
    fires(&m, "is not above view");
}

/// A daemon that holds to another coordinator's proposal proposes nothing: a proposal of
/// its own beside an awaited commit is caught. (Guards the check's promise clause.)
#[test]
fn the_check_sees_a_proposal_beside_a_promise() {
    use super::super::{Awaiting, Proposing, Timer};
    let mut m = alone();
    installed(&mut m, 3);
    let mut mine = m.view.clone();
    mine.id.epoch = 2;
    mine.id.coordinator = "alpha".into();
    m.max_epoch = 2;
    m.highest = mine.id.clone();
    m.timers.set(Timer::ProposeRetry, Instant::from_secs(1));
    m.timers.set(Timer::CommitWait, Instant::from_secs(1));
    let mut theirs = mine.clone();
    theirs.id.coordinator = "a0".into();
    m.awaiting = Some(Awaiting { view: theirs });
    assert!(m.check_invariants().is_ok(), "{:?}", m.check_invariants());
    m.proposing = Some(Proposing {
        view: mine,
        config: None,
        acks: Default::default(),
        asked: Default::default(),
        deadline: Instant::from_secs(1),
        extensions: 0,
    });
    fires(&m, "proposing while holding to proposal");
}

/// Every timer names something that is there: a probe timer for a member not being
/// verified, and a client's unfinished line without its timeout, are caught. (Guards the
/// check's `Timer::Verify` arm and `lines.pending() > 0`.)
#[test]
fn the_check_sees_timers_that_name_nothing_and_lines_without_timeouts() {
    use super::super::Timer;
    use crate::machine::ClientId;
    let mut m = alone();
    m.timers
        .set(Timer::Verify("ghost".into()), Instant::from_secs(1));
    fires(&m, "names something that is gone");
    let mut m = alone();
    let c = ClientId(1);
    client_says(&mut m, c, b"memb");
    assert!(m.check_invariants().is_ok());
    m.timers.cancel(&Timer::PartialLine(c));
    fires(&m, "left a line unfinished with no timeout");
}

/// Daemons started together do not ask to join in step: the wait before the next join
/// request is drawn with jitter from each daemon's own generator. (Guards `jitter`.)
#[test]
fn joins_of_daemons_started_together_are_spread() {
    use super::super::Timer;
    let when: std::collections::BTreeSet<Instant> = (0..8u64)
        .map(|seed| {
            let mut s = MembershipSettings::new("alpha", at(0));
            s.join = vec![at(1)];
            let mut m = Membership::new(s, Instant::ZERO, Rng::from_seed(seed));
            m.handle_timeout(Instant::ZERO);
            let _ = sent(&mut m);
            m.timers.get(&Timer::Join).expect("joining")
        })
        .collect();
    assert!(when.len() > 1, "every daemon's join timer at {when:?}");
}

/// A report whose acknowledgement has not come goes again to the member it was for, at
/// its address in the view. (Guards `addr_of`.)
#[test]
fn an_unacknowledged_report_goes_again_to_its_member() {
    use super::super::{PendingReport, Timer};
    let mut m = alone();
    installed(&mut m, 3);
    let _ = sent(&mut m);
    m.report = Some(PendingReport {
        to: "x1".into(),
        suspects: vec!["x2".into()],
        tries: 1,
    });
    // A retry period of this cluster's own, not the default.
    m.cfg.timing.retry = core::time::Duration::from_millis(77);
    let t = Instant::from_millis(10);
    m.timers.set(Timer::ReportRetry, t);
    m.handle_timeout(t);
    assert_eq!(
        m.timers.get(&Timer::ReportRetry),
        Some(t + core::time::Duration::from_millis(77)),
        "the next try after the configured retry"
    );
    let out = sent(&mut m);
    assert!(
        out.iter().any(|(to, msg)| *to == at(1)
            && matches!(msg, MemberMsg::Report { suspects, .. } if suspects == &["x2"])),
        "{out:?}"
    );
}
