//! Agreement on views (SPEC.md §9.2), at the places a plausible bug would break it
//! without any other test noticing (issue 17): a coordinator commits only once every
//! member of its proposal acknowledged it, and a daemon never acknowledges a proposal
//! below the highest it has seen.

use core::time::Duration;

use super::{NAMES, addr, formed};
use crate::machine::{Input, Machine, Output};
use crate::membership::machine::{Membership, MembershipSettings};
use crate::membership::msg::MemberMsg;
use crate::membership::view::{Member, View, ViewId};
use crate::rng::Rng;
use crate::time::Instant;

/// Three daemons agree; a fourth joins, and one of the three is cut off at the moment
/// the coordinator proposes the view with the newcomer, so it never acknowledges. The
/// coordinator must not commit that view (its members would include one that never
/// agreed to it): it waits, finds the silent one unreachable and commits a view
/// without it.
#[test]
fn a_view_is_committed_only_once_every_member_acknowledged_it() {
    let mut net = formed();
    let coordinator = net.m(0).view().id.coordinator.clone();
    let coord = (0..3)
        .find(|&i| NAMES[i] == coordinator)
        .expect("the coordinator is one of the three");
    let silent = (0..3).find(|&i| i != coord).expect("two others");
    let silent_name = net.m(silent).me().name.clone();
    let mut s = MembershipSettings::new("dave", addr(3));
    s.join = vec![addr(coord)];
    let d = net.add(s);
    net.run_until(Instant::from_secs(4), |n| {
        n.m(coord)
            .proposing
            .as_ref()
            .is_some_and(|p| p.view.contains("dave"))
    })
    .expect("the coordinator proposes a view with the newcomer");
    net.isolated.insert(silent);
    let seen = net.nodes[coord].events.len();
    net.run_for(Duration::from_secs(4));
    let installed: Vec<&View> = net.nodes[coord].events[seen..]
        .iter()
        .filter_map(|(_, e)| match e {
            crate::membership::machine::MembershipEvent::ViewInstalled { view, .. } => Some(view),
            _ => None,
        })
        .collect();
    for v in &installed {
        assert!(
            !v.contains(&silent_name),
            "the coordinator committed view {} with {silent_name}, which never acknowledged it",
            v.id
        );
    }
    let others: Vec<usize> = (0..4).filter(|&i| i != silent).collect();
    assert!(
        net.agree(&others),
        "the three that can talk agree on a view of themselves (with the newcomer)"
    );
    assert!(net.m(d).view().contains("dave"));
}

fn member(name: &str, i: usize) -> Member {
    Member {
        name: name.to_string(),
        incarnation: 0x4200 + i as u64,
        addr: addr(i),
    }
}

fn proposal(epoch: u64, coordinator: &Member, members: &[Member]) -> MemberMsg {
    let mut members = members.to_vec();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    MemberMsg::Propose {
        view: View {
            id: ViewId {
                epoch,
                coordinator: coordinator.name.clone(),
                incarnation: coordinator.incarnation,
            },
            basis: members.iter().map(|m| m.name.clone()).collect(),
            members,
            primary: false,
            config_version: 0,
        },
        config: None,
    }
}

/// What `m` answered to `to`: the acknowledged and refused proposal ids.
fn answers(m: &mut Membership, to: Member) -> (Vec<ViewId>, Vec<ViewId>) {
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    while let Some(o) = m.poll_output() {
        if let Output::Transmit(t) = o
            && t.to == to.addr
        {
            match MemberMsg::decode(&t.frame) {
                Ok(MemberMsg::Ack { id, .. }) => acked.push(id),
                Ok(MemberMsg::Nack { id, .. }) => refused.push(id),
                _ => {}
            }
        }
    }
    (acked, refused)
}

/// A daemon acknowledges a proposal of epoch 9, then a proposal of epoch 5 from
/// another coordinator arrives late (it was sent before, and delayed): above the
/// daemon's installed view but below what it acknowledged. It is refused, and the
/// daemon still waits for the commit of the one it acknowledged.
#[test]
fn a_stale_proposal_delivered_late_is_refused() {
    let now = Instant::from_millis(10);
    let mut alpha = Membership::new(
        MembershipSettings::new("alpha", addr(0)),
        Instant::ZERO,
        Rng::from_seed(3),
    );
    while alpha.poll_output().is_some() {}
    let me = alpha.me().clone();
    let (x, y) = (member("xray", 5), member("yankee", 6));
    let high = proposal(9, &x, &[me.clone(), x.clone()]);
    let low = proposal(5, &y, &[me.clone(), y.clone()]);
    let feed = |m: &mut Membership, from: &Member, msg: &MemberMsg| {
        m.handle(
            now,
            Input::Frame {
                from: from.addr,
                frame: msg.to_frame(),
            },
        )
        .expect("a good frame");
        m.check_invariants().expect("consistent");
    };
    feed(&mut alpha, &x, &high);
    let (acked, _) = answers(&mut alpha, x.clone());
    assert_eq!(acked.len(), 1, "the first proposal is acknowledged");
    feed(&mut alpha, &y, &low);
    let (acked, refused) = answers(&mut alpha, y.clone());
    assert!(
        acked.is_empty(),
        "alpha acknowledged epoch 5 after epoch 9: {acked:?}"
    );
    assert_eq!(refused.len(), 1, "the stale proposal is refused");
    assert_eq!(
        alpha.awaiting.as_ref().map(|a| a.view.id.epoch),
        Some(9),
        "alpha still waits for the commit of what it acknowledged"
    );
}
