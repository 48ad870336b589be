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
    let frames = m.stats().frames_sent;
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
