//! The gather (SPEC.md §9.2): a member that finds its coordinator unreachable, and is not
//! next in line, asks every member who can still hear it, and hands the list to the
//! least name among those that answered, which checks the members left off the list and
//! proposes the view of the rest. In a cluster the views converge even when a gather
//! goes wrong (merges and reports repair it), so these tests drive one machine, its peers
//! scripted, and check the frames it sends: to whom, when and with what.

use core::net::SocketAddr;

use super::agreement::{feed_from, lone, member, proposal};
use crate::machine::{Input, Machine, Output};
use crate::membership::machine::Membership;
use crate::membership::msg::MemberMsg;
use crate::membership::view::{Member, View, ViewId};
use crate::time::Instant;

/// A frame the machine sent: when, to whom, what.
struct Sent {
    at: Instant,
    to: SocketAddr,
    msg: MemberMsg,
}

/// Runs `m` from `*now` to `until`: fires its timers when due, and hands every frame it
/// sends to `reply`, whose answer (sender, message) reaches `m` at once. Every frame `m`
/// sent, in order.
fn run(
    m: &mut Membership,
    now: &mut Instant,
    until: Instant,
    reply: &mut impl FnMut(Instant, SocketAddr, &MemberMsg) -> Option<(SocketAddr, MemberMsg)>,
) -> Vec<Sent> {
    let mut log = Vec::new();
    loop {
        loop {
            let mut answers = Vec::new();
            while let Some(o) = m.poll_output() {
                if let Output::Transmit(t) = o {
                    let msg = MemberMsg::decode(&t.frame).expect("the machine sends good frames");
                    answers.extend(reply(*now, t.to, &msg));
                    log.push(Sent {
                        at: *now,
                        to: t.to,
                        msg,
                    });
                }
            }
            if answers.is_empty() {
                break;
            }
            for (from, msg) in answers {
                let frame = msg.to_frame();
                m.handle(*now, Input::Frame { from, frame })
                    .expect("a good frame");
                m.check_invariants().expect("consistent");
            }
        }
        match m.poll_timeout() {
            Some(t) if t <= until => {
                *now = t.max(*now);
                m.handle_timeout(*now);
                m.check_invariants().expect("consistent");
            }
            _ => {
                *now = until;
                return log;
            }
        }
    }
}

/// What the running daemon `who` answers to `msg`: heartbeats, reports, probes (of
/// itself, and of another member for the asker if `alive` says it answers), gathers and
/// proposals.
fn live_answer(who: &Member, msg: &MemberMsg, alive: impl Fn(&str) -> bool) -> Option<MemberMsg> {
    match msg {
        MemberMsg::Heartbeat { view, .. } => Some(MemberMsg::Heartbeat {
            view: view.clone(),
            from: who.clone(),
        }),
        MemberMsg::Report { view, .. } => Some(MemberMsg::ReportAck { view: view.clone() }),
        MemberMsg::Probe { nonce } => Some(MemberMsg::ProbeAck {
            nonce: *nonce,
            from: who.clone(),
        }),
        MemberMsg::ProbeFor { nonce, target } if alive(&target.name) => Some(MemberMsg::ProbeAck {
            nonce: *nonce,
            from: target.clone(),
        }),
        MemberMsg::Gather { nonce, view } => Some(MemberMsg::Here {
            nonce: *nonce,
            from: who.clone(),
            view: view.clone(),
        }),
        MemberMsg::Propose { view, .. } => Some(MemberMsg::Ack {
            id: view.id.clone(),
            from: who.clone(),
            last_primary: ViewId::default(),
            basis: Vec::new(),
        }),
        _ => None,
    }
}

/// `m` (alone so far) installs the view of `members` (`m` among them) that `coord`
/// proposed and committed at epoch 1, at `now`.
fn install_view(m: &mut Membership, now: Instant, coord: &Member, members: &[Member]) -> View {
    let p = proposal(1, coord, members);
    feed_from(m, now, coord, &p);
    let MemberMsg::Propose { mut view, .. } = p else {
        unreachable!("a proposal")
    };
    view.primary = true;
    feed_from(
        m,
        now,
        coord,
        &MemberMsg::Commit {
            view: view.clone(),
            config: None,
        },
    );
    assert_eq!(m.view(), &view);
    while m.poll_output().is_some() {}
    view
}

/// The members of delta's view besides delta.
struct Others {
    alpha: Member,
    bravo: Member,
    charlie: Member,
    echo: Member,
}

/// delta, in a view of five coordinated by alpha, acknowledges alpha's next proposal at
/// the instant returned; alpha then falls silent (it answers nothing from then on).
fn delta_acknowledging_alpha() -> (Membership, Others, Instant) {
    let mut delta = lone("delta");
    let me = delta.me().clone();
    let o = Others {
        alpha: member("alpha", 1),
        bravo: member("bravo", 2),
        charlie: member("charlie", 3),
        echo: member("echo", 4),
    };
    let five = [
        o.alpha.clone(),
        o.bravo.clone(),
        o.charlie.clone(),
        me,
        o.echo.clone(),
    ];
    install_view(&mut delta, Instant::from_millis(10), &o.alpha, &five);
    let now = Instant::from_millis(20);
    feed_from(&mut delta, now, &o.alpha, &proposal(2, &o.alpha, &five));
    assert!(
        delta.awaiting.is_some(),
        "delta acknowledged alpha's proposal"
    );
    while delta.poll_output().is_some() {}
    (delta, o, now)
}

/// The instants and addresses of the gathers in `log`.
fn gathers(log: &[Sent]) -> Vec<(Instant, SocketAddr)> {
    log.iter()
        .filter(|s| matches!(s.msg, MemberMsg::Gather { .. }))
        .map(|s| (s.at, s.to))
        .collect()
}

/// delta acknowledges a proposal of its coordinator alpha, which then falls silent.
/// When the commit does not come, delta checks alpha, finds it unreachable, and, bravo
/// being next in line, gathers. It asks every other member, once per retry period until
/// `ack-timeout`, each time only those that have not answered: bravo answers at once;
/// echo's first two answers are lost; charlie has restarted, and the answer of its new
/// life does not count for the member in the view. The gather ends at `ack-timeout` with
/// one election, sent to bravo, the least name that answered, listing exactly those that
/// answered and delta. (Kills the open survivors of `send_gather`, `on_here` and
/// `on_gather_timer` in TESTING.md.)
#[test]
fn a_gather_asks_until_ack_timeout_and_elects_the_least_of_those_that_answered() {
    let (mut delta, o, acked_at) = delta_acknowledging_alpha();
    let Others {
        alpha,
        bravo,
        charlie,
        echo,
    } = &o;
    let t = delta.timing().clone();
    let me = delta.me().clone();
    let mut now = acked_at;
    let charlie_again = Member {
        incarnation: 0x9900,
        ..charlie.clone()
    };
    let restart = acked_at + t.commit_timeout;
    let mut echo_gathers = 0;
    let mut reply = |now: Instant, to: SocketAddr, msg: &MemberMsg| {
        let alive = |n: &str| n != "alpha";
        let who = if to == bravo.addr {
            bravo.clone()
        } else if to == charlie.addr && now >= restart {
            charlie_again.clone()
        } else if to == charlie.addr {
            charlie.clone()
        } else if to == echo.addr {
            if matches!(msg, MemberMsg::Gather { .. }) && echo_gathers < 2 {
                echo_gathers += 1;
                return None;
            }
            echo.clone()
        } else {
            return None;
        };
        live_answer(&who, msg, alive).map(|a| (to, a))
    };
    let log = run(&mut delta, &mut now, Instant::from_millis(4000), &mut reply);

    let asked = gathers(&log);
    let start = asked.first().expect("delta gathered").0;
    assert_eq!(
        start,
        acked_at + t.commit_timeout + t.verify_for,
        "the gather starts when alpha is found unreachable"
    );
    let addrs = |ms: &[&Member]| ms.iter().map(|m| m.addr).collect::<Vec<_>>();
    let mut want = Vec::new();
    for (k, asked) in [
        addrs(&[alpha, bravo, charlie, echo]),
        addrs(&[alpha, charlie, echo]),
        addrs(&[alpha, charlie, echo]),
        addrs(&[alpha, charlie]),
        addrs(&[alpha, charlie]),
        addrs(&[alpha, charlie]),
    ]
    .into_iter()
    .enumerate()
    {
        for to in asked {
            want.push((start + t.retry * k as u32, to));
        }
    }
    assert_eq!(asked, want, "whom the gather asked, and when");
    let elections: Vec<(Instant, SocketAddr, &Vec<Member>, u64)> = log
        .iter()
        .filter_map(|s| match &s.msg {
            MemberMsg::Elect { members, epoch } => Some((s.at, s.to, members, *epoch)),
            _ => None,
        })
        .collect();
    assert_eq!(
        elections,
        [(
            start + t.ack_timeout,
            bravo.addr,
            &vec![bravo.clone(), me.clone(), echo.clone()],
            2
        )],
        "the election that ends the gather"
    );
}

/// bravo, in a view of five coordinated by alpha, is elected by delta's gather, which
/// reached all but alpha. alpha fell silent a moment ago (bravo would only suspect it a
/// few heartbeats later): bravo checks alpha at once, and alpha only, and once alpha is
/// found unreachable proposes the view of the four, above the epoch the election tells
/// of. The four acknowledge it: one view, formed in one step. (Kills the open survivors
/// of `on_elect` in TESTING.md.)
#[test]
fn an_elected_daemon_checks_only_those_the_gather_missed_and_proposes_the_rest() {
    let mut bravo = lone("bravo");
    let t = bravo.timing().clone();
    let me = bravo.me().clone();
    let (alpha, charlie, delta, echo) = (
        member("alpha", 1),
        member("charlie", 3),
        member("delta", 4),
        member("echo", 5),
    );
    let five = [
        alpha.clone(),
        me.clone(),
        charlie.clone(),
        delta.clone(),
        echo.clone(),
    ];
    let mut now = Instant::from_millis(10);
    install_view(&mut bravo, now, &alpha, &five);
    let silent_from = Instant::from_millis(1000);
    let peers = [alpha.clone(), charlie.clone(), delta.clone(), echo.clone()];
    let mut reply = |now: Instant, to: SocketAddr, msg: &MemberMsg| {
        let alive = |n: &str| n != "alpha" || now < silent_from;
        let who = peers.iter().find(|p| p.addr == to)?;
        if !alive(&who.name) {
            return None;
        }
        live_answer(who, msg, alive).map(|a| (to, a))
    };
    let elected_at = Instant::from_millis(1050);
    let before = run(&mut bravo, &mut now, elected_at, &mut reply);
    assert!(
        !before
            .iter()
            .any(|s| matches!(s.msg, MemberMsg::Probe { .. } | MemberMsg::ProbeFor { .. })),
        "bravo checked someone before the election"
    );
    let views = bravo.stats().views;
    let reached = vec![me.clone(), charlie.clone(), delta.clone(), echo.clone()];
    feed_from(
        &mut bravo,
        now,
        &delta,
        &MemberMsg::Elect {
            members: reached.clone(),
            epoch: 7,
        },
    );
    let log = run(&mut bravo, &mut now, Instant::from_millis(4000), &mut reply);

    // Whom bravo checked: alpha, from the election on, directly and through others.
    let checked: Vec<(Instant, &str)> = log
        .iter()
        .filter_map(|s| match &s.msg {
            MemberMsg::Probe { .. } => {
                let name = five.iter().find(|m| m.addr == s.to)?;
                Some((s.at, name.name.as_str()))
            }
            MemberMsg::ProbeFor { target, .. } => Some((s.at, target.name.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        checked.first().map(|c| c.0),
        Some(elected_at),
        "{checked:?}"
    );
    assert!(
        checked.iter().all(|(_, n)| *n == "alpha"),
        "bravo checked more than alpha: {checked:?}"
    );
    let proposals: Vec<(Instant, &View)> = log
        .iter()
        .filter_map(|s| match &s.msg {
            MemberMsg::Propose { view, .. } => Some((s.at, view)),
            _ => None,
        })
        .collect();
    let (at, p) = *proposals.first().expect("bravo proposed");
    assert_eq!(
        at,
        elected_at + t.verify_for + t.retry,
        "not proposed once alpha was found unreachable"
    );
    assert_eq!(
        p.members, reached,
        "the proposal is the view of those reached"
    );
    assert_eq!(p.id.coordinator, "bravo");
    assert_eq!(p.id.epoch, 8, "above the epoch the election told of");
    assert!(
        proposals.iter().all(|(_, v)| v.id == p.id),
        "proposed more than once"
    );
    assert_eq!(bravo.view().id, p.id, "the proposal was committed");
    assert_eq!(bravo.stats().views, views + 1, "one view, in one step");
}

/// delta gathers as above, but every answer to its gather is lost (its links are bad,
/// not its peers gone): alone on its own list at `ack-timeout`, it elects nobody else and
/// checks every other member itself, directly and through others, before leaving any
/// out — they answer, and it leaves none out. (Kills `on_elect`'s `m.name == self.me.name`
/// → `!=`: a list of this daemon alone would be ignored.)
#[test]
fn a_gather_nobody_answers_has_the_gatherer_check_every_other_member() {
    let (mut delta, o, acked_at) = delta_acknowledging_alpha();
    let t = delta.timing().clone();
    let mut now = acked_at;
    let view = delta.view().clone();
    let peers = [o.bravo.clone(), o.charlie.clone(), o.echo.clone()];
    let mut reply = |_: Instant, to: SocketAddr, msg: &MemberMsg| {
        if matches!(msg, MemberMsg::Gather { .. }) {
            return None;
        }
        let who = peers.iter().find(|p| p.addr == to)?;
        live_answer(who, msg, |n| n != "alpha").map(|a| (to, a))
    };
    let log = run(&mut delta, &mut now, Instant::from_millis(4000), &mut reply);
    let start = gathers(&log).first().expect("delta gathered").0;
    let end = start + t.ack_timeout;
    assert!(
        !log.iter().any(|s| matches!(s.msg, MemberMsg::Elect { .. })),
        "delta elected someone no answer named"
    );
    let probed: Vec<SocketAddr> = log
        .iter()
        .filter(|s| s.at == end && matches!(s.msg, MemberMsg::Probe { .. }))
        .map(|s| s.to)
        .collect();
    assert_eq!(
        probed,
        [o.bravo.addr, o.charlie.addr, o.echo.addr],
        "whom delta checked when its gather ended"
    );
    assert_eq!(delta.view(), &view, "a member that answers was left out");
}
