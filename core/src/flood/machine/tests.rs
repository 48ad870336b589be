//! Unit tests of the flood machine over a small in-memory network.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::*;
use crate::flood::bundle::{self, BundleItem};
use crate::flood::config::FloodConfig;
use crate::machine::{ClientOrigin, Output};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 7000))
}

/// A configuration of `n` sites `s1..sn` in one group `g` mastered by `s1`.
fn config(n: usize, k: u32, extra_group: &str, extra_local: &str) -> FloodConfig {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "(:site-define (:site-name s{}) (:inet-address 10.0.0.{}) (:client-port 7001) (:data-port 7000))\n",
            i + 1,
            i + 1
        ));
    }
    text.push_str("(:group-define (:group-name g) (:master-site s1)");
    for i in 0..n {
        text.push_str(&format!(" (:site s{})", i + 1));
    }
    text.push_str(&format!(
        " (:connectivity {k}) (:ping-period 1) (:bandwidth-period 5) (:estimates-period 2) (:join-period 2) (:update-period 30) (:digest-period 0.1) {extra_group})\n"
    ));
    let purge = if extra_local.contains("log-purge-period") {
        ""
    } else {
        "(:log-purge-period 60)"
    };
    text.push_str(&format!(
        "(:local (:export-command \"cat\") {purge} (:site-purge-period 600) {extra_local})\n"
    ));
    FloodConfig::parse(&text).unwrap()
}

fn settings(cfg: &FloodConfig, i: usize) -> FloodSettings {
    FloodSettings::from_config(cfg, &format!("s{}", i + 1), &mut |_| None).unwrap()
}

/// What a test does with export runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExportMode {
    Succeed,
    Fail,
    Hang,
}

struct Net {
    now: Instant,
    cfg: FloodConfig,
    sites: Vec<Option<Flood>>,
    /// Frames in flight: (arrives, to, from, frame).
    wire: VecDeque<(Instant, usize, SocketAddr, Frame)>,
    /// Links that drop everything (both ways).
    cut: BTreeSet<(usize, usize)>,
    latency: Duration,
    /// Every update each site exported, in order, over all its lives.
    exported: Vec<Vec<BundleItem>>,
    export: ExportMode,
    /// Export runs (and stores) waiting for their outcome: (done at, site, id, ok).
    effects: Vec<(Instant, usize, EffectId, bool)>,
    /// Sites keep a state file: each one's "disk", which survives its crash.
    durable: bool,
    disk: Vec<Option<Bytes>>,
    /// Effect ids that are stores.
    stores: BTreeSet<(usize, EffectId)>,
    /// How long a store takes.
    store_latency: Duration,
    events: Vec<Vec<FloodEvent>>,
    client_out: BTreeMap<ClientId, Vec<u8>>,
    closed: BTreeSet<ClientId>,
    seed: u64,
}

impl Net {
    fn new(cfg: FloodConfig, n: usize) -> Self {
        let mut net = Net {
            now: Instant::ZERO,
            cfg,
            sites: Vec::new(),
            wire: VecDeque::new(),
            cut: BTreeSet::new(),
            latency: Duration::from_millis(2),
            exported: vec![Vec::new(); n],
            export: ExportMode::Succeed,
            effects: Vec::new(),
            events: vec![Vec::new(); n],
            client_out: BTreeMap::new(),
            closed: BTreeSet::new(),
            seed: 1,
            durable: false,
            disk: vec![None; n],
            stores: BTreeSet::new(),
            store_latency: Duration::ZERO,
        };
        for i in 0..n {
            net.sites.push(None);
            net.start(i);
        }
        net.drain_all();
        net
    }

    /// A network of sites that keep state files.
    fn durable(cfg: FloodConfig, n: usize) -> Self {
        let mut net = Net::new(cfg, 0);
        net.durable = true;
        net.exported = vec![Vec::new(); n];
        net.events = vec![Vec::new(); n];
        net.disk = vec![None; n];
        for i in 0..n {
            net.sites.push(None);
            net.start(i);
        }
        net.drain_all();
        net
    }

    fn start(&mut self, i: usize) {
        self.seed += 1;
        let mut s = settings(&self.cfg, i);
        s.durable = self.durable;
        s.restore = self.disk[i]
            .as_ref()
            .map(|b| crate::flood::state::FloodState::decode(b).unwrap());
        self.sites[i] = Some(Flood::new(
            s,
            self.now,
            Rng::from_seed(self.seed * 7919 + i as u64),
        ));
    }

    fn crash(&mut self, i: usize) {
        self.sites[i] = None;
        self.effects.retain(|e| e.1 != i);
        self.stores.retain(|s| s.0 != i);
    }

    fn site(&self, i: usize) -> &Flood {
        self.sites[i].as_ref().unwrap()
    }

    fn index(&self, a: SocketAddr) -> Option<usize> {
        (0..self.sites.len()).find(|&i| addr(i) == a)
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        loop {
            let Some(m) = self.sites[i].as_mut() else {
                return;
            };
            let Some(out) = m.poll_output() else {
                return;
            };
            match out {
                Output::Transmit(t) => {
                    if let Some(to) = self.index(t.to)
                        && !self.cut.contains(&(i.min(to), i.max(to)))
                    {
                        self.wire
                            .push_back((now + self.latency, to, addr(i), t.frame));
                    }
                }
                Output::ToClient(c, b) => self.client_out.entry(c).or_default().extend(&b[..]),
                Output::CloseClient(c) => {
                    self.closed.insert(c);
                }
                Output::Event(e) => self.events[i].push(e),
                Output::Effect(r) => match r.effect {
                    FloodEffect::Export { bundle, .. } => {
                        let items = bundle::decode(&bundle).unwrap();
                        match self.export {
                            ExportMode::Succeed => {
                                self.exported[i].extend(items);
                                self.effects.push((now, i, r.id, true));
                            }
                            ExportMode::Fail => self.effects.push((now, i, r.id, false)),
                            ExportMode::Hang => {
                                let at = now + r.timeout.unwrap();
                                self.effects.push((at, i, r.id, false));
                            }
                        }
                    }
                    FloodEffect::Generate { .. } => panic!("no generator configured"),
                    FloodEffect::Store { state, .. } => {
                        assert!(self.durable, "a store without a state file");
                        self.disk[i] = Some(state);
                        self.stores.insert((i, r.id));
                        self.effects.push((now + self.store_latency, i, r.id, true));
                    }
                },
            }
        }
    }

    fn drain_all(&mut self) {
        for i in 0..self.sites.len() {
            self.drain(i);
        }
    }

    /// Runs until `until`, delivering frames and firing timers in time order.
    fn run_until(&mut self, until: Instant) {
        loop {
            let wire = self.wire.iter().map(|w| w.0).min();
            let timer = self
                .sites
                .iter()
                .filter_map(|s| s.as_ref()?.poll_timeout())
                .min();
            let effect = self.effects.iter().map(|e| e.0).min();
            let Some(next) = [wire, timer, effect].into_iter().flatten().min() else {
                self.now = until;
                return;
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            if let Some(k) = self.effects.iter().position(|e| e.0 <= now) {
                let (_, i, id, ok) = self.effects.remove(k);
                let outcome = if self.stores.remove(&(i, id)) {
                    Ok(FloodEffectValue::Stored)
                } else if ok {
                    Ok(FloodEffectValue::Exported)
                } else if self.export == ExportMode::Hang {
                    Err(EffectError::TimedOut(Duration::from_secs(60)))
                } else {
                    Err(EffectError::Failed("exit status 1".into()))
                };
                if let Some(m) = self.sites[i].as_mut() {
                    m.handle(now, Input::EffectDone { id, outcome }).unwrap();
                }
                self.drain(i);
                continue;
            }
            if let Some(k) = self.wire.iter().position(|w| w.0 <= now) {
                let (_, to, from, frame) = self.wire.remove(k).unwrap();
                if let Some(m) = self.sites[to].as_mut() {
                    let _ = m.handle(now, Input::Frame { from, frame });
                }
                self.drain(to);
                continue;
            }
            for i in 0..self.sites.len() {
                if let Some(m) = self.sites[i].as_mut()
                    && m.poll_timeout().is_some_and(|t| t <= now)
                {
                    m.handle_timeout(now);
                    self.drain(i);
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn flood(&mut self, i: usize, data: &str) -> u64 {
        let now = self.now;
        let m = self.sites[i].as_mut().unwrap();
        let seq = m.flood(now, None, Bytes::from(data.to_string())).unwrap();
        self.drain(i);
        seq
    }

    /// Updates site `i` exported, as (origin, seq, data).
    fn exports(&self, i: usize) -> Vec<(String, u64, String)> {
        self.exported[i]
            .iter()
            .filter_map(|it| match it {
                BundleItem::Update {
                    origin, seq, data, ..
                } => Some((
                    origin.clone(),
                    *seq,
                    String::from_utf8_lossy(data).into_owned(),
                )),
                BundleItem::Lost { .. } => None,
            })
            .collect()
    }

    fn payloads(&self) -> u64 {
        self.sites
            .iter()
            .flatten()
            .map(|s| s.stats().payloads_sent)
            .sum()
    }

    fn client(&mut self, i: usize, c: u64, local: bool) -> ClientId {
        let id = ClientId(c);
        let peer = if local {
            "127.0.0.1:5000"
        } else {
            "10.9.9.9:5000"
        };
        let origin = ClientOrigin::tcp(
            crate::machine::ListenerId(1),
            peer.parse().unwrap(),
            "127.0.0.1:7001".parse().unwrap(),
        );
        let now = self.now;
        self.sites[i]
            .as_mut()
            .unwrap()
            .handle(now, Input::ClientOpened { client: id, origin })
            .unwrap();
        self.drain(i);
        self.take(id);
        id
    }

    fn send(&mut self, i: usize, c: ClientId, bytes: &[u8]) -> String {
        let now = self.now;
        self.sites[i]
            .as_mut()
            .unwrap()
            .handle(now, Input::ClientData(c, Bytes::copy_from_slice(bytes)))
            .unwrap();
        self.drain(i);
        self.take(c)
    }

    fn take(&mut self, c: ClientId) -> String {
        String::from_utf8(self.client_out.remove(&c).unwrap_or_default()).unwrap()
    }
}

/// Every other site exports each update exactly once, and in tree mode each update is
/// sent n - 1 times.
#[test]
fn an_update_reaches_every_other_site_once_along_a_tree() {
    let n = 6;
    let mut net = Net::new(config(n, 3, "", ""), n);
    net.run_for(Duration::from_secs(2));
    for i in 0..n {
        assert_eq!(
            net.site(i).topology("g").unwrap().members.len(),
            n,
            "s{}",
            i + 1
        );
    }
    let before = net.payloads();
    let seq = net.flood(2, "hello");
    net.run_for(Duration::from_secs(1));
    assert_eq!(seq, 1);
    assert_eq!(
        net.payloads() - before,
        n as u64 - 1,
        "one payload per other site"
    );
    for i in 0..n {
        let want: Vec<(String, u64, String)> = if i == 2 {
            vec![]
        } else {
            vec![("s3".into(), 1, "hello".into())]
        };
        assert_eq!(net.exports(i), want, "s{}", i + 1);
    }
}

/// Plain flooding (the seed's) sends every update over every link but the one it came
/// by: 2|E| - n + 1 payloads, still exported once per site.
#[test]
fn plain_flooding_sends_over_every_link() {
    let n = 6;
    let mut net = Net::new(config(n, 3, "(:flooding plain)", ""), n);
    net.run_for(Duration::from_secs(2));
    let links = net.site(0).topology("g").unwrap().links.len() as u64;
    let before = net.payloads();
    net.flood(0, "x");
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.payloads() - before, 2 * links - n as u64 + 1);
    for i in 1..n {
        assert_eq!(net.exports(i).len(), 1, "s{}", i + 1);
    }
}

/// A site whose tree parent is down still gets the update: its other neighbours'
/// digests show it, and it pulls.
#[test]
fn a_failed_site_does_not_cut_off_the_rest() {
    let n = 8;
    let mut net = Net::new(config(n, 3, "", ""), n);
    net.run_for(Duration::from_secs(2));
    net.crash(4);
    net.run_for(Duration::from_secs(3));
    for k in 0..5 {
        net.flood(1, &format!("u{k}"));
    }
    net.run_for(Duration::from_secs(3));
    for i in (0..n).filter(|&i| i != 1 && i != 4) {
        assert_eq!(net.exports(i).len(), 5, "s{}: {:?}", i + 1, net.exports(i));
    }
}

/// A partition: updates flooded on one side are missing on the other; after the heal,
/// digests show them, they are reported missing and fetched, and exported once.
#[test]
fn a_partition_heals_with_gap_reports_and_recovery() {
    let n = 6;
    let mut net = Net::new(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(2));
    net.flood(0, "before");
    net.run_for(Duration::from_secs(1));
    // Cut every link between {s1 s2 s3} and {s4 s5 s6}.
    for a in 0..3 {
        for b in 3..6 {
            net.cut.insert((a, b));
        }
    }
    for k in 0..4 {
        net.flood(0, &format!("during{k}"));
    }
    net.run_for(Duration::from_secs(2));
    for i in 3..6 {
        assert_eq!(
            net.exports(i).len(),
            1,
            "s{} got only what came before",
            i + 1
        );
    }
    net.cut.clear();
    net.run_for(Duration::from_secs(3));
    for i in 1..6 {
        let got: Vec<String> = net.exports(i).into_iter().map(|e| e.2).collect();
        assert_eq!(got.len(), 5, "s{}: {got:?}", i + 1);
        let unique: BTreeSet<&String> = got.iter().collect();
        assert_eq!(
            unique.len(),
            5,
            "s{} exported something twice: {got:?}",
            i + 1
        );
    }
    let missing: u64 = (3..6).map(|i| net.site(i).stats().missing).sum();
    let recovered: u64 = (3..6).map(|i| net.site(i).stats().recovered).sum();
    assert!(missing >= 4, "missing {missing}");
    assert_eq!(missing, recovered);
    assert!(
        net.events[3]
            .iter()
            .any(|e| matches!(e, FloodEvent::Missing { .. }))
    );
}

/// What no neighbour holds any more is reported lost, to the export command too.
#[test]
fn updates_purged_everywhere_are_reported_lost() {
    let n = 4;
    let mut net = Net::new(config(n, 2, "", "(:log-purge-period 1)"), n);
    net.run_for(Duration::from_secs(2));
    // s4 knows the stream before it is cut off.
    net.flood(0, "first");
    net.run_for(Duration::from_millis(500));
    for a in [0, 1, 2] {
        net.cut.insert((a.min(3), a.max(3)));
    }
    for k in 0..3 {
        net.flood(0, &format!("u{k}"));
    }
    // Long enough for every holder to purge them.
    net.run_for(Duration::from_secs(4));
    net.cut.clear();
    net.run_for(Duration::from_secs(3));
    let lost: Vec<&BundleItem> = net.exported[3]
        .iter()
        .filter(|i| matches!(i, BundleItem::Lost { .. }))
        .collect();
    assert_eq!(
        lost,
        [&BundleItem::Lost {
            group: "g".into(),
            origin: "s1".into(),
            incarnation: net.site(0).incarnation(),
            from: 2,
            to: 4,
            reason: LostReason::Purged,
        }]
    );
    assert_eq!(net.site(3).stats().lost, 3);
    assert_eq!(net.exports(3).len(), 1);
}

/// Storage never holds more than data-storage-max; when the export command keeps
/// failing, the oldest waiting updates are dropped, counted and reported.
#[test]
fn storage_stays_within_its_bound_and_drops_in_order() {
    let n = 3;
    let max = 4 * (100 + store::ENTRY_OVERHEAD);
    let mut net = Net::new(config(n, 2, "", &format!("(:data-storage-max {max})")), n);
    net.run_for(Duration::from_secs(2));
    net.export = ExportMode::Fail;
    for k in 0..10 {
        net.flood(0, &format!("{k:0>100}"));
        net.run_for(Duration::from_millis(50));
        for i in 0..n {
            assert!(net.site(i).stored_bytes() <= max, "s{}", i + 1);
        }
    }
    net.run_for(Duration::from_secs(1));
    let s2 = net.site(1).stats().clone();
    assert_eq!(s2.delivered, 10);
    assert!(s2.dropped_unexported >= 5, "{s2:?}");
    assert!(s2.export_failures >= 1, "{s2:?}");
    // The export command works again: what is still stored is exported, and the drops
    // are reported to it.
    net.export = ExportMode::Succeed;
    net.run_for(Duration::from_secs(70));
    let exported = net.exports(1).len() as u64;
    assert_eq!(exported + s2.dropped_unexported, 10);
    assert!(net.exported[1].iter().any(|i| matches!(
        i,
        BundleItem::Lost {
            reason: LostReason::Storage,
            ..
        }
    )));
}

/// A hung export command is given up at its timeout, counted, and retried later with
/// the same updates.
#[test]
fn a_hung_export_is_timed_out_and_retried() {
    let n = 2;
    let mut net = Net::new(config(n, 1, "", "(:export-timeout 5)"), n);
    net.run_for(Duration::from_secs(2));
    net.export = ExportMode::Hang;
    net.flood(0, "x");
    net.run_for(Duration::from_secs(6));
    assert_eq!(net.site(1).stats().export_timeouts, 1);
    net.export = ExportMode::Succeed;
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.exports(1), [("s1".to_string(), 1, "x".to_string())]);
}

/// A master that restarts rebuilds its group from the join requests.
#[test]
fn a_restarted_master_rebuilds_the_group_from_joins() {
    let n = 5;
    let mut net = Net::new(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(2));
    // A site the master's file does not list joins by asking.
    net.crash(0);
    net.run_for(Duration::from_secs(1));
    net.start(0);
    net.drain(0);
    net.run_for(Duration::from_secs(5));
    let t = net.site(2).topology("g").unwrap();
    assert_eq!(t.master_incarnation, net.site(0).incarnation());
    assert_eq!(t.members.len(), n);
    net.flood(4, "after");
    net.run_for(Duration::from_secs(1));
    for i in 0..4 {
        assert_eq!(net.exports(i).len(), 1, "s{}", i + 1);
    }
}

/// A site that restarts (without state) does not export again what it exported before:
/// it takes streams from their next update on.
#[test]
fn a_restarted_site_does_not_export_again() {
    let n = 4;
    let mut net = Net::new(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(2));
    for k in 0..3 {
        net.flood(0, &format!("u{k}"));
    }
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.exports(2).len(), 3);
    net.crash(2);
    net.run_for(Duration::from_millis(300));
    net.start(2);
    net.drain(2);
    net.run_for(Duration::from_secs(3));
    net.flood(0, "new");
    net.run_for(Duration::from_secs(1));
    let got: Vec<String> = net.exports(2).into_iter().map(|e| e.2).collect();
    assert_eq!(got, ["u0", "u1", "u2", "new"]);
}

/// The client port, as a person at telnet uses it.
#[test]
fn the_client_port_answers_every_command() {
    let n = 3;
    let mut net = Net::new(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(2));
    let c = net.client(1, 1, true);
    let help = net.send(1, c, b"HELP\r\n");
    assert!(
        help.starts_with("214-help") && help.ends_with("214 end of help\n"),
        "{help}"
    );
    assert_eq!(
        net.send(1, c, b"groups\n"),
        "250-g master=s1 members=3 mode=tree\n250 1 groups\n"
    );
    let group = net.send(1, c, b"group g\n");
    assert!(
        group.contains("250-s2 10.0.0.2:7000 client=7001 self\n"),
        "{group}"
    );
    assert!(group.ends_with("250 3 sites in g\n"), "{group}");
    assert_eq!(
        net.send(1, c, b"data\n"),
        "354 send the data; end it with a line holding a single \".\"\n"
    );
    let done = net.send(1, c, b"line one\r\n..dot\n.\n");
    assert!(done.starts_with("250 flooded to g as s2 "), "{done}");
    assert!(done.ends_with(" 1 (14 bytes)\n"), "{done}");
    let bin = net.send(1, c, b"binary 5 g\n\x00\n.\n\xff");
    assert!(bin.ends_with(" 2 (5 bytes)\n"), "{bin}");
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.exported[0].len(), 2);
    let BundleItem::Update { data, .. } = &net.exported[0][0] else {
        panic!()
    };
    assert_eq!(&data[..], b"line one\n.dot\n");
    let BundleItem::Update { data, .. } = &net.exported[0][1] else {
        panic!()
    };
    assert_eq!(&data[..], b"\x00\n.\n\xff");
    let stats = net.send(1, c, b"statistics\n");
    assert!(stats.contains("211-originated 2\n"), "{stats}");
    let topo = net.send(1, c, b"topology\n");
    assert!(
        topo.starts_with("250-group g version 1 master s1 members 3\n"),
        "{topo}"
    );
    let near = net.send(1, c, b"nearest\n");
    assert!(
        near.starts_with("250-s2 10.0.0.2:7001 rtt=0.000ms (this daemon)\n"),
        "{near}"
    );
    assert_eq!(
        net.send(1, c, b"frobnicate\n"),
        "500 unknown command 'frobnicate' (try help)\n"
    );
    let bad = net.send(1, c, b"group nosuch\n");
    assert!(bad.starts_with("501 no group nosuch here"), "{bad}");
    assert!(
        !net.closed.contains(&c),
        "errors leave the connection usable"
    );
    assert_eq!(net.send(1, c, b"gaps\n"), "250 0 gaps in g\n");
    let remote = net.client(1, 2, false);
    assert_eq!(
        net.send(1, remote, b"terminate\n"),
        "530 terminate is accepted only from a client on the daemon's host\n"
    );
    assert_eq!(net.send(1, c, b"quit\n"), "221 bye\n");
    assert!(net.closed.contains(&c));
    let local = net.client(1, 3, true);
    assert_eq!(net.send(1, local, b"terminate\n"), "221 terminating\n");
    assert!(net.events[1].contains(&FloodEvent::Terminate));
}

/// A client that leaves a line unfinished is closed after the timeout, with a reason.
#[test]
fn an_unfinished_line_is_closed() {
    let mut net = Net::new(config(2, 1, "", ""), 2);
    let c = net.client(0, 1, true);
    assert_eq!(net.send(0, c, b"gro"), "");
    net.run_for(Duration::from_secs(31));
    assert_eq!(
        net.take(c),
        "421 input left unfinished for 30.0s: closing the connection\n"
    );
    assert!(net.closed.contains(&c));
}

/// An update larger than the limit is refused; binary past the limit closes.
#[test]
fn oversized_updates_are_refused() {
    let mut net = Net::new(config(2, 1, "", ""), 2);
    let c = net.client(0, 1, true);
    let max = crate::flood::MAX_UPDATE_BYTES;
    let r = net.send(0, c, format!("binary {}\n", max + 1).as_bytes());
    assert!(r.starts_with("552 "), "{r}");
    assert!(net.closed.contains(&c));
}

/// The canary's bug (an update pulled after it arrived is exported again) is real: a
/// duplicate pulled copy leads to a second export.
#[test]
fn the_canary_exports_a_pulled_duplicate_again() {
    let cfg = config(2, 1, "", "");
    let mut s = settings(&cfg, 1);
    s.canary_duplicate_export = true;
    let mut m = Flood::new(s, Instant::ZERO, Rng::from_seed(3));
    let topo = FloodMsg::Topology {
        group: "g".into(),
        master_incarnation: 9,
        version: 1,
        members: settings(&cfg, 0).sites.clone(),
        links: vec![(0, 1, 10)],
    };
    let t = Instant::from_millis(10);
    m.handle(
        t,
        Input::Frame {
            from: addr(0),
            frame: topo.to_frame(),
        },
    )
    .unwrap();
    let update = |pulled| FloodMsg::Update {
        group: "g".into(),
        origin: "s1".into(),
        incarnation: 5,
        seq: 1,
        data: Bytes::from_static(b"x"),
        pulled,
    };
    let mut exports = 0;
    for (k, pulled) in [(1, false), (2, true)] {
        let now = Instant::from_millis(10 + k * 100);
        m.handle(
            now,
            Input::Frame {
                from: addr(0),
                frame: update(pulled).to_frame(),
            },
        )
        .unwrap();
        while let Some(o) = m.poll_output() {
            if let Output::Effect(r) = o {
                exports += 1;
                m.handle(
                    now,
                    Input::EffectDone {
                        id: r.id,
                        outcome: Ok(FloodEffectValue::Exported),
                    },
                )
                .unwrap();
            }
        }
    }
    assert_eq!(exports, 2);
}

/// Frames that do not decode, or name another family, are refused with a typed error
/// and leave the machine as it was.
#[test]
fn bad_frames_are_refused() {
    let cfg = config(2, 1, "", "");
    let mut m = Flood::new(settings(&cfg, 1), Instant::ZERO, Rng::from_seed(3));
    let bad = Frame::new(crate::wire::Kind(0x0308), Bytes::from_static(b"\x00\x00"));
    assert!(matches!(
        m.handle(
            Instant::ZERO,
            Input::Frame {
                from: addr(0),
                frame: bad
            }
        ),
        Err(FloodError::Decode(_))
    ));
    let other = Frame::new(crate::wire::Kind(0x0201), Bytes::new());
    assert!(matches!(
        m.handle(
            Instant::ZERO,
            Input::Frame {
                from: addr(0),
                frame: other
            }
        ),
        Err(FloodError::Family(_))
    ));
    assert_eq!(m.stats().bad_frames, 2);
}

#[test]
fn export_backoff_doubles_up_to_its_cap() {
    let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
    let got: Vec<u64> = (1..=8)
        .map(|f| store::backoff(min, max, f).as_secs())
        .collect();
    assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60]);
}

#[test]
fn missing_ranges_of_a_stream() {
    let mut s = Stream::new(1, Instant::ZERO);
    for q in [1, 2, 5, 6, 9] {
        s.arrive(q);
    }
    s.known = 12;
    assert_eq!(s.missing_ranges(10), [(3, 4), (7, 8), (10, 12)]);
    assert_eq!(s.missing_ranges(1), [(3, 4)]);
    s.arrive(3);
    s.arrive(4);
    assert_eq!(s.through, 6);
    assert!(s.is_missing_any());
}

/// Finding 3 of issue 16: a site down long enough for its neighbours to classify it
/// down comes back, and updates are flooded right after it adopts its topology — before
/// its neighbours push to it again. It gets every one of them (its neighbours tell it
/// where each stream stood when it joined), and does not export again what it exported
/// before.
#[test]
fn a_restarted_site_gets_what_was_flooded_right_after_it_rejoined() {
    let n = 4;
    let mut net = Net::new(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(2));
    for k in 0..3 {
        net.flood(0, &format!("before{k}"));
        net.flood(1, &format!("b-before{k}"));
    }
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.exports(2).len(), 6);
    net.crash(2);
    // Neighbours classify it down (12 digest periods) and stop pushing to it.
    net.run_for(Duration::from_secs(3));
    for k in 0..3 {
        net.flood(0, &format!("down{k}"));
    }
    net.run_for(Duration::from_secs(1));
    net.start(2);
    net.drain(2);
    while net.site(2).topology("g").is_none() {
        net.run_for(Duration::from_millis(1));
    }
    // Flooded while the neighbours still take it for down, as fast as they come.
    let mut after = Vec::new();
    for k in 0..5 {
        let text = format!("after{k}");
        net.flood(0, &text);
        after.push(text);
        let text = format!("b-after{k}");
        net.flood(1, &text);
        after.push(text);
        net.run_for(Duration::from_millis(1));
    }
    net.run_for(Duration::from_secs(4));
    let got: Vec<String> = net.exports(2).into_iter().map(|e| e.2).collect();
    for text in &after {
        assert!(got.contains(text), "s3 never exported {text}: {got:?}");
    }
    let mut seen = BTreeSet::new();
    for text in &got {
        assert!(seen.insert(text), "s3 exported {text} twice: {got:?}");
    }
    assert_eq!(net.site(2).stats().lost, 0);
}

/// The start a neighbour gives a site that just joined: one past what it knew then.
#[test]
fn a_streams_history_says_what_was_known_when() {
    let t = |ms: u64| Instant::ZERO + Duration::from_millis(ms);
    let (grain, horizon) = (Duration::from_millis(10), Duration::from_secs(1));
    let mut s = Stream::new(1, t(0));
    for (ms, seq) in [(100, 1), (102, 2), (104, 3), (150, 4)] {
        s.arrive(seq);
        s.note_known(t(ms), grain, horizon);
    }
    // Within a grain the latest entry moves: 2 at 102 ms was folded into 3 at 104 ms,
    // so between them the answer falls back to what is certain.
    assert_eq!(s.known_at(t(99)), Some(0));
    assert_eq!(s.known_at(t(103)), Some(1));
    assert_eq!(s.known_at(t(104)), Some(3));
    assert_eq!(s.known_at(t(1999)), Some(4));
    s.arrive(5);
    s.note_known(t(2000), grain, horizon);
    assert_eq!(s.known_at(t(2000)), Some(5));
    // Pruned past the horizon, the newest older entry kept as a floor.
    assert_eq!(s.history.front().copied(), Some((t(150), 4)));
    assert_eq!(s.known_at(t(149)), None);
    // Lowering the base keeps what arrived and makes the rest missing.
    let mut s = Stream::new(5, t(0));
    s.arrive(5);
    s.arrive(6);
    s.arrive(8);
    s.lower_base(2);
    assert_eq!((s.base, s.through, s.known), (2, 1, 8));
    assert_eq!(s.missing_ranges(10), [(2, 4), (7, 7)]);
}

/// Sets up a site (s4) whose neighbours say, in their digests, that they passed updates
/// of `origin` 1..=3 without holding them; returns the neighbours.
fn passed_not_held(net: &mut Net, origin: usize, incarnation: u64) -> Vec<usize> {
    let t = net.site(3).topology("g").unwrap();
    let neighbours: Vec<usize> = t
        .links
        .iter()
        .filter_map(|(a, b, _)| match (a.as_str(), b.as_str()) {
            ("s4", o) | (o, "s4") => Some(o[1..].parse::<usize>().unwrap() - 1),
            _ => None,
        })
        .collect();
    assert!(
        !neighbours.contains(&origin),
        "the origin must not be a neighbour"
    );
    for &nb in &neighbours {
        net.cut.insert((nb.min(3), nb.max(3)));
    }
    let digest = FloodMsg::Digest {
        group: "g".into(),
        full: false,
        want_full: false,
        joined_us: 0,
        entries: vec![super::super::msg::DigestEntry {
            origin: format!("s{}", origin + 1),
            incarnation,
            low: 4,
            through: 3,
        }],
    };
    let now = net.now;
    for &nb in &neighbours {
        let m = net.sites[3].as_mut().unwrap();
        m.handle(
            now,
            Input::Frame {
                from: addr(nb),
                frame: digest.to_frame(),
            },
        )
        .unwrap();
    }
    net.drain(3);
    neighbours
}

fn lost_events(net: &Net, i: usize) -> Vec<(u64, u64, LostReason)> {
    net.events[i]
        .iter()
        .filter_map(|e| match e {
            FloodEvent::Lost {
                from, to, reason, ..
            } => Some((*from, *to, *reason)),
            _ => None,
        })
        .collect()
}

/// Finding 3 of issue 16, downstream: neighbours that passed updates without holding
/// them (a site that joined after them, or dropped them) are not the origin's log. The
/// site asks the origin, and gets the updates it still stores.
#[test]
fn updates_no_neighbour_holds_are_pulled_from_their_origin() {
    let n = 4;
    let mut net = Net::new(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(2));
    let t = net.site(3).topology("g").unwrap();
    let Some(origin) = (0..3).find(|&o| {
        !t.links.iter().any(|(a, b, _)| {
            let o = format!("s{}", o + 1);
            (a == "s4" && *b == o) || (b == "s4" && *a == o)
        })
    }) else {
        panic!("every site is s4's neighbour in {t:?}: nothing to show");
    };
    // s4 is cut off from its neighbours; the origin floods three updates.
    let incarnation = net.site(origin).incarnation();
    let _ = passed_not_held(&mut net, origin, incarnation);
    for k in 0..3 {
        net.flood(origin, &format!("u{k}"));
    }
    net.run_for(Duration::from_millis(50));
    // Only the (injected) digests reached s4: its neighbours passed 1..=3, hold none.
    let _ = passed_not_held(&mut net, origin, incarnation);
    net.run_for(Duration::from_secs(2));
    assert_eq!(lost_events(&net, 3), []);
    let got: Vec<String> = net.exports(3).into_iter().map(|e| e.2).collect();
    assert_eq!(got, ["u0", "u1", "u2"]);
}

/// What the origin itself no longer stores is lost — and only once it said so: while it
/// cannot be reached, the updates stay missing.
#[test]
fn updates_are_reported_purged_on_the_origins_word_only() {
    let n = 4;
    let mut net = Net::new(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(2));
    let t = net.site(3).topology("g").unwrap();
    let Some(origin) = (0..3).find(|&o| {
        !t.links.iter().any(|(a, b, _)| {
            let o = format!("s{}", o + 1);
            (a == "s4" && *b == o) || (b == "s4" && *a == o)
        })
    }) else {
        panic!("every site is s4's neighbour in {t:?}: nothing to show");
    };
    // A stream of an incarnation the origin does not run (it restarted): it stores
    // nothing of it. The origin cannot be reached at first.
    net.cut.insert((origin.min(3), origin.max(3)));
    let neighbours = passed_not_held(&mut net, origin, 77);
    net.run_for(Duration::from_millis(600));
    let _ = passed_not_held(&mut net, origin, 77);
    net.run_for(Duration::from_millis(600));
    assert_eq!(lost_events(&net, 3), [], "lost on the neighbours' word");
    assert!(net.site(3).stats().missing >= 3);
    // The origin is reachable again: it says it stores none of them.
    net.cut.clear();
    for &nb in &neighbours {
        net.cut.insert((nb.min(3), nb.max(3)));
    }
    let _ = passed_not_held(&mut net, origin, 77);
    net.run_for(Duration::from_secs(3));
    assert_eq!(lost_events(&net, 3), [(1, 3, LostReason::Purged)]);
}

/// Site 1 of three, consistent, its first window closed, after one update flooded from
/// site 0 (the key of that stream), taken out of its net to be corrupted.
fn a_site_past_its_first_window() -> (Flood, StreamKey) {
    let n = 3;
    let mut net = Net::new(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(4));
    net.flood(0, "x");
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.site(1).check_invariants(), Ok(()));
    let key = StreamKey {
        origin: "s1".into(),
        incarnation: net.site(0).incarnation(),
    };
    (net.sites[1].take().unwrap(), key)
}

/// The first window's checks fire: a stream still waiting to be settled, or starts
/// still remembered, after the window closed.
#[test]
fn first_window_checks_fire_on_a_corrupted_state() {
    let (mut m, key) = a_site_past_its_first_window();
    let g = m.groups.get_mut("g").unwrap();
    assert!(!g.fresh);
    g.streams.get_mut(&key).unwrap().provisional = true;
    let e = m.check_invariants().unwrap_err();
    assert!(e.contains("first window"), "{e}");
    let g = m.groups.get_mut("g").unwrap();
    g.streams.get_mut(&key).unwrap().provisional = false;
    g.starts.insert(key, 1);
    let e = m.check_invariants().unwrap_err();
    assert!(e.contains("starts remembered"), "{e}");
}

/// The check on a neighbour's marks fires on a range no digest could carry: a start past
/// everything it has and one more (an eviction that moved it too far).
#[test]
fn a_neighbours_marks_past_its_stream_are_caught() {
    let (mut m, _) = a_site_past_its_first_window();
    let g = m.groups.get_mut("g").unwrap();
    let (low, through) = g
        .neighbours
        .values_mut()
        .find_map(|nb| nb.marks.values_mut().next())
        .expect("a neighbour's digest gave marks");
    *low = *through + 2;
    let e = m.check_invariants().unwrap_err();
    assert!(e.contains("are no range"), "{e}");
}

fn lost_items(net: &Net, i: usize) -> Vec<(u64, u64, LostReason)> {
    net.exported[i]
        .iter()
        .filter_map(|it| match it {
            BundleItem::Lost {
                from, to, reason, ..
            } => Some((*from, *to, *reason)),
            BundleItem::Update { .. } => None,
        })
        .collect()
}

/// Finding 4 of issue 16: updates accepted and waiting for the export command survive a
/// crash with a state file; the site resumes every stream where it stood, so it also
/// gets what was flooded while it was down; nothing is exported twice.
#[test]
fn a_crashed_site_resumes_its_waiting_exports_from_its_state_file() {
    let n = 3;
    let mut net = Net::durable(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(2));
    net.flood(0, "u0");
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.exports(1).len(), 1);
    // The export command fails: four updates wait at s2.
    net.export = ExportMode::Fail;
    for k in 1..5 {
        net.flood(0, &format!("u{k}"));
    }
    net.run_for(Duration::from_millis(1500));
    assert_eq!(net.exports(1).len(), 1);
    net.crash(1);
    net.export = ExportMode::Succeed;
    for k in 5..8 {
        net.flood(0, &format!("u{k}"));
    }
    net.run_for(Duration::from_secs(1));
    net.start(1);
    net.drain(1);
    net.run_for(Duration::from_secs(4));
    let got: Vec<String> = net.exports(1).into_iter().map(|e| e.2).collect();
    let want: Vec<String> = (0..8).map(|k| format!("u{k}")).collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, want, "exported {got:?}");
    assert_eq!(lost_items(&net, 1), []);
}

/// A crash while an export run is in flight: the state file names its updates as in a
/// run, so after the restart they are reported lost (interrupted), never offered again.
#[test]
fn updates_in_a_run_at_a_crash_are_reported_interrupted() {
    let n = 3;
    let mut net = Net::durable(config(n, 2, "", "(:export-timeout 30)"), n);
    net.run_for(Duration::from_secs(2));
    net.export = ExportMode::Hang;
    for k in 0..3 {
        net.flood(0, &format!("u{k}"));
        net.run_for(Duration::from_millis(1));
    }
    net.run_for(Duration::from_millis(500));
    net.crash(1);
    net.export = ExportMode::Succeed;
    net.start(1);
    net.drain(1);
    net.run_for(Duration::from_secs(3));
    let exported: Vec<String> = net.exports(1).into_iter().map(|e| e.2).collect();
    let lost = lost_items(&net, 1);
    let lost_count: u64 = lost.iter().map(|(a, b, _)| b - a + 1).sum();
    assert!(
        lost.iter().all(|l| l.2 == LostReason::Interrupted),
        "{lost:?}"
    );
    assert!(lost_count >= 1, "the hung run held something: {lost:?}");
    assert_eq!(
        exported.len() as u64 + lost_count,
        3,
        "{exported:?} {lost:?}"
    );
    assert_eq!(net.site(1).stats().lost, lost_count);
}

/// Stopping without a state file drains the exports first; with a failing command it
/// says it may stop at once (what is left is for the daemon to report).
#[test]
fn a_stop_drains_exports_then_says_stopped() {
    let n = 2;
    let mut net = Net::new(config(n, 1, "", ""), n);
    net.run_for(Duration::from_secs(2));
    net.export = ExportMode::Hang;
    net.flood(0, "a");
    net.run_for(Duration::from_millis(100));
    net.export = ExportMode::Succeed;
    net.flood(0, "b");
    net.run_for(Duration::from_millis(10));
    let now = net.now;
    let m = net.sites[1].as_mut().unwrap();
    m.handle(now, Input::Command(FloodCommand::Stop { drain: true }))
        .unwrap();
    net.drain(1);
    let stopped = |net: &Net| net.events[1].contains(&FloodEvent::Stopped);
    assert!(!stopped(&net), "stopped with a run in flight");
    // The hung run times out (60 s), then everything waiting goes.
    net.run_for(Duration::from_secs(65));
    assert!(stopped(&net));
    let (left, lost) = net.site(1).unexported();
    assert!(left.is_empty() && lost == 0, "{left:?} {lost}");
    assert_eq!(net.exports(1).len(), 2);
    // A failing command: stopped as soon as the run is over, the update left.
    net.export = ExportMode::Fail;
    net.flood(0, "c");
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.site(1).unexported().0.len(), 1);
}

/// With a state file, a stop lets the run in flight finish and starts no other; the
/// final state holds what waits (a killed run's updates as waiting, not in doubt).
#[test]
fn a_stop_with_a_state_file_keeps_what_waits() {
    let n = 2;
    let mut net = Net::durable(config(n, 1, "", ""), n);
    net.run_for(Duration::from_secs(2));
    net.export = ExportMode::Hang;
    net.flood(0, "a");
    net.run_for(Duration::from_millis(100));
    net.flood(0, "b");
    net.run_for(Duration::from_millis(100));
    let now = net.now;
    let m = net.sites[1].as_mut().unwrap();
    m.handle(now, Input::Command(FloodCommand::Stop { drain: false }))
        .unwrap();
    net.drain(1);
    assert!(!net.events[1].contains(&FloodEvent::Stopped));
    // The daemon gives up waiting: its driver drops the run; the final state has both
    // updates waiting.
    let state = net.sites[1].as_mut().unwrap().final_state();
    let st = crate::flood::state::FloodState::decode(&state).unwrap();
    let waiting: Vec<(u64, bool)> = st.groups[0]
        .waiting
        .iter()
        .map(|u| (u.seq, u.in_run))
        .collect();
    assert_eq!(waiting, [(1, false), (2, false)]);
    net.crash(1);
    net.disk[1] = Some(state);
    net.export = ExportMode::Succeed;
    net.start(1);
    net.drain(1);
    net.run_for(Duration::from_secs(2));
    let got: Vec<String> = net.exports(1).into_iter().map(|e| e.2).collect();
    assert_eq!(got, ["a", "b"]);
}

/// The check that a staged export run has a state file to wait for fires.
#[test]
fn a_staged_run_without_a_state_file_is_caught() {
    let n = 2;
    let mut net = Net::durable(config(n, 1, "", ""), n);
    net.run_for(Duration::from_secs(2));
    net.store_latency = Duration::from_secs(1);
    net.flood(0, "a");
    // Delivered and staged, its store asked for but not yet done.
    net.run_for(Duration::from_millis(100));
    assert!(net.site(1).staged_run_needs().is_some());
    assert_eq!(net.site(1).check_invariants(), Ok(()));
    let mut m = net.sites[1].take().unwrap();
    m.durable = None;
    m.timers.cancel(&Timer::State);
    let e = m.check_invariants().unwrap_err();
    assert!(e.contains("state file"), "{e}");
}

/// A neighbour that says it no longer holds a range of a stream: what it is believed to
/// hold starts right past the range — not at its last update, which it no longer has
/// either — and never past what it has (a range beyond it empties it); a range that
/// does not cover the oldest it holds changes nothing. Taken at the edges.
#[test]
fn an_evicted_range_moves_a_neighbours_marks_just_past_it() {
    let n = 3;
    let mut net = Net::new(config(n, 2, "", ""), n);
    net.run_for(Duration::from_secs(2));
    let mut m = net.sites[1].take().unwrap();
    let sender = m.groups["g"]
        .neighbours
        .keys()
        .next()
        .expect("s2 has a neighbour")
        .clone();
    let from = addr(sender[1..].parse::<usize>().unwrap() - 1);
    let key = StreamKey {
        origin: "s9".into(),
        incarnation: 5,
    };
    let now = net.now;
    for (held, evicted, after) in [
        ((1, 10), (1, 5), (6, 10)),
        ((1, 10), (1, 1), (2, 10)),
        ((4, 10), (1, 4), (5, 10)),
        ((4, 10), (5, 7), (4, 10)),
        ((1, 10), (1, 10), (11, 10)),
        ((1, 10), (1, 30), (11, 10)),
    ] {
        m.groups
            .get_mut("g")
            .unwrap()
            .neighbours
            .get_mut(&sender)
            .unwrap()
            .marks
            .insert(key.clone(), held);
        let msg = FloodMsg::Evicted {
            group: "g".into(),
            origin: key.origin.clone(),
            incarnation: key.incarnation,
            ranges: vec![evicted],
        };
        m.handle(
            now,
            Input::Frame {
                from,
                frame: msg.to_frame(),
            },
        )
        .unwrap();
        let marks = m.groups["g"].neighbours[&sender].marks[&key];
        assert_eq!(
            marks, after,
            "{sender} held {held:?} and evicted {evicted:?}"
        );
    }
}

/// An update of exactly `max_update` bytes is flooded (and arrives whole); one byte
/// more is refused with the sizes, and takes no sequence number.
/// Guards `data.len() > max` in `Flood::flood` (mutants `>=` and `==`).
#[test]
fn an_update_of_exactly_the_limit_is_flooded_one_byte_more_is_refused() {
    let mut net = Net::new(config(2, 1, "", ""), 2);
    net.run_for(Duration::from_secs(2));
    let max = net.site(0).cfg.limits.reader.max_update;
    let now = net.now;
    let m = net.sites[0].as_mut().unwrap();
    assert_eq!(m.flood(now, None, Bytes::from(vec![b'a'; max])), Ok(1));
    assert_eq!(
        m.flood(now, None, Bytes::from(vec![b'b'; max + 1])),
        Err(FloodError::TooLarge { size: max + 1, max })
    );
    assert_eq!(m.flood(now, None, Bytes::from_static(b"c")), Ok(2));
    net.drain(0);
    net.run_for(Duration::from_secs(1));
    let got: Vec<(u64, usize)> = net.exported[1]
        .iter()
        .filter_map(|it| match it {
            BundleItem::Update { seq, data, .. } => Some((*seq, data.len())),
            BundleItem::Lost { .. } => None,
        })
        .collect();
    assert_eq!(got, [(1, max), (2, 1)]);
}

/// Site s2 of five in plain mode, every site its neighbour, taken out of its net once
/// every neighbour has been heard: `(machine, now)`.
fn a_plain_site_with_four_neighbours() -> (Flood, Instant) {
    let n = 5;
    let mut net = Net::new(config(n, 4, "(:flooding plain)", ""), n);
    net.run_for(Duration::from_secs(2));
    let m = net.sites[1].take().unwrap();
    let neighbours: Vec<&str> = m.groups["g"]
        .neighbours
        .keys()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(neighbours, ["s1", "s3", "s4", "s5"]);
    assert!(m.groups["g"].neighbours.values().all(|n| n.heard.is_some()));
    (m, net.now)
}

/// Hands `m` a frame from site `from` (an index) and returns the updates it sent, as
/// (to site index, seq, pulled).
fn updates_sent_on(
    m: &mut Flood,
    now: Instant,
    from: usize,
    msg: &FloodMsg,
) -> Vec<(usize, u64, bool)> {
    m.handle(
        now,
        Input::Frame {
            from: addr(from),
            frame: msg.to_frame(),
        },
    )
    .unwrap();
    let mut sent = Vec::new();
    while let Some(o) = m.poll_output() {
        if let Output::Transmit(t) = o
            && let Ok(FloodMsg::Update { seq, pulled, .. }) = FloodMsg::decode(&t.frame)
        {
            let to = (0..8).find(|&i| addr(i) == t.to).unwrap();
            sent.push((to, seq, pulled));
        }
    }
    sent.sort();
    sent
}

fn update_msg(origin: &str, incarnation: u64, seq: u64, pulled: bool) -> FloodMsg {
    FloodMsg::Update {
        group: "g".into(),
        origin: origin.into(),
        incarnation,
        seq,
        data: Bytes::from_static(b"x"),
        pulled,
    }
}

/// A pushed update goes on to every neighbour but its sender and its origin, whatever
/// their digests show; a pulled one only to those whose digests do not show it (their
/// `through` below it), taken at the edge `through == seq`. Forwarded copies are never
/// marked pulled.
/// Guards the pulled filter in `Flood::forward` (mutants: `!` deleted, `||` to `&&`,
/// `through < seq` to `==`, `>`, `<=`).
#[test]
fn a_pulled_update_goes_on_only_to_neighbours_whose_digests_do_not_show_it() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    let key = StreamKey {
        origin: "s1".into(),
        incarnation: 77,
    };
    let set_marks = |m: &mut Flood, marks: (u64, u64)| {
        m.groups
            .get_mut("g")
            .unwrap()
            .neighbours
            .get_mut("s4")
            .unwrap()
            .marks
            .insert(key.clone(), marks);
    };
    // s4 showed all of 1..=10; s5 showed nothing.
    set_marks(&mut m, (1, 10));
    // From s3: pushed, to s4 and s5 (never back to s3, never to the origin s1).
    let sent = updates_sent_on(&mut m, now, 2, &update_msg("s1", 77, 3, false));
    assert_eq!(sent, [(3, 3, false), (4, 3, false)]);
    // Pulled, shown by s4: to s5 only.
    let sent = updates_sent_on(&mut m, now, 2, &update_msg("s1", 77, 4, true));
    assert_eq!(sent, [(4, 4, false)]);
    // s4 showed through 5: the pulled 5 is shown, the pulled 6 is not.
    set_marks(&mut m, (1, 5));
    let sent = updates_sent_on(&mut m, now, 2, &update_msg("s1", 77, 5, true));
    assert_eq!(sent, [(4, 5, false)]);
    let sent = updates_sent_on(&mut m, now, 2, &update_msg("s1", 77, 6, true));
    assert_eq!(sent, [(3, 6, false), (4, 6, false)]);
}

/// A neighbour heard from in the group, then silent for `DOWN_ROUNDS` digest periods,
/// is classified down: updates are not pushed to it (it pulls on its return), while a
/// neighbour heard again since is pushed to. Hearing counts frames of the group (here a
/// digest and updates).
/// Guards `Flood::heard_in_group` (mutant: its body replaced with `()`).
#[test]
fn a_neighbour_silent_in_the_group_is_not_pushed_to() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    let later = now + m.groups["g"].def.digest_period * DOWN_ROUNDS;
    // s4 speaks (an empty digest); s5 stays silent.
    let digest = FloodMsg::Digest {
        group: "g".into(),
        full: false,
        want_full: false,
        joined_us: 0,
        entries: vec![],
    };
    assert_eq!(updates_sent_on(&mut m, later, 3, &digest), []);
    // From s3: to s4 only.
    let sent = updates_sent_on(&mut m, later, 2, &update_msg("s1", 77, 1, false));
    assert_eq!(sent, [(3, 1, false)]);
    // From s4: to s3 (heard by its update just before), not to s5.
    let sent = updates_sent_on(&mut m, later, 3, &update_msg("s1", 77, 2, false));
    assert_eq!(sent, [(2, 2, false)]);
}

/// What `m` sent since it was last asked, as (to site index, message).
fn sent_by(m: &mut Flood) -> Vec<(usize, FloodMsg)> {
    let mut sent = Vec::new();
    while let Some(o) = m.poll_output() {
        if let Output::Transmit(t) = o
            && let Ok(msg) = FloodMsg::decode(&t.frame)
        {
            let to = (0..8).find(|&i| addr(i) == t.to).unwrap();
            sent.push((to, msg));
        }
    }
    sent
}

/// Hands `m` a message from site `from` at `now`; what it sent then.
fn frames_out(m: &mut Flood, now: Instant, from: usize, msg: &FloodMsg) -> Vec<(usize, FloodMsg)> {
    m.handle(
        now,
        Input::Frame {
            from: addr(from),
            frame: msg.to_frame(),
        },
    )
    .unwrap();
    sent_by(m)
}

/// A pull sent: when, to which site (index), the ranges asked.
type PullSent = (Instant, usize, Vec<(u64, u64)>);

/// Fires `m`'s timers (those overdue at `from`, then in time order) through `to`: the
/// pulls it sent, as (instant, to site index, ranges).
fn pulls_sent(m: &mut Flood, from: Instant, to: Instant) -> Vec<PullSent> {
    let mut now = from;
    let mut pulls = Vec::new();
    while let Some(t) = m.poll_timeout()
        && t <= to
    {
        now = now.max(t);
        m.handle_timeout(now);
        for (who, msg) in sent_by(m) {
            if let FloodMsg::Pull { ranges, .. } = msg {
                pulls.push((now, who, ranges));
            }
        }
    }
    pulls
}

/// Site s2 of three, started afresh, that adopted at `t0` a topology in which s1 and
/// s3 are its neighbours: `(machine, t0, end of its first window)`.
fn a_site_that_just_joined() -> (Flood, Instant, Instant) {
    let cfg = config(3, 2, "", "");
    let mut m = Flood::new(settings(&cfg, 1), Instant::ZERO, Rng::from_seed(3));
    let t0 = Instant::from_millis(10);
    let topo = FloodMsg::Topology {
        group: "g".into(),
        master_incarnation: 9,
        version: 1,
        members: settings(&cfg, 0).sites.clone(),
        links: vec![(0, 1, 10), (1, 2, 10)],
    };
    let _ = frames_out(&mut m, t0, 0, &topo);
    let g = &m.groups["g"];
    let neighbours: Vec<&str> = g.neighbours.keys().map(|s| s.as_str()).collect();
    assert_eq!(neighbours, ["s1", "s3"]);
    let until = t0 + g.def.digest_period * ADOPT_ROUNDS;
    assert_eq!(g.adopt_until, Some(until));
    (m, t0, until)
}

fn digest_msg(full: bool, entries: &[(u64, u64)]) -> FloodMsg {
    FloodMsg::Digest {
        group: "g".into(),
        full,
        want_full: false,
        joined_us: 0,
        entries: entries
            .iter()
            .map(|&(low, through)| super::super::msg::DigestEntry {
                origin: "s1".into(),
                incarnation: 77,
                low,
                through,
            })
            .collect(),
    }
}

fn starts_msg(starts: &[u64]) -> FloodMsg {
    FloodMsg::Starts {
        group: "g".into(),
        entries: starts
            .iter()
            .map(|&start| super::super::msg::StartEntry {
                origin: "s1".into(),
                incarnation: 77,
                start,
            })
            .collect(),
    }
}

/// The first window closes once every neighbour has sent both a full digest and its
/// starts — not when each has sent one of them: s1 showed 1..=5 and named 3 as where the
/// stream stood when this site joined, s3 knew nothing. The window closes on s3's
/// starts, the stream is taken from 3, and 3..=5 are pulled from s1 a pull delay later.
/// Guards `n.got_full && n.got_start` and `now < until && !answered` in
/// `Flood::in_first_window` (mutants `||` for `&&`: closed too early, taking the stream
/// from 1; kept open though every neighbour answered). The instant of the pull also
/// pins `Flood::pull_delay` with no round trip known, 2 × 25 ms (mutants: default,
/// `rtt / 2`).
#[test]
fn the_first_window_closes_when_every_neighbour_sent_its_digest_and_starts() {
    let (mut m, t0, _) = a_site_that_just_joined();
    let ms = |k: u64| t0 + Duration::from_millis(k);
    let _ = frames_out(&mut m, ms(1), 0, &digest_msg(true, &[(1, 5)]));
    let _ = frames_out(&mut m, ms(2), 2, &digest_msg(true, &[]));
    assert!(m.groups["g"].fresh, "closed before any starts came");
    let _ = frames_out(&mut m, ms(3), 0, &starts_msg(&[3]));
    let _ = frames_out(&mut m, ms(4), 2, &starts_msg(&[]));
    assert!(!m.groups["g"].fresh, "open though every neighbour answered");
    assert_eq!(
        pulls_sent(&mut m, ms(4), ms(4 + 60)),
        [(ms(4 + 50), 0, vec![(3, 5)])]
    );
}

/// A neighbour that never answers holds the first window open only until its end, and
/// not a moment past it: at that very instant it closes, the stream is taken from where
/// the neighbour that answered said (3), and 3..=5 are pulled a pull delay later.
/// Guards `now < until && !answered` in `Flood::in_first_window` (mutants `<=` for `<`,
/// `||` for `&&`).
#[test]
fn the_first_window_closes_at_its_end_without_every_answer() {
    let (mut m, t0, until) = a_site_that_just_joined();
    let s = |k: u64| t0 + Duration::from_secs(k);
    let _ = frames_out(&mut m, s(1), 0, &digest_msg(true, &[(1, 5)]));
    let _ = frames_out(&mut m, s(1), 0, &starts_msg(&[3]));
    let _ = frames_out(
        &mut m,
        until.saturating_sub(Duration::from_micros(1)),
        0,
        &digest_msg(false, &[]),
    );
    assert!(m.groups["g"].fresh, "closed before its end");
    let _ = frames_out(&mut m, until, 0, &digest_msg(false, &[]));
    assert!(!m.groups["g"].fresh, "open at its end");
    let ms = |k: u64| until + Duration::from_millis(k);
    assert_eq!(
        pulls_sent(&mut m, until, ms(60)),
        [(ms(50), 0, vec![(3, 5)])]
    );
}

/// A stream no neighbour named in its starts began after this site joined — when every
/// neighbour answered: it is taken from 1, and 1..=5 are pulled. When one never
/// answered, its start is unknown: the stream is kept from its next update, and nothing
/// before it is pulled.
/// Guards the match guard `answered && s.base > 1` in `Flood::settle_first_window`
/// (mutants: `true`, `false`).
#[test]
fn a_stream_no_neighbour_named_is_taken_from_1_only_when_every_neighbour_answered() {
    // Every neighbour answered, none named the stream.
    let (mut m, t0, _) = a_site_that_just_joined();
    let ms = |k: u64| t0 + Duration::from_millis(k);
    let _ = frames_out(&mut m, ms(1), 0, &digest_msg(true, &[(1, 5)]));
    let _ = frames_out(&mut m, ms(2), 2, &digest_msg(true, &[]));
    let _ = frames_out(&mut m, ms(3), 0, &starts_msg(&[]));
    let _ = frames_out(&mut m, ms(4), 2, &starts_msg(&[]));
    assert!(!m.groups["g"].fresh);
    assert_eq!(
        pulls_sent(&mut m, ms(4), ms(4 + 60)),
        [(ms(4 + 50), 0, vec![(1, 5)])]
    );
    // s3 never answers: the window closes at its end, the stream kept from 6.
    let (mut m, t0, until) = a_site_that_just_joined();
    let s = |k: u64| t0 + Duration::from_secs(k);
    let _ = frames_out(&mut m, s(1), 0, &digest_msg(true, &[(1, 5)]));
    let _ = frames_out(&mut m, s(1), 0, &starts_msg(&[]));
    let _ = frames_out(&mut m, until, 0, &digest_msg(false, &[]));
    assert!(!m.groups["g"].fresh);
    assert_eq!(
        pulls_sent(&mut m, until, until + Duration::from_secs(1)),
        []
    );
    let _ = frames_out(
        &mut m,
        until + Duration::from_secs(1),
        0,
        &digest_msg(false, &[(1, 6)]),
    );
    assert_eq!(
        pulls_sent(
            &mut m,
            until + Duration::from_secs(1),
            until + Duration::from_millis(1060)
        ),
        [(until + Duration::from_millis(1050), 0, vec![(6, 6)])]
    );
}

/// When the first window closes, a stream taken in it is lowered to the start a
/// neighbour named only while what arrived of it in the window (in order and beyond) is
/// within `max_above`: at the bound (7..=10 beyond a gap at 6) it is lowered, 3..=6
/// then missing; one more (6 in order, 8..=11 beyond) and what lies before it, 3..=5,
/// is reported lost (behind) instead.
/// Guards `arrived = (s.through + 1 - s.base) as usize + s.above.len()` in
/// `Flood::settle_first_window` (mutants: the `+` to `-` or `*`, the `-` to `+`).
#[test]
fn a_stream_too_far_ahead_when_the_first_window_closes_is_reported_behind() {
    let key = StreamKey {
        origin: "s1".into(),
        incarnation: 77,
    };
    for (arrive, lowered) in [
        (&[7u64, 8, 9, 10][..], true),
        (&[6, 8, 9, 10, 11][..], false),
    ] {
        let (mut m, t0, _) = a_site_that_just_joined();
        m.cfg.limits.max_above = 4;
        let ms = |k: u64| t0 + Duration::from_millis(k);
        let _ = frames_out(&mut m, ms(1), 0, &digest_msg(true, &[(1, 5)]));
        let _ = frames_out(&mut m, ms(2), 2, &digest_msg(true, &[]));
        for &seq in arrive {
            let _ = frames_out(&mut m, ms(3), 0, &update_msg("s1", 77, seq, false));
        }
        let _ = frames_out(&mut m, ms(4), 0, &starts_msg(&[3]));
        let _ = frames_out(&mut m, ms(5), 2, &starts_msg(&[]));
        let g = &m.groups["g"];
        assert!(!g.fresh);
        let s = &g.streams[&key];
        if lowered {
            assert_eq!((s.base, s.through), (3, 2), "{arrive:?}");
            assert_eq!(s.missing_ranges(10), [(3, 6)]);
            assert_eq!(g.lost_log, []);
            assert_eq!(m.stats().lost, 0);
        } else {
            assert_eq!((s.base, s.through), (6, 6), "{arrive:?}");
            assert_eq!(g.lost_log, [(key.clone(), 3, 5, LostReason::Behind)]);
            assert_eq!(m.stats().lost, 3);
        }
    }
}

/// A stream no neighbour named when this site joined, every neighbour having answered,
/// is lowered to 1 when the first window closes only while what arrived of it in the
/// window is within `max_above`: at the bound (7..=10 beyond a gap at 6) it is lowered,
/// 1..=6 then missing; one more (6 in order, 8..=11 beyond) and 1..=5 are reported lost
/// (behind) instead. A stream taken from 1 is left as it is, however much arrived.
/// Guards the `None if answered && s.base > 1` arm of `Flood::settle_first_window`:
/// `arrived` (mutants: the `+` to `-` or `*`, the `-` to `+` or `/`), the range and
/// count reported lost, and `s.base > 1` (mutant `>=`: a lost range 1..=0 reported).
#[test]
fn an_unnamed_stream_too_far_ahead_when_the_first_window_closes_is_reported_behind() {
    let key = StreamKey {
        origin: "s1".into(),
        incarnation: 77,
    };
    // (marks shown, updates arriving in the window, (base, through) after, lost 1..=to)
    type Case = (
        &'static [(u64, u64)],
        &'static [u64],
        (u64, u64),
        Option<u64>,
    );
    let cases: [Case; 3] = [
        (&[(1, 5)], &[7, 8, 9, 10], (1, 0), None),
        (&[(1, 5)], &[6, 8, 9, 10, 11], (6, 6), Some(5)),
        (&[], &[1, 2, 3, 4, 5], (1, 5), None),
    ];
    for (shown, arrive, base_through, lost_to) in cases {
        let (mut m, t0, _) = a_site_that_just_joined();
        m.cfg.limits.max_above = 4;
        let ms = |k: u64| t0 + Duration::from_millis(k);
        let _ = frames_out(&mut m, ms(1), 0, &digest_msg(true, shown));
        let _ = frames_out(&mut m, ms(2), 2, &digest_msg(true, &[]));
        for &seq in arrive {
            let _ = frames_out(&mut m, ms(3), 0, &update_msg("s1", 77, seq, false));
        }
        let _ = frames_out(&mut m, ms(4), 0, &starts_msg(&[]));
        let _ = frames_out(&mut m, ms(5), 2, &starts_msg(&[]));
        let g = &m.groups["g"];
        assert!(!g.fresh);
        let s = &g.streams[&key];
        assert_eq!((s.base, s.through), base_through, "{arrive:?}");
        match lost_to {
            Some(to) => {
                assert_eq!(g.lost_log, [(key.clone(), 1, to, LostReason::Behind)]);
                assert_eq!(m.stats().lost, to);
            }
            None => {
                assert_eq!(g.lost_log, [], "{arrive:?}");
                assert_eq!(m.stats().lost, 0);
            }
        }
        if base_through == (1, 0) {
            assert_eq!(s.missing_ranges(10), [(1, 6)]);
        }
    }
}

/// An update frame of exactly `max_update` bytes is taken and sent on; one byte more is
/// refused with the sizes, and goes nowhere.
/// Guards `data.len() > max` in `Flood::on_update` (mutants `==`, `>=`).
#[test]
fn an_update_frame_of_exactly_the_limit_is_taken_one_byte_more_is_refused() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    m.cfg.limits.reader.max_update = 10;
    let update = |seq: u64, len: usize| FloodMsg::Update {
        group: "g".into(),
        origin: "s1".into(),
        incarnation: 77,
        seq,
        data: Bytes::from(vec![b'x'; len]),
        pulled: false,
    };
    let sent = updates_sent_on(&mut m, now, 2, &update(1, 10));
    assert_eq!(sent, [(3, 1, false), (4, 1, false)]);
    let r = m.handle(
        now,
        Input::Frame {
            from: addr(2),
            frame: update(2, 11).to_frame(),
        },
    );
    assert!(
        matches!(r, Err(FloodError::TooLarge { size: 11, max: 10 })),
        "{r:?}"
    );
    assert_eq!(sent_by(&mut m), []);
    assert_eq!(m.stats().delivered, 1);
}

/// An update of this site's own stream coming back, and an update that already
/// arrived, are counted as duplicates, and neither is delivered nor sent on again.
/// Guards `self.stats.duplicates += 1` in `Flood::on_update`, both (mutants `-=`, `*=`).
#[test]
fn an_update_back_from_its_origin_or_again_is_a_counted_duplicate() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    let own = m.incarnation();
    assert_eq!(
        updates_sent_on(&mut m, now, 2, &update_msg("s2", own, 1, false)),
        []
    );
    assert_eq!(m.stats().duplicates, 1);
    let sent = updates_sent_on(&mut m, now, 2, &update_msg("s1", 77, 1, false));
    assert_eq!(sent, [(3, 1, false), (4, 1, false)]);
    assert_eq!(
        updates_sent_on(&mut m, now, 3, &update_msg("s1", 77, 1, false)),
        []
    );
    assert_eq!(
        updates_sent_on(&mut m, now, 3, &update_msg("s1", 77, 1, true)),
        []
    );
    assert_eq!(m.stats().duplicates, 3);
    assert_eq!(m.stats().delivered, 1);
}

/// A pulled copy of an update that already arrived is not exported again (that is the
/// canary's bug, and only the canary's): one export run, of one update.
/// Guards `pulled && self.cfg.canary_duplicate_export` in `Flood::on_update` (mutant
/// `||`).
#[test]
fn a_pulled_duplicate_is_not_exported_again() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    let mut exports = Vec::new();
    for (k, pulled) in [(1, false), (2, true)] {
        let at = now + Duration::from_millis(k * 100);
        m.handle(
            at,
            Input::Frame {
                from: addr(2),
                frame: update_msg("s1", 77, 1, pulled).to_frame(),
            },
        )
        .unwrap();
        while let Some(o) = m.poll_output() {
            if let Output::Effect(r) = o
                && let FloodEffect::Export { bundle, .. } = r.effect
            {
                exports.push(bundle::decode(&bundle).unwrap().len());
                m.handle(
                    at,
                    Input::EffectDone {
                        id: r.id,
                        outcome: Ok(FloodEffectValue::Exported),
                    },
                )
                .unwrap();
            }
        }
    }
    assert_eq!(exports, [1]);
    assert_eq!(m.stats().duplicates, 1);
}

/// Out-of-order updates are remembered up to `max_above` (4): an update that would be
/// one more beyond a gap gives the oldest missing range up (lost, behind); the update
/// that fills the gap when the bound is reached is taken, nothing lost.
/// Guards `seq > through + 1 && above.len() >= max_above` in `Flood::on_update`
/// (mutants `==`, `<`, `>=` for the `>`).
#[test]
fn an_update_past_the_out_of_order_bound_gives_the_oldest_gap_up() {
    let key = StreamKey {
        origin: "s1".into(),
        incarnation: 77,
    };
    for (last, through, above, lost) in [
        (2u64, 6u64, vec![], vec![]),
        (
            8,
            6,
            vec![8u64],
            vec![(key.clone(), 2u64, 2u64, LostReason::Behind)],
        ),
    ] {
        let (mut m, now) = a_plain_site_with_four_neighbours();
        m.cfg.limits.max_above = 4;
        for seq in [1, 3, 4, 5, 6, last] {
            let _ = updates_sent_on(&mut m, now, 2, &update_msg("s1", 77, seq, false));
        }
        let g = &m.groups["g"];
        let s = &g.streams[&key];
        assert_eq!(s.through, through, "then {last}");
        assert_eq!(s.above.iter().copied().collect::<Vec<u64>>(), above);
        assert_eq!(g.lost_log, lost);
        assert_eq!(m.stats().delivered, 6);
    }
}

/// A group tracks at most `max_streams` streams: a new one makes room by forgetting the
/// one idle longest — never this site's own — and its pull timer with it.
/// Guards `Flood::room_for_stream` (mutants: its body replaced with `()`; `k.origin !=
/// me` to `==`).
#[test]
fn a_new_stream_past_the_bound_forgets_the_idlest_other_one() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    m.cfg.limits.max_streams = 3;
    let own = m.incarnation();
    m.flood(now, None, Bytes::from_static(b"own")).unwrap();
    let key = |origin: &str, incarnation: u64| StreamKey {
        origin: origin.into(),
        incarnation,
    };
    // Stream s1/1 misses 1: its pull timer is armed.
    for (k, (inc, seq)) in [(1, 2), (2, 1), (3, 1)].into_iter().enumerate() {
        let at = now + Duration::from_millis(k as u64 + 1);
        let _ = updates_sent_on(&mut m, at, 2, &update_msg("s1", inc, seq, false));
        if k == 0 {
            assert!(m.timers.contains(&Timer::Pull("g".into(), key("s1", 1))));
        }
    }
    let streams: Vec<&StreamKey> = m.groups["g"].streams.keys().collect();
    assert_eq!(streams, [&key("s1", 2), &key("s1", 3), &key("s2", own)]);
    assert!(!m.timers.contains(&Timer::Pull("g".into(), key("s1", 1))));
}

/// What a site knew when is kept 22 digest periods plus twice the longest join margin
/// (here 4.2 s), at a grain of an eighth of a period: asked by a neighbour that joined
/// at a time between two updates 100 ms apart (seen 4.3 s before, to the microsecond),
/// it names the stream's start as one past the first; a microsecond later that time
/// has left its memory and the stream is not named.
/// Guards `Flood::history_spans` (mutants: defaults; grain `/` to `*`; every operator
/// of the horizon).
#[test]
fn a_site_remembers_what_it_knew_for_the_history_horizon() {
    for (after, start) in [
        (Duration::from_micros(4_299_999), Some(2)),
        (Duration::from_millis(4300), None),
    ] {
        let (mut m, t0, _) = a_site_that_just_joined();
        let t = t0 + Duration::from_millis(1);
        let _ = frames_out(&mut m, t, 0, &update_msg("s1", 77, 1, false));
        let at = t + Duration::from_millis(100);
        let _ = frames_out(&mut m, at, 0, &update_msg("s1", 77, 2, false));
        let now = t + after;
        let _ = frames_out(&mut m, now, 0, &update_msg("s1", 77, 3, false));
        // s3 asks: it joined so long ago that, less the margin (250 ms: no round trip
        // known), the time asked about is t + 50 ms.
        let joined =
            now.saturating_duration_since(t + Duration::from_millis(50)) - JOIN_MARGIN_DEFAULT;
        let ask = FloodMsg::Digest {
            group: "g".into(),
            full: false,
            want_full: true,
            joined_us: joined.as_micros() as u64,
            entries: vec![],
        };
        let starts: Vec<Vec<u64>> = frames_out(&mut m, now, 2, &ask)
            .into_iter()
            .filter_map(|(to, msg)| match msg {
                FloodMsg::Starts { entries, .. } if to == 2 => {
                    Some(entries.iter().map(|e| e.start).collect())
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            starts,
            [start.into_iter().collect::<Vec<u64>>()],
            "{after:?}"
        );
    }
}

/// An update too large for this site's storage is reported lost here (storage), counted
/// as dropped, and neither delivered nor sent on; the stream moves past it.
/// Guards `self.stats.dropped_unexported += 1` in `Flood::on_update` (mutants `-=`,
/// `*=`).
#[test]
fn an_update_too_large_to_store_is_reported_lost_and_counted() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    m.store = store::Store::new(store::ENTRY_OVERHEAD + 5);
    let key = StreamKey {
        origin: "s1".into(),
        incarnation: 77,
    };
    let big = FloodMsg::Update {
        group: "g".into(),
        origin: "s1".into(),
        incarnation: 77,
        seq: 1,
        data: Bytes::from_static(b"0123456789"),
        pulled: false,
    };
    assert_eq!(updates_sent_on(&mut m, now, 2, &big), []);
    let g = &m.groups["g"];
    assert_eq!(g.lost_log, [(key.clone(), 1, 1, LostReason::Storage)]);
    assert_eq!(g.streams[&key].through, 1);
    assert_eq!(m.stats().dropped_unexported, 1);
    assert_eq!(m.stats().delivered, 0);
}

/// Once everything the pull in flight asked for has come, the rest is asked for at
/// once (from whoever holds it), not at the pull's timeout — and not before: while
/// some of it is still due, nothing more is asked.
/// Guards `s.through >= p.last` in `Flood::watch_missing` (mutant `<`).
#[test]
fn the_rest_is_pulled_as_soon_as_the_pull_in_flight_is_answered() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    // s3 holds 1..=3: they are pulled from it.
    let _ = frames_out(&mut m, now, 2, &digest_msg(false, &[(1, 3)]));
    let first: Vec<(usize, Vec<(u64, u64)>)> =
        pulls_sent(&mut m, now, now + Duration::from_millis(100))
            .into_iter()
            .map(|(_, to, ranges)| (to, ranges))
            .collect();
    assert_eq!(first, [(2, vec![(1, 3)])]);
    // s4 holds 1..=6; s3 answers 1, 2, 3, a millisecond apart.
    let t1 = now + Duration::from_millis(100);
    let _ = frames_out(&mut m, t1, 3, &digest_msg(false, &[(1, 6)]));
    let mut pulls = Vec::new();
    for seq in 1..=3 {
        let t = t1 + Duration::from_millis(seq);
        let _ = frames_out(&mut m, t, 2, &update_msg("s1", 77, seq, true));
        pulls.extend(pulls_sent(&mut m, t, t));
    }
    let t3 = t1 + Duration::from_millis(3);
    assert_eq!(pulls, [(t3, 3, vec![(4, 6)])]);
}

/// Fires `m`'s timers (those overdue at `from`, then in time order) through `to`: the
/// digests it sent, as (instant, to site index, full, want_full, entries as
/// (low, through)).
fn digests_sent(m: &mut Flood, from: Instant, to: Instant) -> Vec<DigestSent> {
    let mut now = from;
    let mut digests = Vec::new();
    while let Some(t) = m.poll_timeout()
        && t <= to
    {
        now = now.max(t);
        m.handle_timeout(now);
        for (who, msg) in sent_by(m) {
            if let FloodMsg::Digest {
                full,
                want_full,
                entries,
                joined_us,
                ..
            } = msg
            {
                let marks = entries.iter().map(|e| (e.low, e.through)).collect();
                digests.push((now, who, full, want_full, marks, joined_us));
            }
        }
    }
    digests
}

/// A digest sent: when, to which site (index), full, want_full, the marks it carried,
/// joined_us.
type DigestSent = (Instant, usize, bool, bool, Vec<(u64, u64)>, u64);

/// A stream taken from 11 (nothing of it arrived) that still stores older updates of
/// it — kept from before it was forgotten and taken afresh in the first window — shows
/// that it holds nothing: low 11, through 10, not 10.
/// Guards `s.base.min(s.through + 1)` in `Flood::marks` (mutant `*` for the `+`).
#[test]
fn a_stream_with_nothing_arrived_shows_no_older_stored_update() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    let key = StreamKey {
        origin: "s1".into(),
        incarnation: 77,
    };
    for seq in 1..=3 {
        let entry = store::EntryKey {
            group: "g".into(),
            stream: key.clone(),
            seq,
        };
        m.store_update(now, entry, Bytes::from_static(b"x"), true)
            .unwrap();
    }
    let mut s = Stream::new(11, now);
    s.known = 12;
    m.groups
        .get_mut("g")
        .unwrap()
        .streams
        .insert(key.clone(), s);
    assert_eq!(m.all_marks("g"), [(key, (11, 10))]);
}

/// Digests: the marks that changed go out in the next round, unchanged ones not again
/// (an empty keepalive every four rounds, no more); a neighbour that asks gets every
/// mark in a full digest at once.
/// Guards `full || n.wants_full || n.last_digest.is_none()` (mutant: the second `||`
/// to `&&`), `n.sent.get(key) != Some(marks)` (mutant `==`) and
/// `digest_period * KEEPALIVE_ROUNDS` (mutant `/`) in `Flood::send_digest`.
#[test]
fn digests_carry_what_changed_keepalives_and_full_marks_on_request() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    // Quiet: to s4, an empty digest every 400 ms exactly; every digest counted.
    let before = m.stats().digests_sent;
    let all = digests_sent(&mut m, now, now + Duration::from_secs(2));
    assert_eq!(m.stats().digests_sent - before, all.len() as u64);
    let quiet: Vec<(Instant, Vec<(u64, u64)>)> = all
        .into_iter()
        .filter(|d| d.1 == 3)
        .map(|d| (d.0, d.4))
        .collect();
    assert!(quiet.len() >= 4, "{quiet:?}");
    for w in quiet.windows(2) {
        assert_eq!(w[1].0 - w[0].0, Duration::from_millis(400), "{quiet:?}");
        assert_eq!(w[1].1, []);
    }
    // A stream arrives just before a round that is not full: its marks go to s4 in that
    // round, and then not again in a round that is not full.
    let mut t = now + Duration::from_secs(2);
    while m.groups["g"].rounds.is_multiple_of(FULL_EVERY) {
        let _ = digests_sent(&mut m, t, t + Duration::from_millis(100));
        t += Duration::from_millis(100);
    }
    let _ = updates_sent_on(&mut m, t, 2, &update_msg("s1", 77, 1, false));
    let to_s4: Vec<(bool, Vec<(u64, u64)>)> =
        digests_sent(&mut m, t, t + Duration::from_millis(400))
            .into_iter()
            .filter(|d| d.1 == 3)
            .map(|d| (d.2, d.4))
            .collect();
    assert_eq!(to_s4.first(), Some(&(false, vec![(1, 1)])), "{to_s4:?}");
    for (full, marks) in &to_s4[1..] {
        assert!(*full || marks.is_empty(), "{to_s4:?}");
    }
    // s4 asks: a full digest with every mark, at once.
    let t = t + Duration::from_millis(400);
    let ask = FloodMsg::Digest {
        group: "g".into(),
        full: false,
        want_full: true,
        joined_us: 0,
        entries: vec![],
    };
    let answer: Vec<(bool, Vec<(u64, u64)>)> = frames_out(&mut m, t, 3, &ask)
        .into_iter()
        .filter_map(|(to, msg)| match msg {
            FloodMsg::Digest { full, entries, .. } if to == 3 => {
                Some((full, entries.iter().map(|e| (e.low, e.through)).collect()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(answer, [(true, vec![(1, 1)])]);
}

/// A site in its first window asks, in its digests, for a full digest and starts only
/// from the neighbours that have not answered yet, and only while the window is open:
/// s1 answered at once, s3 never did; once the window closed at its end nobody is asked.
/// Guards `g.fresh && g.adopt_until.is_some() && !(n.got_full && n.got_start)` in
/// `Flood::send_digest` (mutants: the first or the second `&&` to `||`).
#[test]
fn digests_ask_for_full_marks_only_of_who_has_not_answered_in_the_first_window() {
    let (mut m, t0, until) = a_site_that_just_joined();
    let t = t0 + Duration::from_millis(1);
    let _ = frames_out(&mut m, t, 0, &digest_msg(true, &[(1, 5)]));
    let _ = frames_out(&mut m, t, 0, &starts_msg(&[]));
    let digests = digests_sent(&mut m, t, until + Duration::from_secs(1));
    let kinds: BTreeSet<(usize, bool)> = digests.iter().map(|d| (d.1, d.0 < until)).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([(0, true), (0, false), (2, true), (2, false)]),
        "{digests:?}"
    );
    for (at, to, _, want_full, _, _) in &digests {
        assert_eq!(*want_full, *to == 2 && *at < until, "{digests:?}");
    }
}

/// The first digest a site sends each neighbour (when it adopts its first topology) is
/// full, whatever the round: the neighbour may take it as all this site knows.
/// Guards `full || n.wants_full || n.last_digest.is_none()` in `Flood::send_digest`
/// (mutant: the second `||` to `&&`, which leaves `full || (n.wants_full && ...)`).
#[test]
fn a_sites_first_digest_to_each_neighbour_is_full() {
    let cfg = config(3, 2, "", "");
    let mut m = Flood::new(settings(&cfg, 1), Instant::ZERO, Rng::from_seed(3));
    let topo = FloodMsg::Topology {
        group: "g".into(),
        master_incarnation: 9,
        version: 1,
        members: settings(&cfg, 0).sites.clone(),
        links: vec![(0, 1, 10), (1, 2, 10)],
    };
    let digests: Vec<(usize, bool, bool)> = frames_out(&mut m, Instant::from_millis(10), 0, &topo)
        .into_iter()
        .filter_map(|(to, msg)| match msg {
            FloodMsg::Digest {
                full, want_full, ..
            } => Some((to, full, want_full)),
            _ => None,
        })
        .collect();
    assert_eq!(digests, [(0, true, true), (2, true, true)]);
}

/// A neighbour that sent its full digest but not yet its starts is still asked for
/// them, and every ask says how long ago this site joined (its topology came at t0).
/// Guards `!(n.got_full && n.got_start)` (mutant `||`) and the `(true, Some(t))` arm
/// of `joined_us` (mutant: deleted, 0 sent) in `Flood::send_digest`.
#[test]
fn a_neighbour_without_its_starts_is_still_asked_and_told_when_this_site_joined() {
    let (mut m, t0, _) = a_site_that_just_joined();
    let t = t0 + Duration::from_millis(1);
    let _ = frames_out(&mut m, t, 0, &digest_msg(true, &[(1, 5)]));
    let digests = digests_sent(&mut m, t, t + Duration::from_millis(500));
    let to_s1: Vec<&DigestSent> = digests.iter().filter(|d| d.1 == 0).collect();
    assert!(!to_s1.is_empty(), "{digests:?}");
    for d in &digests {
        assert!(d.3, "{d:?}");
        let since = d.0.saturating_duration_since(t0).as_micros() as u64;
        assert_eq!(d.5, since, "{d:?}");
    }
}

/// Streams first heard of in a digest are bounded like the others (the idlest other
/// one forgotten), and so are a neighbour's marks: at most `max_streams` (2) of them,
/// the first it showed.
/// Guards `!...contains_key(&key)` before `room_for_stream` (mutant: `!` deleted) and
/// `n.marks.len() < max_streams` (mutant `<=`) in `Flood::on_digest`.
#[test]
fn streams_and_marks_from_a_digest_are_bounded() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    m.cfg.limits.max_streams = 2;
    let key = |incarnation: u64| StreamKey {
        origin: "s1".into(),
        incarnation,
    };
    let digest = |incs: &[u64]| FloodMsg::Digest {
        group: "g".into(),
        full: false,
        want_full: false,
        joined_us: 0,
        entries: incs
            .iter()
            .map(|&incarnation| super::super::msg::DigestEntry {
                origin: "s1".into(),
                incarnation,
                low: 1,
                through: 1,
            })
            .collect(),
    };
    let _ = frames_out(&mut m, now, 2, &digest(&[1]));
    let _ = frames_out(&mut m, now + Duration::from_millis(1), 2, &digest(&[1, 2]));
    let _ = frames_out(
        &mut m,
        now + Duration::from_millis(2),
        3,
        &digest(&[3, 4, 5]),
    );
    let g = &m.groups["g"];
    let streams: Vec<&StreamKey> = g.streams.keys().collect();
    assert_eq!(streams, [&key(4), &key(5)]);
    let marks: Vec<&StreamKey> = g.neighbours["s4"].marks.keys().collect();
    assert_eq!(marks, [&key(3), &key(4)]);
}

/// A neighbour that joined is given, per stream, one past what was known when it
/// joined less a margin of twice its round trip (here 100 ms: 200 ms).
/// Guards `(r * 2).clamp(...)` in `Flood::send_starts` (mutant `/`).
#[test]
fn starts_take_twice_the_round_trip_as_margin() {
    let (mut m, t0, _) = a_site_that_just_joined();
    m.sites.get_mut("s3").unwrap().rtt = Some(Duration::from_millis(100));
    let t = t0 + Duration::from_millis(1);
    for seq in 1..=3 {
        let at = t + Duration::from_millis(100 * (seq - 1));
        let _ = frames_out(&mut m, at, 0, &update_msg("s1", 77, seq, false));
    }
    // Asked at t + 300 ms by s3, which joined 50 ms before: t + 250 ms, less the
    // margin, is t + 50 ms, when 1 was known.
    let now = t + Duration::from_millis(300);
    let ask = FloodMsg::Digest {
        group: "g".into(),
        full: false,
        want_full: true,
        joined_us: 50_000,
        entries: vec![],
    };
    let starts: Vec<Vec<u64>> = frames_out(&mut m, now, 2, &ask)
        .into_iter()
        .filter_map(|(to, msg)| match msg {
            FloodMsg::Starts { entries, .. } if to == 2 => {
                Some(entries.iter().map(|e| e.start).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(starts, [vec![2]]);
}

/// The starts a site remembers in its first window are bounded by `max_streams` (2):
/// the first named are kept, a later start of one of them still raises it.
/// Guards `g.starts.len() < max_streams` in `Flood::on_starts` (mutant `<=`).
#[test]
fn starts_remembered_in_the_first_window_are_bounded() {
    let (mut m, t0, _) = a_site_that_just_joined();
    m.cfg.limits.max_streams = 2;
    let starts = |entries: &[(u64, u64)]| FloodMsg::Starts {
        group: "g".into(),
        entries: entries
            .iter()
            .map(|&(incarnation, start)| super::super::msg::StartEntry {
                origin: "s1".into(),
                incarnation,
                start,
            })
            .collect(),
    };
    let t = t0 + Duration::from_millis(1);
    let _ = frames_out(&mut m, t, 0, &starts(&[(1, 4), (2, 5), (3, 6)]));
    let _ = frames_out(&mut m, t, 2, &starts(&[(1, 7), (3, 8)]));
    let g = &m.groups["g"];
    assert!(g.fresh);
    let kept: Vec<(u64, u64)> = g.starts.iter().map(|(k, &v)| (k.incarnation, v)).collect();
    assert_eq!(kept, [(1, 7), (2, 5)]);
}

/// A pull that is not answered is asked again after four round trips (here 100 ms:
/// 400 ms), the first after twice the round trip (200 ms) for a pushed copy.
/// Guards `(rtt * 4)` in `Flood::pull_timeout` (mutant `/`).
#[test]
fn an_unanswered_pull_is_asked_again_after_four_round_trips() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    m.sites.get_mut("s3").unwrap().rtt = Some(Duration::from_millis(100));
    let _ = frames_out(&mut m, now, 2, &digest_msg(false, &[(1, 3)]));
    let ms = |k: u64| now + Duration::from_millis(k);
    assert_eq!(
        pulls_sent(&mut m, now, ms(700)),
        [(ms(200), 2, vec![(1, 3)]), (ms(600), 2, vec![(1, 3)])]
    );
}

/// What digests showed missing is said once: 1..=3 when s3 showed them, then only
/// 4..=6 when s4 showed more — 6 missing in all, not 7.
/// Guards `a.max(reported + 1)` in `Flood::on_pull_timer` (mutant `*` for the `+`).
#[test]
fn missing_updates_are_counted_once() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    let _ = frames_out(&mut m, now, 2, &digest_msg(false, &[(1, 3)]));
    let ms = |k: u64| now + Duration::from_millis(k);
    let _ = pulls_sent(&mut m, now, ms(100));
    assert_eq!(m.stats().missing, 3);
    let _ = frames_out(&mut m, ms(100), 3, &digest_msg(false, &[(1, 6)]));
    let pulls = pulls_sent(&mut m, ms(100), ms(500));
    assert!(!pulls.is_empty());
    assert_eq!(m.stats().missing, 6);
}

/// When no neighbour holds the first missing update: what the origin's own digest
/// shows it passed but no longer holds is lost at once (purged), and the rest is pulled
/// from it; an origin whose digest shows it has not reached the first missing update is
/// pulled from, nothing lost; an origin with no address any more leaves what lies below
/// the oldest a neighbour holds lost, the rest pulled from that neighbour.
/// Guards the `gone_to` match in `Flood::on_pull_timer` (mutants: the guard `true`,
/// `false`, `through < first`, `low == first`, `low < first`; the `(_, None)` arm
/// deleted; `low - 1` and `lowest - 1` to `+` or `/`).
#[test]
fn what_the_origin_no_longer_holds_is_lost_and_the_rest_pulled() {
    let entry = |origin: &str, low: u64, through: u64| super::super::msg::DigestEntry {
        origin: origin.into(),
        incarnation: 77,
        low,
        through,
    };
    let digest = |e: super::super::msg::DigestEntry| FloodMsg::Digest {
        group: "g".into(),
        full: false,
        want_full: false,
        joined_us: 0,
        entries: vec![e],
    };
    // (origin, what arrived first from s3, digests (from, entry), pulls, lost)
    type Case = (
        &'static str,
        Vec<u64>,
        Vec<(usize, super::super::msg::DigestEntry)>,
        Vec<(usize, Vec<(u64, u64)>)>,
        Vec<(u64, u64)>,
    );
    let cases: Vec<Case> = vec![
        (
            "s1",
            vec![],
            vec![(0, entry("s1", 4, 5))],
            vec![(0, vec![(4, 5)])],
            vec![(1, 3)],
        ),
        (
            "s1",
            vec![1, 2],
            vec![(2, entry("s1", 6, 5)), (0, entry("s1", 3, 2))],
            vec![(0, vec![(3, 5)])],
            vec![],
        ),
        (
            "s9",
            vec![],
            vec![(2, entry("s9", 4, 5))],
            vec![(2, vec![(4, 5)])],
            vec![(1, 3)],
        ),
    ];
    for (origin, arrived, digests, pulls, lost) in cases {
        let (mut m, now) = a_plain_site_with_four_neighbours();
        for seq in arrived {
            let _ = frames_out(&mut m, now, 2, &update_msg(origin, 77, seq, false));
        }
        for (from, e) in digests {
            let _ = frames_out(&mut m, now, from, &digest(e));
        }
        let sent: Vec<(usize, Vec<(u64, u64)>)> =
            pulls_sent(&mut m, now, now + Duration::from_millis(150))
                .into_iter()
                .map(|(_, to, ranges)| (to, ranges))
                .collect();
        assert_eq!(sent, pulls, "{origin}");
        let got: Vec<(u64, u64)> = m.groups["g"]
            .lost_log
            .iter()
            .map(|l| {
                assert_eq!(l.3, LostReason::Purged);
                (l.1, l.2)
            })
            .collect();
        assert_eq!(got, lost, "{origin}");
    }
}

/// The pulls among what `m` sent, as (to site index, ranges).
fn pulls_in(sent: Vec<(usize, FloodMsg)>) -> Vec<(usize, Vec<(u64, u64)>)> {
    sent.into_iter()
        .filter_map(|(to, msg)| match msg {
            FloodMsg::Pull { ranges, .. } => Some((to, ranges)),
            _ => None,
        })
        .collect()
}

/// A pull that is not answered is asked again of the same holder, three times in all
/// (`PULL_TRIES`), then of the next fastest holder; once the first missing update
/// arrives from elsewhere the count starts again, from the fastest. Every pull is
/// counted. Here s3 (round trip 10 ms) and s4 (20 ms) both hold 1..=3, and each pull
/// waits 200 ms (the floor of the pull timeout) for its answer.
/// Guards `attempt` and `pick` in `Flood::on_pull_timer` (mutants: the guard
/// `p.first == first` to `true`, `false`, `!=`; `p.attempts + 1` to `-`, `*`; in
/// `(attempt - 1) / PULL_TRIES % holders.len()`, `%` to `/`, `/` to `%` or `*`, `-` to
/// `+` or `/`) and `pulls_sent += 1` (mutant `*=`).
#[test]
fn an_unanswered_pull_goes_to_the_next_holder_after_three_tries() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    m.sites.get_mut("s3").unwrap().rtt = Some(Duration::from_millis(10));
    m.sites.get_mut("s4").unwrap().rtt = Some(Duration::from_millis(20));
    let counted = m.stats().pulls_sent;
    let _ = frames_out(&mut m, now, 2, &digest_msg(false, &[(1, 3)]));
    let _ = frames_out(&mut m, now, 3, &digest_msg(false, &[(1, 3)]));
    let ms = |k: u64| now + Duration::from_millis(k);
    // Nobody answers: s3 three times (its pull delay after its digest, then every
    // 200 ms), then s4.
    let mut pulls = pulls_sent(&mut m, now, ms(700));
    // 1 comes pushed from s5: the first missing is now 2, and s3 is asked first again.
    let sent = frames_out(&mut m, ms(700), 4, &update_msg("s1", 77, 1, false));
    assert_eq!(pulls_in(sent), []);
    pulls.extend(pulls_sent(&mut m, ms(700), ms(1100)));
    assert_eq!(
        pulls,
        [
            (ms(20), 2, vec![(1, 3)]),
            (ms(220), 2, vec![(1, 3)]),
            (ms(420), 2, vec![(1, 3)]),
            (ms(620), 3, vec![(1, 3)]),
            (ms(820), 2, vec![(2, 3)]),
            (ms(1020), 2, vec![(2, 3)]),
        ]
    );
    assert_eq!(m.stats().pulls_sent - counted, 6);
}

/// A pull asks for at most `PULL_BATCH` (256) updates, across the missing ranges in
/// order, and asks a neighbour only for what its digest shows it holds (a range that
/// starts at the last it holds is asked for that one update, the ranges past it not at
/// all). When no neighbour holds the first missing update but one has passed it, the
/// origin is asked, with the same budget.
/// Guards the ranges asked in `Flood::on_pull_timer` (mutants: `a > their_through` to
/// `==` or `>=`, `||` to `&&`; in `a + budget - 1`, `-` to `+` or `/`, `+` to `*`;
/// `budget -= b - a + 1` to `+=` or `/=`, its `+` to `-` or `*`, its `-` to `+` or `/`)
/// and in `Flood::pull_from_origin` (the same arithmetic).
#[test]
fn a_pull_asks_for_at_most_256_updates_and_of_a_neighbour_only_what_it_holds() {
    // (pushed from s5, s3's marks, the pull: to whom, ranges)
    type Case = (Vec<u64>, (u64, u64), (usize, Vec<(u64, u64)>));
    let cases: Vec<Case> = vec![
        (vec![4, 6, 9], (1, 5), (2, vec![(1, 3), (5, 5)])),
        (vec![201], (1, 401), (2, vec![(1, 200), (202, 257)])),
        // s3 has passed 1..=401 but holds none of it: only the origin s1 can send it.
        (vec![201], (402, 401), (0, vec![(1, 200), (202, 257)])),
    ];
    for (pushed, marks, pull) in cases {
        let (mut m, now) = a_plain_site_with_four_neighbours();
        for seq in pushed {
            let _ = frames_out(&mut m, now, 4, &update_msg("s1", 77, seq, false));
        }
        let _ = frames_out(&mut m, now, 2, &digest_msg(false, &[marks]));
        let sent: Vec<(usize, Vec<(u64, u64)>)> =
            pulls_sent(&mut m, now, now + Duration::from_millis(100))
                .into_iter()
                .map(|(_, to, ranges)| (to, ranges))
                .collect();
        assert_eq!(sent, [pull], "{marks:?}");
    }
}

/// The origin, asked because no neighbour holds what is missing, is asked again after
/// the pull timeout times the number of tries (here 200 ms, then 400, then 600), so that
/// an origin that does not answer is asked less and less often; once the first missing
/// update has come, the count starts again. Every pull is counted.
/// Guards `attempt` in `Flood::pull_from_origin` (mutants: the guard
/// `p.first == first && p.from == key.origin` to `true` or `false`, `&&` to `||`, either
/// `==` to `!=`) and `pulls_sent += 1` there (mutant `*=`).
#[test]
fn the_origin_is_asked_again_less_often_each_time_it_does_not_answer() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    m.sites.get_mut("s1").unwrap().rtt = Some(Duration::from_millis(10));
    m.sites.get_mut("s3").unwrap().rtt = Some(Duration::from_millis(10));
    let counted = m.stats().pulls_sent;
    // s3 has passed 1..=5 without holding them: only the origin s1 can send them.
    let _ = frames_out(&mut m, now, 2, &digest_msg(false, &[(6, 5)]));
    let ms = |k: u64| now + Duration::from_millis(k);
    let mut pulls = pulls_sent(&mut m, now, ms(700));
    // s1 answers with 1 only; the first missing is now 2.
    let sent = frames_out(&mut m, ms(700), 0, &update_msg("s1", 77, 1, true));
    assert_eq!(pulls_in(sent), []);
    pulls.extend(pulls_sent(&mut m, ms(700), ms(1000)));
    // s3 is heard again (it would be taken for down after 1.2 s of silence, and then
    // nobody up would be known to have passed 2).
    let sent = frames_out(&mut m, ms(1000), 2, &digest_msg(false, &[]));
    assert_eq!(pulls_in(sent), []);
    pulls.extend(pulls_sent(&mut m, ms(1000), ms(1500)));
    assert_eq!(
        pulls,
        [
            (ms(20), 0, vec![(1, 5)]),
            (ms(220), 0, vec![(1, 5)]),
            (ms(620), 0, vec![(1, 5)]),
            (ms(1220), 0, vec![(2, 5)]),
            (ms(1420), 0, vec![(2, 5)]),
        ]
    );
    assert_eq!(m.stats().pulls_sent - counted, 5);
}

/// When the origin says it no longer holds updates it was asked for, those from the
/// first missing one on are lost: the stream moves past them and past what had
/// arrived just after them, the loss is reported and counted (without the updates
/// that did arrive in the range), and the rest is asked of the origin at once. What it
/// no longer holds further on, with updates before it still to come, is not lost: they
/// are asked for again.
/// Here s3 has passed 1..=8 without holding them, so s1 (the origin) was asked 1..=8.
/// Guards `Flood::declare_lost` (mutants: `split_off(&(to + 1))` to `to - 1` or `to * 1`
/// and `s.through + 1` to `-` or `*`, which leave arrived updates at or below `through`;
/// `s.through += 1` to `-=` or `*=`; `(to - from + 1) - arrived` to `+ arrived` or
/// `to / from`), `p.from == sender` in `Flood::on_evicted` (mutant `!=`: the one asked
/// saying it no longer holds them would not be asked again at once) and
/// `a <= next && next <= b` in `Flood::origin_evicted` (mutant `||`).
#[test]
fn what_the_origin_says_it_no_longer_holds_is_lost_from_the_first_missing_on() {
    // (pushed from s4 meanwhile, evicted, lost (reported, counted), asked of s1 at once)
    type Case = (
        Vec<u64>,
        Vec<(u64, u64)>,
        (Vec<(u64, u64)>, u64),
        Vec<(u64, u64)>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![2, 3, 4, 6],
            vec![(1, 3)],
            (vec![(1, 3)], 1),
            vec![(5, 5), (7, 8)],
        ),
        (vec![], vec![(5, 6)], (vec![], 0), vec![(1, 8)]),
    ];
    for (pushed, evicted, (lost, counted), asked) in cases {
        let (mut m, now) = a_plain_site_with_four_neighbours();
        m.sites.get_mut("s3").unwrap().rtt = Some(Duration::from_millis(10));
        let _ = frames_out(&mut m, now, 2, &digest_msg(false, &[(9, 8)]));
        let ms = |k: u64| now + Duration::from_millis(k);
        let pulls: Vec<(usize, Vec<(u64, u64)>)> = pulls_sent(&mut m, now, ms(50))
            .into_iter()
            .map(|(_, to, ranges)| (to, ranges))
            .collect();
        assert_eq!(pulls, [(0, vec![(1, 8)])]);
        let lost_before = m.stats().lost;
        for seq in pushed {
            let _ = frames_out(&mut m, ms(60), 3, &update_msg("s1", 77, seq, false));
        }
        let msg = FloodMsg::Evicted {
            group: "g".into(),
            origin: "s1".into(),
            incarnation: 77,
            ranges: evicted.clone(),
        };
        let sent = frames_out(&mut m, ms(100), 0, &msg);
        assert_eq!(pulls_in(sent), [(0, asked)], "{evicted:?}");
        let got: Vec<(u64, u64)> = m.groups["g"]
            .lost_log
            .iter()
            .map(|l| {
                assert_eq!(l.3, LostReason::Purged);
                (l.1, l.2)
            })
            .collect();
        assert_eq!(got, lost, "{evicted:?}");
        assert_eq!(m.stats().lost - lost_before, counted, "{evicted:?}");
    }
}

/// Ranges named in a message: to which site (index), the ranges.
type RangesSent = (usize, Vec<(u64, u64)>);

/// A pull from `from` (a site index) for `ranges` of stream s1/77, handed to `m` at
/// `now`: the updates it answered with, as (to, seq, pulled), and the ranges it named
/// evicted.
fn answer_to_pull(
    m: &mut Flood,
    now: Instant,
    from: usize,
    ranges: &[(u64, u64)],
) -> (Vec<(usize, u64, bool)>, Vec<RangesSent>) {
    let pull = FloodMsg::Pull {
        group: "g".into(),
        origin: "s1".into(),
        incarnation: 77,
        ranges: ranges.to_vec(),
    };
    let mut updates = Vec::new();
    let mut evicted = Vec::new();
    for (to, msg) in frames_out(m, now, from, &pull) {
        match msg {
            FloodMsg::Update { seq, pulled, .. } => updates.push((to, seq, pulled)),
            FloodMsg::Evicted { ranges, .. } => evicted.push((to, ranges)),
            _ => {}
        }
    }
    (updates, evicted)
}

/// A pull is answered with the updates held, marked pulled, and names what is not held
/// (here 3, which never came, and 6, not yet known) as evicted, so that the puller asks
/// elsewhere. The updates sent are counted as sent and as pulled.
/// Guards `Flood::on_pull` (mutants: `seq > next` to `==`, `<`, `>=`; `seq - 1` to `+`
/// or `/`; `next = seq + 1` to `-` or `*`; `payloads_sent += 1` and
/// `payloads_pulled += 1` to `*=`).
#[test]
fn a_pull_is_answered_with_what_is_held_and_the_rest_named_evicted() {
    let (mut m, now) = a_plain_site_with_four_neighbours();
    for seq in [1, 2, 4, 5] {
        let _ = frames_out(&mut m, now, 2, &update_msg("s1", 77, seq, false));
    }
    let before = m.stats().clone();
    let (updates, evicted) = answer_to_pull(&mut m, now, 3, &[(1, 6)]);
    assert_eq!(
        updates,
        [(3, 1, true), (3, 2, true), (3, 4, true), (3, 5, true)]
    );
    assert_eq!(evicted, [(3, vec![(3, 3), (6, 6)])]);
    assert_eq!(m.stats().payloads_sent - before.payloads_sent, 4);
    assert_eq!(m.stats().payloads_pulled - before.payloads_pulled, 4);
}

/// A pull's answer stops at `PULL_BATCH` (256) updates or at 4 MiB of data, whichever
/// comes first (exactly 4 MiB is still sent): the rest is left for the next pull,
/// neither sent nor named evicted.
/// Guards `sent >= PULL_BATCH || sent_bytes + data.len() > PULL_ANSWER_BYTES` in
/// `Flood::on_pull` (mutants: `||` to `&&`, `>` to `==` or `>=`, `+` to `*`) and
/// `sent += 1`, `sent_bytes += data.len()` (mutants `*=`).
#[test]
fn a_pulls_answer_stops_at_256_updates_or_4_mib() {
    // (updates held, bytes each, updates sent)
    for (held, size, answered) in [(300u64, 1usize, 256u64), (10, 512 << 10, 8)] {
        let (mut m, now) = a_plain_site_with_four_neighbours();
        let data = Bytes::from(vec![b'x'; size]);
        for seq in 1..=held {
            let msg = FloodMsg::Update {
                group: "g".into(),
                origin: "s1".into(),
                incarnation: 77,
                seq,
                data: data.clone(),
                pulled: false,
            };
            let _ = frames_out(&mut m, now, 2, &msg);
        }
        let (updates, evicted) = answer_to_pull(&mut m, now, 3, &[(1, held)]);
        let want: Vec<(usize, u64, bool)> = (1..=answered).map(|s| (3, s, true)).collect();
        assert_eq!(updates, want, "{size} bytes each");
        assert_eq!(evicted, [], "{size} bytes each");
    }
}

/// A stream's history of what was known when keeps its entries a grain apart: a note
/// exactly one grain after the entry before the latest is a new entry, one sooner moves
/// the latest up; and the history holds at most `HISTORY_MAX` entries, dropping
/// resolution from the old end. (Guards `note_known`'s `< grain` — `<=` would merge the
/// entry a grain apart — and `> HISTORY_MAX` — `>=` would keep one fewer.)
#[test]
fn a_streams_history_keeps_entries_a_grain_apart_and_at_most_its_cap() {
    let grain = Duration::from_millis(100);
    let horizon = Duration::from_secs(3600);
    let mut s = Stream::new(1, Instant::ZERO);
    let at = |ms: u64| Instant::from_millis(ms);
    s.known = 1;
    s.note_known(at(100), grain, horizon);
    assert_eq!(s.history.len(), 2, "the start, then 1 at 100 ms");
    s.known = 2;
    s.note_known(at(100), grain, horizon);
    assert_eq!(
        s.history.len(),
        3,
        "the one before the latest is 100 ms old: a new entry"
    );
    s.known = 3;
    s.note_known(at(150), grain, horizon);
    assert_eq!(
        s.history.back(),
        Some(&(at(150), 3)),
        "the one before the latest is 50 ms old: the latest moves up"
    );
    assert_eq!(s.history.len(), 3);
    s.known = 4;
    s.note_known(at(200), grain, horizon);
    assert_eq!(
        s.history.len(),
        4,
        "exactly a grain after the one before: kept apart"
    );
    assert_eq!(s.known_at(at(120)), Some(1));
    assert_eq!(
        s.known_at(at(160)),
        Some(3),
        "2 was moved up to 3 at 150 ms"
    );
    // The cap: notes a grain apart fill it; past it, the length stays at the cap.
    let mut t = 200;
    for _ in 0..HISTORY_MAX {
        t += 100;
        s.known += 1;
        s.note_known(at(t), grain, horizon);
    }
    assert_eq!(s.history.len(), HISTORY_MAX);
    for _ in 0..5 {
        t += 100;
        s.known += 1;
        s.note_known(at(t), grain, horizon);
        assert_eq!(
            s.history.len(),
            HISTORY_MAX,
            "at most the cap, and no fewer"
        );
    }
    assert_eq!(
        s.history.front(),
        Some(&(Instant::ZERO, 0)),
        "the oldest entry stays"
    );
}

/// An update that arrives again at the end of the contiguous run changes nothing: the
/// gap past it is still missing. (Guards `arrive`'s `seq > self.through`: `>=` would put
/// the duplicate among the out-of-order ones, where it counts as one that fills the gap.)
#[test]
fn an_update_arriving_again_leaves_the_gap_past_it_missing() {
    let mut s = Stream::new(1, Instant::ZERO);
    for q in [1, 2, 4, 2] {
        s.arrive(q);
    }
    assert_eq!(s.through, 2);
    assert_eq!(s.above.iter().copied().collect::<Vec<_>>(), [4]);
    assert!(s.is_missing_any(), "3 is still missing");
    assert_eq!(s.missing_ranges(10), [(3, 3)]);
}
