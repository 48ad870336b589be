//! Tests of the VIP agent: scripted steps of one agent, checks shown to fire, and a
//! model of the agents' group (an agreed order per component, partitions, crashes,
//! slow and failing address changes) swept over seeds, with checkers against the global
//! truth — the addresses each node really has — after every step.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::agent::{AGENT_CLIENT, Local, VipAgent, VipCommand, VipEffect, VipEvent, drain};
use super::config::{Balance, PartitionMode, VipAddress, VipConfig, VipSpec};
use super::msg::Place;
use crate::machine::{ClientId, EffectError, EffectId, Input, Machine, Output};
use crate::rng::Rng;
use crate::time::Instant;

fn spec(i: usize) -> VipSpec {
    VipSpec {
        name: format!("v{i}"),
        addresses: vec![VipAddress {
            ip: format!("10.9.0.{}", i + 1).parse().unwrap(),
            prefix: 24,
            interface: "eth0".into(),
        }],
        nodes: Vec::new(),
        prefer: None,
    }
}

fn config(nodes: &[&str], vips: usize) -> VipConfig {
    VipConfig::new(nodes, (0..vips).map(spec).collect())
}

// ---------------------------------------------------------------------------------
// One agent, driven by hand.

struct One {
    a: VipAgent,
    now: Instant,
    seq: u64,
    sent: Vec<String>,
    /// What each control connection read, and whether the agent closed it.
    read: BTreeMap<u64, String>,
    closed: BTreeSet<u64>,
    effects: Vec<(EffectId, VipEffect)>,
    events: Vec<VipEvent>,
}

impl One {
    fn new(node: &str, cfg: VipConfig) -> Self {
        let mut o = One {
            a: VipAgent::new(node, cfg, Instant::ZERO),
            now: Instant::ZERO,
            seq: 0,
            sent: Vec::new(),
            read: BTreeMap::new(),
            closed: BTreeSet::new(),
            effects: Vec::new(),
            events: Vec::new(),
        };
        o.collect();
        o
    }

    fn collect(&mut self) {
        for out in drain(&mut self.a) {
            match out {
                Output::Event(VipEvent::Send(line)) => self.sent.push(line),
                Output::Event(e) => self.events.push(e),
                Output::Effect(r) => self.effects.push((r.id, r.effect)),
                Output::ToClient(c, b) => self
                    .read
                    .entry(c.0)
                    .or_default()
                    .push_str(std::str::from_utf8(&b).unwrap()),
                Output::CloseClient(c) => {
                    self.closed.insert(c.0);
                }
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    fn open(&mut self, c: u64) {
        let origin = crate::machine::ClientOrigin::unix(crate::machine::ListenerId(0));
        self.a
            .handle(
                self.now,
                Input::ClientOpened {
                    client: ClientId(c),
                    origin,
                },
            )
            .unwrap();
        self.collect();
    }

    /// Sends `text` on control connection `c` and returns what it read since.
    fn say(&mut self, c: u64, text: &str) -> String {
        self.read.remove(&c);
        self.a
            .handle(
                self.now,
                Input::ClientData(ClientId(c), Bytes::copy_from_slice(text.as_bytes())),
            )
            .unwrap();
        self.collect();
        self.read.remove(&c).unwrap_or_default()
    }

    fn at(&self) -> Place {
        Place::new(1, "a", self.seq)
    }

    fn view(&mut self, members: &[&str]) {
        self.seq += 1;
        let m = members
            .iter()
            .map(|n| (AGENT_CLIENT.to_string(), n.to_string()))
            .collect();
        self.a
            .handle(
                self.now,
                Input::Command(VipCommand::GroupView {
                    at: self.at(),
                    members: m,
                }),
            )
            .unwrap();
        self.collect();
    }

    /// Delivers `line` from `node`'s agent at the next place.
    fn deliver(&mut self, node: &str, line: &str) {
        self.seq += 1;
        self.a
            .handle(
                self.now,
                Input::Command(VipCommand::GroupMessage {
                    at: self.at(),
                    client: AGENT_CLIENT.into(),
                    daemon: node.into(),
                    payload: Bytes::copy_from_slice(line.as_bytes()),
                }),
            )
            .unwrap();
        self.collect();
    }

    /// Delivers everything this agent sent, in order.
    fn echo(&mut self) {
        let me = self.a.status().node;
        while !self.sent.is_empty() {
            let line = self.sent.remove(0);
            self.deliver(&me, &line);
        }
    }

    fn finish(&mut self, i: usize, ok: bool) -> VipEffect {
        let (id, e) = self.effects.remove(i);
        let outcome = if ok {
            Ok(())
        } else {
            Err(EffectError::Failed("no".into()))
        };
        self.a
            .handle(self.now, Input::EffectDone { id, outcome })
            .unwrap();
        self.collect();
        e
    }

    fn holder(&self, vip: &str) -> Option<String> {
        self.a.table().entry(vip).unwrap().holder.clone()
    }
}

fn state_of(node_facts: &str, generation: &Place, digest: u64, holds: &str) -> String {
    format!("state {generation} {digest:016x} {node_facts} - {holds} -")
}

/// a's agent (reading `cfg`) in the group with b, b's state in (eligible, healthy,
/// holding nothing): the group has settled. Returns the agent and the generation.
fn settled_with_b(cfg: VipConfig) -> (One, Place) {
    let digest = cfg.digest();
    let mut o = One::new("a", cfg);
    o.view(&["a", "b"]);
    let generation = o.a.table().generation().unwrap().clone();
    o.echo();
    o.deliver("b", &state_of("eh", &generation, digest, "-"));
    (o, generation)
}

#[test]
fn the_agent_joins_its_group_at_its_first_timeout() {
    let mut o = One::new("a", config(&["a"], 1));
    assert!(
        o.events.is_empty(),
        "nothing before the driver gave it a time"
    );
    assert_eq!(o.a.poll_timeout(), Some(Instant::ZERO));
    o.a.handle_timeout(Instant::ZERO);
    o.collect();
    assert_eq!(
        o.events,
        [VipEvent::Join {
            group: "vip".into()
        }]
    );
    assert_eq!(o.a.poll_timeout(), None, "once");
}

#[test]
fn a_lone_agent_takes_its_vip_once_the_group_settles() {
    let mut o = One::new("a", config(&["a"], 1));
    o.view(&["a"]);
    assert!(o.sent[0].starts_with("state "), "{:?}", o.sent);
    assert!(
        o.effects.is_empty(),
        "nothing is added before the state is in the order"
    );
    o.echo();
    assert_eq!(o.holder("v0").as_deref(), Some("a"));
    assert!(matches!(o.effects[0].1, VipEffect::Add { .. }));
    let e = o.finish(0, true);
    assert!(matches!(e, VipEffect::Add { .. }));
    assert_eq!(o.a.local(0), Local::Held);
    assert!(o.sent.iter().any(|l| l.starts_with("acquired ")));
    assert!(matches!(
        o.effects[0].1,
        VipEffect::Announce { count: 5, .. }
    ));
}

#[test]
fn a_holder_releases_before_the_next_holder_is_granted() {
    let (mut o, generation) = settled_with_b(config(&["a", "b"], 1));
    assert_eq!(
        o.holder("v0").as_deref(),
        Some("a"),
        "least loaded, least name"
    );
    o.finish(0, true);
    o.echo();
    o.effects.clear();
    // The application moves it to b: a must remove its address first.
    o.deliver("b", &format!("move {generation} v0 b 7"));
    assert_eq!(o.holder("v0"), None, "nobody holds it while a releases");
    assert_eq!(o.a.local(0), Local::Removing);
    o.finish(0, true);
    assert_eq!(
        o.holder("v0"),
        None,
        "not granted before the release is in the order"
    );
    o.echo();
    assert_eq!(o.holder("v0").as_deref(), Some("b"));
    // b says it added it: the move is done, and the requester (b) is answered there.
    o.deliver("b", &format!("acquired {generation} v0"));
    assert!(o.a.table().moves().is_empty());
}

#[test]
fn a_move_asked_here_is_answered_here() {
    let (mut o, generation) = settled_with_b(config(&["a", "b"], 1));
    o.finish(0, true);
    o.echo();
    o.a.handle(
        o.now,
        Input::Command(VipCommand::Move {
            vip: "v0".into(),
            node: "b".into(),
            token: 3,
        }),
    )
    .unwrap();
    o.collect();
    o.echo();
    o.deliver("b", &format!("facts {generation} - -"));
    let done = o.events.iter().find_map(|e| match e {
        VipEvent::MoveDone {
            token: 3, result, ..
        } => Some(result.clone()),
        _ => None,
    });
    assert_eq!(
        done,
        Some(Err("b is not eligible (eligible off)".into())),
        "the target turned ineligible: the move cannot happen"
    );
    let e = o.a.handle(
        o.now,
        Input::Command(VipCommand::Move {
            vip: "nope".into(),
            node: "b".into(),
            token: 4,
        }),
    );
    assert!(e.unwrap_err().to_string().contains("no VIP nope"));
    let e = o.a.handle(
        o.now,
        Input::Command(VipCommand::Move {
            vip: "v0".into(),
            node: "zz".into(),
            token: 4,
        }),
    );
    assert!(e.unwrap_err().to_string().contains("no node zz"));
}

#[test]
fn a_failed_add_releases_the_vip_so_another_can_take_it() {
    let (mut o, _) = settled_with_b(config(&["a", "b"], 1));
    o.finish(0, false);
    assert!(o.sent.iter().any(|l| l.starts_with("add-failed ")));
    assert_eq!(o.a.local(0), Local::Removing, "whatever was added goes");
    o.finish(0, true);
    o.echo();
    assert_eq!(o.holder("v0").as_deref(), Some("b"), "b takes it");
    assert_eq!(o.a.facts().failed, vec![0]);
    // After the retry time, a may take it again (and says so).
    o.now += Duration::from_secs(5);
    o.a.handle_timeout(o.now);
    o.collect();
    assert!(
        o.sent
            .iter()
            .any(|l| l.starts_with("facts ") && l.ends_with(" eh -"))
    );
}

#[test]
fn a_failed_remove_fences_the_node_and_keeps_the_vip_from_others() {
    let (mut o, generation) = settled_with_b(config(&["a", "b"], 2));
    assert_eq!(o.holder("v0").as_deref(), Some("a"));
    assert_eq!(o.holder("v1").as_deref(), Some("b"));
    o.finish(0, true);
    o.echo();
    o.effects
        .retain(|(_, e)| !matches!(e, VipEffect::Announce { .. }));
    o.deliver("b", &format!("move {generation} v0 b 1"));
    o.finish(0, false);
    assert_eq!(o.a.local(0), Local::RemoveFailed);
    assert!(o.a.facts().fenced);
    o.echo();
    assert_eq!(
        o.holder("v0"),
        None,
        "not granted to b while a may still have it"
    );
    assert!(o.a.table().entry("v0").unwrap().releasing.contains("a"));
    // The retry works: the release is in, b gets it, a is no longer fenced.
    o.now += Duration::from_secs(5);
    o.a.handle_timeout(o.now);
    o.collect();
    o.finish(0, true);
    o.echo();
    assert_eq!(o.holder("v0").as_deref(), Some("b"));
    assert!(!o.a.table().facts("a").unwrap().fenced);
    // The facts are a's own, and only members have any (mutation survivor: `facts`
    // answering a default for anyone).
    assert!(o.a.table().facts("a").unwrap().eligible);
    assert!(o.a.table().facts("nobody").is_none());
}

#[test]
fn a_minority_holds_nothing_and_the_all_mode_holds_everywhere() {
    for mode in [PartitionMode::Primary, PartitionMode::All] {
        let mut cfg = config(&["a", "b", "c"], 1);
        cfg.partition = mode;
        let mut o = One::new("a", cfg);
        o.view(&["a"]);
        o.echo();
        let held = o.holder("v0").is_some();
        assert_eq!(held, mode == PartitionMode::All, "{mode:?}");
    }
}

#[test]
fn a_witness_gives_two_nodes_a_majority() {
    let mut cfg = config(&["a", "b"], 1);
    cfg.witness = Some("w".into());
    let mut o = One::new("a", cfg.clone());
    o.view(&["a", "w"]);
    let generation = o.a.table().generation().unwrap().clone();
    o.echo();
    o.deliver("w", &state_of("eh", &generation, cfg.digest(), "-"));
    assert_eq!(
        o.holder("v0").as_deref(),
        Some("a"),
        "a and the witness are two of three"
    );
    let mut alone = One::new("a", cfg);
    alone.view(&["a"]);
    alone.echo();
    assert_eq!(alone.holder("v0"), None, "a alone is one of three");
}

#[test]
fn an_agent_reading_another_file_neither_votes_nor_holds() {
    let mut o = One::new("a", config(&["a", "b", "c"], 1));
    o.view(&["a", "b"]);
    let generation = o.a.table().generation().unwrap().clone();
    o.echo();
    o.deliver("b", &state_of("eh", &generation, 12345, "-"));
    assert!(
        o.events
            .contains(&VipEvent::ConfigMismatch { node: "b".into() })
    );
    assert_eq!(
        o.holder("v0"),
        None,
        "a alone of three voters is no majority"
    );
}

#[test]
fn messages_of_another_generation_count_for_nothing() {
    let mut o = One::new("a", config(&["a", "b"], 1));
    o.view(&["a", "b"]);
    let old = o.a.table().generation().unwrap().clone();
    let digest = o.a.table().config().digest();
    o.sent.clear();
    o.view(&["a", "b"]);
    o.echo();
    o.deliver("b", &state_of("eh", &old, digest, "-"));
    assert!(
        !o.a.table().settled(),
        "a state of the last generation is not b's state now"
    );
}

#[test]
fn a_merge_keeps_one_holder_and_the_other_releases() {
    let mut cfg = config(&["a", "b"], 1);
    cfg.partition = PartitionMode::All;
    let mut o = One::new("a", cfg.clone());
    o.view(&["a"]);
    o.echo();
    o.finish(0, true);
    o.echo();
    o.effects.clear();
    // b held it on its side too; the sides merge.
    o.view(&["a", "b"]);
    let generation = o.a.table().generation().unwrap().clone();
    o.echo();
    o.deliver("b", &state_of("eh", &generation, cfg.digest(), "0"));
    assert_eq!(o.holder("v0").as_deref(), Some("a"));
    assert!(o.a.table().entry("v0").unwrap().releasing.contains("b"));
    assert_eq!(o.a.local(0), Local::Held, "the one kept does not drop it");
}

#[test]
fn the_app_can_switch_eligibility_and_preference() {
    let mut cfg = config(&["a", "b"], 1);
    cfg.sticky = false;
    let (mut o, _) = settled_with_b(cfg);
    o.finish(0, true);
    o.echo();
    o.effects.clear();
    o.a.handle(
        o.now,
        Input::Command(VipCommand::Prefer {
            vip: "v0".into(),
            node: Some("b".into()),
        }),
    )
    .unwrap();
    o.collect();
    o.echo();
    assert_eq!(
        o.a.local(0),
        Local::Removing,
        "not sticky: it goes to its new preference"
    );
    assert_eq!(o.a.table().preference(0), Some("b"));
    o.a.handle(o.now, Input::Command(VipCommand::SetEligible(false)))
        .unwrap();
    o.collect();
    assert!(
        o.sent
            .iter()
            .any(|l| l.starts_with("facts ") && l.contains(" h ")),
        "{:?}",
        o.sent
    );
}

#[test]
fn health_checks_rise_and_fall() {
    let mut cfg = config(&["a"], 1);
    cfg.health.push(super::config::HealthCheck {
        name: "h".into(),
        command: "true".into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 2,
    });
    let mut o = One::new("a", cfg);
    assert!(!o.a.facts().healthy, "failing until the first result");
    o.a.handle_timeout(o.now);
    o.collect();
    assert!(matches!(o.effects[0].1, VipEffect::Check { .. }));
    o.finish(0, true);
    assert!(o.a.facts().healthy, "the first result decides");
    for (ok, healthy) in [(false, true), (false, false), (true, false), (true, true)] {
        o.now += Duration::from_secs(1);
        o.a.handle_timeout(o.now);
        o.collect();
        o.finish(0, ok);
        assert_eq!(o.a.facts().healthy, healthy);
    }
}

// ---------------------------------------------------------------------------------
// Control lines.

/// a and b in the group, v0 on a, a control connection 1 open on a.
fn controlled() -> (One, Place) {
    let (mut o, generation) = settled_with_b(config(&["a", "b"], 1));
    o.finish(0, true);
    o.echo();
    o.effects.clear();
    o.open(1);
    assert!(o.read.remove(&1).unwrap().starts_with("220 "));
    (o, generation)
}

#[test]
fn status_shows_every_vip_and_this_node() {
    let (mut o, generation) = controlled();
    let out = o.say(1, "status\n");
    assert!(
        out.contains("250-vip v0 holder=a acquired=yes since=")
            && out.contains("local=held addresses=10.9.0.1/24@eth0"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "250 node a generation={generation} members=a,b primary=yes settled=yes eligible=yes"
        )),
        "{out}"
    );
}

#[test]
fn status_after_losing_groupd_shows_no_members_and_no_primary() {
    let (mut o, _) = controlled();
    o.a.handle(o.now, Input::Command(VipCommand::Detached))
        .unwrap();
    o.collect();
    let out = o.say(1, "status\n");
    assert!(
        out.contains("250 node a generation=") && out.contains(" members=- primary=no settled=no"),
        "{out}"
    );
}

#[test]
fn a_move_answers_when_the_target_holds_the_vip_and_holds_later_lines() {
    let (mut o, generation) = controlled();
    assert_eq!(
        o.say(1, "move v0 b\nstatus\n"),
        "",
        "the move waits, and status behind it"
    );
    o.echo(); // the move is in the order: a releases
    assert!(
        o.a.table().moves().contains_key(&0),
        "the move is pending until b has v0"
    );
    o.finish(0, true);
    o.echo(); // released: b is granted it
    assert_eq!(o.read.get(&1), None, "not answered before b has it");
    o.deliver("b", &format!("acquired {generation} v0"));
    let out = o.read.remove(&1).unwrap();
    assert!(
        out.starts_with("250 moved v0 to b\n250-vip v0 holder=b"),
        "{out}"
    );
    // A move that cannot happen is answered at its place with the reason.
    o.deliver("b", &format!("facts {generation} - -"));
    let out = o.say(1, "move v0 b\n");
    assert_eq!(out, "");
    o.echo();
    let out = o.read.remove(&1).unwrap();
    assert!(
        out.starts_with("450 move of v0 failed: b is not eligible"),
        "{out}"
    );
}

#[test]
fn watchers_see_every_change() {
    let (mut o, generation) = controlled();
    assert!(o.say(1, "watch\n").starts_with("250 watching"));
    o.open(2);
    o.say(2, "move v0 b\n");
    o.echo();
    o.finish(0, true);
    o.echo();
    let seen = o.read.remove(&1).unwrap();
    assert!(seen.contains("610 v0 holder - at "), "{seen}");
    assert!(seen.contains("611 v0 local released\n"), "{seen}");
    assert!(
        seen.contains(&format!(
            "610 v0 holder b at {}",
            Place::new(generation.epoch, &generation.coordinator, o.seq)
        )),
        "{seen}"
    );
}

#[test]
fn bad_control_lines_are_refused() {
    let (mut o, _) = controlled();
    assert!(o.say(1, "fly\n").starts_with("500 unknown command \"fly\""));
    assert!(
        o.say(1, "move v0\n")
            .starts_with("501 wrong arguments for move")
    );
    assert!(o.say(1, "move nope b\n").starts_with("450 no VIP nope"));
    assert!(o.say(1, "prefer v0 zz\n").starts_with("450 no node zz"));
    assert!(o.say(1, "prefer v0 *\n").starts_with("250 prefer v0 *"));
    assert!(o.say(1, "eligible off\n").starts_with("250 eligible off"));
    assert!(!o.a.facts().eligible);
    assert!(o.say(1, "help\n").ends_with("214 end of help\n"));
    assert_eq!(o.say(1, "quit\n"), "221 bye\n");
    assert!(o.closed.contains(&1));
    // Not in the group: 451.
    let mut alone = One::new("a", config(&["a", "b"], 1));
    alone.open(1);
    assert!(
        alone
            .say(1, "move v0 b\n")
            .starts_with("451 not in the group")
    );
}

#[test]
fn control_limits_hold_at_their_edge() {
    use super::agent::control::{MAX_CONTROL_CLIENTS, MAX_CONTROL_LINE, MAX_QUEUED_LINES};
    let (mut o, _) = controlled();
    // A line of exactly the limit is read (and refused as unknown); one more byte closes.
    let edge = format!("{}\n", "x".repeat(MAX_CONTROL_LINE));
    assert!(o.say(1, &edge).starts_with("500 unknown command"));
    assert!(!o.closed.contains(&1));
    let past = format!("{}\n", "x".repeat(MAX_CONTROL_LINE + 1));
    assert!(
        o.say(1, &past)
            .starts_with("500 line longer than 1024 bytes")
    );
    assert!(o.closed.contains(&1));
    // Lines behind a move: the limit, then 421 and the close.
    o.open(2);
    o.say(2, "move v0 b\n");
    let mut behind = "status\n".repeat(MAX_QUEUED_LINES);
    assert_eq!(o.say(2, &behind), "");
    behind = "status\n".to_string();
    assert!(
        o.say(2, &behind)
            .starts_with("421 more than 64 lines waiting")
    );
    assert!(o.closed.contains(&2));
    // Connections: the limit, then 421 and the close.
    // (1 and 2 are closed: none is open.)
    for c in 10..10 + MAX_CONTROL_CLIENTS as u64 {
        o.open(c);
    }
    assert!(
        !o.closed.contains(&(9 + MAX_CONTROL_CLIENTS as u64)),
        "the last that fits"
    );
    o.open(1000);
    assert!(o.read[&1000].starts_with("421 too many control connections"));
    assert!(o.closed.contains(&1000));
    assert!(o.a.check_invariants().is_ok());
}

#[test]
fn a_program_may_not_use_the_control_connections_tokens() {
    let (mut o, _) = controlled();
    let e = o.a.handle(
        o.now,
        Input::Command(VipCommand::Move {
            vip: "v0".into(),
            node: "b".into(),
            token: 1 << 63,
        }),
    );
    assert!(e.unwrap_err().to_string().contains("top bit"));
}

// ---------------------------------------------------------------------------------
// The checks fire.

#[test]
fn the_table_check_fires_on_corrupted_tables() {
    let (o, generation) = settled_with_b(config(&["a", "b"], 1));
    assert!(o.a.check_invariants().is_ok());
    let base = o.a.table().clone();
    type Corrupt = Box<dyn Fn(&mut super::table::Table)>;
    let cases: Vec<(&str, Corrupt)> = vec![
        (
            "also releasing",
            Box::new(|t| {
                t.entries_mut()[0].releasing.insert("a".into());
            }),
        ),
        (
            "not a member",
            Box::new(|t| t.entries_mut()[0].holder = Some("zz".into())),
        ),
        (
            "without the place",
            Box::new(|t| t.entries_mut()[0].since = None),
        ),
        (
            "acquired without a holder",
            Box::new(|t| {
                t.entries_mut()[0].holder = None;
                t.entries_mut()[0].acquired = true;
            }),
        ),
        (
            "released by a node that is not a member",
            Box::new(|t| {
                t.entries_mut()[0].releasing.insert("zz".into());
            }),
        ),
        (
            "awaited from a node that is not a member",
            Box::new(|t| {
                t.awaiting_mut().insert("zz".into());
            }),
        ),
        (
            "the nodes known",
            Box::new(|t| {
                t.awaiting_mut().insert("b".into());
            }),
        ),
    ];
    for (want, corrupt) in cases {
        let mut t = base.clone();
        corrupt(&mut t);
        let e = t.check().expect_err(want);
        assert!(e.contains(want), "{want}: {e}");
    }
    // A holder that may not hold: b is the holder, then b's facts say ineligible.
    let mut t = base.clone();
    t.entries_mut()[0].holder = Some("b".into());
    assert!(t.check().is_ok(), "b may hold it");
    let e = {
        let mut t = base.clone();
        let facts = "facts ".to_string() + &generation.to_string() + " - -";
        let _ = t.on_msg(
            &Place::new(9, "a", 9),
            "b",
            super::msg::VipMsg::decode(facts.as_bytes()).unwrap(),
        );
        t.entries_mut()[0].holder = Some("b".into());
        t.entries_mut()[0].releasing.clear();
        t.check().unwrap_err()
    };
    assert!(e.contains("who may not"), "{e}");
}

#[test]
fn the_agent_check_fires_on_corrupted_agents() {
    let mut o = One::new("a", config(&["a", "b"], 1));
    o.view(&["a", "b"]);
    o.echo();
    assert!(o.a.check_invariants().is_ok());
    let wants = [
        "adds and",
        "failed remove without its retry",
        "neither running nor due",
        "never retried",
        "should not hold",
        "acquired without a holder",
        "a move nobody will answer",
    ];
    for (how, want) in wants.iter().enumerate() {
        let mut cfg = config(&["a", "b"], 1);
        cfg.health.push(super::config::HealthCheck {
            name: "h".into(),
            command: "true".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 1,
        });
        let mut a = VipAgent::new("a", cfg, Instant::ZERO);
        assert!(a.check_invariants().is_ok());
        a.corrupt(how as u8);
        let e = a.check_invariants().expect_err(want);
        assert!(e.contains(want), "{want}: {e}");
    }
}

// ---------------------------------------------------------------------------------
// The model: agents over an agreed order per component, swept over seeds.

/// How a run is shaken.
#[derive(Clone, Debug)]
struct Faults {
    partitions: bool,
    crashes: bool,
    intents: bool,
    add_fail: f64,
    remove_fail: f64,
    slow: bool,
}

#[derive(Clone, Debug)]
enum Item {
    View {
        at: Place,
        members: Vec<(String, String)>,
    },
    Msg {
        at: Place,
        sender: String,
        payload: String,
    },
}

struct Comp {
    members: BTreeSet<String>,
    epoch: u64,
    coordinator: String,
    seq: u64,
    formed: Instant,
}

struct Pending {
    due: Instant,
    node: String,
    life: u64,
    id: EffectId,
    effect: VipEffect,
    ok: bool,
}

struct World {
    cfg: VipConfig,
    rng: Rng,
    now: Instant,
    faults: Faults,
    canary: bool,
    agents: BTreeMap<String, Option<VipAgent>>,
    life: BTreeMap<String, u64>,
    comp_of: BTreeMap<String, usize>,
    comps: BTreeMap<usize, Comp>,
    next_comp: usize,
    epoch: u64,
    queues: BTreeMap<String, Vec<(Instant, Item)>>,
    effects: Vec<Pending>,
    /// The global truth: the VIPs each node really has.
    has: BTreeMap<String, BTreeSet<usize>>,
    /// Nodes whose last remove of a VIP failed (they may keep it: allowed for).
    stuck: BTreeSet<(String, usize)>,
    /// Last processed place per node.
    last: BTreeMap<String, Place>,
    /// Address changes (for the no-move-without-cause check).
    changes: u64,
    grace: Duration,
    trace: Vec<String>,
}

const ORDER_MAX: Duration = Duration::from_millis(5);
const DETECT_MAX: Duration = Duration::from_millis(300);
const EFFECT_MAX: Duration = Duration::from_millis(150);

impl World {
    fn new(seed: u64, nodes: &[&str], vips: usize, faults: Faults, canary: bool) -> Self {
        let mut rng = Rng::from_seed(seed);
        let mut cfg = config(nodes, vips);
        cfg.timing.retry = Duration::from_millis(500);
        cfg.announce.count = 1;
        cfg.sticky = rng.chance(0.7);
        cfg.balance = [Balance::Place, Balance::Rebalance, Balance::Off][rng.below(3) as usize];
        if rng.chance(0.3) {
            cfg.vips[0].prefer = Some(nodes[rng.below(nodes.len() as u64) as usize].to_string());
        }
        let mut w = World {
            cfg,
            rng,
            now: Instant::ZERO,
            faults,
            canary,
            agents: BTreeMap::new(),
            life: BTreeMap::new(),
            comp_of: BTreeMap::new(),
            comps: BTreeMap::new(),
            next_comp: 0,
            epoch: 0,
            queues: BTreeMap::new(),
            effects: Vec::new(),
            has: BTreeMap::new(),
            stuck: BTreeSet::new(),
            last: BTreeMap::new(),
            changes: 0,
            grace: DETECT_MAX + EFFECT_MAX * 2 + ORDER_MAX * 8,
            trace: Vec::new(),
        };
        for n in nodes {
            w.start(n);
        }
        let all: BTreeSet<String> = nodes.iter().map(|s| s.to_string()).collect();
        w.form(all);
        w
    }

    fn start(&mut self, node: &str) {
        let mut a = VipAgent::new(node, self.cfg.clone(), self.now);
        a.set_canary_acquire_early(self.canary);
        self.agents.insert(node.to_string(), Some(a));
        *self.life.entry(node.to_string()).or_default() += 1;
        self.queues.insert(node.to_string(), Vec::new());
        self.has.insert(node.to_string(), BTreeSet::new());
        self.stuck.retain(|(n, _)| n != node);
        self.last.remove(node);
    }

    fn live(&self) -> Vec<String> {
        self.agents
            .iter()
            .filter(|(_, a)| a.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// A new component of `members` (taken out of theirs); each learns its view after
    /// its own detection time.
    fn form(&mut self, members: BTreeSet<String>) {
        if members.is_empty() {
            return;
        }
        self.epoch += 1;
        let id = self.next_comp;
        self.next_comp += 1;
        let coordinator = members.first().unwrap().clone();
        let at = Place::new(self.epoch, &coordinator, 0);
        let view: Vec<(String, String)> = members
            .iter()
            .map(|m| (AGENT_CLIENT.to_string(), m.clone()))
            .collect();
        for m in &members {
            // What the old view had not delivered is not delivered (virtual synchrony:
            // nobody of it delivers it).
            let q = self.queues.get_mut(m).unwrap();
            q.retain(|(_, it)| matches!(it, Item::View { .. }));
            let detect = if self.faults.slow {
                self.rng
                    .duration_between(Duration::from_millis(1), DETECT_MAX)
            } else {
                Duration::from_millis(1)
            };
            let due = q
                .last()
                .map_or(self.now, |(d, _)| *d)
                .max(self.now + detect);
            q.push((
                due,
                Item::View {
                    at: at.clone(),
                    members: view.clone(),
                },
            ));
            if let Some(old) = self.comp_of.insert(m.clone(), id)
                && let Some(c) = self.comps.get_mut(&old)
            {
                c.members.remove(m);
            }
        }
        self.comps.retain(|_, c| !c.members.is_empty());
        self.comps.insert(
            id,
            Comp {
                members,
                epoch: self.epoch,
                coordinator,
                seq: 0,
                formed: self.now,
            },
        );
    }

    fn order(&mut self, sender: &str, line: String) {
        let Some(&c) = self.comp_of.get(sender) else {
            return;
        };
        let comp = self.comps.get_mut(&c).unwrap();
        comp.seq += 1;
        let at = Place::new(comp.epoch, &comp.coordinator.clone(), comp.seq);
        let members: Vec<String> = comp.members.iter().cloned().collect();
        for m in members {
            let delay = self
                .rng
                .duration_between(Duration::from_micros(100), ORDER_MAX);
            let q = self.queues.get_mut(&m).unwrap();
            let due = q.last().map_or(self.now, |(d, _)| *d).max(self.now + delay);
            q.push((
                due,
                Item::Msg {
                    at: at.clone(),
                    sender: sender.to_string(),
                    payload: line.clone(),
                },
            ));
        }
    }

    fn drain(&mut self, node: &str) {
        let Some(Some(a)) = self.agents.get_mut(node) else {
            return;
        };
        let outs = drain(a);
        for o in outs {
            match o {
                Output::Event(VipEvent::Send(line)) => {
                    self.trace
                        .push(format!("{:?} {node} sends {line}", self.now));
                    self.order(node, line)
                }
                Output::Event(e) => self.trace.push(format!("{:?} {node} {e:?}", self.now)),
                Output::Effect(r) => {
                    let slow = if self.faults.slow {
                        EFFECT_MAX
                    } else {
                        Duration::from_millis(2)
                    };
                    let due =
                        self.now + self.rng.duration_between(Duration::from_micros(200), slow);
                    let ok = match r.effect {
                        VipEffect::Add { .. } => !self.rng.chance(self.faults.add_fail),
                        VipEffect::Remove { .. } => !self.rng.chance(self.faults.remove_fail),
                        _ => true,
                    };
                    let life = self.life[node];
                    self.effects.push(Pending {
                        due,
                        node: node.to_string(),
                        life,
                        id: r.id,
                        effect: r.effect,
                        ok,
                    });
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn index(&self, vip: &str) -> usize {
        self.cfg.vips.iter().position(|v| v.name == vip).unwrap()
    }

    fn next_due(&self) -> Option<Instant> {
        let q = self
            .queues
            .values()
            .filter_map(|q| q.first().map(|(d, _)| *d))
            .min();
        let e = self.effects.iter().map(|p| p.due).min();
        let t = self
            .agents
            .values()
            .flatten()
            .filter_map(|a| a.poll_timeout())
            .min();
        [q, e, t].into_iter().flatten().min()
    }

    /// Runs everything due up to `until`, checking after every step.
    fn run_until(&mut self, until: Instant) {
        while let Some(t) = self.next_due() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            self.step();
            self.check();
        }
        self.now = self.now.max(until);
    }

    fn step(&mut self) {
        let now = self.now;
        // Effects first: an address appears or goes when the change completes.
        if let Some(k) = self.effects.iter().position(|p| p.due <= now) {
            let p = self.effects.remove(k);
            if self.life.get(&p.node) != Some(&p.life)
                || !matches!(self.agents.get(&p.node), Some(Some(_)))
            {
                return; // its node crashed: lost with it
            }
            match &p.effect {
                VipEffect::Add { vip, .. } => {
                    let i = self.index(vip);
                    if p.ok {
                        self.has.get_mut(&p.node).unwrap().insert(i);
                        self.changes += 1;
                    }
                }
                VipEffect::Remove { vip, .. } => {
                    let i = self.index(vip);
                    if p.ok {
                        self.has.get_mut(&p.node).unwrap().remove(&i);
                        self.stuck.remove(&(p.node.clone(), i));
                        self.changes += 1;
                    } else {
                        self.stuck.insert((p.node.clone(), i));
                    }
                }
                _ => {}
            }
            let outcome = if p.ok {
                Ok(())
            } else {
                Err(EffectError::Failed("planned".into()))
            };
            let a = self.agents.get_mut(&p.node).unwrap().as_mut().unwrap();
            a.handle(now, Input::EffectDone { id: p.id, outcome })
                .unwrap();
            self.drain(&p.node.clone());
            return;
        }
        for node in self.live() {
            let q = self.queues.get_mut(&node).unwrap();
            if q.first().is_some_and(|(d, _)| *d <= now) {
                let (_, item) = q.remove(0);
                let a = self.agents.get_mut(&node).unwrap().as_mut().unwrap();
                let at = match item {
                    Item::View { at, members } => {
                        a.handle(
                            now,
                            Input::Command(VipCommand::GroupView {
                                at: at.clone(),
                                members,
                            }),
                        )
                        .unwrap();
                        at
                    }
                    Item::Msg {
                        at,
                        sender,
                        payload,
                    } => {
                        a.handle(
                            now,
                            Input::Command(VipCommand::GroupMessage {
                                at: at.clone(),
                                client: AGENT_CLIENT.into(),
                                daemon: sender,
                                payload: Bytes::from(payload.into_bytes()),
                            }),
                        )
                        .unwrap();
                        at
                    }
                };
                self.last.insert(node.clone(), at);
                self.drain(&node);
                return;
            }
        }
        for node in self.live() {
            let a = self.agents.get_mut(&node).unwrap().as_mut().unwrap();
            if a.poll_timeout().is_some_and(|t| t <= now) {
                a.handle_timeout(now);
                self.drain(&node);
                return;
            }
        }
    }

    /// Checks after every step: each agent's own checks; tables alike at one place;
    /// and against the global truth, at most one node with a VIP per component (a
    /// component that just merged, or a side that has not yet learnt it lost its
    /// majority, gets the grace; a node whose remove failed is allowed for).
    fn check(&mut self) {
        for (n, a) in &self.agents {
            if let Some(a) = a
                && let Err(e) = a.check_invariants()
            {
                panic!("t={:?} {n}: {e}", self.now);
            }
        }
        let mut by_place: BTreeMap<&Place, Vec<&str>> = BTreeMap::new();
        for (n, p) in &self.last {
            if matches!(self.agents.get(n), Some(Some(_))) {
                by_place.entry(p).or_default().push(n);
            }
        }
        for (p, nodes) in by_place {
            let tables: Vec<_> = nodes
                .iter()
                .map(|n| self.agents[*n].as_ref().unwrap().table())
                .filter(|t| t.settled())
                .map(|t| {
                    t.entries()
                        .iter()
                        .map(|e| (e.holder.clone(), e.releasing.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            for t in tables.iter().skip(1) {
                assert_eq!(t, &tables[0], "t={:?}: tables differ at {p}", self.now);
            }
        }
        for i in 0..self.cfg.vips.len() {
            let holders: Vec<&String> = self
                .has
                .iter()
                .filter(|(n, h)| h.contains(&i) && !self.stuck.contains(&((*n).clone(), i)))
                .filter(|(n, _)| matches!(self.agents.get(*n), Some(Some(_))))
                .map(|(n, _)| n)
                .collect();
            for (k, x) in holders.iter().enumerate() {
                for y in &holders[k + 1..] {
                    let (cx, cy) = (self.comp_of[*x], self.comp_of[*y]);
                    let since = if cx == cy {
                        self.comps[&cx].formed
                    } else {
                        self.comps[&cx].formed.max(self.comps[&cy].formed)
                    };
                    let allowed = (cx != cy && self.cfg.partition == PartitionMode::All)
                        || self.now.saturating_duration_since(since) <= self.grace;
                    assert!(
                        allowed,
                        "t={:?}: v{i} is on {x} and {y} at once ({})",
                        self.now,
                        if cx == cy {
                            "one component"
                        } else {
                            "two components"
                        }
                    );
                }
            }
        }
    }

    /// One fault or intent, drawn from the seed.
    fn shake(&mut self) {
        let live = self.live();
        let nodes = self.cfg.nodes.clone();
        match self.rng.below(6) {
            0 if self.faults.partitions && live.len() >= 2 => {
                let side: BTreeSet<String> = live
                    .iter()
                    .filter(|_| self.rng.chance(0.5))
                    .cloned()
                    .collect();
                let other: BTreeSet<String> = live
                    .iter()
                    .filter(|n| !side.contains(*n))
                    .cloned()
                    .collect();
                self.form(side);
                self.form(other);
            }
            1 if self.faults.partitions => {
                let all: BTreeSet<String> = live.into_iter().collect();
                self.form(all);
            }
            2 if self.faults.crashes && live.len() >= 2 => {
                let n = live[self.rng.below(live.len() as u64) as usize].clone();
                self.agents.insert(n.clone(), None);
                self.has.insert(n.clone(), BTreeSet::new()); // the host is gone
                self.queues.insert(n.clone(), Vec::new());
                let c = self.comp_of.remove(&n).unwrap();
                let rest = self.comps[&c]
                    .members
                    .iter()
                    .filter(|m| **m != n)
                    .cloned()
                    .collect();
                self.comps.get_mut(&c).unwrap().members.remove(&n);
                self.form(rest);
            }
            3 if self.faults.crashes => {
                let dead: Vec<String> = nodes
                    .iter()
                    .filter(|n| self.agents[*n].is_none())
                    .cloned()
                    .collect();
                if let Some(n) = dead.first() {
                    self.start(n);
                    let target = self.comp_of.values().next().copied();
                    let mut members: BTreeSet<String> = target
                        .map(|c| self.comps[&c].members.clone())
                        .unwrap_or_default();
                    members.insert(n.clone());
                    self.form(members);
                }
            }
            4 if self.faults.intents => {
                let n = live[self.rng.below(live.len() as u64) as usize].clone();
                let vip = format!("v{}", self.rng.below(self.cfg.vips.len() as u64));
                let target = nodes[self.rng.below(nodes.len() as u64) as usize].clone();
                let cmd = match self.rng.below(3) {
                    0 => VipCommand::Move {
                        vip,
                        node: target,
                        token: self.rng.next_u64(),
                    },
                    1 => VipCommand::Prefer {
                        vip,
                        node: Some(target),
                    },
                    _ => VipCommand::SetEligible(self.rng.chance(0.6)),
                };
                let now = self.now;
                let a = self.agents.get_mut(&n).unwrap().as_mut().unwrap();
                let _ = a.handle(now, Input::Command(cmd));
                self.drain(&n);
            }
            _ => {}
        }
    }

    /// Heals everything, restarts the crashed, makes everyone eligible and waits: then
    /// every VIP is on exactly one node, the one every table names.
    fn settle_and_check_liveness(&mut self) {
        for n in self.cfg.nodes.clone() {
            if self.agents[&n].is_none() {
                self.start(&n);
            }
        }
        let all: BTreeSet<String> = self.live().into_iter().collect();
        self.form(all);
        let now = self.now;
        for n in self.live() {
            let a = self.agents.get_mut(&n).unwrap().as_mut().unwrap();
            a.handle(now, Input::Command(VipCommand::SetEligible(true)))
                .unwrap();
            self.drain(&n);
        }
        self.run_until(self.now + Duration::from_secs(5));
        for i in 0..self.cfg.vips.len() {
            let on: Vec<&String> = self
                .has
                .iter()
                .filter(|(_, h)| h.contains(&i))
                .map(|(n, _)| n)
                .collect();
            if on.len() != 1 {
                let states: Vec<String> = self
                    .agents
                    .iter()
                    .map(|(n, a)| {
                        let a = a.as_ref().unwrap();
                        let e = &a.table().entries()[i];
                        format!(
                            "{n}: holder {:?} releasing {:?} local {:?} facts {:?} settled {}",
                            e.holder,
                            e.releasing,
                            a.local(i),
                            a.table().facts(n),
                            a.table().settled()
                        )
                    })
                    .collect();
                let pending: Vec<String> = self
                    .effects
                    .iter()
                    .map(|p| {
                        format!(
                            "{} life {} {:?} due {:?} {:?}",
                            p.node, p.life, p.id, p.due, p.effect
                        )
                    })
                    .collect();
                let n = self.trace.len();
                panic!(
                    "{}\nsticky {} balance {:?}\nt={:?}: v{i} is on {on:?} after the heal:\n{}\npending: {pending:?}\nlives {:?}",
                    self.trace[n.saturating_sub(60)..].join("\n"),
                    self.cfg.sticky,
                    self.cfg.balance,
                    self.now,
                    states.join("\n"),
                    self.life
                );
            }
            for (n, a) in &self.agents {
                let holder = a.as_ref().unwrap().table().entries()[i].holder.clone();
                assert_eq!(
                    holder.as_ref(),
                    Some(on[0]),
                    "{n}'s table names {holder:?} for v{i}"
                );
            }
        }
    }
}

fn sweep(seed: u64, faults: Faults, canary: bool) {
    let nodes = ["a", "b", "c"];
    let mut w = World::new(seed, &nodes, 4, faults, canary);
    w.run_until(Instant::from_secs(1));
    for _ in 0..40 {
        w.shake();
        let gap = w
            .rng
            .duration_between(Duration::from_millis(1), Duration::from_millis(400));
        w.run_until(w.now + gap);
    }
    w.settle_and_check_liveness();
}

fn everything() -> Faults {
    Faults {
        partitions: true,
        crashes: true,
        intents: true,
        add_fail: 0.05,
        remove_fail: 0.05,
        slow: true,
    }
}

#[test]
fn the_model_holds_every_vip_once_over_seeds() {
    for seed in 0..60 {
        sweep(seed, everything(), false);
    }
}

#[test]
#[ignore = "long sweep: cargo test -p flotilla-core --lib vip -- --ignored"]
fn the_model_holds_every_vip_once_over_many_seeds() {
    for seed in 0..2000 {
        if std::panic::catch_unwind(|| sweep(seed, everything(), false)).is_err() {
            panic!("seed {seed} failed (above)");
        }
    }
}

#[test]
fn a_vip_on_its_preferred_node_is_not_rebalanced_away() {
    // Seed 208 of the long sweep flapped so before rule 5 of `assign` left preferred
    // holders alone.
    sweep(208, everything(), false);
}

#[test]
fn no_vip_moves_without_cause() {
    for seed in 0..20 {
        let quiet = Faults {
            partitions: false,
            crashes: false,
            intents: false,
            add_fail: 0.0,
            remove_fail: 0.0,
            slow: true,
        };
        let mut w = World::new(seed, &["a", "b", "c"], 5, quiet, false);
        w.run_until(Instant::from_secs(2));
        let placed = w.changes;
        assert_eq!(placed, 5, "seed {seed}: each VIP added once");
        w.run_until(Instant::from_secs(60));
        assert_eq!(w.changes, placed, "seed {seed}: a VIP moved without cause");
    }
}

#[test]
fn the_canary_that_acquires_before_the_release_is_caught() {
    let mut caught = 0;
    for seed in 0..60 {
        let r = std::panic::catch_unwind(|| sweep(seed, everything(), true));
        if let Err(e) = r {
            let text = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            assert!(
                text.contains("at once"),
                "seed {seed}: caught by another check: {text}"
            );
            caught += 1;
        }
    }
    // Caught on 8 of 60 when last counted (2026-12-07): only seeds where a VIP moves
    // away from a live holder inside one component can show it. (The simulator's
    // `vip-canary` catches it on most seeds: its moves are scripted.)
    assert!(
        caught >= 5,
        "the canary was caught on only {caught} of 60 seeds"
    );
}

#[test]
fn a_component_is_primary_only_with_a_strict_majority_of_the_voters() {
    // Mutation survivors (`present * 2 > voters` turned `>=` and `+`): half the voters
    // is not a majority, or two nodes without a witness would both hold after a split.
    let set = |m: &[&str]| {
        m.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    /// Nodes, witness, members, primary.
    type Case<'a> = (&'a [&'a str], Option<&'a str>, &'a [&'a str], bool);
    let cases: [Case; 8] = [
        (&["a", "b"], None, &["a"], false),
        (&["a", "b"], None, &["a", "b"], true),
        (&["a", "b"], Some("w"), &["a"], false),
        (&["a", "b"], Some("w"), &["a", "w"], true),
        (&["a", "b", "c", "d"], None, &["a", "b"], false),
        (&["a", "b", "c", "d"], None, &["a", "b", "c"], true),
        (&["a"], None, &[], false),
        (&["a"], None, &["a"], true),
    ];
    for (nodes, witness, present, want) in cases {
        let mut cfg = config(nodes, 1);
        cfg.witness = witness.map(str::to_string);
        let mut t = super::table::Table::new(cfg);
        t.on_view(Place::new(1, "a", 1), set(present));
        assert_eq!(
            t.primary(),
            want,
            "nodes {nodes:?} witness {witness:?} members {present:?}"
        );
    }
}

#[test]
fn a_state_keeps_only_preferences_of_vips_this_configuration_has() {
    // Mutation survivor (`i < n && …` turned `||`): a member's state naming a VIP index
    // beyond this file (it reads another, bigger one) must not add a preference.
    use super::msg::{Facts, Preference, VipMsg};
    let cfg = config(&["a", "b"], 1);
    let digest = cfg.digest();
    let mut t = super::table::Table::new(cfg);
    let at = Place::new(1, "a", 1);
    t.on_view(
        at.clone(),
        ["a", "b"].iter().map(|s| s.to_string()).collect(),
    );
    let pref = |node: &str| Preference {
        node: Some(node.to_string()),
        at: Place::new(1, "a", 0),
    };
    let prefs: BTreeMap<u16, Preference> = [(0, pref("b")), (1, pref("b")), (5, pref("b"))].into();
    let state = VipMsg::State {
        generation: at.clone(),
        digest,
        facts: Facts::default(),
        holds: Vec::new(),
        prefs,
    };
    t.on_msg(&Place::new(1, "a", 2), "b", state);
    assert_eq!(
        t.prefs().keys().copied().collect::<Vec<_>>(),
        [0],
        "{:?}",
        t.prefs()
    );
}

// ---------------------------------------------------------------------------------
// The table alone, fed states and messages by hand (the mutation run's survivors in
// `table.rs`, issue 17).

struct Tab {
    t: super::table::Table,
    digest: u64,
    generation_at: Place,
    seq: u64,
}

impl Tab {
    /// A table of `nodes` with `vips` VIPs in a new generation with every node a member.
    fn new(cfg: VipConfig) -> Tab {
        let digest = cfg.digest();
        let nodes: BTreeSet<String> = cfg.nodes.iter().cloned().collect();
        let mut t = super::table::Table::new(cfg);
        let generation_at = Place::new(1, "a", 1);
        t.on_view(generation_at.clone(), nodes);
        Tab {
            t,
            digest,
            generation_at,
            seq: 1,
        }
    }

    fn say(&mut self, from: &str, msg: super::msg::VipMsg) -> Vec<super::table::Outcome> {
        self.seq += 1;
        self.t.on_msg(&Place::new(1, "a", self.seq), from, msg)
    }

    fn state(&mut self, from: &str, holds: &[u16]) -> Vec<super::table::Outcome> {
        let facts = super::msg::Facts {
            eligible: true,
            healthy: true,
            fenced: false,
            failed: Vec::new(),
        };
        let msg = super::msg::VipMsg::State {
            generation: self.generation_at.clone(),
            digest: self.digest,
            facts,
            holds: holds.to_vec(),
            prefs: BTreeMap::new(),
        };
        self.say(from, msg)
    }
}

#[test]
fn a_release_before_the_group_settles_takes_back_only_that_claim() {
    // `c.retain(|&x| x as usize != i)` turned `==`: b said it has v0 and v1, then
    // released v0 before a's state was in: b keeps v1 (acquired), v0 is granted anew.
    let mut tab = Tab::new(config(&["a", "b"], 2));
    tab.state("b", &[0, 1]);
    let generation = tab.generation_at.clone();
    tab.say(
        "b",
        super::msg::VipMsg::Released {
            generation,
            vip: "v1".into(),
        },
    );
    tab.state("a", &[]);
    assert!(tab.t.settled());
    let e = tab.t.entries();
    assert_eq!(e[0].holder.as_deref(), Some("b"));
    assert!(e[0].acquired, "v0 is b's from its state");
    assert!(
        !e[1].acquired,
        "v1 was released: granted anew, not yet added"
    );
}

#[test]
fn a_merge_keeps_the_preferred_claimer_and_reports_the_holder() {
    // `== pref` turned `!=` in `settle` (a and b both claim v0, which prefers b: b
    // keeps it, a releases), and `e.holder != before` turned `==` (the new holder is
    // reported, for watch).
    let mut cfg = config(&["a", "b"], 1);
    cfg.vips[0].prefer = Some("b".into());
    let mut tab = Tab::new(cfg);
    tab.state("a", &[0]);
    let out = tab.state("b", &[0]);
    let e = &tab.t.entries()[0];
    assert_eq!(e.holder.as_deref(), Some("b"));
    assert!(e.releasing.contains("a"));
    assert!(
        out.iter().any(|o| matches!(
            o,
            super::table::Outcome::Holder { vip, holder: Some(h), .. } if vip == "v0" && h == "b"
        )),
        "{out:?}"
    );
}

#[test]
fn an_add_failure_bars_the_node_at_its_place_in_the_order() {
    // `!info.facts.failed.contains(..)` lost its `!`: the failure must be in the
    // table's facts of the node at once, not only at its next `facts` message.
    let mut tab = Tab::new(config(&["a", "b"], 1));
    tab.state("a", &[]);
    tab.state("b", &[]);
    let holder = tab.t.entries()[0].holder.clone().expect("v0 granted");
    let generation = tab.generation_at.clone();
    tab.say(
        &holder,
        super::msg::VipMsg::AddFailed {
            generation,
            vip: "v0".into(),
        },
    );
    assert_eq!(tab.t.facts(&holder).unwrap().failed, [0]);
}

#[test]
fn a_newer_preference_wins_a_merge_and_an_older_one_does_not() {
    // `mine.at < p.at` turned `>`: the later place must win, whichever state comes in
    // first.
    use super::msg::{Facts, Preference, VipMsg};
    let early = Preference {
        node: Some("a".into()),
        at: Place::new(1, "a", 0),
    };
    let late = Preference {
        node: Some("b".into()),
        at: Place::new(1, "b", 5),
    };
    for order in [[&early, &late], [&late, &early]] {
        let mut tab = Tab::new(config(&["a", "b"], 1));
        for (from, p) in ["a", "b"].into_iter().zip(order) {
            let msg = VipMsg::State {
                generation: tab.generation_at.clone(),
                digest: tab.digest,
                facts: Facts::default(),
                holds: Vec::new(),
                prefs: [(0, p.clone())].into(),
            };
            tab.say(from, msg);
        }
        assert_eq!(tab.t.preference(0), Some("b"), "{order:?}");
    }
}

#[test]
fn with_stickiness_a_move_leaves_the_preference_alone() {
    // `if !self.cfg.sticky` lost its `!`: only without stickiness does a move make its
    // target the preference (or the VIP would go straight back).
    for sticky in [true, false] {
        let mut cfg = config(&["a", "b"], 1);
        cfg.sticky = sticky;
        cfg.vips[0].prefer = Some("a".into());
        let mut tab = Tab::new(cfg);
        tab.state("a", &[0]);
        tab.state("b", &[]);
        let generation = tab.generation_at.clone();
        tab.say(
            "a",
            super::msg::VipMsg::Move {
                generation,
                vip: "v0".into(),
                node: "b".into(),
                token: 1,
            },
        );
        let want = if sticky { "a" } else { "b" };
        assert_eq!(tab.t.preference(0), Some(want), "sticky {sticky}");
    }
}
