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

pub(super) fn member(name: &str, i: usize) -> Member {
    Member {
        name: name.to_string(),
        incarnation: 0x4200 + i as u64,
        addr: addr(i),
    }
}

pub(super) fn proposal(epoch: u64, coordinator: &Member, members: &[Member]) -> MemberMsg {
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
pub(super) fn answers(m: &mut Membership, to: Member) -> (Vec<ViewId>, Vec<ViewId>) {
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

/// `from`'s acknowledgement of proposal `id`, as a daemon that was never in a primary
/// view sends it.
pub(super) fn ack_from(from: &Member, id: &ViewId) -> MemberMsg {
    MemberMsg::Ack {
        id: id.clone(),
        from: from.clone(),
        last_primary: ViewId {
            epoch: 0,
            coordinator: from.name.clone(),
            incarnation: from.incarnation,
        },
        basis: Vec::new(),
    }
}

/// Fires `m`'s timers due at `now` and drains its output: the views of the proposals it
/// sent (one per member asked).
pub(super) fn proposals_at(m: &mut Membership, now: Instant) -> Vec<View> {
    m.handle_timeout(now);
    let mut views = Vec::new();
    while let Some(o) = m.poll_output() {
        if let Output::Transmit(t) = o
            && let Ok(MemberMsg::Propose { view, .. }) = MemberMsg::decode(&t.frame)
        {
            views.push(view);
        }
    }
    views
}

/// A daemon "alpha" alone, its start-up output drained.
fn lone_alpha() -> Membership {
    lone("alpha")
}

/// A daemon named `name`, alone in its own view, its start-up output drained.
pub(super) fn lone(name: &str) -> Membership {
    let mut m = Membership::new(
        MembershipSettings::new(name, addr(0)),
        Instant::ZERO,
        Rng::from_seed(3),
    );
    while m.poll_output().is_some() {}
    m
}

/// Hands `m` the frame of `msg` from `from`, and checks it stays consistent.
pub(super) fn feed_from(m: &mut Membership, now: Instant, from: &Member, msg: &MemberMsg) {
    m.handle(
        now,
        Input::Frame {
            from: from.addr,
            frame: msg.to_frame(),
        },
    )
    .expect("a good frame");
    m.check_invariants().expect("consistent");
}

/// A daemon acknowledges a proposal of epoch 9, then a proposal of epoch 5 from
/// another coordinator arrives late (it was sent before, and delayed): above the
/// daemon's installed view but below what it acknowledged. It is refused, and the
/// daemon still waits for the commit of the one it acknowledged.
#[test]
fn a_stale_proposal_delivered_late_is_refused() {
    let now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let me = alpha.me().clone();
    let (x, y) = (member("xray", 5), member("yankee", 6));
    let high = proposal(9, &x, &[me.clone(), x.clone()]);
    let low = proposal(5, &y, &[me.clone(), y.clone()]);
    let feed = |m: &mut Membership, from: &Member, msg: &MemberMsg| feed_from(m, now, from, msg);
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

/// A proposal sent again (its coordinator did not hear the acknowledgement) is
/// acknowledged again, not refused as stale: it is the highest seen, not below it.
#[test]
fn a_proposal_sent_again_is_acknowledged_again() {
    let now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let me = alpha.me().clone();
    let x = member("xray", 5);
    let p = proposal(9, &x, &[me.clone(), x.clone()]);
    for copy in 1..=2 {
        feed_from(&mut alpha, now, &x, &p);
        let (acked, refused) = answers(&mut alpha, x.clone());
        assert_eq!(
            (acked.len(), refused.len()),
            (1, 0),
            "copy {copy} of the proposal: acknowledged {acked:?}, refused {refused:?}"
        );
    }
}

/// A proposal that leaves this daemon out is not acknowledged, and nothing waits for
/// its commit here.
#[test]
fn a_proposal_without_this_daemon_is_not_acknowledged() {
    let now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let (x, y) = (member("xray", 5), member("yankee", 6));
    let p = proposal(9, &x, &[x.clone(), y.clone()]);
    feed_from(&mut alpha, now, &x, &p);
    let (acked, _) = answers(&mut alpha, x.clone());
    assert!(
        acked.is_empty(),
        "acknowledged a view without it: {acked:?}"
    );
    assert!(
        alpha.awaiting.is_none(),
        "waits for the commit of a view without it"
    );
}

/// An acknowledgement of an earlier proposal does not count for the one that replaced
/// it: a coordinator outbid on its first proposal commits the second only once every
/// member acknowledged the second.
#[test]
fn an_acknowledgement_of_an_earlier_proposal_does_not_count() {
    let mut alpha = lone_alpha();
    let x = member("xray", 5);
    let mut now = Instant::from_millis(10);
    let feed = |m: &mut Membership, now: Instant, msg: &MemberMsg| feed_from(m, now, &x, msg);
    // Until alpha sends x a proposal (or a commit): the ids proposed, and whether it
    // committed.
    let next = |m: &mut Membership, now: &mut Instant| -> (Vec<ViewId>, bool) {
        let (mut proposed, mut committed) = (Vec::new(), false);
        for _ in 0..100 {
            while let Some(o) = m.poll_output() {
                if let Output::Transmit(t) = o
                    && t.to == x.addr
                {
                    match MemberMsg::decode(&t.frame) {
                        Ok(MemberMsg::Propose { view, .. }) => proposed.push(view.id),
                        Ok(MemberMsg::Commit { .. }) => committed = true,
                        _ => {}
                    }
                }
            }
            if !proposed.is_empty() || committed {
                break;
            }
            *now = m.poll_timeout().unwrap_or(*now).max(*now);
            m.handle_timeout(*now);
        }
        (proposed, committed)
    };
    feed(&mut alpha, now, &MemberMsg::Join { member: x.clone() });
    let (first, _) = next(&mut alpha, &mut now);
    let first = first.first().expect("alpha proposes a view with x").clone();
    // x took a higher proposal from a daemon with a greater name: alpha outbids it.
    let higher = ViewId {
        epoch: first.epoch + 1,
        coordinator: "yankee".into(),
        incarnation: 7,
    };
    feed(
        &mut alpha,
        now,
        &MemberMsg::Nack {
            id: first.clone(),
            higher,
        },
    );
    let (second, _) = next(&mut alpha, &mut now);
    let second = second.first().expect("alpha proposes again").clone();
    assert!(second > first);
    let ack = |id: &ViewId| ack_from(&x, id);
    // x's acknowledgement of the first proposal arrives late.
    feed(&mut alpha, now, &ack(&first));
    let mut committed = false;
    while let Some(o) = alpha.poll_output() {
        if let Output::Transmit(t) = o {
            committed |= matches!(MemberMsg::decode(&t.frame), Ok(MemberMsg::Commit { .. }));
        }
    }
    assert!(
        !committed,
        "committed {second} on an acknowledgement of {first}"
    );
    assert_eq!(alpha.view().members.len(), 1);
    // Its acknowledgement of the second one commits it.
    feed(&mut alpha, now, &ack(&second));
    assert_eq!(alpha.view().id, second);
    assert_eq!(alpha.view().members.len(), 2);
}

/// A member whose coordinator falls silent after its proposal does not wait for the
/// commit for ever: after `commit-timeout` it stops waiting (and looks for the
/// coordinator).
#[test]
fn a_proposal_never_committed_is_given_up_after_the_commit_timeout() {
    let mut now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let me = alpha.me().clone();
    let x = member("xray", 5);
    let p = proposal(9, &x, &[me, x.clone()]);
    feed_from(&mut alpha, now, &x, &p);
    let (acked, _) = answers(&mut alpha, x.clone());
    assert_eq!(acked.len(), 1);
    assert!(alpha.awaiting.is_some());
    let deadline = now + crate::membership::Timing::default().commit_timeout;
    for _ in 0..10_000 {
        if now > deadline {
            break;
        }
        now = alpha
            .poll_timeout()
            .expect("timers")
            .max(now + Duration::from_millis(1));
        alpha.handle_timeout(now);
        alpha.check_invariants().expect("consistent");
        while alpha.poll_output().is_some() {}
    }
    assert!(now > deadline);
    assert!(
        alpha.awaiting.is_none(),
        "still waiting for the commit of {:?} at {now:?}",
        alpha.awaiting.as_ref().map(|a| &a.view.id)
    );
}

/// A daemon cut off from a cluster formed by joins (no configured daemons) installs a
/// view of its own that is not primary, and that view keeps the basis of the last
/// primary view (dynamic voting: a later merge is judged against it), not its own
/// members.
#[test]
fn a_cut_off_minority_keeps_the_last_primary_basis() {
    let mut net = formed();
    let basis_before = net.m(0).view().basis.clone();
    assert_eq!(basis_before.len(), 3, "the formed view is its own basis");
    net.isolated.insert(2);
    net.run_for(Duration::from_secs(3));
    let v = net.m(2).view();
    assert_eq!(v.members.len(), 1, "the cut-off daemon is alone: {v:?}");
    assert!(!v.primary, "one of three is not primary");
    assert_eq!(
        v.basis, basis_before,
        "a non-primary view keeps the last primary basis"
    );
}

/// A daemon that is leaving does not acknowledge a proposal that still holds it (one
/// that crossed its leave): it would be counted in a view it is leaving.
#[test]
fn a_leaving_daemon_does_not_acknowledge_a_proposal_that_holds_it() {
    let now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let me = alpha.me().clone();
    let x = member("xray", 5);
    let feed = |m: &mut Membership, msg: &MemberMsg| feed_from(m, now, &x, msg);
    // A view of alpha and x, proposed and committed by x.
    let first = proposal(9, &x, &[me.clone(), x.clone()]);
    feed(&mut alpha, &first);
    let MemberMsg::Propose { view, .. } = &first else {
        unreachable!()
    };
    feed(
        &mut alpha,
        &MemberMsg::Commit {
            view: view.clone(),
            config: None,
        },
    );
    assert_eq!(alpha.view().members.len(), 2);
    while alpha.poll_output().is_some() {}
    alpha
        .handle(now, Input::Command(super::super::MembershipCommand::Leave))
        .expect("leave");
    while alpha.poll_output().is_some() {}
    // x had not heard of the leave yet: its next proposal still holds alpha.
    feed(&mut alpha, &proposal(10, &x, &[me, x.clone()]));
    let (acked, _) = answers(&mut alpha, x.clone());
    assert!(acked.is_empty(), "a leaving daemon acknowledged {acked:?}");
}

/// Changes that keep coming do not hold a view back: the coordinator proposes one retry
/// period after the first change, with what it has by then, even while more daemons
/// ask to join every 30 ms (a retry period is 50 ms); later ones wait for the next view.
#[test]
fn a_stream_of_joins_does_not_postpone_the_first_proposal() {
    let mut alpha = lone_alpha();
    let retry = alpha.timing().retry;
    let joiners: Vec<Member> = (0..6).map(|i| member(&format!("x{i}"), i + 5)).collect();
    let first_join = Instant::from_millis(10);
    let mut proposed_at = None;
    let mut now = first_join;
    while now <= Instant::from_millis(400) && proposed_at.is_none() {
        let since = now.saturating_duration_since(first_join).as_millis() as usize;
        if since.is_multiple_of(30) && since / 30 < joiners.len() {
            let j = &joiners[since / 30];
            feed_from(&mut alpha, now, j, &MemberMsg::Join { member: j.clone() });
        }
        if !proposals_at(&mut alpha, now).is_empty() {
            proposed_at.get_or_insert(now);
        }
        now += Duration::from_millis(5);
    }
    let at = proposed_at.expect("alpha proposed");
    assert!(
        at <= first_join + retry,
        "first proposal at {at:?}, {retry:?} after the first join is {:?}",
        first_join + retry
    );
    assert_eq!(alpha.stats().proposals, 1, "one proposal, counted");
}

/// A member slow to acknowledge (its acknowledgement takes 200 ms, within the 300 ms
/// `ack-timeout`) is waited for: the proposal is sent again meanwhile, not given up,
/// and its acknowledgement commits the view with it.
#[test]
fn a_slow_acknowledgement_within_the_ack_timeout_is_waited_for() {
    let mut alpha = lone_alpha();
    let x = member("xray", 5);
    let mut now = Instant::from_millis(10);
    feed_from(&mut alpha, now, &x, &MemberMsg::Join { member: x.clone() });
    let mut proposed = None;
    let until = now + Duration::from_millis(200);
    while now <= until {
        if let Some(view) = proposals_at(&mut alpha, now).into_iter().next() {
            proposed.get_or_insert(view.id);
        }
        now += Duration::from_millis(5);
    }
    let id = proposed.expect("alpha proposed a view with xray");
    let ack = ack_from(&x, &id);
    feed_from(&mut alpha, now, &x, &ack);
    assert_eq!(
        alpha.view().id,
        id,
        "the late acknowledgement did not commit"
    );
    assert_eq!(alpha.view().members.len(), 2);
}

/// A joiner that never acknowledges is given up on exactly on schedule: the proposal
/// goes again every retry period until `ack-timeout`, is then extended twice by
/// `verify-for` and a retry (silent members of the installed view are checked
/// meanwhile; a joiner is not one), and is then dropped, the joiner left out: no view
/// is proposed again without it, since nothing else changed.
#[test]
fn a_silent_joiner_is_given_up_on_schedule_and_only_it() {
    let mut alpha = lone_alpha();
    let t = alpha.timing().clone();
    let x = member("xray", 5);
    let mut now = Instant::from_millis(10);
    feed_from(&mut alpha, now, &x, &MemberMsg::Join { member: x.clone() });
    let (mut first, mut given_up, mut sends) = (None, None, 0);
    while now <= Instant::from_millis(3000) {
        for view in proposals_at(&mut alpha, now) {
            assert!(view.contains(&x.name), "proposed {view:?} after giving up");
            first.get_or_insert(now);
            sends += 1;
        }
        if first.is_some() && given_up.is_none() && alpha.proposing.is_none() {
            given_up = Some(now);
        }
        alpha.check_invariants().expect("consistent");
        now += Duration::from_millis(5);
    }
    let first = first.expect("alpha proposed a view with xray");
    let given_up = given_up.expect("the proposal was given up");
    assert_eq!(
        given_up,
        first + t.ack_timeout + (t.verify_for + t.retry) * 2,
        "given up at the wrong time (first sent at {first:?})"
    );
    // One send per retry period until it was given up.
    let periods = given_up.saturating_duration_since(first).as_millis() / t.retry.as_millis();
    assert_eq!(sends as u128, periods, "{sends} proposals sent");
    assert_eq!(alpha.stats().proposals, 1, "proposed again after giving up");
    assert_eq!(alpha.view().members.len(), 1);
    assert!(!alpha.unreachable.contains(&alpha.me().name));
}

/// Outbid on its proposal (a member acknowledged a higher one), a coordinator proposes
/// again at once if the higher proposal's coordinator has a greater name (the least
/// name coordinates a merged view), but gives a lesser name `ack-timeout` to take it in
/// first.
#[test]
fn an_outbid_coordinator_gives_way_only_to_a_lesser_name() {
    for (rival, at_once) in [("yankee", true), ("alpha", false)] {
        let mut bravo = lone("bravo");
        let ack_timeout = bravo.timing().ack_timeout;
        let x = member("xray", 5);
        let mut now = Instant::from_millis(10);
        feed_from(&mut bravo, now, &x, &MemberMsg::Join { member: x.clone() });
        // Each proposal bravo sends x, with when.
        let mut sent: Vec<(Instant, ViewId)> = Vec::new();
        let step = |m: &mut Membership, now: Instant, sent: &mut Vec<(Instant, ViewId)>| {
            for view in proposals_at(m, now) {
                if sent.last().is_none_or(|(_, id)| *id != view.id) {
                    sent.push((now, view.id));
                }
            }
        };
        while sent.is_empty() {
            step(&mut bravo, now, &mut sent);
            now += Duration::from_millis(5);
        }
        let first = sent[0].1.clone();
        let higher = ViewId {
            epoch: first.epoch + 1,
            coordinator: rival.into(),
            incarnation: 7,
        };
        feed_from(&mut bravo, now, &x, &MemberMsg::Nack { id: first, higher });
        let outbid_at = now;
        while sent.len() < 2 && now <= outbid_at + ack_timeout * 2 {
            step(&mut bravo, now, &mut sent);
            now += Duration::from_millis(5);
        }
        let (again, _) = sent.get(1).expect("bravo proposes again");
        if at_once {
            assert_eq!(*again, outbid_at, "outbid by {rival}: not again at once");
        } else {
            assert_eq!(
                *again,
                outbid_at + ack_timeout,
                "outbid by {rival}: not after ack-timeout"
            );
        }
    }
}

/// A view committed after this daemon acknowledged a higher proposal (the commit of an
/// earlier one it had taken, delivered late, after its wait for it ended) is installed,
/// but leaves the highest id seen where it was: a proposal between the two is still
/// refused as stale. Installing counts a view.
#[test]
fn a_late_commit_does_not_lower_the_highest_proposal_seen() {
    let mut now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let me = alpha.me().clone();
    let (x, y, z) = (member("xray", 5), member("yankee", 6), member("zulu", 7));
    // Yankee's epoch 8 acknowledged; its commit does not come in time.
    let p8 = proposal(8, &y, &[me.clone(), y.clone()]);
    feed_from(&mut alpha, now, &y, &p8);
    now += alpha.timing().commit_timeout;
    alpha.handle_timeout(now);
    assert!(alpha.awaiting.is_none(), "the wait for the commit ended");
    // Then xray's epoch 9: acknowledged.
    feed_from(
        &mut alpha,
        now,
        &x,
        &proposal(9, &x, &[me.clone(), x.clone()]),
    );
    let (acked, _) = answers(&mut alpha, x.clone());
    assert_eq!(acked.len(), 1, "epoch 9 acknowledged once free");
    let feed = |m: &mut Membership, from: &Member, msg: &MemberMsg| feed_from(m, now, from, msg);
    // Yankee commits its epoch 8.
    let MemberMsg::Propose { view: mut v8, .. } = p8 else {
        unreachable!("a proposal")
    };
    v8.primary = true;
    let views = alpha.stats().views;
    feed(
        &mut alpha,
        &y,
        &MemberMsg::Commit {
            view: v8.clone(),
            config: None,
        },
    );
    assert_eq!(alpha.view().id, v8.id, "the commit was installed");
    assert_eq!(alpha.stats().views, views + 1, "the view was counted");
    while alpha.poll_output().is_some() {}
    // Zulu's epoch 8 sorts between yankee's 8 and xray's 9: stale.
    feed(&mut alpha, &z, &proposal(8, &z, &[me.clone(), z.clone()]));
    let (acked, refused) = answers(&mut alpha, z.clone());
    assert!(acked.is_empty(), "acknowledged below epoch 9: {acked:?}");
    assert_eq!(refused.len(), 1);
}

/// The view of a proposal message, committed as its coordinator would (primary, its
/// members its basis).
pub(super) fn committed(p: &MemberMsg) -> View {
    let MemberMsg::Propose { view, .. } = p else {
        unreachable!("a proposal")
    };
    let mut v = view.clone();
    v.primary = true;
    v
}

/// A coordinator whose own proposal is in flight installs the commit of a lower view it
/// acknowledged earlier (delivered late, after its wait for it ended): the proposal, above that view, goes on — it is
/// sent again, and the acknowledgement of its last member commits it. (Kills `install`'s
/// `p.view.id <= self.view.id` → `>`, which drops it.)
#[test]
fn a_proposal_above_a_view_committed_meanwhile_goes_on() {
    let mut now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let retry = alpha.timing().retry;
    let me = alpha.me().clone();
    let (j, x) = (member("juliet", 4), member("xray", 5));
    // xray proposes epoch 9 with alpha: acknowledged, but its commit does not come
    // within the commit timeout, which frees alpha.
    let p9 = proposal(9, &x, &[me.clone(), x.clone()]);
    feed_from(&mut alpha, now, &x, &p9);
    let (acked, _) = answers(&mut alpha, x.clone());
    assert_eq!(acked.len(), 1);
    now += alpha.timing().commit_timeout;
    alpha.handle_timeout(now);
    assert!(alpha.awaiting.is_none(), "the wait for the commit ended");
    while alpha.poll_output().is_some() {}
    // juliet asks alpha (still alone in its view, so coordinating it) to join: alpha
    // proposes a view of the two, above everything it has seen.
    feed_from(&mut alpha, now, &j, &MemberMsg::Join { member: j.clone() });
    now += retry;
    let mine = proposals_at(&mut alpha, now);
    let mine = mine
        .first()
        .expect("alpha proposes a view with juliet")
        .clone();
    assert_eq!(mine.names().collect::<Vec<_>>(), ["alpha", "juliet"]);
    assert!(mine.id.epoch > 9);
    // xray's commit of epoch 9 comes now.
    let v9 = committed(&p9);
    feed_from(
        &mut alpha,
        now,
        &x,
        &MemberMsg::Commit {
            view: v9.clone(),
            config: None,
        },
    );
    assert_eq!(alpha.view().id, v9.id, "the commit was installed");
    while alpha.poll_output().is_some() {}
    // The proposal is still in flight: sent again to juliet at the next retry.
    now += retry;
    let again = proposals_at(&mut alpha, now);
    assert_eq!(
        again.iter().map(|v| &v.id).collect::<Vec<_>>(),
        [&mine.id],
        "the proposal above the installed view was dropped"
    );
    feed_from(&mut alpha, now, &j, &ack_from(&j, &mine.id));
    assert_eq!(
        alpha.view().id,
        mine.id,
        "juliet's acknowledgement committed it"
    );
    assert_eq!(
        alpha.view().names().collect::<Vec<_>>(),
        ["alpha", "juliet"]
    );
}

/// The views `m` installed (events), its output drained.
fn installed(m: &mut Membership) -> Vec<View> {
    let mut views = Vec::new();
    while let Some(o) = m.poll_output() {
        if let Output::Event(crate::membership::machine::MembershipEvent::ViewInstalled {
            view,
            ..
        }) = o
        {
            views.push(view);
        }
    }
    views
}

fn view_state(v: &View) -> MemberMsg {
    MemberMsg::ViewState {
        view: v.clone(),
        config: crate::membership::msg::ClusterConfig::default(),
    }
}

/// A member that acknowledged a proposal and missed its commit catches up from the
/// view state it is sent (the answer to its view request): the view is installed, once.
/// The same view sent again (an answer that crossed the install) installs nothing, nor
/// does an older view holding this daemon. (Kills `on_view_state`'s `v.id > self.view.id`
/// → `==`, `<`, `>=` where the view holds this daemon.)
#[test]
fn a_member_that_missed_a_commit_catches_up_from_a_view_state_once() {
    let now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let me = alpha.me().clone();
    let x = member("xray", 5);
    let p9 = proposal(9, &x, &[me.clone(), x.clone()]);
    feed_from(&mut alpha, now, &x, &p9);
    while alpha.poll_output().is_some() {}
    let v9 = committed(&p9);
    let views = alpha.stats().views;
    feed_from(&mut alpha, now, &x, &view_state(&v9));
    assert_eq!(alpha.view(), &v9, "the view state was not installed");
    assert_eq!(installed(&mut alpha), std::slice::from_ref(&v9));
    assert!(alpha.awaiting.is_none(), "still waiting for the commit");
    for (what, v) in [
        ("the same view again", v9.clone()),
        (
            "an older view",
            committed(&proposal(5, &x, &[me.clone(), x.clone()])),
        ),
    ] {
        feed_from(&mut alpha, now, &x, &view_state(&v));
        assert_eq!(alpha.view(), &v9, "{what} was installed");
        assert!(installed(&mut alpha).is_empty(), "{what} was installed");
    }
    assert_eq!(alpha.stats().views, views + 1);
}

/// A member the cluster went on without (it missed the proposal that left it out) hears
/// of the newer view in a heartbeat, asks for it, and, not in it, starts again alone
/// (with an epoch past that view's, not primary, remembering its members) and asks to
/// join. (Kills `v.id > self.view.id` → `==`, `<` in `on_view_state`'s left-out branch
/// and `View::contains_any_of` → `false`.)
#[test]
fn a_member_left_out_of_a_view_starts_again_alone_and_joins() {
    let now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let me = alpha.me().clone();
    let (x, y) = (member("xray", 5), member("yankee", 6));
    let p9 = proposal(9, &x, &[me.clone(), x.clone(), y.clone()]);
    feed_from(&mut alpha, now, &x, &p9);
    let v9 = committed(&p9);
    feed_from(
        &mut alpha,
        now,
        &x,
        &MemberMsg::Commit {
            view: v9.clone(),
            config: None,
        },
    );
    assert_eq!(alpha.view(), &v9);
    while alpha.poll_output().is_some() {}
    let v12 = committed(&proposal(12, &x, &[x.clone(), y.clone()]));
    feed_from(
        &mut alpha,
        now,
        &x,
        &MemberMsg::Heartbeat {
            view: v12.id.clone(),
            from: x.clone(),
        },
    );
    let asked = std::iter::from_fn(|| alpha.poll_output()).any(|o| {
        matches!(o, Output::Transmit(t) if t.to == x.addr
            && matches!(MemberMsg::decode(&t.frame), Ok(MemberMsg::ViewReq { .. })))
    });
    assert!(asked, "alpha did not ask xray for its newer view");
    feed_from(&mut alpha, now, &x, &view_state(&v12));
    let v = alpha.view().clone();
    assert_eq!(v.names().collect::<Vec<_>>(), ["alpha"], "{v:?}");
    assert_eq!(v.id.epoch, 13);
    assert!(!v.primary);
    assert_eq!(installed(&mut alpha), [v]);
    let absent: Vec<&String> = alpha.absent.keys().collect();
    assert_eq!(absent, ["xray", "yankee"]);
    alpha.handle_timeout(now);
    let joins: Vec<_> = std::iter::from_fn(|| alpha.poll_output())
        .filter_map(|o| match o {
            Output::Transmit(t)
                if matches!(MemberMsg::decode(&t.frame), Ok(MemberMsg::Join { .. })) =>
            {
                Some(t.to)
            }
            _ => None,
        })
        .collect();
    assert_eq!(joins, [x.addr, y.addr], "alpha does not ask to join again");
}

/// A coordinator asks a foreign daemon for its view twice (it greeted twice before the
/// first answer came) and both answers come: the first is merged; the second, no longer
/// asked for and sharing no member with this daemon's view, changes nothing (it is not
/// taken for a view that left this daemon out), and the merge is proposed. (Kills the
/// left-out branch's `&&` → `||` and `View::contains_any_of` → `true`.)
#[test]
fn a_second_answer_to_a_merge_request_changes_nothing() {
    let mut now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let retry = alpha.timing().retry;
    let (x, y) = (member("xray", 5), member("yankee", 6));
    let v20 = committed(&proposal(20, &x, &[x.clone(), y.clone()]));
    let hello = MemberMsg::Hello {
        view: v20.id.clone(),
        from: x.clone(),
        size: 2,
    };
    let requests = |m: &mut Membership| {
        std::iter::from_fn(|| m.poll_output())
            .filter(|o| {
                matches!(o, Output::Transmit(t) if t.to == x.addr
                    && matches!(MemberMsg::decode(&t.frame), Ok(MemberMsg::ViewReq { .. })))
            })
            .count()
    };
    feed_from(&mut alpha, now, &x, &hello);
    assert_eq!(requests(&mut alpha), 1);
    now += retry * 4;
    feed_from(&mut alpha, now, &x, &hello);
    assert_eq!(
        requests(&mut alpha),
        1,
        "asked again after four retry periods"
    );
    let before = alpha.view().clone();
    feed_from(&mut alpha, now, &x, &view_state(&v20));
    feed_from(&mut alpha, now, &x, &view_state(&v20));
    assert_eq!(alpha.view(), &before, "the second answer changed the view");
    assert!(installed(&mut alpha).is_empty());
    now += retry;
    let proposed = proposals_at(&mut alpha, now);
    let p = proposed.first().expect("alpha proposes the merge");
    assert_eq!(p.names().collect::<Vec<_>>(), ["alpha", "xray", "yankee"]);
    assert!(p.id.epoch > 20);
}

/// A foreign view to merge still lists a member of this daemon's view in an earlier life
/// (bravo restarted and joined this view since): the merge takes the foreign members
/// only, and the next proposal holds bravo's current life, not the stale one. (Kills the
/// merge's `!self.view.contains(..) && m.name != self.me.name` → `||`.)
#[test]
fn a_merged_view_does_not_bring_back_an_earlier_life_of_a_member() {
    let mut now = Instant::from_millis(10);
    let mut alpha = lone_alpha();
    let retry = alpha.timing().retry;
    let bravo = member("bravo", 2);
    let old_bravo = Member {
        incarnation: 0x99,
        ..bravo.clone()
    };
    let charlie = member("charlie", 3);
    // bravo joins alpha.
    feed_from(
        &mut alpha,
        now,
        &bravo,
        &MemberMsg::Join {
            member: bravo.clone(),
        },
    );
    now += retry;
    let p = proposals_at(&mut alpha, now);
    let id = p.first().expect("alpha proposes bravo in").id.clone();
    feed_from(&mut alpha, now, &bravo, &ack_from(&bravo, &id));
    assert_eq!(alpha.view().member("bravo"), Some(&bravo));
    while alpha.poll_output().is_some() {}
    // charlie's view, from before bravo restarted.
    let theirs = committed(&proposal(
        5,
        &old_bravo,
        &[old_bravo.clone(), charlie.clone()],
    ));
    feed_from(
        &mut alpha,
        now,
        &charlie,
        &MemberMsg::Hello {
            view: theirs.id.clone(),
            from: charlie.clone(),
            size: 2,
        },
    );
    feed_from(&mut alpha, now, &charlie, &view_state(&theirs));
    now += retry;
    let p = proposals_at(&mut alpha, now);
    let p = p.first().expect("alpha proposes the merge");
    assert_eq!(p.names().collect::<Vec<_>>(), ["alpha", "bravo", "charlie"]);
    assert_eq!(
        p.member("bravo"),
        Some(&bravo),
        "the merge brought back bravo's earlier life"
    );
}
