//! The membership machine of one daemon (SPEC.md §9).
//!
//! Two layers. **Liveness** suggests changes and never decides them: each daemon sends
//! heartbeats to its ring neighbours (2 + ⌈log₂ n⌉ on each side) and reports the ones it
//! stops hearing to the coordinator, which tries to reach each itself for `verify_for`
//! before it believes the report. **Agreement** decides: the coordinator (the least name
//! not known to be unreachable) proposes a view, members acknowledge it, and the
//! coordinator commits it; members that do not acknowledge in time are left out of the
//! next proposal. A daemon that cannot reach its coordinator asks everyone who can hear
//! it (a gather) and the least name among them proposes.

mod agreement;
mod checks;
mod clients;
mod liveness;

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::msg::{ClusterConfig, MemberMsg};
use super::view::{self, Member, View, ViewId};
use crate::line::LineBuffer;
use crate::machine::{
    ClientId, Input, Lane, Machine, NoEffect, Outbox, OutputOf, PeerAddr, Timers, debug_check,
};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::Frame;

/// What a daemon's machine is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipSettings {
    /// This daemon's name.
    pub name: String,
    /// Where it listens (its identity on the wire).
    pub addr: SocketAddr,
    /// Daemons to ask to join (`--join`), besides those the configuration lists.
    pub join: Vec<SocketAddr>,
    /// The configuration it starts with (its version is 0 until a cluster agrees on one).
    pub config: ClusterConfig,
    /// Client lines longer than this are refused.
    pub max_line: usize,
    /// Planted bug for the simulator's canary: a member installs a proposal before it
    /// is committed, leaving one other member out.
    #[doc(hidden)]
    pub canary_install_early: bool,
}

/// Whether a configuration can be sent to other daemons: names valid and listed once,
/// at most [`MAX_MEMBERS`](super::msg::MAX_MEMBERS) daemons, timings as SPEC.md §9.3
/// says (what a configuration file or a frame must satisfy).
pub fn check_config(c: &ClusterConfig) -> Result<(), String> {
    super::config_file::check_timing(&c.timing)?;
    if c.daemons.len() > super::msg::MAX_MEMBERS {
        return Err(format!(
            "{} daemons listed, at most {}",
            c.daemons.len(),
            super::msg::MAX_MEMBERS
        ));
    }
    let mut seen = BTreeSet::new();
    for (n, _) in &c.daemons {
        if !super::msg::valid_name(n) {
            return Err(format!("daemon name {n:?} is not a name"));
        }
        if !seen.insert(n.as_str()) {
            return Err(format!("daemon {n} is listed twice"));
        }
    }
    Ok(())
}

impl MembershipSettings {
    /// Whether these settings make a working daemon: a valid name and configuration.
    pub fn validate(&self) -> Result<(), String> {
        if !super::msg::valid_name(&self.name) {
            return Err(format!("{:?} is not a daemon name", self.name));
        }
        check_config(&self.config)
    }

    /// Settings for `name` at `addr` with the default configuration.
    pub fn new(name: &str, addr: SocketAddr) -> Self {
        MembershipSettings {
            name: name.to_string(),
            addr,
            join: Vec::new(),
            config: ClusterConfig::default(),
            max_line: crate::line::DEFAULT_MAX_LINE,
            canary_install_early: false,
        }
    }
}

/// Commands from the embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipCommand {
    /// Leave the cluster on purpose (the daemon stops once out).
    Leave,
    /// Apply this configuration to the cluster (read again from the daemon's file).
    /// Clients that asked for the reload are told it is on its way.
    Reload(ClusterConfig),
    /// The configuration could not be read again: clients that asked for the reload
    /// are told why.
    ReloadRefused(String),
}

/// What the machine tells the embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A view was installed.
    ViewInstalled {
        /// The view.
        view: View,
        /// Members new in it.
        joined: Vec<String>,
        /// Members gone from it.
        left: Vec<String>,
    },
    /// The cluster refused this daemon (its name is taken, or a reload removed it).
    Refused {
        /// Why.
        reason: String,
    },
    /// This daemon left on purpose and is out of the cluster's view.
    Left,
    /// A client asked for the configuration to be read again.
    ReloadRequested,
}

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MembershipError {
    /// A frame that does not decode.
    #[error("bad frame: {0}")]
    Decode(#[from] crate::wire::DecodeError),
    /// A frame of another protocol.
    #[error("not a membership frame (kind {0})")]
    Family(crate::wire::Kind),
    /// A client id the machine does not know.
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
    /// Effects are not used.
    #[error("the membership machine runs no effects")]
    NoEffects,
    /// A configuration that could not be sent to other daemons.
    #[error("bad configuration: {0}")]
    BadConfig(String),
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Views installed.
    pub views: u64,
    /// Proposals made as coordinator.
    pub proposals: u64,
    /// Neighbours suspected.
    pub suspicions: u64,
    /// Suspicions the coordinator checked and found alive.
    pub refuted: u64,
    /// Gathers started.
    pub gathers: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Frames sent in all.
    pub frames_sent: u64,
    /// Bytes of those frames, headers included (what a TCP stream carries for them).
    pub bytes_sent: u64,
    /// Frames refused.
    pub bad_frames: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Heartbeat,
    ReportRetry,
    Verify(String),
    Propose,
    ProposeRetry,
    CommitWait,
    Gather,
    Hello,
    Join,
    LeaveDeadline,
    PartialLine(ClientId),
}

/// A report to the coordinator waiting for its acknowledgement.
#[derive(Clone, Debug)]
struct PendingReport {
    to: String,
    suspects: Vec<String>,
    tries: u32,
}

/// The coordinator trying to reach a suspected member.
#[derive(Clone, Debug)]
struct Verify {
    nonce: u64,
    until: Instant,
}

/// A proposal in flight.
#[derive(Clone, Debug)]
struct Proposing {
    view: View,
    config: Option<ClusterConfig>,
    /// Acknowledgements by member (this daemon's own among them).
    acks: BTreeMap<String, Ack>,
    /// Members asked and not answered since, with when the first copy went.
    asked: BTreeMap<String, Instant>,
    deadline: Instant,
    /// Times the deadline was pushed back to check silent members.
    extensions: u32,
}

/// A member's acknowledgement of a proposal.
#[derive(Clone, Debug)]
struct Ack {
    /// The member's last primary view, and that view's basis.
    last: ViewId,
    basis: Vec<String>,
    /// When the member was asked for it. Its acknowledgement is a promise that lasts
    /// its commit wait from when it was given, which is after that; the coordinator
    /// counts it for half the wait (the rest is for the commit to reach the member),
    /// and asks again past it.
    at: Instant,
}

impl Proposing {
    /// Whether `name`'s acknowledgement still holds at `now`. The coordinator's own
    /// (`me`) always does.
    fn holds(&self, name: &str, me: &str, now: Instant, commit_timeout: Duration) -> bool {
        self.acks
            .get(name)
            .is_some_and(|a| name == me || now < a.at + commit_timeout / 2)
    }
}

/// A proposal this daemon acknowledged, waiting for its commit.
#[derive(Clone, Debug)]
struct Awaiting {
    view: View,
}

/// A gather in flight.
#[derive(Clone, Debug)]
struct Gathering {
    nonce: u64,
    until: Instant,
    here: BTreeMap<String, Member>,
    epoch: u64,
}

#[derive(Debug)]
struct Client {
    lines: LineBuffer,
}

/// The membership machine of one daemon.
#[derive(Debug)]
pub struct Membership {
    me: Member,
    cfg: ClusterConfig,
    seeds: Vec<SocketAddr>,
    canary: bool,
    rng: Rng,
    view: View,
    /// The highest epoch heard of, in any message or view: a proposal's is above it.
    max_epoch: u64,
    /// The highest proposal acknowledged (or made): lower ones are refused.
    highest: ViewId,
    /// The last primary view installed, and its basis.
    last_primary: (ViewId, Vec<String>),
    neighbours: Vec<Member>,
    heard: BTreeMap<String, Instant>,
    suspects: BTreeSet<String>,
    report: Option<PendingReport>,
    /// Members this daemon holds unreachable (verified, or a silent coordinator).
    unreachable: BTreeSet<String>,
    verifying: BTreeMap<String, Verify>,
    joins: BTreeMap<String, Member>,
    leaves: BTreeSet<String>,
    merge: BTreeMap<String, Member>,
    /// Foreign daemons whose views were asked for, to merge, and when (asked again
    /// after a while: the request or its answer may be lost).
    merge_asked: BTreeMap<SocketAddr, Instant>,
    pending_config: Option<ClusterConfig>,
    proposing: Option<Proposing>,
    awaiting: Option<Awaiting>,
    gathering: Option<Gathering>,
    /// Daemons met earlier (or listed) that are not in the view: greeted, to heal.
    absent: BTreeMap<String, SocketAddr>,
    leaving: bool,
    stopped: bool,
    /// When a view request last went out (one per retry period).
    last_view_req: Option<Instant>,
    /// The wait before the next join request while alone (doubles up to a quarter of
    /// the hello period: a request is one small frame per seed, and a lossy link to
    /// the only seed must not keep a daemon out for long).
    join_backoff: Duration,
    /// Probes made for others: this daemon's nonce → (the asker's nonce, the asker).
    relays: BTreeMap<u64, (u64, PeerAddr)>,
    clients: BTreeMap<ClientId, Client>,
    /// Clients waiting for the embedding program to read the configuration again.
    reload_waiting: Vec<ClientId>,
    max_line: usize,
    timers: Timers<Timer>,
    outbox: Outbox<MembershipEvent, NoEffect>,
    next_nonce: u64,
    stats: MembershipStats,
}

/// Daemons greeted per hello period at most.
const HELLO_FANOUT: usize = 8;
/// Absent daemons remembered at most.
const MAX_ABSENT: usize = 4096;
/// Reports sent before the coordinator is held unreachable.
const REPORT_TRIES: u32 = 3;
/// Probes made for others remembered at most.
const MAX_RELAYS: usize = 256;
/// Members asked to probe a suspect, each retry period, besides the direct probe.
const INDIRECT: usize = 3;
/// Times a proposal's deadline is pushed back to check silent members before they are
/// left out anyway.
const MAX_EXTENSIONS: u32 = 2;

impl Membership {
    /// A daemon's machine at `now`; `rng` draws its incarnation. Settings that do not
    /// [`validate`](MembershipSettings::validate) are made to: timings that break the
    /// rules are replaced by the defaults and bad daemon entries dropped (check first to
    /// refuse them instead, as `flotilla groupd` does).
    pub fn new(mut s: MembershipSettings, now: Instant, mut rng: Rng) -> Self {
        if super::config_file::check_timing(&s.config.timing).is_err() {
            s.config.timing = super::msg::Timing::default();
        }
        let mut seen = BTreeSet::new();
        s.config
            .daemons
            .retain(|(n, _)| super::msg::valid_name(n) && seen.insert(n.clone()));
        s.config.daemons.truncate(super::msg::MAX_MEMBERS);
        // Joining through itself is no join: such a daemon is the first of its cluster.
        s.join.retain(|a| *a != s.addr);
        let me = Member {
            name: s.name.clone(),
            incarnation: rng.next_u64() | 1,
            addr: s.addr,
        };
        let configured: Vec<String> = s.config.daemons.iter().map(|(n, _)| n.clone()).collect();
        // The first daemon of a cluster formed by flags is its primary; one that joins,
        // or whose file lists others, is not until a view says so.
        let basis = if !configured.is_empty() {
            configured
        } else if s.join.is_empty() {
            vec![me.name.clone()]
        } else {
            Vec::new()
        };
        let view = View::alone(&me, s.config.version, basis);
        // A view that is not primary is no basis for deciding later ones.
        let last_primary = if view.primary {
            (view.id.clone(), view.basis.clone())
        } else {
            (ViewId::default(), Vec::new())
        };
        let mut absent = BTreeMap::new();
        for (n, a) in &s.config.daemons {
            if *n != me.name {
                absent.insert(n.clone(), *a);
            }
        }
        let mut m = Membership {
            me,
            cfg: s.config,
            seeds: s.join,
            canary: s.canary_install_early,
            rng,
            highest: view.id.clone(),
            view,
            max_epoch: 0,
            last_primary,
            neighbours: Vec::new(),
            heard: BTreeMap::new(),
            suspects: BTreeSet::new(),
            report: None,
            unreachable: BTreeSet::new(),
            verifying: BTreeMap::new(),
            joins: BTreeMap::new(),
            leaves: BTreeSet::new(),
            merge: BTreeMap::new(),
            merge_asked: BTreeMap::new(),
            pending_config: None,
            proposing: None,
            awaiting: None,
            gathering: None,
            absent,
            leaving: false,
            stopped: false,
            last_view_req: None,
            join_backoff: Duration::ZERO,
            relays: BTreeMap::new(),
            clients: BTreeMap::new(),
            reload_waiting: Vec::new(),
            max_line: s.max_line,
            timers: Timers::default(),
            outbox: Outbox::default(),
            next_nonce: 1,
            stats: MembershipStats::default(),
        };
        m.timers.set(Timer::Heartbeat, now + m.cfg.timing.heartbeat);
        m.timers.set(Timer::Hello, now + m.cfg.timing.hello);
        if !m.seeds.is_empty() || !m.absent.is_empty() {
            m.start_joining(now);
        }
        let v = m.view.clone();
        m.outbox.event(MembershipEvent::ViewInstalled {
            view: v,
            joined: vec![m.me.name.clone()],
            left: Vec::new(),
        });
        debug_check(&m);
        m
    }

    /// This daemon.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The installed view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The highest view id this daemon has proposed, acknowledged or installed in this
    /// life: a daemon never acknowledges below it, so every member of a view it is in
    /// holds at least that view's id here (the simulator checks this at every install).
    pub fn highest_seen(&self) -> &ViewId {
        &self.highest
    }

    /// The configuration the cluster agreed on (or this daemon's, while alone).
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &MembershipStats {
        &self.stats
    }

    /// Whether the daemon has stopped taking part (it left, or was refused).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Whether the daemon takes part: not stopped, and not leaving.
    pub fn active(&self) -> bool {
        !self.stopped && !self.leaving
    }

    fn nonce(&mut self) -> u64 {
        self.next_nonce += 1;
        self.next_nonce
    }

    fn send(&mut self, to: PeerAddr, msg: &MemberMsg) {
        self.send_frame(to, msg.to_frame());
    }

    fn send_frame(&mut self, to: PeerAddr, frame: Frame) {
        if to == self.me.addr {
            return;
        }
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += frame.encoded_len() as u64;
        // Every membership frame decides who is alive: none waits behind bulk traffic.
        self.outbox.transmit_on(Lane::Control, to, frame);
    }

    fn addr_of(&self, name: &str) -> Option<PeerAddr> {
        self.view.member(name).map(|m| m.addr)
    }

    /// The coordinator of the installed view as this daemon sees it.
    fn coordinator(&self) -> &Member {
        view::coordinator(&self.view, &self.unreachable).unwrap_or(&self.me)
    }

    fn is_coordinator(&self) -> bool {
        self.coordinator().name == self.me.name
    }

    fn on_frame(
        &mut self,
        now: Instant,
        from: PeerAddr,
        frame: &Frame,
    ) -> Result<(), MembershipError> {
        if (frame.kind.0 >> 8) as u8 != super::msg::FAMILY {
            return Err(MembershipError::Family(frame.kind));
        }
        let msg = MemberMsg::decode(frame)?;
        if self.stopped {
            return Ok(());
        }
        // Every epoch heard, in whatever message and from whomever, raises what this
        // daemon's next proposal must exceed (SPEC.md §9.2).
        self.max_epoch = self.max_epoch.max(msg.epoch_heard());
        match msg {
            MemberMsg::Heartbeat { view, from: m } => self.on_heartbeat(now, view, m),
            MemberMsg::Report { view: _, suspects } => self.on_report(now, from, suspects),
            MemberMsg::ReportAck { .. } => {
                self.report = None;
                self.timers.cancel(&Timer::ReportRetry);
            }
            MemberMsg::Probe { nonce } => {
                let me = self.me.clone();
                self.send(from, &MemberMsg::ProbeAck { nonce, from: me });
            }
            MemberMsg::ProbeFor { nonce, target } => {
                // Probe on the asker's behalf, with a nonce of this daemon's own.
                let mine = self.nonce();
                self.relays.insert(mine, (nonce, from));
                while self.relays.len() > MAX_RELAYS {
                    self.relays.pop_first();
                }
                self.send(target.addr, &MemberMsg::Probe { nonce: mine });
            }
            MemberMsg::ProbeAck { nonce, from: m } => {
                if let Some((theirs, asker)) = self.relays.remove(&nonce) {
                    self.send(
                        asker,
                        &MemberMsg::ProbeAck {
                            nonce: theirs,
                            from: m,
                        },
                    );
                } else {
                    self.on_probe_ack(now, nonce, m);
                }
            }
            MemberMsg::Gather { nonce, .. } => {
                let (me, view) = (
                    self.me.clone(),
                    self.highest.clone().max(self.view.id.clone()),
                );
                self.send(
                    from,
                    &MemberMsg::Here {
                        nonce,
                        from: me,
                        view,
                    },
                );
            }
            MemberMsg::Here {
                nonce,
                from: m,
                view,
            } => self.on_here(nonce, m, view),
            MemberMsg::Elect { members, epoch } => self.on_elect(now, members, epoch),
            MemberMsg::Propose { view, config } => self.on_propose(now, view, config),
            MemberMsg::Ack {
                id,
                from: m,
                last_primary,
                basis,
            } => self.on_ack(now, id, m, last_primary, basis),
            MemberMsg::Nack { id, higher } => self.on_nack(now, from, id, higher),
            MemberMsg::Commit { view, config } => self.on_commit(now, view, config),
            MemberMsg::Join { member } => self.on_join(now, member),
            // A stranger cannot stop this daemon with a refusal it never asked for. A
            // daemon asking to join hears from whichever member coordinates.
            MemberMsg::Refuse { reason }
                if self.knows_addr(from)
                    || (self.view.members.len() <= 1 && self.timers.contains(&Timer::Join)) =>
            {
                self.on_refuse(reason)
            }
            MemberMsg::Refuse { .. } => {}
            MemberMsg::Leave { member } => self.on_leave(now, member),
            MemberMsg::Hello { view, from: m, .. } => self.on_hello(now, view, m),
            MemberMsg::ViewReq { .. } => {
                let msg = MemberMsg::ViewState {
                    view: self.view.clone(),
                    config: self.cfg.clone(),
                };
                self.send(from, &msg);
            }
            MemberMsg::ViewState { view, config } => self.on_view_state(now, from, view, config),
            MemberMsg::Reload { config } => self.on_reload(now, config),
        }
        Ok(())
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        // Clients are still served after the daemon stops, and still timed out.
        if self.stopped && !matches!(t, Timer::PartialLine(_)) {
            return;
        }
        match t {
            Timer::Heartbeat => self.on_heartbeat_timer(now),
            Timer::ReportRetry => self.on_report_retry(now),
            Timer::Verify(name) => self.on_verify_timer(now, &name),
            Timer::Propose => self.propose(now),
            Timer::ProposeRetry => self.on_propose_retry(now),
            Timer::CommitWait => self.on_commit_wait(now),
            Timer::Gather => self.on_gather_timer(now),
            Timer::Hello => self.on_hello_timer(now),
            Timer::Join => self.on_join_timer(now),
            Timer::LeaveDeadline => {
                self.outbox.event(MembershipEvent::Left);
                self.stop();
            }
            Timer::PartialLine(c) => self.on_partial_line(c),
        }
    }

    /// Stops taking part: the daemon left, or was refused. Clients are still answered.
    fn stop(&mut self) {
        self.stopped = true;
        let protocol: Vec<Timer> = self
            .timers
            .keys()
            .filter(|t| !matches!(t, Timer::PartialLine(_)))
            .cloned()
            .collect();
        for t in protocol {
            self.timers.cancel(&t);
        }
        self.proposing = None;
        self.awaiting = None;
        self.gathering = None;
        self.report = None;
        self.verifying.clear();
    }

    /// The timing in force.
    fn timing(&self) -> &super::msg::Timing {
        &self.cfg.timing
    }

    /// A duration up to `d` drawn at random (so daemons started together do not beat in
    /// step).
    fn jitter(&mut self, d: Duration) -> Duration {
        self.rng.duration_between(Duration::ZERO, d)
    }
}

impl Machine for Membership {
    type Command = MembershipCommand;
    type Event = MembershipEvent;
    type Error = MembershipError;
    type Effect = NoEffect;
    type EffectValue = NoEffect;

    fn handle(
        &mut self,
        now: Instant,
        input: Input<MembershipCommand, NoEffect>,
    ) -> Result<(), MembershipError> {
        let r = match input {
            Input::Frame { from, frame } => {
                let r = self.on_frame(now, from, &frame);
                if r.is_err() {
                    self.stats.bad_frames += 1;
                }
                r
            }
            Input::ClientOpened { client, origin } => {
                self.on_client_opened(client, origin);
                Ok(())
            }
            Input::ClientData(c, data) => self.on_client_data(now, c, &data),
            Input::ClientClosed(c) => {
                self.clients.remove(&c);
                self.reload_waiting.retain(|w| *w != c);
                self.timers.cancel(&Timer::PartialLine(c));
                Ok(())
            }
            // A daemon that left or was refused takes no part any more: commands change
            // nothing (a reload is answered, so that nobody waits for it).
            Input::Command(MembershipCommand::Reload(_)) if self.stopped => {
                self.answer_reload(451, "reload refused: this daemon is out of the cluster");
                Ok(())
            }
            Input::Command(_) if self.stopped => Ok(()),
            Input::Command(MembershipCommand::Leave) => {
                self.leave(now);
                Ok(())
            }
            Input::Command(MembershipCommand::Reload(cfg)) if check_config(&cfg).is_err() => {
                let why = check_config(&cfg).err().unwrap_or_default();
                self.answer_reload(451, &format!("reload refused: {why}"));
                Err(MembershipError::BadConfig(why))
            }
            Input::Command(MembershipCommand::Reload(cfg)) => {
                let text = format!(
                    "configuration read ({} daemons listed): coordinator {} applies it",
                    cfg.daemons.len(),
                    self.coordinator().name
                );
                self.answer_reload(250, &text);
                self.on_reload(now, cfg);
                Ok(())
            }
            Input::Command(MembershipCommand::ReloadRefused(why)) => {
                self.answer_reload(451, &format!("reload refused: {why}"));
                Ok(())
            }
            Input::EffectDone { .. } => Err(MembershipError::NoEffects),
        };
        debug_check(self);
        r
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            self.on_timer(now, t);
        }
        debug_check(self);
    }

    fn poll_output(&mut self) -> Option<OutputOf<Self>> {
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.check()
    }
}

impl crate::compose::Part for Membership {
    fn owns_family(&self, family: u8) -> bool {
        family == super::msg::FAMILY
    }
}

/// Members of `a` not in `b`, by name.
fn names_not_in(a: &View, b: &View) -> Vec<String> {
    a.names()
        .filter(|n| !b.contains(n))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests;
