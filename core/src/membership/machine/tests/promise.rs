//! The acknowledgement as a promise (SPEC §9.4): a member that acknowledged one
//! coordinator's proposal takes part in no other until its commit, its release, or the
//! end of its wait for the commit; a coordinator counts an acknowledgement only while
//! that promise surely holds, and releases those it holds when it gives its proposal up.
//! Without these, two coordinators merging the same daemons could each commit a view
//! counting them (`flotilla sim membership-partition --seed 511` before the change).

use core::net::SocketAddr;
use core::time::Duration;

use super::agreement::{
    ack_from, answers, committed, feed_from, lone, member, proposal, proposals_at,
};
use crate::machine::{Machine, Output};
use crate::membership::machine::Membership;
use crate::membership::msg::{ClusterConfig, MemberMsg};
use crate::membership::view::{Member, View, ViewId};
use crate::time::Instant;

/// The releases `m` sent (a `Nack` naming its own proposal as the higher one), by
/// address; its other output is drained.
fn releases(m: &mut Membership) -> Vec<(SocketAddr, ViewId)> {
    let mut out = Vec::new();
    while let Some(o) = m.poll_output() {
        if let Output::Transmit(t) = o
            && let Ok(MemberMsg::Nack { id, higher }) = MemberMsg::decode(&t.frame)
            && id == higher
        {
            out.push((t.to, id));
        }
    }
    out
}

/// Fires `m`'s timers due at `now`: where each proposal it sent went.
fn proposals_sent(m: &mut Membership, now: Instant) -> Vec<(SocketAddr, ViewId)> {
    m.handle_timeout(now);
    let mut out = Vec::new();
    while let Some(o) = m.poll_output() {
        if let Output::Transmit(t) = o
            && let Ok(MemberMsg::Propose { view, .. }) = MemberMsg::decode(&t.frame)
        {
            out.push((t.to, view.id));
        }
    }
    out
}

/// Hands `m` the commit of proposal `p` from its coordinator `from`.
fn commit_from(m: &mut Membership, now: Instant, from: &Member, p: &MemberMsg) {
    let commit = MemberMsg::Commit {
        view: committed(p),
        config: None,
    };
    feed_from(m, now, from, &commit);
}

/// "bravo" alone with xray and yankee asking to join, and the proposal of the three it
/// sent one retry later.
fn bravo_proposing() -> (Membership, Member, Member, View, Instant) {
    let mut bravo = lone("bravo");
    let (x, y) = (member("xray", 5), member("yankee", 6));
    let mut now = Instant::from_millis(10);
    feed_from(&mut bravo, now, &x, &MemberMsg::Join { member: x.clone() });
    feed_from(&mut bravo, now, &y, &MemberMsg::Join { member: y.clone() });
    now += bravo.timing().retry;
    let p = proposals_at(&mut bravo, now)
        .first()
        .expect("bravo proposes the three")
        .clone();
    assert_eq!(p.names().collect::<Vec<_>>(), ["bravo", "xray", "yankee"]);
    (bravo, x, y, p, now)
}

/// A member that acknowledged yankee's proposal refuses xray's higher one, naming the
/// proposal it is held by, until yankee's commit comes; then xray's, sent again, is
/// acknowledged.
#[test]
fn an_acknowledgement_holds_a_member_until_the_commit() {
    let now = Instant::from_millis(10);
    let mut alpha = lone("alpha");
    let me = alpha.me().clone();
    let (x, y) = (member("xray", 5), member("yankee", 6));
    let p8 = proposal(8, &y, &[me.clone(), y.clone()]);
    let p9 = proposal(9, &x, &[me.clone(), x.clone()]);
    feed_from(&mut alpha, now, &y, &p8);
    assert_eq!(
        answers(&mut alpha, y.clone()).0.len(),
        1,
        "yankee's acknowledged"
    );
    feed_from(&mut alpha, now, &x, &p9);
    let mut nacks = Vec::new();
    while let Some(o) = alpha.poll_output() {
        if let Output::Transmit(t) = o
            && t.to == x.addr
        {
            match MemberMsg::decode(&t.frame) {
                Ok(MemberMsg::Nack { id, higher }) => nacks.push((id.epoch, higher.epoch)),
                Ok(MemberMsg::Ack { .. }) => panic!("xray's acknowledged while held by yankee's"),
                _ => {}
            }
        }
    }
    assert_eq!(nacks, [(9, 8)], "refused, naming yankee's epoch 8");
    commit_from(&mut alpha, now, &y, &p8);
    assert_eq!(alpha.view().id.epoch, 8, "yankee's view installed");
    while alpha.poll_output().is_some() {}
    feed_from(&mut alpha, now, &x, &p9);
    let (acked, refused) = answers(&mut alpha, x.clone());
    assert_eq!((acked.len(), refused.len()), (1, 0), "free once committed");
}

/// The coordinator of the proposal a member holds to can release it (a `Nack` of that
/// proposal's own id, from the coordinator's address); the same message from anyone
/// else does not. Released, the member acknowledges another coordinator's proposal.
#[test]
fn only_its_coordinator_releases_a_member_from_its_promise() {
    let now = Instant::from_millis(10);
    let mut alpha = lone("alpha");
    let me = alpha.me().clone();
    let (x, y) = (member("xray", 5), member("yankee", 6));
    let p8 = proposal(8, &y, &[me.clone(), y.clone()]);
    feed_from(&mut alpha, now, &y, &p8);
    while alpha.poll_output().is_some() {}
    let held = committed(&p8).id;
    let release = MemberMsg::Nack {
        id: held.clone(),
        higher: held.clone(),
    };
    feed_from(&mut alpha, now, &x, &release);
    assert!(
        alpha.awaiting.is_some(),
        "released by xray, which does not coordinate the proposal"
    );
    feed_from(&mut alpha, now, &y, &release);
    assert!(alpha.awaiting.is_none(), "not released by its coordinator");
    feed_from(
        &mut alpha,
        now,
        &x,
        &proposal(9, &x, &[me.clone(), x.clone()]),
    );
    assert_eq!(answers(&mut alpha, x.clone()).0.len(), 1);
}

/// A coordinator that gives its proposal up (a higher one came) releases the members
/// that acknowledged it, and a member whose acknowledgement comes after that.
#[test]
fn a_coordinator_that_gives_its_proposal_up_releases_those_that_acknowledged_it() {
    let (mut bravo, x, y, p, now) = bravo_proposing();
    let me = bravo.me().clone();
    feed_from(&mut bravo, now, &x, &ack_from(&x, &p.id));
    assert_eq!(bravo.view().names().count(), 1, "not complete yet");
    let a = member("able", 4);
    let higher = proposal(p.id.epoch + 1, &a, &[a.clone(), me, x.clone(), y.clone()]);
    feed_from(&mut bravo, now, &a, &higher);
    assert_eq!(
        releases(&mut bravo),
        [(x.addr, p.id.clone())],
        "xray, which acknowledged, is released; yankee, which did not, is not"
    );
    feed_from(&mut bravo, now, &y, &ack_from(&y, &p.id));
    assert_eq!(
        releases(&mut bravo),
        [(y.addr, p.id.clone())],
        "yankee's late acknowledgement is answered with a release"
    );
}

/// An acknowledgement counts for half the commit timeout from when the member was asked
/// (the member's promise lasts the whole of it from when it answered): past that, the
/// proposal goes to the member again, and nothing completes it until every member's
/// acknowledgement holds at once.
#[test]
fn an_acknowledgement_too_old_to_hold_is_asked_again() {
    let (mut bravo, x, y, p, t0) = bravo_proposing();
    let half = bravo.timing().commit_timeout / 2;
    let retry = bravo.timing().retry;
    feed_from(&mut bravo, t0, &x, &ack_from(&x, &p.id));
    let mut now = t0;
    let mut to_x = None;
    while to_x.is_none() && now < t0 + half * 2 {
        now += retry;
        let sent = proposals_sent(&mut bravo, now);
        assert!(
            sent.iter().all(|(_, id)| *id == p.id),
            "the proposal changed: {sent:?}"
        );
        if sent.iter().any(|(to, _)| *to == x.addr) {
            to_x = Some(now);
        }
    }
    let again = to_x.expect("xray is asked again");
    assert!(
        again >= t0 + half && again < t0 + half + retry * 2,
        "xray asked again {:?} after its acknowledgement, not past half the commit timeout",
        again.saturating_duration_since(t0)
    );
    feed_from(&mut bravo, now, &y, &ack_from(&y, &p.id));
    assert_ne!(
        bravo.view().id,
        p.id,
        "committed on xray's stale acknowledgement"
    );
    // Yankee was first asked at t0: its acknowledgement may answer that copy, so it
    // counts from t0 and is already too old. Xray's new one counts.
    feed_from(&mut bravo, now, &x, &ack_from(&x, &p.id));
    assert_ne!(
        bravo.view().id,
        p.id,
        "committed on yankee's acknowledgement of t0"
    );
    now += retry;
    let sent = proposals_sent(&mut bravo, now);
    assert_eq!(sent, [(y.addr, p.id.clone())], "only yankee is asked again");
    feed_from(&mut bravo, now, &y, &ack_from(&y, &p.id));
    assert_eq!(
        bravo.view().id,
        p.id,
        "both acknowledgements hold: committed"
    );
}

/// A refusal naming a lower proposal (the member is held by another coordinator's) does
/// not end the proposal: it is sent to the member again at the next retry.
#[test]
fn a_coordinator_held_off_by_a_lower_proposal_keeps_its_own() {
    let (mut bravo, x, _y, p, mut now) = bravo_proposing();
    let lower = ViewId {
        epoch: p.id.epoch - 1,
        coordinator: "zulu".into(),
        incarnation: 9,
    };
    feed_from(
        &mut bravo,
        now,
        &x,
        &MemberMsg::Nack {
            id: p.id.clone(),
            higher: lower,
        },
    );
    assert!(
        bravo.proposing.as_ref().is_some_and(|q| q.view.id == p.id),
        "the proposal was dropped"
    );
    now += bravo.timing().retry;
    let sent = proposals_sent(&mut bravo, now);
    assert!(sent.contains(&(x.addr, p.id.clone())), "{sent:?}");
}

/// A daemon coordinating its own view that holds to another coordinator's proposal does
/// not propose (it would count itself into two views); once that view is installed, it
/// proposes what changed meanwhile.
#[test]
fn a_daemon_held_by_a_proposal_proposes_nothing_until_it_is_committed() {
    let mut now = Instant::from_millis(10);
    let mut alpha = lone("alpha");
    let retry = alpha.timing().retry;
    let me = alpha.me().clone();
    let (j, x) = (member("juliet", 4), member("xray", 5));
    let p5 = proposal(5, &x, &[me.clone(), x.clone()]);
    feed_from(&mut alpha, now, &x, &p5);
    feed_from(&mut alpha, now, &j, &MemberMsg::Join { member: j.clone() });
    while alpha.poll_output().is_some() {}
    for _ in 0..4 {
        now += retry;
        let sent = proposals_at(&mut alpha, now);
        assert!(sent.is_empty(), "proposed while held: {sent:?}");
    }
    commit_from(&mut alpha, now, &x, &p5);
    while alpha.poll_output().is_some() {}
    let mut mine = Vec::new();
    for _ in 0..3 {
        now += retry;
        mine.extend(proposals_at(&mut alpha, now));
    }
    let v = mine.first().expect("alpha proposes once free");
    assert_eq!(v.names().collect::<Vec<_>>(), ["alpha", "juliet", "xray"]);
}

/// A member told of a view that went on without it does not start again alone while it
/// holds to a higher proposal that takes it in (it would leave that view the moment it
/// is committed).
#[test]
fn a_member_being_taken_in_does_not_start_again_alone() {
    let now = Instant::from_millis(10);
    let mut alpha = lone("alpha");
    let me = alpha.me().clone();
    let (x, y, z) = (member("xray", 5), member("yankee", 6), member("zulu", 7));
    let p5 = proposal(5, &x, &[me.clone(), x.clone()]);
    feed_from(&mut alpha, now, &x, &p5);
    commit_from(&mut alpha, now, &x, &p5);
    feed_from(
        &mut alpha,
        now,
        &y,
        &proposal(9, &y, &[me.clone(), y.clone()]),
    );
    while alpha.poll_output().is_some() {}
    // xray went on in epoch 7 without alpha.
    let mut v7 = committed(&proposal(7, &x, &[x.clone(), z.clone()]));
    v7.basis.clear();
    let state = MemberMsg::ViewState {
        view: v7,
        config: ClusterConfig::default(),
    };
    feed_from(&mut alpha, now, &x, &state);
    assert_eq!(alpha.view().id.epoch, 5, "alpha started again alone");
    assert!(
        alpha.awaiting.is_some(),
        "alpha let go of yankee's proposal"
    );
    // Without the proposal that takes it in, the same news has it start again alone.
    let mut beta = lone("alpha");
    feed_from(&mut beta, now, &x, &p5);
    commit_from(&mut beta, now, &x, &p5);
    feed_from(&mut beta, now + Duration::from_millis(1), &x, &state);
    assert_eq!(beta.view().names().collect::<Vec<_>>(), ["alpha"]);
}

/// A coordinator told of a view that went on without it does not start again alone
/// while its own proposal, above that view, is in flight (its members are being taken
/// in).
#[test]
fn a_coordinator_whose_proposal_is_above_a_view_that_left_it_goes_on() {
    let mut now = Instant::from_millis(10);
    let mut alpha = lone("alpha");
    let me = alpha.me().clone();
    let (j, x, y) = (member("juliet", 4), member("xray", 5), member("yankee", 6));
    let p5 = proposal(5, &x, &[me.clone(), x.clone()]);
    feed_from(&mut alpha, now, &x, &p5);
    commit_from(&mut alpha, now, &x, &p5);
    feed_from(&mut alpha, now, &j, &MemberMsg::Join { member: j.clone() });
    now += alpha.timing().retry;
    let mine = proposals_at(&mut alpha, now);
    let mine = mine.first().expect("alpha proposes juliet in").id.clone();
    // Yankee's 5 sorts between xray's 5 (installed) and alpha's 6 (proposed).
    let mut v = committed(&proposal(5, &y, &[x.clone(), y.clone()]));
    v.basis.clear();
    assert!(v.id > alpha.view().id && v.id < mine);
    let state = MemberMsg::ViewState {
        view: v,
        config: ClusterConfig::default(),
    };
    feed_from(&mut alpha, now, &x, &state);
    assert_eq!(alpha.view().id.epoch, 5, "alpha started again alone");
    assert!(
        alpha.proposing.as_ref().is_some_and(|p| p.view.id == mine),
        "alpha dropped its proposal"
    );
}

/// A proposal that names an earlier life of this daemon (its coordinator has not heard
/// of the restart) is answered with a join as the daemon is now, not with silence, which
/// would have the coordinator wait for a life that is gone.
#[test]
fn a_proposal_for_an_earlier_life_is_answered_with_a_join() {
    let now = Instant::from_millis(10);
    let mut alpha = lone("alpha");
    let mut old = alpha.me().clone();
    old.incarnation ^= 1;
    let x = member("xray", 5);
    feed_from(&mut alpha, now, &x, &proposal(9, &x, &[old, x.clone()]));
    let mut joins = Vec::new();
    while let Some(o) = alpha.poll_output() {
        if let Output::Transmit(t) = o {
            match MemberMsg::decode(&t.frame) {
                Ok(MemberMsg::Join { member }) => joins.push((t.to, member)),
                Ok(MemberMsg::Ack { .. }) => panic!("acknowledged for an earlier life"),
                _ => {}
            }
        }
    }
    assert_eq!(joins, [(x.addr, alpha.me().clone())]);
    assert!(alpha.awaiting.is_none());
}

/// A proposal under this daemon's own name (its own come back, an earlier life's, or a
/// forgery carrying the id of the proposal it has in flight) is not acknowledged: the
/// daemon would hold to itself. (Found by the `membership_machine` fuzz target: the
/// machine's check "proposing while holding to proposal" fired.)
#[test]
fn a_proposal_under_this_daemons_own_name_is_not_acknowledged() {
    let (mut bravo, x, _y, p, now) = bravo_proposing();
    let echo = MemberMsg::Propose {
        view: p.clone(),
        config: None,
    };
    feed_from(&mut bravo, now, &x, &echo);
    let me = bravo.me().clone();
    let (acked, _) = answers(&mut bravo, me);
    assert!(acked.is_empty(), "acknowledged its own proposal");
    assert!(bravo.awaiting.is_none(), "holds to its own proposal");
    assert!(bravo.proposing.as_ref().is_some_and(|q| q.view.id == p.id));
}

/// Only an acknowledgement of a proposal this daemon gave up, in this life, and not
/// committed, is answered with a release: a late acknowledgement of a view it committed,
/// of another coordinator's proposal, or of a proposal of an earlier life of its name,
/// is not.
#[test]
fn only_acknowledgements_of_a_proposal_given_up_are_answered_with_a_release() {
    let (mut bravo, x, y, p, now) = bravo_proposing();
    feed_from(&mut bravo, now, &x, &ack_from(&x, &p.id));
    feed_from(&mut bravo, now, &y, &ack_from(&y, &p.id));
    assert_eq!(bravo.view().id, p.id, "committed");
    while bravo.poll_output().is_some() {}
    // A duplicate of xray's acknowledgement of the committed view.
    feed_from(&mut bravo, now, &x, &ack_from(&x, &p.id));
    assert_eq!(releases(&mut bravo), [], "released from a committed view");
    // Acknowledgements naming a higher id that is not bravo's in this life.
    let mut theirs = p.id.clone();
    theirs.epoch += 5;
    theirs.coordinator = "zulu".into();
    feed_from(&mut bravo, now, &x, &ack_from(&x, &theirs));
    assert_eq!(releases(&mut bravo), [], "released from another's proposal");
    let mut earlier_life = p.id.clone();
    earlier_life.epoch += 5;
    earlier_life.incarnation ^= 1;
    feed_from(&mut bravo, now, &x, &ack_from(&x, &earlier_life));
    assert_eq!(
        releases(&mut bravo),
        [],
        "released from an earlier life's proposal"
    );
    // The same with bravo's own life: a proposal it no longer has.
    let mut mine = p.id.clone();
    mine.epoch += 5;
    feed_from(&mut bravo, now, &x, &ack_from(&x, &mine));
    assert_eq!(releases(&mut bravo), [(x.addr, mine)]);
}
