//! Unit tests of the ship machine over a tiny in-test network: FIFO, instant delivery,
//! time advanced by hand. Scenarios with loss, delay and crashes live in the simulator.

use super::*;
use crate::machine::{ClientOrigin, EffectRequest, ListenerId};
use crate::rng::Rng;

struct Net {
    ships: Vec<Ship>,
    now: Instant,
    replies: BTreeMap<(usize, u64), Vec<String>>,
    closed: BTreeSet<(usize, u64)>,
    events: Vec<(usize, ShipEvent)>,
    down: BTreeSet<usize>,
    /// Every frame delivered: (from, to, message).
    sent: Vec<(usize, usize, ShipMsg)>,
    /// Frames lost on the way: `lose(to, msg)` says whether `msg` to ship `to` is.
    lose: fn(usize, &ShipMsg) -> bool,
}

/// Nothing lost (the net's default).
fn lose_nothing(_: usize, _: &ShipMsg) -> bool {
    false
}

fn addr(i: usize) -> PeerAddr {
    PeerAddr::from(([10, 0, 0, i as u8 + 1], 10000))
}

fn origin() -> ClientOrigin {
    ClientOrigin::unix(ListenerId(0))
}

impl Net {
    /// `parents[i]` is ship i's parent index (None for the root).
    fn new(parents: &[Option<usize>], escalate: bool) -> Net {
        let text = "(:param mode fast) (:node render (:node r1 (:dynamic)) (:node r2 (:dynamic)))";
        let ships = parents
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut cfg = match p {
                    None => ShipConfig::mothership(addr(i), ConfigTree::parse(text).unwrap()),
                    Some(p) => ShipConfig::daughtership(addr(i), addr(*p)),
                };
                cfg.escalate = escalate;
                Ship::new(cfg, Instant::ZERO, Rng::from_seed(i as u64 + 1)).unwrap()
            })
            .collect();
        let mut n = Net {
            ships,
            now: Instant::ZERO,
            replies: BTreeMap::new(),
            closed: BTreeSet::new(),
            events: Vec::new(),
            down: BTreeSet::new(),
            sent: Vec::new(),
            lose: lose_nothing,
        };
        n.settle();
        n
    }

    /// Delivers everything and fires due timers until quiet (bounded).
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.ships.len() {
                if self.down.contains(&i) {
                    while self.ships[i].poll_output().is_some() {}
                    continue;
                }
                self.ships[i].handle_timeout(self.now);
                while let Some(o) = self.ships[i].poll_output() {
                    moved = true;
                    match o {
                        Output::Transmit(t) => {
                            let j = self
                                .ships
                                .iter()
                                .position(|s| s.cfg.listen == t.to)
                                .unwrap();
                            if self.down.contains(&j) {
                                continue;
                            }
                            let bytes = t.frame.to_bytes();
                            let frame =
                                crate::wire::decode_frame(&bytes, &Default::default()).unwrap();
                            let msg = ShipMsg::decode(&frame).unwrap();
                            if (self.lose)(j, &msg) {
                                continue;
                            }
                            self.sent.push((i, j, msg));
                            let input = Input::Frame {
                                from: addr(i),
                                frame,
                            };
                            // No frame between correct ships is ever refused: a
                            // refusal fails the test where it happens.
                            if let Err(e) = self.ships[j].handle(self.now, input) {
                                panic!("ship {j} refused a frame from ship {i}: {e:?}");
                            }
                        }
                        Output::ToClient(c, b) => {
                            for l in String::from_utf8(b.to_vec()).unwrap().lines() {
                                self.replies
                                    .entry((i, c.0))
                                    .or_default()
                                    .push(l.to_string());
                            }
                        }
                        Output::CloseClient(c) => {
                            self.closed.insert((i, c.0));
                        }
                        Output::Event(e) => self.events.push((i, e)),
                        Output::Effect(req) => panic!("unexpected effect {req:?}"),
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network did not settle");
    }

    fn advance(&mut self, d: Duration) {
        // Step in small increments so timers fire in order.
        let end = self.now + d;
        while self.now < end {
            self.now = (self.now + Duration::from_millis(10)).min(end);
            self.settle();
        }
    }

    fn open(&mut self, ship: usize, client: u64) {
        self.ships[ship]
            .handle(
                self.now,
                Input::ClientOpened {
                    client: ClientId(client),
                    origin: origin(),
                },
            )
            .unwrap();
        self.settle();
    }

    fn say(&mut self, ship: usize, client: u64, line: &str) {
        self.ships[ship]
            .handle(
                self.now,
                Input::ClientData(ClientId(client), request_line(line)),
            )
            .unwrap();
        self.settle();
    }

    fn close(&mut self, ship: usize, client: u64) {
        self.ships[ship]
            .handle(self.now, Input::ClientClosed(ClientId(client)))
            .unwrap();
        self.settle();
    }

    /// `asker` on `ship` was matched with the accept at 10.9.9.9:7000 held by `acceptor`
    /// there, and the acceptor was told the connect came from `who`.
    fn assert_matched_here(&self, ship: usize, (asker, acceptor): (u64, u64), who: &str) {
        let (c, a) = (self.finals(ship, asker), self.finals(ship, acceptor));
        assert!(
            c.first()
                .is_some_and(|l| l.starts_with("200 10.9.9.9:7000 conn=")),
            "{c:?}"
        );
        assert!(
            a.first()
                .is_some_and(|l| l.ends_with(&format!("client={who}"))),
            "{a:?}"
        );
    }

    /// Final replies (non-1xx) for a client.
    fn finals(&self, ship: usize, client: u64) -> Vec<String> {
        self.replies
            .get(&(ship, client))
            .map(|v| v.iter().filter(|l| !l.starts_with('1')).cloned().collect())
            .unwrap_or_default()
    }
}

/// Root 0 with daughters 1 and 2; 3 is a child of 1 (depth 3).
fn tree(escalate: bool) -> Net {
    let mut n = Net::new(&[None, Some(0), Some(0), Some(1)], escalate);
    n.advance(Duration::from_secs(1));
    n
}

#[test]
fn daughterships_sync_and_serve_reads() {
    let mut n = tree(true);
    for i in 0..4 {
        assert_eq!(n.ships[i].epoch(), n.ships[0].epoch(), "ship {i} synced");
        n.open(i, 1);
        n.say(i, 1, "get mode");
        assert_eq!(n.finals(i, 1), vec!["200 fast"]);
    }
}

#[test]
fn set_at_a_grandchild_reaches_everyone_and_reads_its_write() {
    let mut n = tree(true);
    n.open(3, 1);
    n.say(3, 1, "set render/port 7001");
    assert_eq!(n.finals(3, 1), vec!["200 version=1"]);
    for i in 0..4 {
        assert_eq!(n.ships[i].tree().get("render/port").unwrap(), "7001");
        assert_eq!(n.ships[i].version(), 1);
    }
}

#[test]
fn racing_claims_get_distinct_nodes_then_an_error() {
    let mut n = tree(true);
    for (ship, c) in [(1, 1), (2, 2), (3, 3)] {
        n.open(ship, c);
        n.ships[ship]
            .handle(
                n.now,
                Input::ClientData(ClientId(c), request_line("claim render/*")),
            )
            .unwrap();
    }
    n.settle();
    let mut got: Vec<String> = [(1, 1), (2, 2), (3, 3)]
        .iter()
        .flat_map(|(s, c)| n.finals(*s, *c))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            "200 render/r1",
            "200 render/r2",
            "409 no free dynamic node matches render/*"
        ]
    );
}

#[test]
fn local_match_never_leaves_the_daughtership() {
    let mut n = tree(true);
    let to_parent = n.ships[1].stats().to_parent;
    n.open(1, 1);
    n.open(1, 2);
    n.say(1, 1, "accept svc 10.9.9.9:7000 5");
    n.say(1, 2, "connect svc 5 alice");
    assert_eq!(n.finals(1, 2).len(), 1);
    assert!(n.finals(1, 2)[0].starts_with("200 10.9.9.9:7000 conn="));
    assert!(n.finals(1, 1)[0].contains("client=alice"));
    // Only the interest summary (key added, then removed) went up; no broker traffic.
    assert!(n.ships[1].stats().to_parent - to_parent <= 2);
    assert_eq!(n.ships[1].stats().local_matches, 1);
}

/// A connect given up by its client while its offer is on the way (lost here) releases
/// the accept reserved for it at once: the next connect is matched without waiting for
/// the reservation to time out.
#[test]
fn a_cancelled_connect_frees_its_reserved_accept_at_once() {
    let (mut n, _, _) = an_offer_lost_before_the_origin();
    n.close(2, 2);
    n.open(3, 5);
    n.say(3, 5, "connect svc 5 dave");
    n.assert_matched_here(3, (5, 1), "dave");
}

/// The checks between an offer and its confirm fire on a corrupted reservation (a
/// window past its wait, a foreign connection id) and on a waiting connect remembered as
/// ended.
#[test]
fn the_offer_checks_fire_on_a_corrupted_reservation() {
    fn reserved(n: &mut Net) -> &mut Reservation {
        n.ships[3]
            .reqs
            .values_mut()
            .find_map(|r| match &mut r.kind {
                ReqKind::Accept {
                    reservation: Some(res),
                    ..
                } => Some(res),
                _ => None,
            })
            .expect("ship 3 reserved its accept")
    }
    let (mut n, _, _) = an_offer_lost_before_the_origin();
    n.ships[3].check_invariants().unwrap();
    let res = reserved(&mut n);
    res.window_end = res.expires + Duration::from_millis(1);
    let e = n.ships[3].check_invariants().unwrap_err();
    assert!(e.contains("offer window"), "{e}");

    let (mut n, _, _) = an_offer_lost_before_the_origin();
    reserved(&mut n).conn = "00000000000000ff-1".into();
    let e = n.ships[3].check_invariants().unwrap_err();
    assert!(e.contains("not one of ours"), "{e}");

    let (mut n, ticket, _) = an_offer_lost_before_the_origin();
    n.ships[2].check_invariants().unwrap();
    n.ships[2].finished.insert(ticket, None);
    let e = n.ships[2].check_invariants().unwrap_err();
    assert!(e.contains("remembered as ended"), "{e}");
}

/// Every brokered connection gets an id of its own, matched locally or across the tree
/// (the clients tell their two ends apart by it).
#[test]
fn every_brokered_connection_has_an_id_of_its_own() {
    let mut n = tree(true);
    let mut ids = Vec::new();
    for k in 0..4u64 {
        // A local match at ship 1, then one across the tree (held at 3, asked at 2).
        for (holder, asker) in [(1, 1), (3, 2)] {
            let (a, c) = (10 + 2 * k, 11 + 2 * k);
            n.open(holder, a);
            n.say(holder, a, "accept svc 10.9.9.9:7000 5");
            n.open(asker, c);
            n.say(asker, c, "connect svc 5 bob");
            let f = n.finals(asker, c);
            assert_eq!(f.len(), 1, "{f:?}");
            ids.push(f[0].split("conn=").nth(1).unwrap().to_string());
        }
    }
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an id was given twice: {ids:?}");
}

/// An accept is offered to a connect from elsewhere only while more than
/// `offer_margin` (1 s) is left of it, so the offer can cross the tree and be confirmed
/// in time; a connect on its own ship needs no such margin.
#[test]
fn an_accept_about_to_expire_serves_only_its_own_ship() {
    let mut n = tree(true);
    n.open(3, 1);
    n.say(3, 1, "accept svc 10.9.9.9:7000 5");
    // Exactly the margin left: not enough for a connect from elsewhere.
    n.advance(Duration::from_secs(4));
    n.open(2, 2);
    n.say(2, 2, "connect svc 5 bob");
    assert!(n.finals(2, 2).is_empty(), "{:?}", n.finals(2, 2));
    assert!(n.finals(3, 1).is_empty(), "{:?}", n.finals(3, 1));
    // On its own ship it is matched at once.
    n.open(3, 3);
    n.say(3, 3, "connect svc 5 carol");
    n.assert_matched_here(3, (3, 1), "carol");
}

/// An accept reserved for one connect (its offer still on the way) is not free for
/// another, not even one on its own ship.
#[test]
fn a_reserved_accept_is_not_matched_again() {
    let (mut n, _, _) = an_offer_lost_before_the_origin();
    n.open(3, 5);
    n.say(3, 5, "connect svc 5 dave");
    assert!(n.finals(3, 5).is_empty(), "{:?}", n.finals(3, 5));
    assert!(n.finals(3, 1).is_empty(), "{:?}", n.finals(3, 1));
}

#[test]
fn cross_daughtership_pair_matches_at_the_common_ancestor() {
    let mut n = tree(true);
    n.open(3, 1);
    n.say(3, 1, "accept svc 10.9.9.9:7000 5");
    n.open(2, 2);
    n.say(2, 2, "connect svc 5 bob");
    let c = n.finals(2, 2);
    let a = n.finals(3, 1);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(a.len(), 1, "{a:?}");
    let conn = c[0].split("conn=").nth(1).unwrap();
    assert_eq!(a[0], format!("200 conn={conn} client=bob"));
    assert_eq!(n.ships[3].stats().remote_matches, 1);
    // Routes linger (so repeated offers still find the origin) for the connect's 5 s
    // and a grace of twice the offer margin (2 s), then expire.
    n.advance(Duration::from_millis(6900));
    assert!(
        n.ships.iter().map(|s| s.routes()).sum::<usize>() > 0,
        "the relays' routes went before the grace ended"
    );
    n.advance(Duration::from_millis(100));
    assert_eq!(
        n.ships.iter().map(|s| s.routes()).sum::<usize>(),
        0,
        "no route left behind"
    );
}

#[test]
fn connect_before_accept_waits_then_matches() {
    let mut n = tree(true);
    n.open(2, 2);
    n.say(2, 2, "connect svc 5");
    n.advance(Duration::from_millis(1500));
    assert!(n.finals(2, 2).is_empty());
    assert!(
        n.replies[&(2, 2)]
            .iter()
            .any(|l| l.starts_with("100 waiting"))
    );
    n.open(3, 1);
    n.say(3, 1, "accept svc 10.1.1.1:1 5");
    n.advance(Duration::from_millis(100));
    assert!(n.finals(2, 2)[0].starts_with("200 10.1.1.1:1 conn="));
    assert!(n.finals(3, 1)[0].starts_with("200 conn="));
}

#[test]
fn unmatched_connect_expires_with_an_error_naming_the_key() {
    let mut n = tree(true);
    n.open(3, 1);
    n.say(3, 1, "connect lonely 1");
    n.advance(Duration::from_millis(1100));
    let f = n.finals(3, 1);
    assert_eq!(f.len(), 1);
    assert!(f[0].starts_with("408 connect lonely expired"), "{f:?}");
    n.advance(Duration::from_secs(2));
    assert_eq!(n.ships.iter().map(|s| s.routes()).sum::<usize>(), 0);
}

#[test]
fn the_seed_hang_without_escalation() {
    let mut n = tree(false);
    n.open(1, 1);
    n.say(1, 1, "accept svc 10.9.9.9:7000 2");
    n.open(2, 2);
    n.say(2, 2, "connect svc 2");
    n.advance(Duration::from_millis(1500));
    assert!(n.finals(1, 1).is_empty() && n.finals(2, 2).is_empty());
    n.advance(Duration::from_secs(1));
    // With deadlines on, the hang becomes a clear error instead of silence.
    assert!(n.finals(2, 2)[0].starts_with("408"));
    assert!(n.finals(1, 1)[0].starts_with("408"));
}

#[test]
fn a_disconnected_client_is_withdrawn() {
    let mut n = tree(true);
    n.open(2, 2);
    n.say(2, 2, "connect svc 5");
    n.close(2, 2);
    n.open(3, 1);
    n.say(3, 1, "accept svc 10.1.1.1:1 2");
    n.advance(Duration::from_millis(500));
    assert!(n.finals(3, 1).is_empty(), "matched a dead peer");
    n.advance(Duration::from_secs(2));
    assert!(n.finals(3, 1)[0].starts_with("408"));
}

#[test]
fn losing_the_parent_keeps_reads_and_local_matches() {
    let mut n = tree(true);
    n.down.insert(0);
    n.advance(Duration::from_secs(3));
    assert!(!n.ships[1].parent_up());
    assert!(
        n.events
            .iter()
            .any(|(i, e)| *i == 1 && *e == ShipEvent::ParentLost)
    );
    n.open(1, 1);
    n.say(1, 1, "get mode");
    assert_eq!(n.finals(1, 1), vec!["200 fast"]);
    n.open(1, 2);
    n.open(3, 3);
    n.say(1, 2, "accept k 1.2.3.4:5 5");
    n.say(3, 3, "connect k 5");
    assert!(n.finals(3, 3)[0].starts_with("200 1.2.3.4:5"));
    n.down.remove(&0);
    n.advance(Duration::from_secs(6));
    assert!(n.ships[1].parent_up());
}

#[test]
fn cycles_and_second_roots_are_refused() {
    // 0 and 1 name each other as parent.
    let mut n = Net::new(&[Some(1), Some(0)], true);
    n.advance(Duration::from_secs(1));
    assert!(
        n.ships
            .iter()
            .any(|s| s.refused().is_some_and(|r| r.contains("cycle")))
    );
    // A root saying Hello to another root is refused.
    let mut root = Ship::new(
        ShipConfig::mothership(addr(0), ConfigTree::default()),
        Instant::ZERO,
        Rng::from_seed(1),
    )
    .unwrap();
    let hello = ShipMsg::Hello {
        ship: 99,
        is_root: true,
        epoch: 99,
        version: 0,
        subtree: vec![99],
        receiving: None,
    };
    root.handle(
        Instant::ZERO,
        Input::Frame {
            from: addr(5),
            frame: hello.to_frame(),
        },
    )
    .unwrap();
    let out: Vec<_> = std::iter::from_fn(|| root.poll_output()).collect();
    assert!(out.iter().any(|o| matches!(o, Output::Transmit(t)
        if matches!(ShipMsg::decode(&t.frame), Ok(ShipMsg::Refuse { ref reason }) if reason.contains("exactly one root")))));
    assert!(matches!(
        Ship::new(
            ShipConfig::daughtership(addr(0), addr(0)),
            Instant::ZERO,
            Rng::from_seed(1)
        ),
        Err(ShipConfigError::OwnParent(_))
    ));
}

#[test]
fn telnet_niceties() {
    let mut n = tree(true);
    n.open(0, 1);
    n.say(0, 1, "HELP");
    n.say(0, 1, "");
    n.say(0, 1, "bogus");
    n.say(0, 1, "get nope");
    n.say(0, 1, "set render/r1/host x");
    n.say(0, 1, "quit");
    let f = n.finals(0, 1);
    let codes: Vec<&str> = f.iter().map(|l| &l[..3]).collect();
    assert_eq!(codes, vec!["200", "401", "402", "404", "403", "200"]);
    assert!(n.closed.contains(&(0, 1)));
}

fn durable_root() -> Ship {
    let mut c = ShipConfig::mothership(addr(0), ConfigTree::parse("(:param mode fast)").unwrap());
    c.durable = true;
    Ship::new(c, Instant::ZERO, Rng::from_seed(1)).unwrap()
}

fn drain(ship: &mut Ship) -> Vec<Output<ShipEvent, ShipEffect>> {
    std::iter::from_fn(|| ship.poll_output()).collect()
}

/// The one store request in `out`.
fn store_of(out: &[Output<ShipEvent, ShipEffect>]) -> (EffectId, StoreBatch) {
    let stores: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Effect(EffectRequest {
                id,
                effect: ShipEffect::Store(st),
                ..
            }) => Some((*id, st.clone())),
            _ => None,
        })
        .collect();
    let [one] = &stores[..] else {
        panic!("expected one store, got {out:?}");
    };
    one.clone()
}

fn set_on(ship: &mut Ship, now: Instant, c: ClientId, line: &str) {
    ship.handle(now, Input::ClientData(c, request_line(line)))
        .unwrap();
}

#[test]
fn a_durable_root_acknowledges_only_stored_changes_and_restarts_from_them() {
    let mut root = durable_root();
    let epoch = root.epoch();
    let c = ClientId(1);
    root.handle(
        Instant::ZERO,
        Input::ClientOpened {
            client: c,
            origin: origin(),
        },
    )
    .unwrap();
    set_on(&mut root, Instant::ZERO, c, "set mode slow");
    let out = drain(&mut root);
    // Not acknowledged, not applied: only a request to store.
    assert_eq!(out.len(), 1, "{out:?}");
    let (id, batch) = store_of(&out);
    assert_eq!(
        (batch.epoch, batch.first, batch.changes.len()),
        (epoch, 1, 1)
    );
    // A fresh mothership's first store brings the copy the changes start from.
    let base = batch.base.clone().expect("the first batch brings the copy");
    assert_eq!((base.epoch, base.version), (epoch, 0));
    let mut stored = *base;
    stored.apply(&batch).unwrap();
    assert_eq!(stored.tree.get("mode").unwrap(), "slow");
    assert_eq!(root.version(), 0);
    assert_eq!(root.tree().get("mode").unwrap(), "fast");
    root.handle(
        Instant::ZERO,
        Input::EffectDone {
            id,
            outcome: Ok(()),
        },
    )
    .unwrap();
    let out = drain(&mut root);
    assert!(
        out.contains(&Output::ToClient(c, reply(200, "version=1"))),
        "{out:?}"
    );
    assert_eq!(root.version(), 1);
    // The same outcome twice is refused: nothing is in flight any more.
    assert_eq!(
        root.handle(
            Instant::ZERO,
            Input::EffectDone {
                id,
                outcome: Ok(())
            }
        ),
        Err(ShipError::UnknownEffect(id))
    );

    // A restart from the stored copy keeps the epoch and version: nothing acknowledged
    // is lost, and daughterships resume by version.
    let mut again = root.config().clone();
    again.restore = Some(stored.clone());
    let root2 = Ship::new(again, Instant::ZERO, Rng::from_seed(2)).unwrap();
    assert_eq!((root2.epoch(), root2.version()), (epoch, 1));
    assert_eq!(root2.tree().get("mode").unwrap(), "slow");
}

/// Changes that arrive while a store is in flight wait, then go together in the next
/// store: one write for many (group commit).
#[test]
fn changes_during_a_store_are_stored_together() {
    let mut root = durable_root();
    let t0 = Instant::ZERO;
    for k in 1..=3 {
        root.handle(
            t0,
            Input::ClientOpened {
                client: ClientId(k),
                origin: origin(),
            },
        )
        .unwrap();
    }
    set_on(&mut root, t0, ClientId(1), "set a 1");
    let (first, st) = store_of(&drain(&mut root));
    assert_eq!((st.first, st.changes.len()), (1, 1));
    set_on(&mut root, t0, ClientId(2), "set b 2");
    set_on(&mut root, t0, ClientId(3), "set c 3");
    assert!(
        drain(&mut root).is_empty(),
        "no second store while one is in flight"
    );
    root.handle(
        t0,
        Input::EffectDone {
            id: first,
            outcome: Ok(()),
        },
    )
    .unwrap();
    let out = drain(&mut root);
    assert!(out.contains(&Output::ToClient(ClientId(1), reply(200, "version=1"))));
    let (second, st) = store_of(&out);
    assert_eq!(
        (st.first, st.changes.len()),
        (2, 2),
        "both waiting changes in one store"
    );
    assert!(st.base.is_none(), "the copy went with the first batch");
    assert_eq!(
        st.changes[1],
        Change::Set {
            node: String::new(),
            key: "c".into(),
            value: "3".into()
        }
    );
    root.handle(
        t0,
        Input::EffectDone {
            id: second,
            outcome: Ok(()),
        },
    )
    .unwrap();
    let out = drain(&mut root);
    assert!(out.contains(&Output::ToClient(ClientId(2), reply(200, "version=2"))));
    assert!(out.contains(&Output::ToClient(ClientId(3), reply(200, "version=3"))));
}

/// A store that keeps failing is retried after `retry` × 2, × 4, … (× 32 at most), and
/// never more than half the configuration timeout apart: a full disk is not hammered,
/// and one that recovers is used again within that bound.
#[test]
fn a_failing_store_is_retried_at_a_doubling_pace_up_to_its_cap() {
    let mut root = durable_root();
    let t = ShipTimings::default();
    let c = ClientId(1);
    let mut now = Instant::ZERO;
    root.handle(
        now,
        Input::ClientOpened {
            client: c,
            origin: origin(),
        },
    )
    .unwrap();
    set_on(&mut root, now, c, "set mode slow");
    let (mut id, _) = store_of(&drain(&mut root));
    let mut pauses = Vec::new();
    for _ in 0..7 {
        let outcome = Err(EffectError::Failed("disk full".into()));
        root.handle(now, Input::EffectDone { id, outcome }).unwrap();
        drain(&mut root);
        let failed_at = now;
        let retried = loop {
            now = root.poll_timeout().expect("a retry is due").max(now);
            root.handle_timeout(now);
            let out = drain(&mut root);
            if out.iter().any(|o| matches!(o, Output::Effect(_))) {
                break out;
            }
        };
        pauses.push(now.saturating_duration_since(failed_at));
        id = store_of(&retried).0;
    }
    let want: Vec<Duration> = (1..=7u32)
        .map(|f| (t.retry * 2u32.pow(f.min(5))).min(t.config_timeout / 2))
        .collect();
    assert_eq!(pauses, want);
    // With the defaults (250 ms, 10 s) the cap is met: 8 s would be the next pause.
    assert_eq!(want[4], t.config_timeout / 2);
}

/// A store that fails is retried after a pause; its change is neither acknowledged nor
/// applied meanwhile, and a client whose deadline passes is told the outcome is in doubt.
#[test]
fn a_failed_store_is_retried_and_nothing_is_acknowledged_before() {
    let mut root = durable_root();
    let c = ClientId(1);
    let t0 = Instant::ZERO;
    root.handle(
        t0,
        Input::ClientOpened {
            client: c,
            origin: origin(),
        },
    )
    .unwrap();
    set_on(&mut root, t0, c, "set mode slow");
    let (id, _) = store_of(&drain(&mut root));
    let outcome = Err(EffectError::Failed("disk full".into()));
    root.handle(t0, Input::EffectDone { id, outcome }).unwrap();
    let out = drain(&mut root);
    assert!(
        matches!(&out[..], [Output::Event(ShipEvent::StoreFailed { version: 1, error })] if error == "disk full"),
        "{out:?}"
    );
    assert_eq!(root.version(), 0);
    // The retry comes after a pause, with the same change (progress lines meanwhile).
    let mut retry_at;
    let retried = loop {
        retry_at = root.poll_timeout().unwrap();
        root.handle_timeout(retry_at);
        let out = drain(&mut root);
        if out.iter().any(|o| matches!(o, Output::Effect(_))) {
            break out;
        }
        assert!(
            out.iter()
                .all(|o| matches!(o, Output::ToClient(_, b) if b.starts_with(b"100"))),
            "{out:?}"
        );
    };
    assert!(retry_at > t0);
    let (id2, st) = store_of(&retried);
    assert_ne!(id, id2);
    assert_eq!(
        (st.first, st.changes.len()),
        (1, 1),
        "the retry holds the same change"
    );
    // It hangs past the client's deadline: the client hears 504, in doubt.
    let deadline = t0 + ShipTimings::default().config_timeout;
    let mut now = retry_at;
    while now < deadline {
        now = root.poll_timeout().unwrap().max(now);
        root.handle_timeout(now);
        let out = drain(&mut root);
        if let Some(Output::ToClient(_, b)) = out
            .iter()
            .find(|o| matches!(o, Output::ToClient(_, b) if !b.starts_with(b"1")))
        {
            let text = String::from_utf8_lossy(b);
            assert!(text.starts_with("504 set mode was not stored"), "{text}");
            assert!(text.contains("in doubt"), "{text}");
            break;
        }
    }
    assert!(now >= deadline);
    // When the store finally lands the change is applied (it may have been stored), but
    // the client is not answered twice.
    root.handle(
        now,
        Input::EffectDone {
            id: id2,
            outcome: Ok(()),
        },
    )
    .unwrap();
    let out = drain(&mut root);
    assert!(
        !out.iter().any(|o| matches!(o, Output::ToClient(..))),
        "{out:?}"
    );
    assert_eq!(root.version(), 1);
}

#[test]
fn stored_copies_round_trip_and_bad_files_are_refused() {
    let st = Stored {
        epoch: 7,
        version: 3,
        tree: ConfigTree::parse("(:param a 1) (:node n (:dynamic))").unwrap(),
        decided: vec![
            (
                Ticket { origin: 1, seq: 2 },
                ConfigOutcome::Applied {
                    version: 3,
                    text: "n".into(),
                },
            ),
            (
                Ticket { origin: 1, seq: 3 },
                ConfigOutcome::Refused {
                    code: 409,
                    text: "no".into(),
                },
            ),
        ],
    };
    let bytes = st.encode();
    assert_eq!(Stored::decode(&bytes), Ok(st));
    assert!(Stored::decode(&bytes.slice(..bytes.len() - 1)).is_err());
    assert!(Stored::decode(&Bytes::from_static(b"(:param a 1)")).is_err());
}

/// A client that leaves a line unfinished is told so and closed after the partial-line
/// timeout; one that finishes its line in time is not.
#[test]
fn an_unfinished_line_is_closed_after_its_timeout() {
    let mut n = tree(true);
    n.open(0, 1);
    n.ships[0]
        .handle(
            n.now,
            Input::ClientData(ClientId(1), Bytes::from_static(b"get mo")),
        )
        .unwrap();
    n.open(0, 2);
    n.ships[0]
        .handle(
            n.now,
            Input::ClientData(ClientId(2), Bytes::from_static(b"get mo")),
        )
        .unwrap();
    n.advance(Duration::from_secs(10));
    n.say(0, 2, "de");
    assert_eq!(n.finals(0, 2), vec!["200 fast"]);
    n.advance(ShipLimits::default().partial_line_timeout);
    let f = n.finals(0, 1);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with("408 line not finished within 30.0s"),
        "{f:?}"
    );
    assert!(n.closed.contains(&(0, 1)));
    assert!(
        !n.closed.contains(&(0, 2)),
        "a finished line keeps the connection"
    );
}

/// `quit` sent while a request is pending waits for its reply: the client hears the
/// reply, then `200 bye`, then the close.
#[test]
fn quit_waits_for_the_pending_reply() {
    let mut root = durable_root();
    let c = ClientId(1);
    let t0 = Instant::ZERO;
    root.handle(
        t0,
        Input::ClientOpened {
            client: c,
            origin: origin(),
        },
    )
    .unwrap();
    root.handle(
        t0,
        Input::ClientData(c, Bytes::from_static(b"set mode slow\nquit\n")),
    )
    .unwrap();
    let (id, _) = store_of(&drain(&mut root));
    root.handle(
        t0,
        Input::EffectDone {
            id,
            outcome: Ok(()),
        },
    )
    .unwrap();
    let out = drain(&mut root);
    let to_client: Vec<&Output<ShipEvent, ShipEffect>> = out
        .iter()
        .filter(|o| matches!(o, Output::ToClient(..) | Output::CloseClient(_)))
        .collect();
    assert_eq!(
        to_client,
        [
            &Output::ToClient(c, reply(200, "version=1")),
            &Output::ToClient(c, reply(200, "bye")),
            &Output::CloseClient(c)
        ]
    );
}

/// A daughtership whose parent never answers says so once; when the parent answers, it
/// says that once too.
#[test]
fn a_parent_that_never_answered_is_reported_once_and_its_return_too() {
    let mut n = Net::new(&[None, Some(0)], true);
    n.down.insert(0);
    n.advance(Duration::from_secs(10));
    let lost = |n: &Net| {
        n.events
            .iter()
            .filter(|(i, e)| *i == 1 && *e == ShipEvent::ParentLost)
            .count()
    };
    let back = |n: &Net| {
        n.events
            .iter()
            .filter(|(i, e)| *i == 1 && *e == ShipEvent::ParentRestored)
            .count()
    };
    assert_eq!((lost(&n), back(&n)), (1, 0));
    n.down.remove(&0);
    n.advance(Duration::from_secs(2));
    assert_eq!((lost(&n), back(&n)), (1, 1));
    assert_eq!(n.ships[1].epoch(), n.ships[0].epoch(), "synced once back");
}

/// A change that would grow the configuration past its limit is refused, with the sizes;
/// one that fits exactly is taken.
#[test]
fn the_configuration_size_limit_is_enforced_at_its_edge() {
    let base = ConfigTree::parse("(:param a x)").unwrap();
    let mut cfg = ShipConfig::mothership(addr(0), base.clone());
    // Room for exactly one more parameter "b" with a 10-byte value: 4+1 + 4+10 bytes.
    cfg.limits.max_config_bytes = base.size() + 19;
    let mut root = Ship::new(cfg, Instant::ZERO, Rng::from_seed(3)).unwrap();
    let c = ClientId(1);
    root.handle(
        Instant::ZERO,
        Input::ClientOpened {
            client: c,
            origin: origin(),
        },
    )
    .unwrap();
    set_on(&mut root, Instant::ZERO, c, "set b 0123456789");
    set_on(&mut root, Instant::ZERO, c, "set c 1");
    let replies: Vec<Output<ShipEvent, ShipEffect>> = drain(&mut root)
        .into_iter()
        .filter(|o| matches!(o, Output::ToClient(..)))
        .collect();
    assert_eq!(replies[0], Output::ToClient(c, reply(200, "version=1")));
    let Output::ToClient(_, last) = &replies[1] else {
        panic!()
    };
    let text = String::from_utf8_lossy(last);
    assert!(
        text.starts_with("507 the configuration would grow to"),
        "{text}"
    );
    assert_eq!(root.tree().size(), root.tree().measure());
    // A mothership whose file is already past its limit does not start.
    let mut too_small = ShipConfig::mothership(addr(0), base.clone());
    too_small.limits.max_config_bytes = base.size() - 1;
    assert!(matches!(
        Ship::new(too_small, Instant::ZERO, Rng::from_seed(3)),
        Err(ShipConfigError::TooLarge { .. })
    ));
}

/// A configuration far larger than a frame reaches a daughtership in pieces of at most
/// 256 KiB, each sent once on a lossless link, and the copy is identical.
#[test]
fn a_large_configuration_reaches_a_daughtership_in_pieces() {
    let mut text = String::new();
    for k in 0..3000 {
        text.push_str(&format!("(:param p{k} {})\n", "v".repeat(1000)));
    }
    let big = ConfigTree::parse(&text).unwrap();
    assert!(big.size() > 3_000_000);
    let root = Ship::new(
        ShipConfig::mothership(addr(0), big.clone()),
        Instant::ZERO,
        Rng::from_seed(1),
    )
    .unwrap();
    let child = Ship::new(
        ShipConfig::daughtership(addr(1), addr(0)),
        Instant::ZERO,
        Rng::from_seed(2),
    )
    .unwrap();
    let mut n = Net::new(&[None, Some(0)], true);
    n.ships = vec![root, child];
    n.advance(Duration::from_secs(2));
    assert_eq!(n.ships[1].tree(), &big);
    let pieces = big.size().div_ceil(crate::ship::msg::CHUNK_BYTES) as u64;
    assert_eq!(n.ships[0].stats().snapshot_pieces, pieces);
    assert_eq!(n.ships[1].stats().snapshots, 1);
}

/// Frames `ship` sent to `to` since the last drain, decoded.
fn sent_to(ship: &mut Ship, to: PeerAddr) -> Vec<ShipMsg> {
    let mut got = Vec::new();
    while let Some(o) = ship.poll_output() {
        if let Output::Transmit(t) = o
            && t.to == to
        {
            got.push(ShipMsg::decode(&t.frame).expect("ships send good frames"));
        }
    }
    got
}

/// A connect across daughterships finishes with one connection; then offers for its
/// ticket come again, duplicated or late (a holder that did not hear the answer): the
/// origin confirms the one it took, and declines any other connection id, so no second
/// acceptor is ever told a client is coming.
#[test]
fn a_repeated_offer_is_confirmed_only_for_the_connection_taken() {
    let (mut n, ticket, conn) = a_match_across_the_tree(5);
    for (offered, confirm) in [(conn.clone(), true), (format!("{conn}x"), false)] {
        let offer = ShipMsg::Offer {
            ticket,
            conn: offered.clone(),
            acceptor: "10.8.8.8:7000".into(),
            ttl_ms: 1000,
        };
        let frame = offer.to_frame();
        n.ships[2]
            .handle(
                n.now,
                Input::Frame {
                    from: addr(0),
                    frame,
                },
            )
            .unwrap();
        let answers = sent_to(&mut n.ships[2], addr(0));
        let want = if confirm {
            ShipMsg::Confirm {
                ticket,
                conn: offered,
            }
        } else {
            ShipMsg::Decline {
                ticket,
                conn: offered,
            }
        };
        assert_eq!(answers, vec![want]);
    }
}

/// `msg` from ship 1 to the root (ship 0), now; the configuration answers it sent back.
fn ask_root(n: &mut Net, msg: &ShipMsg) -> Vec<ConfigOutcome> {
    let frame = msg.to_frame();
    n.ships[0]
        .handle(
            n.now,
            Input::Frame {
                from: addr(1),
                frame,
            },
        )
        .unwrap();
    sent_to(&mut n.ships[0], addr(1))
        .into_iter()
        .filter_map(|m| match m {
            ShipMsg::ConfigResp { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect()
}

/// A daughtership's configuration request whose answer was lost is sent again with the
/// same ticket: the root answers with what it decided the first time and changes
/// nothing (a claim is not made twice, a set does not take a second version).
#[test]
fn a_retried_configuration_request_is_decided_once() {
    let mut n = tree(true);
    let ticket = Ticket {
        origin: n.ships[1].id(),
        seq: 9_999,
    };
    for op in [
        ConfigOp::Claim {
            pattern: "render/*".into(),
            host: "h1".into(),
        },
        ConfigOp::Set {
            path: "mode".into(),
            value: "slow".into(),
        },
    ] {
        let ticket = Ticket {
            seq: ticket.seq + u64::from(matches!(op, ConfigOp::Set { .. })),
            ..ticket
        };
        let req = ShipMsg::ConfigReq {
            ticket,
            op,
            ttl_ms: 5_000,
        };
        let mut outcomes = Vec::new();
        let mut versions = Vec::new();
        let applied_at_start = n.ships[0].stats().changes_applied;
        for _ in 0..2 {
            outcomes.extend(ask_root(&mut n, &req));
            versions.push(n.ships[0].version());
        }
        assert_eq!(
            n.ships[0].stats().changes_applied,
            applied_at_start + 1,
            "one decision, one change applied"
        );
        // One more retry a whole configuration timeout later (decisions are kept for
        // two): still the first answer.
        let applied_before = n.ships[0].stats().changes_applied;
        n.advance(n.ships[0].cfg.timings.config_timeout + Duration::from_millis(50));
        outcomes.extend(ask_root(&mut n, &req));
        versions.push(n.ships[0].version());
        assert_eq!(
            n.ships[0].stats().changes_applied,
            applied_before,
            "a retry applied a change"
        );
        assert_eq!(outcomes.len(), 3, "{outcomes:?}");
        assert_eq!(outcomes[0], outcomes[1], "the retry got another answer");
        assert_eq!(
            outcomes[0], outcomes[2],
            "the late retry got another answer"
        );
        assert_eq!(
            versions[0], versions[2],
            "the late retry changed the configuration"
        );
        assert!(
            matches!(outcomes[0], ConfigOutcome::Applied { .. }),
            "{outcomes:?}"
        );
        assert_eq!(
            versions[0], versions[1],
            "the retry changed the configuration"
        );
    }
}

/// A durable root stores what it refused another ship (so a retry after a restart gets
/// the same answer) with the next change it stores, and not what it refused its own
/// clients; the check fires on a refusal kept by a ship that stores nothing, or kept
/// for its own request.
#[test]
fn a_durable_root_stores_the_refusals_it_decided_for_other_ships() {
    let mut root = durable_root();
    let now = Instant::from_millis(5);
    drain(&mut root);
    // Ship 77 says hello as a child.
    let hello = ShipMsg::Hello {
        ship: 77,
        is_root: false,
        epoch: 0,
        version: 0,
        subtree: vec![77],
        receiving: None,
    };
    root.handle(
        now,
        Input::Frame {
            from: addr(1),
            frame: hello.to_frame(),
        },
    )
    .unwrap();
    drain(&mut root);
    let remote = |seq| Ticket { origin: 77, seq };
    let ask = |root: &mut Ship, ticket, op| {
        let frame = ShipMsg::ConfigReq {
            ticket,
            op,
            ttl_ms: 5_000,
        }
        .to_frame();
        root.handle(
            now,
            Input::Frame {
                from: addr(1),
                frame,
            },
        )
        .unwrap();
    };
    // Refused: nothing matches. Then a change that is stored.
    let nothing = ConfigOp::Claim {
        pattern: "nothing/*".into(),
        host: "h".into(),
    };
    ask(&mut root, remote(1), nothing.clone());
    root.handle(
        now,
        Input::ClientOpened {
            client: ClientId(1),
            origin: origin(),
        },
    )
    .unwrap();
    set_on(&mut root, now, ClientId(1), "claim nothing/* h");
    drain(&mut root);
    ask(
        &mut root,
        remote(2),
        ConfigOp::Set {
            path: "mode".into(),
            value: "slow".into(),
        },
    );
    let (_, batch) = store_of(&drain(&mut root));
    let tickets: Vec<Ticket> = batch.decided.iter().map(|(t, _)| *t).collect();
    assert!(tickets.contains(&remote(1)), "{:?}", batch.decided);
    assert!(tickets.contains(&remote(2)), "{:?}", batch.decided);
    assert!(
        tickets.iter().all(|t| t.origin == 77),
        "the root's own request went into the store: {:?}",
        batch.decided
    );
    assert!(
        batch
            .decided
            .iter()
            .any(|(t, o)| *t == remote(1) && matches!(o, ConfigOutcome::Refused { .. }))
    );
    // The checks.
    let own = Ticket {
        origin: root.id(),
        seq: 1,
    };
    let refused = ConfigOutcome::Refused {
        code: 409,
        text: "x".into(),
    };
    root.store.refusals.push((own, refused.clone()));
    let e = root.check_invariants().unwrap_err();
    assert!(e.contains("its own request"), "{e}");
    let mut plain = tree(true);
    plain.ships[0].store.refusals.push((remote(3), refused));
    let e = plain.ships[0].check_invariants().unwrap_err();
    assert!(e.contains("stores nothing"), "{e}");
}

/// At a durable root the size limit counts the changes staged and not yet stored: a
/// second change that fits the stored tree but not the tree with the first one staged
/// is refused while the first is still being stored.
#[test]
fn the_size_limit_counts_changes_waiting_to_be_stored() {
    let base = ConfigTree::parse("(:param a x)").unwrap();
    let mut cfg = ShipConfig::mothership(addr(0), base.clone());
    cfg.durable = true;
    // Room for one more parameter with a 10-byte value (4+1 + 4+10 bytes), not two.
    cfg.limits.max_config_bytes = base.size() + 19;
    let mut root = Ship::new(cfg, Instant::ZERO, Rng::from_seed(3)).unwrap();
    drain(&mut root);
    for c in [1, 2] {
        root.handle(
            Instant::ZERO,
            Input::ClientOpened {
                client: ClientId(c),
                origin: origin(),
            },
        )
        .unwrap();
    }
    set_on(&mut root, Instant::ZERO, ClientId(1), "set b 0123456789");
    let _ = store_of(&drain(&mut root));
    // The store has not answered: "b" is staged, the tree holds only "a".
    set_on(&mut root, Instant::ZERO, ClientId(2), "set d 0123456789");
    let replies: Vec<String> = drain(&mut root)
        .into_iter()
        .filter_map(|o| match o {
            Output::ToClient(_, b) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        })
        .collect();
    assert!(
        replies
            .iter()
            .any(|r| r.starts_with("507 the configuration would grow to")),
        "{replies:?}"
    );
}

/// A client of a daughtership that set a value is answered only once the daughtership
/// holds that version, so its next read sees its write — even when the root's answer
/// comes back before the change itself.
#[test]
fn a_write_is_answered_only_once_the_daughtership_holds_it() {
    let mut n = tree(true);
    n.open(1, 1);
    n.lose = |to, m| to == 1 && matches!(m, ShipMsg::Deltas { .. });
    n.say(1, 1, "set mode slow");
    assert_eq!(n.ships[0].version(), 1, "the root applied the change");
    assert_eq!(n.ships[1].version(), 0, "its push to ship 1 was lost");
    assert!(
        n.finals(1, 1).is_empty(),
        "answered before ship 1 held version 1: {:?}",
        n.finals(1, 1)
    );
    n.lose = lose_nothing;
    n.advance(Duration::from_secs(3));
    assert_eq!(n.finals(1, 1), vec!["200 version=1"]);
    n.say(1, 1, "get mode");
    assert_eq!(n.finals(1, 1), vec!["200 version=1", "200 slow"]);
}

/// A daughtership that catches up on more changes at once than its own delta log
/// holds cannot push them on from its log: its child catches up from it by asking. And
/// a log of `delta_log` changes serves a child exactly that far behind with deltas.
#[test]
fn a_catch_up_longer_than_the_delta_log_still_reaches_the_grandchild() {
    let mut n = tree(true);
    n.ships[0].cfg.limits.delta_log = 4;
    n.ships[1].cfg.limits.delta_log = 2;
    n.open(0, 1);
    n.sent.clear();
    n.down.insert(1);
    for k in 0..4 {
        n.say(0, 1, &format!("set mode v{k}"));
    }
    n.down.remove(&1);
    n.advance(Duration::from_secs(5));
    for s in [1, 3] {
        assert_eq!(n.ships[s].version(), n.ships[0].version(), "ship {s}");
        assert_eq!(n.ships[s].tree().get("mode").unwrap(), "v3", "ship {s}");
    }
    // Ship 1 did take the four changes as one push (not a snapshot): the root's log of
    // four holds exactly what it missed.
    assert!(
        n.sent.iter().any(|(f, t, m)| *f == 0
            && *t == 1
            && matches!(m, ShipMsg::Deltas { changes, .. } if changes.len() == 4)),
        "ship 1 caught up by one push of four changes"
    );
    assert!(
        !n.sent
            .iter()
            .any(|(f, t, m)| *f == 0 && *t == 1 && matches!(m, ShipMsg::SnapshotChunk { .. })),
        "ship 1 needed no snapshot"
    );
}

/// A change costs one push to each child, which carries it, and no pull: as the delta
/// log rolls over too (a push from the wrong place in the log is repaired by the child
/// asking again at once, so only counting frames shows it).
#[test]
fn a_change_is_one_usable_push_per_child_and_no_pull() {
    let mut n = tree(true);
    n.ships[0].cfg.limits.delta_log = 2;
    n.open(0, 1);
    for k in 0..6 {
        n.sent.clear();
        n.say(0, 1, &format!("set mode v{k}"));
        let v = n.ships[0].version();
        for (parent, child) in [(0, 1), (0, 2), (1, 3)] {
            let pushes: Vec<&ShipMsg> = n
                .sent
                .iter()
                .filter(|(f, t, m)| {
                    *f == parent && *t == child && matches!(m, ShipMsg::Deltas { .. })
                })
                .map(|(_, _, m)| m)
                .collect();
            let [
                ShipMsg::Deltas {
                    first,
                    changes,
                    latest,
                    ..
                },
            ] = &pushes[..]
            else {
                panic!("change {k}: ship {child} got {} pushes", pushes.len());
            };
            assert_eq!(
                (*first, changes.len(), *latest),
                (v, 1, v),
                "change {k}: the push to ship {child} is the change"
            );
        }
        let pulls: Vec<_> = n
            .sent
            .iter()
            .filter(|(_, _, m)| matches!(m, ShipMsg::Hello { .. }))
            .collect();
        assert!(
            pulls.is_empty(),
            "change {k}: a ship asked again: {pulls:?}"
        );
    }
}

/// The root keeps only its last `delta_log` changes; past that, every change still
/// reaches every ship by the push itself, at once (no greeting in between: time does
/// not move), from the right place in the log.
#[test]
fn changes_past_the_delta_log_still_reach_every_ship_by_the_push() {
    let mut n = tree(true);
    n.ships[0].cfg.limits.delta_log = 2;
    n.open(0, 1);
    for k in 0..6 {
        n.say(0, 1, &format!("set mode v{k}"));
        let v = n.ships[0].version();
        for s in 1..4 {
            assert_eq!(n.ships[s].version(), v, "ship {s} after change {k}");
            assert_eq!(
                n.ships[s].tree().get("mode").unwrap(),
                format!("v{k}"),
                "ship {s} after change {k}"
            );
        }
    }
}

/// The ticket of the connect `ship` still waits on.
fn waiting_connect(ship: &Ship) -> Ticket {
    let (&ticket, _) = ship
        .reqs
        .iter()
        .find(|(_, r)| matches!(r.kind, ReqKind::Connect { .. }))
        .expect("a connect still waits");
    ticket
}

/// The connection id of the offer `ship` holds an accept for, if any.
fn reserved_conn(ship: &Ship) -> Option<String> {
    ship.reqs.values().find_map(|r| match &r.kind {
        ReqKind::Accept {
            reservation: Some(res),
            ..
        } => Some(res.conn.clone()),
        _ => None,
    })
}

/// Ship 3 holds an accept reserved for ship 2's connect, whose offer was lost on its
/// last hop (root → ship 2): the client at ship 2 still waits.
fn an_offer_lost_before_the_origin() -> (Net, Ticket, String) {
    let mut n = tree(true);
    n.lose = |to, m| to == 2 && matches!(m, ShipMsg::Offer { .. });
    n.open(3, 1);
    n.say(3, 1, "accept svc 10.9.9.9:7000 5");
    n.open(2, 2);
    n.say(2, 2, "connect svc 5 bob");
    assert!(
        n.finals(2, 2).is_empty(),
        "the offer never reached the origin"
    );
    let ticket = waiting_connect(&n.ships[2]);
    let conn = reserved_conn(&n.ships[3]).expect("ship 3 reserved its accept");
    n.lose = lose_nothing;
    (n, ticket, conn)
}

/// An offer that reaches the connect's own ship with no time left (the acceptor's
/// commit window closed on the way) is declined, and the client goes on waiting; the
/// decline travels back and frees the acceptor's reservation at once, so the accept
/// can serve a connect again without waiting for the reservation to run out.
#[test]
fn an_offer_with_no_time_left_is_declined_and_frees_the_acceptor_at_once() {
    let (mut n, ticket, conn) = an_offer_lost_before_the_origin();
    let late = ShipMsg::Offer {
        ticket,
        conn: conn.clone(),
        acceptor: "10.9.9.9:7000".into(),
        ttl_ms: 0,
    };
    n.ships[2]
        .handle(
            n.now,
            Input::Frame {
                from: addr(0),
                frame: late.to_frame(),
            },
        )
        .unwrap();
    let answers = sent_to(&mut n.ships[2], addr(0));
    let decline = ShipMsg::Decline {
        ticket,
        conn: conn.clone(),
    };
    assert_eq!(answers, vec![decline.clone()]);
    assert!(n.finals(2, 2).is_empty(), "a late offer was taken");
    // The decline goes back along the route (root → ship 1 → ship 3), with no time
    // passing: the reservation is gone as soon as it arrives.
    n.ships[0]
        .handle(
            n.now,
            Input::Frame {
                from: addr(2),
                frame: decline.to_frame(),
            },
        )
        .unwrap();
    n.settle();
    assert_eq!(
        reserved_conn(&n.ships[3]),
        None,
        "the declined reservation is still held"
    );
    // Freed, the accept is there for the next connect at once.
    n.open(2, 3);
    n.say(2, 3, "connect svc 5 carol");
    let c = n.finals(2, 3);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("200 10.9.9.9:7000 conn="), "{c:?}");
}

/// A ship on the way that lost its route for a connect (as a restart leaves it) passes
/// the holder's repeated offer on toward the origin instead of answering it itself: the
/// origin takes it and the client is served at the holder's next repeat.
#[test]
fn a_relay_that_lost_the_route_passes_a_repeated_offer_to_the_origin() {
    let (mut n, ticket, conn) = an_offer_lost_before_the_origin();
    assert!(n.ships[1].drop_route(ticket).is_some(), "ship 1 relayed");
    n.ships[1].timers.cancel(&Timer::Route(ticket));
    n.advance(n.ships[3].cfg.timings.retry * 2);
    let c = n.finals(2, 2);
    assert_eq!(c, vec![format!("200 10.9.9.9:7000 conn={conn}")]);
    assert_eq!(n.finals(3, 1), vec![format!("200 conn={conn} client=bob")]);
}

/// The (from, to) ship pairs of the frames of one kind delivered since `mark` (an index
/// into `Net::sent`), in the order they went.
fn hops_since(n: &Net, mark: usize, kind: fn(&ShipMsg) -> bool) -> Vec<(usize, usize)> {
    n.sent[mark..]
        .iter()
        .filter(|(_, _, m)| kind(m))
        .map(|(i, j, _)| (*i, *j))
        .collect()
}

fn is_connect(m: &ShipMsg) -> bool {
    matches!(m, ShipMsg::Connect { .. })
}

fn is_not_here(m: &ShipMsg) -> bool {
    matches!(m, ShipMsg::NotHere { .. })
}

/// `msg` arrives at ship `to` from ship `from`, now, and is handled there; nothing it
/// sends is delivered yet (read it with `sent_to`).
fn arrive(n: &mut Net, to: usize, from: usize, msg: &ShipMsg) {
    let input = Input::Frame {
        from: addr(from),
        frame: msg.to_frame(),
    };
    n.ships[to].handle(n.now, input).unwrap();
}

/// A confirm or decline that names the holder's reserved ticket but another connection
/// id (a stale or duplicated answer to an earlier offer) leaves the reservation alone:
/// the decline does not free it and the confirm does not tell the acceptor a client is
/// coming; the answer to the connection actually offered still completes both halves.
/// (Guards `holder_accept`'s `r.conn == conn && r.connect == ticket`, mutants 357:18 and
/// 357:33.)
#[test]
fn an_answer_for_another_connection_id_leaves_the_reservation_alone() {
    let (mut n, ticket, conn) = an_offer_lost_before_the_origin();
    let stale = format!("{}-0", conn.split('-').next().unwrap());
    arrive(
        &mut n,
        3,
        1,
        &ShipMsg::Decline {
            ticket,
            conn: stale.clone(),
        },
    );
    n.settle();
    assert_eq!(reserved_conn(&n.ships[3]), Some(conn.clone()));
    arrive(
        &mut n,
        3,
        1,
        &ShipMsg::Confirm {
            ticket,
            conn: stale,
        },
    );
    n.settle();
    assert!(n.finals(3, 1).is_empty(), "{:?}", n.finals(3, 1));
    assert_eq!(reserved_conn(&n.ships[3]), Some(conn.clone()));
    // The holder's next repeat reaches the origin, which takes it.
    n.advance(n.ships[3].cfg.timings.retry);
    assert_eq!(
        n.finals(2, 2),
        vec![format!("200 10.9.9.9:7000 conn={conn}")]
    );
    assert_eq!(n.finals(3, 1), vec![format!("200 conn={conn} client=bob")]);
}

/// The ticket and connection id of the connect ship 2 finished with the accept at ship
/// 3 (a fresh tree: the connect asks for `ttl` seconds).
fn a_match_across_the_tree(ttl: u64) -> (Net, Ticket, String) {
    let mut n = tree(true);
    n.open(3, 1);
    n.say(3, 1, "accept svc 10.9.9.9:7000 5");
    n.open(2, 2);
    n.say(2, 2, &format!("connect svc {ttl} bob"));
    let c = n.finals(2, 2);
    assert_eq!(c.len(), 1, "{c:?}");
    let conn = c[0].split("conn=").nth(1).unwrap().to_string();
    let (&ticket, _) = n.ships[2]
        .finished
        .iter()
        .find(|(_, c)| c.as_deref() == Some(conn.as_str()))
        .expect("the origin remembers the connect it finished");
    (n, ticket, conn)
}

/// A repeat of the offer of `conn` for `ticket` reaches the origin (ship 2) from the
/// root; its answer.
fn repeat_offer(n: &mut Net, ticket: Ticket, conn: &str) -> Vec<ShipMsg> {
    let offer = ShipMsg::Offer {
        ticket,
        conn: conn.to_string(),
        acceptor: "10.9.9.9:7000".into(),
        ttl_ms: 0,
    };
    arrive(n, 2, 0, &offer);
    sent_to(&mut n.ships[2], addr(0))
}

/// The origin remembers the connection a connect took for 40 × `retry` (10 s) after
/// the match, or until `offer_margin` + 4 × `retry` (2 s) past the connect's deadline if
/// that is later: a repeated offer is confirmed up to that instant and declined after.
/// (Guards `remember_finished`: 494:32 `retry * 40` → `/`, a memory gone 3 s early for
/// a 5 s connect; 493:44 `+ → -`, a memory that ends at the connect's deadline, before
/// the holder's last repeats; 493:54 `retry * 4` → `/`, one that outlasts the holder's
/// expiry by 62 ms only, too little for a repeat still on its way.)
#[test]
fn the_origin_remembers_a_taken_connection_until_its_memory_ends() {
    let step = Duration::from_millis(10);
    // A 5 s connect: 40 × retry after the match is the later end.
    let (mut n, ticket, conn) = a_match_across_the_tree(5);
    let t = n.ships[2].cfg.timings.clone();
    let confirm = ShipMsg::Confirm {
        ticket,
        conn: conn.clone(),
    };
    let decline = ShipMsg::Decline {
        ticket,
        conn: conn.clone(),
    };
    n.advance(t.retry * 40 - step);
    assert_eq!(repeat_offer(&mut n, ticket, &conn), vec![confirm.clone()]);
    n.advance(step * 2);
    assert_eq!(repeat_offer(&mut n, ticket, &conn), vec![decline.clone()]);

    // A 30 s connect: its deadline plus offer_margin + 4 × retry is the later end.
    let (mut n, ticket, conn) = a_match_across_the_tree(30);
    let confirm = ShipMsg::Confirm {
        ticket,
        conn: conn.clone(),
    };
    let decline = ShipMsg::Decline {
        ticket,
        conn: conn.clone(),
    };
    n.advance(Duration::from_secs(30) + t.offer_margin + t.retry * 4 - step);
    assert_eq!(repeat_offer(&mut n, ticket, &conn), vec![confirm]);
    n.advance(step * 2);
    assert_eq!(repeat_offer(&mut n, ticket, &conn), vec![decline]);
}

/// A relay whose onward connect was lost sends it on again when the origin's retry
/// passes through: the connect reaches the holder at the first retry.
/// (Guards `on_connect`'s `r.from == Hop::Here`, mutant 45:23: relays ignoring repeats.)
#[test]
fn a_relay_sends_a_lost_connect_on_again_at_the_origins_retry() {
    let mut n = tree(true);
    n.lose = |to, m| to == 1 && is_connect(m);
    n.open(3, 1);
    n.say(3, 1, "accept svc 10.9.9.9:7000 5");
    n.open(2, 2);
    n.say(2, 2, "connect svc 5 bob");
    assert!(n.finals(2, 2).is_empty(), "{:?}", n.finals(2, 2));
    n.lose = lose_nothing;
    let mark = n.sent.len();
    n.advance(n.ships[2].cfg.timings.retry);
    assert_eq!(
        hops_since(&n, mark, is_connect),
        vec![(2, 0), (0, 1), (1, 3)]
    );
    assert_matched_across(&n);
}

/// Ship 2's client 2 was matched with ship 3's accept (client 1), both told the same
/// connection id.
fn assert_matched_across(n: &Net) {
    let c = n.finals(2, 2);
    assert_eq!(c.len(), 1, "{c:?}");
    let conn = c[0]
        .strip_prefix("200 10.9.9.9:7000 conn=")
        .unwrap_or_else(|| panic!("{c:?}"));
    assert_eq!(n.finals(3, 1), vec![format!("200 conn={conn} client=bob")]);
}

/// A connect whose route carried an offer is fixed: the holder talks to the origin
/// along it, so the origin's retries send nothing more, even after the offer was
/// declined (it came with no time left).
/// (Guards `route_connect`'s `r.held.is_some() || r.offered`, mutant 91:29: an offered
/// connect sent up again at every retry.)
#[test]
fn an_offered_connect_is_not_sent_again_at_its_retries() {
    let (mut n, ticket, conn) = an_offer_lost_before_the_origin();
    let late = ShipMsg::Offer {
        ticket,
        conn: conn.clone(),
        acceptor: "10.9.9.9:7000".into(),
        ttl_ms: 0,
    };
    arrive(&mut n, 2, 0, &late);
    let decline = ShipMsg::Decline { ticket, conn };
    assert_eq!(sent_to(&mut n.ships[2], addr(0)), vec![decline.clone()]);
    arrive(&mut n, 0, 2, &decline);
    n.settle();
    assert_eq!(reserved_conn(&n.ships[3]), None);
    let mark = n.sent.len();
    n.advance(n.ships[2].cfg.timings.retry * 4);
    assert_eq!(hops_since(&n, mark, is_connect), vec![]);
    assert!(n.finals(2, 2).is_empty(), "{:?}", n.finals(2, 2));
}

/// A summary change re-routes only the connects parked or sent up at a ship, not one
/// already sent down to the child that holds its key (that child resends it itself if
/// it must): a new accept on another key below ship 1 makes the root send no connect.
/// (Guards `reevaluate_key`'s filter, mutants 167:62 and 167:82 `&& → ||`.)
#[test]
fn a_summary_change_does_not_resend_a_connect_already_sent_down() {
    let mut n = tree(true);
    // The connect reaches ship 1 and is lost on its way to ship 3.
    n.lose = |to, m| to == 3 && is_connect(m);
    n.open(3, 1);
    n.say(3, 1, "accept svc 10.9.9.9:7000 5");
    n.open(2, 2);
    n.say(2, 2, "connect svc 5 bob");
    assert!(n.finals(2, 2).is_empty(), "{:?}", n.finals(2, 2));
    let mark = n.sent.len();
    n.open(1, 3);
    n.say(1, 3, "accept other 10.9.9.8:7000 5");
    let summaries = hops_since(&n, mark, |m| matches!(m, ShipMsg::Summary { .. }));
    assert_eq!(summaries, vec![(1, 0)]);
    assert_eq!(hops_since(&n, mark, is_connect), vec![]);
    // The origin's retry resends it along its route, and it is matched.
    n.lose = lose_nothing;
    n.advance(n.ships[2].cfg.timings.retry);
    assert_eq!(
        hops_since(&n, mark, is_connect),
        vec![(2, 0), (0, 1), (1, 3)]
    );
    assert_matched_across(&n);
}

/// A connect for a key no summary holds goes only up, to the root, and parks there: it
/// is sent down no child whose summary lacks the key (nor answered NotHere by one).
/// (Guards `route_connect`'s child choice, mutant 126:21 `&& → ||`.)
#[test]
fn a_connect_goes_down_only_to_a_child_that_holds_its_key() {
    let mut n = tree(true);
    let mark = n.sent.len();
    n.open(3, 1);
    n.say(3, 1, "connect svc 5 bob");
    assert_eq!(hops_since(&n, mark, is_connect), vec![(3, 1), (1, 0)]);
    assert_eq!(hops_since(&n, mark, is_not_here), vec![]);
    assert!(n.finals(3, 1).is_empty(), "{:?}", n.finals(3, 1));
}

/// The root sends a connect down to ship 1 on a summary that is no longer true (ship
/// 3's accept was just taken by a local connect): ship 1, with no accept for the key
/// and no child that holds it, hands it back with one NotHere (never back up as a
/// connect) and keeps no route; the root parks it.
/// (Guards `route_connect`: 131:41 `parent.is_some() && from != Hop::Parent` → `||`, a
/// connect sent back up to the parent it came from, which sends it down again without
/// end, so the net never settles; 148:21 the NotHere guard → `false`, the parent left
/// thinking the child has it.)
#[test]
fn a_connect_sent_down_on_a_stale_summary_is_handed_back_once() {
    let mut n = tree(true);
    n.open(3, 1);
    n.say(3, 1, "accept svc 10.9.9.9:7000 5");
    n.open(3, 3);
    n.open(2, 2);
    let mark = n.sent.len();
    // Both at the same instant: ship 3's new summary and ship 2's connect cross.
    for (ship, client, line) in [(3, 3, "connect svc 5 carol"), (2, 2, "connect svc 5 bob")] {
        n.ships[ship]
            .handle(
                n.now,
                Input::ClientData(ClientId(client), request_line(line)),
            )
            .unwrap();
    }
    n.settle();
    n.assert_matched_here(3, (3, 1), "carol");
    assert_eq!(hops_since(&n, mark, is_connect), vec![(2, 0), (0, 1)]);
    assert_eq!(hops_since(&n, mark, is_not_here), vec![(1, 0)]);
    let ticket = waiting_connect(&n.ships[2]);
    assert!(
        !n.ships[1].routes.contains_key(&ticket),
        "ship 1 kept a route"
    );
    assert_eq!(n.ships[0].routes.get(&ticket).map(|r| r.to), Some(None));
}

/// A relay that has no route for an offer (it restarted) and no child that reports the
/// origin ship below it (its parent's picture of the subtrees was stale) drops the offer: it sends it neither back to the parent it came
/// from nor down a child whose subtree does not hold the origin.
/// (Guards `toward_ship`: 418:52 `&& → ||`, sent down the first other child; 423:32
/// `&& → ||`, sent back up.)
#[test]
fn a_relay_drops_an_offer_it_cannot_place() {
    let mut n = tree(true);
    let ticket = Ticket {
        origin: n.ships[2].id,
        seq: 7,
    };
    let offer = ShipMsg::Offer {
        ticket,
        conn: format!("{:016x}-1", n.ships[0].id),
        acceptor: "10.9.9.9:7000".into(),
        ttl_ms: 1000,
    };
    arrive(&mut n, 1, 0, &offer);
    let mut sent = Vec::new();
    while let Some(o) = n.ships[1].poll_output() {
        if let Output::Transmit(t) = o {
            sent.push((t.to, ShipMsg::decode(&t.frame).unwrap()));
        }
    }
    assert_eq!(sent, vec![]);
}

/// The check that only a connect's own ship remembers how it ended fires on a relay
/// that remembers one. (With `end_connect`'s `from == Hop::Here` turned to `!=`, mutant
/// 443:17, every relay a cancel passes remembers the connect and this check fails the
/// tests that cancel or expire a connect across the tree.)
#[test]
fn the_memory_check_fires_on_a_relay_that_remembers_a_connect() {
    let (mut n, ticket, _) = an_offer_lost_before_the_origin();
    n.close(2, 2);
    assert_eq!(n.ships[2].finished.get(&ticket), Some(&None));
    for relay in [0, 1] {
        n.ships[relay].check_invariants().unwrap();
        n.ships[relay].finished.insert(ticket, None);
        let e = n.ships[relay].check_invariants().unwrap_err();
        assert!(e.contains("a connect of another ship"), "{e}");
    }
}

/// As `a_relay_that_lost_the_route_passes_a_repeated_offer_to_the_origin`, in a tree
/// where the relay (ship 1) has a second child (ship 3) besides the holder (ship 4):
/// the holder's repeat goes up to the origin and the confirm down to the holder, never
/// into ship 3's subtree, which holds neither. (Guards `toward_ship`'s
/// `Hop::Child(**a) != from && c.subtree.contains(&ship)`, mutant 418:52 `&& → ||`.)
#[test]
fn a_relay_that_lost_the_route_passes_nothing_into_a_subtree_without_the_ship() {
    let mut n = Net::new(&[None, Some(0), Some(0), Some(1), Some(1)], true);
    n.advance(Duration::from_secs(1));
    n.lose = |to, m| to == 2 && matches!(m, ShipMsg::Offer { .. });
    n.open(4, 1);
    n.say(4, 1, "accept svc 10.9.9.9:7000 5");
    n.open(2, 2);
    n.say(2, 2, "connect svc 5 bob");
    assert!(n.finals(2, 2).is_empty(), "{:?}", n.finals(2, 2));
    let ticket = waiting_connect(&n.ships[2]);
    let conn = reserved_conn(&n.ships[4]).expect("ship 4 reserved its accept");
    n.lose = lose_nothing;
    assert!(n.ships[1].drop_route(ticket).is_some(), "ship 1 relayed");
    let mark = n.sent.len();
    n.advance(n.ships[4].cfg.timings.retry * 2);
    assert_eq!(
        n.finals(2, 2),
        vec![format!("200 10.9.9.9:7000 conn={conn}")]
    );
    assert_eq!(n.finals(4, 1), vec![format!("200 conn={conn} client=bob")]);
    // Ship 3 hears nothing of the match (its parent's beats aside).
    let to_3: Vec<&ShipMsg> = n.sent[mark..]
        .iter()
        .filter(|(_, j, m)| *j == 3 && !matches!(m, ShipMsg::Beat { .. }))
        .map(|(_, _, m)| m)
        .collect();
    assert!(to_3.is_empty(), "{to_3:?}");
}
