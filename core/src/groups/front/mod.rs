//! The group daemon's client side (SPEC.md §10.6–10.7): the line protocol local clients
//! speak (join, leave, send, members, bind, release, resolve, done), around the groups
//! machine that orders their items, and the service-group table kept in that order.
//!
//! One copy of each message reaches a daemon; this layer hands it to every local client
//! in the group. Replies that wait for the agreed order (a join is answered once it is in
//! the order) hold the client's later requests back, so replies keep the order of
//! requests. Lines for the daemon itself (`members`, `stats`, `reload`, `leave` without
//! an argument) are forwarded to membership through the node's link.

mod request;
pub mod services;

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use core::time::Duration;
use thiserror::Error;

pub use request::{Refusal, Request, parse_request};
use services::{
    CONTROL_SENDER, Change, Claim, Control, Place, Services, service_group, service_of,
};

use super::machine::{
    Cause, GroupChange, Groups, GroupsCommand, GroupsError, GroupsEvent, GroupsSettings,
};
use crate::line::{LineBuffer, escape, reply, reply_lines};
use crate::machine::{
    ClientId, ClientOrigin, Input, Machine, NoEffect, Outbox, Output, OutputOf, Timers, debug_check,
};
use crate::membership::view::{View, ViewId};
use crate::time::Instant;

/// Longest request line: a 64 KiB message escaped byte by byte, and its command.
pub const MAX_REQUEST_LINE: usize = 4 * super::msg::MAX_PAYLOAD + 1024;
/// Bytes of requests a client may send ahead while one of its requests waits (a sender
/// that pipelines messages is slowed here, not refused).
pub const MAX_BACKLOG: usize = 4 * 1024 * 1024;
/// Memberships (a client in a group, or an agent in a service) the whole cluster holds
/// at most: a view change carries them all in one frame (half of
/// [`super::msg::MAX_TABLE`], so two sides merging stay inside it).
pub const MAX_MEMBERSHIPS: usize = super::msg::MAX_TABLE / 2;
/// Groups one connection may be in at once.
pub const MAX_GROUPS_PER_CLIENT: usize = 256;
/// Members a `610` notice lists (the count is always whole; `members GROUP` lists all).
pub const NOTICE_MEMBERS: usize = 1000;
/// A client that leaves a line unfinished this long is closed.
const PARTIAL_LINE: Duration = Duration::from_secs(30);

const HELP: &[&str] = &[
    "name NAME            this connection's client name (before joining)",
    "join GROUP           join; answered once the join is in the agreed order",
    "leave GROUP          leave; answered once the leave is in the agreed order",
    "send GROUP TEXT      send TEXT (escaped: \\\\ \\n \\r \\t \\xHH) to GROUP's members",
    "fsend GROUP TEXT     the same, FIFO per sender only (no total order; cheaper)",
    "bsend GROUP SIZE     send the SIZE bytes that follow the line, as they are",
    "bfsend GROUP SIZE    the same in the FIFO mode",
    "binary               messages come as 602/603 ... SIZE and SIZE bytes, not escaped",
    "members GROUP        GROUP's members, CLIENT@DAEMON",
    "groups               every group with members",
    "bind SERVICE         this node's agent of SERVICE: prints its cluster port",
    "release SERVICE      give this node's binding of SERVICE up",
    "resolve NODE SERVICE where SERVICE's agent on NODE listens (also NODE:SERVICE)",
    "services             every bound service: port and nodes",
    "done SERVICE [EVENT] this node's agent finished recovery",
    "members | stats | reload | leave   (no argument) the daemon's own",
    "quit                 close this connection",
];

/// What a client-side layer is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontSettings {
    /// The groups machine's settings.
    pub groups: GroupsSettings,
    /// Cluster ports handed to services, `lo..=hi`; every daemon must use the same range.
    pub ports: (u16, u16),
    /// Pass every groups event out as [`FrontEvent::Groups`] (the simulator's checks and
    /// tests read them; a daemon serving clients need not).
    pub report_groups: bool,
    /// How long a recovery barrier may wait before the members not done are reported.
    pub barrier_report: Duration,
    /// Memberships the cluster may hold; a join or bind past it is refused (`452`).
    pub max_memberships: usize,
    /// Planted bug for the simulator's canary: a port conflict after a heal is kept.
    #[doc(hidden)]
    pub canary_port_conflicts: bool,
}

impl FrontSettings {
    /// Defaults around a groups machine: ports 7000–7999, barriers reported after 10 s.
    pub fn new(groups: GroupsSettings) -> Self {
        FrontSettings {
            groups,
            ports: (7000, 7999),
            report_groups: false,
            barrier_report: Duration::from_secs(10),
            max_memberships: MAX_MEMBERSHIPS,
            canary_port_conflicts: false,
        }
    }
}

/// Commands from the embedding program (or, for `View`, from membership through a link).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontCommand {
    /// Membership installed this view.
    View(View),
    /// A command for the groups machine itself, for programs that act as clients without
    /// a stream.
    Groups(GroupsCommand),
}

/// What a line for membership carries through the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// The client's first line for membership: open it there.
    Open(ClientOrigin),
    /// A line.
    Line(Bytes),
    /// The client is gone.
    Close,
}

/// What the layer tells the embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontEvent {
    /// An event of the groups machine (only with `report_groups`).
    Groups(GroupsEvent),
    /// A line for membership (a link feeds it there).
    Forward {
        /// The client.
        client: ClientId,
        /// What.
        what: Forward,
    },
    /// A service's port changed after a heal (both sides had handed it out).
    PortMoved {
        /// The service.
        service: String,
        /// Its new port (0: none was left).
        port: u16,
    },
    /// A recovery barrier waited past the limit.
    BarrierWaiting {
        /// The service.
        service: String,
        /// The barrier.
        event: String,
        /// The nodes that have not said done.
        missing: Vec<String>,
    },
    /// This daemon finished a flush: the groups moved to a new view of the daemons
    /// (reported always; a daemon logs it).
    Flushed {
        /// The new view.
        view: ViewId,
        /// How long the flush took here, from learning the view to its start.
        took: Duration,
    },
}

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FrontError {
    /// The groups machine refused it.
    #[error(transparent)]
    Groups(#[from] GroupsError),
    /// Bytes for a client never opened.
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
    /// A client opened twice.
    #[error("client {0} is already open")]
    DuplicateClient(ClientId),
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// Requests read.
    pub requests: u64,
    /// Notices written (one per client per notice).
    pub notices: u64,
    /// Control messages of service groups that did not read.
    pub bad_control: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Waiting {
    Join(String),
    Leave(String),
    Bind(String),
    Release {
        service: String,
        holder: String,
    },
    /// A request refused for want of room, to make again: its line, and the bytes
    /// that followed it (`bsend`).
    Room(String, Option<Bytes>),
}

/// The key of requests held for room.
const ROOM: &str = "";

impl Waiting {
    /// What the request waits on: its group (a service's hidden group), or room.
    fn key(&self) -> String {
        match self {
            Waiting::Join(g) | Waiting::Leave(g) => g.clone(),
            Waiting::Bind(s) | Waiting::Release { service: s, .. } => service_group(s),
            Waiting::Room(..) => ROOM.to_string(),
        }
    }
}

#[derive(Debug)]
struct Conn {
    name: String,
    origin: ClientOrigin,
    lines: LineBuffer,
    /// Groups joined or being joined.
    joined: BTreeSet<String>,
    /// Services bound or being bound.
    binds: BTreeSet<String>,
    waiting: Option<Waiting>,
    forwarded: bool,
    /// Messages reach this connection as `602`/`603` and their bytes (`binary`).
    binary: bool,
    /// A `bsend` line whose SIZE bytes are not all in yet.
    body: Option<(String, usize)>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    PartialLine(ClientId),
    Barrier(String),
}

/// Lines that go to every local member of one group (a delivery, a `611`), written
/// once instead of once per member: a group of n local members costs O(1) per line and
/// O(n) per drain of the outbox, not O(n) per line. Each member's copy starts where it
/// became a member (or last caught up); it is copied into the member's own output before
/// anything else is written to it, so every client's output keeps its order.
/// The lines are kept in two forms, each only while a local member reads it: as text,
/// and for members that asked for `binary` (messages as `602`/`603` and their bytes).
#[derive(Clone, Debug)]
struct Fanout {
    group: String,
    text: Option<BytesMut>,
    binary: Option<BytesMut>,
    /// Where a member's copy starts (in the form it reads), for members that joined or
    /// caught up since the lines began (the others: 0).
    from: BTreeMap<ClientId, usize>,
}

impl Fanout {
    fn lines(&self, binary: bool) -> Option<&BytesMut> {
        if binary {
            self.binary.as_ref()
        } else {
            self.text.as_ref()
        }
    }

    /// The lines in one form, kept from now on if they were not.
    fn lines_mut(&mut self, binary: bool) -> &mut BytesMut {
        let l = if binary {
            &mut self.binary
        } else {
            &mut self.text
        };
        l.get_or_insert_with(BytesMut::new)
    }

    fn len(&self, binary: bool) -> usize {
        self.lines(binary).map_or(0, BytesMut::len)
    }
}

#[derive(Clone, Debug, Default)]
struct GroupTable {
    view: Option<ViewId>,
    /// (client, daemon), in the order every daemon holds them.
    members: BTreeSet<(String, String)>,
}

/// The client side of a group daemon, holding its groups machine. See the module docs.
#[derive(Debug)]
pub struct GroupsFront {
    groups: Groups,
    me: String,
    daemon_view: View,
    report_groups: bool,
    barrier_report: Duration,
    max_memberships: usize,
    /// Memberships in the table, all groups together.
    memberships: usize,
    clients: BTreeMap<ClientId, Conn>,
    names: BTreeMap<String, ClientId>,
    tables: BTreeMap<String, GroupTable>,
    /// Local clients in each group, as of the last membership change delivered.
    local: BTreeMap<String, BTreeSet<ClientId>>,
    /// The same, by client (so a client gone is taken out of its groups only).
    local_of: BTreeMap<ClientId, BTreeSet<String>>,
    /// Clients whose request waits, by what it waits on ([`Waiting::key`]).
    waiters: BTreeMap<String, BTreeSet<ClientId>>,
    services: Services,
    /// This node's agent of each service (binding or bound).
    binders: BTreeMap<String, ClientId>,
    /// What this daemon last told its agent of each service: (port, since).
    told: BTreeMap<String, (u16, Place)>,
    /// The barrier each agent was last told of (told once, whichever path comes first).
    told_barrier: BTreeMap<String, String>,
    out: BTreeMap<ClientId, BytesMut>,
    /// Lines for every local member of one group, written once for all of them.
    fanout: Option<Fanout>,
    /// Groups that clients gone during this input leave (submitted before it ends).
    pending_gone: Vec<(String, String)>,
    /// Claims of this view the groups machine had no room for, in order: they go as
    /// soon as there is (a claim lost would leave its service without a port).
    held_claims: Vec<(String, Control)>,
    /// The groups machine's outputs are being taken: a command issued meanwhile leaves
    /// its outputs to that loop, so events are handled in the order they came.
    draining: bool,
    /// The time of the latest input: the groups machine's batch, sent when the outputs
    /// are polled, is drained as of then.
    now: Instant,
    timers: Timers<Timer>,
    outbox: Outbox<FrontEvent, NoEffect>,
    stats: FrontStats,
}

impl GroupsFront {
    /// A daemon's client side and groups machine.
    pub fn new(s: FrontSettings, now: Instant) -> Self {
        let me = s.groups.me.name.clone();
        let daemon_view = View::alone(&s.groups.me, 0, Vec::new());
        let f = GroupsFront {
            groups: Groups::new(s.groups, now),
            me,
            daemon_view,
            report_groups: s.report_groups,
            barrier_report: s.barrier_report,
            max_memberships: s.max_memberships,
            memberships: 0,
            clients: BTreeMap::new(),
            names: BTreeMap::new(),
            tables: BTreeMap::new(),
            local: BTreeMap::new(),
            local_of: BTreeMap::new(),
            waiters: BTreeMap::new(),
            services: Services::new(s.ports.0, s.ports.1, s.canary_port_conflicts),
            binders: BTreeMap::new(),
            told: BTreeMap::new(),
            told_barrier: BTreeMap::new(),
            out: BTreeMap::new(),
            fanout: None,
            pending_gone: Vec::new(),
            held_claims: Vec::new(),
            draining: false,
            now,
            timers: Timers::default(),
            outbox: Outbox::default(),
            stats: FrontStats::default(),
        };
        debug_check(&f);
        f
    }

    /// The groups machine.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// The service table.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Counters.
    pub fn stats(&self) -> &FrontStats {
        &self.stats
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    // ----- writing to clients -----

    fn say(&mut self, c: ClientId, code: u16, text: &str) {
        self.write(c, &reply(code, text));
    }

    fn write(&mut self, c: ClientId, b: &[u8]) {
        if self.clients.contains_key(&c) {
            self.catch_up(c);
            self.out.entry(c).or_default().extend_from_slice(b);
        }
    }

    fn notice(&mut self, c: ClientId, text: &str) {
        if self.clients.contains_key(&c) {
            self.catch_up(c);
            self.stats.notices += 1;
            let o = self.out.entry(c).or_default();
            o.extend_from_slice(text.as_bytes());
            o.extend_from_slice(b"\n");
        }
    }

    /// `line` to every local member of `group` but `except` (see [`Fanout`]).
    fn fan_out(&mut self, group: &str, line: &str, except: Option<ClientId>) {
        self.fan_out_each(group, except, |lines, _| {
            lines.extend_from_slice(line.as_bytes());
            lines.extend_from_slice(b"\n");
        });
    }

    /// Writes to every local member of `group` but `except` what `write` puts in the
    /// lines of each form kept (its flag: the `binary` form).
    fn fan_out_each(
        &mut self,
        group: &str,
        except: Option<ClientId>,
        mut write: impl FnMut(&mut BytesMut, bool),
    ) {
        if self.fanout.as_ref().is_some_and(|f| f.group != group) {
            self.spill();
        }
        let heard = self.local.get(group).map_or(0, BTreeSet::len);
        let skipped = except.filter(|c| self.local.get(group).is_some_and(|l| l.contains(c)));
        if let Some(c) = skipped {
            self.catch_up(c);
        }
        if self.fanout.is_none() {
            let (mut text, mut binary) = (false, false);
            for c in self.local.get(group).into_iter().flatten() {
                if self.is_binary(*c) {
                    binary = true;
                } else {
                    text = true;
                }
            }
            self.fanout = Some(Fanout {
                group: group.to_string(),
                text: text.then(BytesMut::new),
                binary: binary.then(BytesMut::new),
                from: BTreeMap::new(),
            });
        }
        let skipped_binary = skipped.is_some_and(|c| self.is_binary(c));
        let Some(f) = &mut self.fanout else {
            return;
        };
        if let Some(l) = &mut f.text {
            write(l, false);
        }
        if let Some(l) = &mut f.binary {
            write(l, true);
        }
        if let Some(c) = skipped {
            f.from.insert(c, f.len(skipped_binary));
        }
        self.stats.notices += (heard - usize::from(skipped.is_some())) as u64;
    }

    /// Whether messages reach client `c` in the binary form.
    fn is_binary(&self, c: ClientId) -> bool {
        self.clients.get(&c).is_some_and(|c| c.binary)
    }

    /// Copies the fan-out lines client `c` has not had yet into its own output.
    fn catch_up(&mut self, c: ClientId) {
        let binary = self.is_binary(c);
        let Some(f) = &mut self.fanout else {
            return;
        };
        if !self.local.get(&f.group).is_some_and(|l| l.contains(&c)) {
            return;
        }
        let Some(lines) = f.lines(binary) else {
            return;
        };
        let start = f.from.get(&c).copied().unwrap_or(0);
        if start < lines.len() {
            self.out
                .entry(c)
                .or_default()
                .extend_from_slice(&lines[start..]);
            let end = lines.len();
            f.from.insert(c, end);
        }
    }

    /// Copies the fan-out lines into every member's own output, and ends them.
    fn spill(&mut self) {
        self.spill_shared(false);
    }

    /// Hands the fan-out lines to every member, and ends them. With `share` (only when
    /// the outputs are polled: no input comes between this and the driver's writes), a
    /// member with nothing else waiting gets them as they are, shared with the other
    /// members (a 10 KiB message is not copied once per member); otherwise, and for a
    /// member with its own bytes waiting, they are copied into its output.
    fn spill_shared(&mut self, share: bool) {
        let Some(f) = self.fanout.take() else {
            return;
        };
        let text = f.text.map(BytesMut::freeze);
        let binary = f.binary.map(BytesMut::freeze);
        for c in self.local.get(&f.group).into_iter().flatten() {
            let lines = if self.is_binary(*c) { &binary } else { &text };
            let Some(lines) = lines else {
                continue;
            };
            let start = f.from.get(c).copied().unwrap_or(0);
            if start >= lines.len() {
                continue;
            }
            if share && !self.out.contains_key(c) {
                // Everything written to it before is in the outbox already.
                self.outbox.to_client(*c, lines.slice(start..));
            } else {
                self.out
                    .entry(*c)
                    .or_default()
                    .extend_from_slice(&lines[start..]);
            }
        }
    }

    fn flush_client(&mut self, c: ClientId) {
        self.catch_up(c);
        if let Some(b) = self.out.remove(&c) {
            self.outbox.to_client(c, b.freeze());
        }
    }

    /// Everything written since the outbox was last drained goes out as one write per
    /// client: a burst of deliveries is one entry in the driver's queue, not hundreds.
    fn flush_all(&mut self) {
        self.spill_shared(true);
        for (c, b) in std::mem::take(&mut self.out) {
            self.outbox.to_client(c, b.freeze());
        }
    }

    fn close(&mut self, c: ClientId) {
        self.flush_client(c);
        self.outbox.close_client(c);
        self.forget(c);
    }

    // ----- the groups machine -----

    fn groups_cmd(&mut self, now: Instant, cmd: GroupsCommand) -> Result<(), GroupsError> {
        let r = self.groups.handle(now, Input::Command(cmd));
        self.drain(now);
        r
    }

    /// Takes everything the groups machine produced, in order, but the batch it is still
    /// forming: that one leaves when the outputs are polled with nothing else waiting
    /// (the end of the driver's turn), so the lines of one read, and the frames of
    /// peers handled in one turn, share frames.
    fn drain(&mut self, now: Instant) {
        if self.draining {
            return;
        }
        self.draining = true;
        while let Some(o) = self.groups.poll_held() {
            match o {
                Output::Transmit(t) => self.outbox.push_transmit(t),
                Output::Event(e) => self.on_groups_event(now, e),
                // The groups machine has no clients and no effects.
                Output::ToClient(..) | Output::CloseClient(_) | Output::Effect(_) => {}
            }
        }
        self.draining = false;
    }

    fn on_groups_event(&mut self, now: Instant, e: GroupsEvent) {
        if self.report_groups {
            self.outbox.event(FrontEvent::Groups(e.clone()));
        }
        match e {
            GroupsEvent::Delivered {
                view,
                seq,
                id,
                group,
                sender,
                payload,
            } => {
                if let Some(s) = service_of(&group) {
                    let s = s.to_string();
                    self.on_control(now, &s, &id.origin, &payload, Place { view, seq });
                    return;
                }
                self.message_notice(600, &group, &sender, &id.origin, (&view, seq), &payload);
            }
            GroupsEvent::FifoDelivered {
                view,
                id,
                group,
                sender,
                payload,
            } => {
                // Service groups carry no FIFO messages: clients cannot name them.
                let at = (&view, id.lseq);
                self.message_notice(601, &group, &sender, &id.origin, at, &payload);
            }
            GroupsEvent::Skipped {
                view,
                seq,
                id,
                group,
                payload,
            } => {
                // Service control messages are processed at their place here too: the
                // daemons that deliver them now must end up where this one is.
                if let Some(s) = service_of(&group) {
                    let s = s.to_string();
                    self.on_control(now, &s, &id.origin, &payload, Place { view, seq });
                }
            }
            GroupsEvent::GroupView {
                group,
                view,
                seq,
                change,
                cause,
                ..
            } => self.on_group_view(now, (group, view, seq), change, cause),
            GroupsEvent::Closed { new, took, .. } => {
                self.outbox.event(FrontEvent::Flushed { view: new, took });
                self.on_closed(now);
            }
        }
    }

    /// After every input: held clients go on, gone clients leave their groups.
    fn end_turn(&mut self, now: Instant) {
        self.now = now;
        self.wake_held(now);
        self.submit_gone(now);
        debug_check(self);
    }

    /// `600` (agreed) or `601` (FIFO) to this daemon's members of `group`, if any.
    fn message_notice(
        &mut self,
        code: u16,
        group: &str,
        sender: &str,
        origin: &str,
        (view, seq): (&ViewId, u64),
        payload: &[u8],
    ) {
        if self.local.get(group).is_none_or(BTreeSet::is_empty) {
            return;
        }
        let head = format!("{group} {sender}@{origin} {view} {seq}");
        self.fan_out_each(group, None, |lines, binary| {
            if binary {
                // 602 / 603: the size, then the bytes as they are.
                let line = format!("{} {head} {}\n", code + 2, payload.len());
                lines.extend_from_slice(line.as_bytes());
                lines.extend_from_slice(payload);
            } else {
                let line = format!("{code} {head} {}\n", escape(payload));
                lines.extend_from_slice(line.as_bytes());
            }
        });
    }

    fn on_group_view(
        &mut self,
        now: Instant,
        (group, view, seq): (String, ViewId, u64),
        change: GroupChange,
        cause: Cause,
    ) {
        let place = Place {
            view: view.clone(),
            seq,
        };
        // Who heard of the group before a view change (a join or a leave changes only
        // the one member it names: no copy of the local members for it).
        let before = matches!(change, GroupChange::Whole(_))
            .then(|| self.local.get(&group).cloned().unwrap_or_default());
        // Apply the change to the table and to the index of local members. A join or a
        // leave touches one member: O(log n), however big the group.
        let table = self.tables.entry(group.clone()).or_default();
        table.view = Some(view.clone());
        let old_len = table.members.len();
        let (changed, differs) = match change {
            GroupChange::Joined(m) => {
                table.members.insert(m.clone());
                (Some(m), true)
            }
            GroupChange::Left(m) => {
                table.members.remove(&m);
                (Some(m), true)
            }
            GroupChange::Whole(list) => {
                let whole: BTreeSet<(String, String)> = list.into_iter().collect();
                let differs = whole != table.members;
                table.members = whole;
                (None, differs)
            }
        };
        let new_len = table.members.len();
        if new_len == 0 {
            self.tables.remove(&group);
        }
        self.memberships = self.memberships + new_len - old_len;
        if let Some((c, d)) = &changed
            && *d == self.me
            && let Some(id) = self.names.get(c).copied()
        {
            let joined = matches!(cause, Cause::Join);
            self.set_local(&group, id, joined);
        } else if changed.is_none() {
            self.reindex_local(&group);
        }
        self.after_group_view(now, &group, &place, cause, changed, (before, differs));
    }

    /// Rebuilds the local members of `group` from its table (after a view change).
    fn reindex_local(&mut self, group: &str) {
        let here: BTreeSet<ClientId> = self
            .tables
            .get(group)
            .into_iter()
            .flat_map(|t| t.members.iter())
            .filter(|(_, d)| *d == self.me)
            .filter_map(|(c, _)| self.names.get(c).copied())
            .collect();
        let before = self.local.get(group).cloned().unwrap_or_default();
        for c in before.difference(&here) {
            self.set_local(group, *c, false);
        }
        for c in here.difference(&before) {
            self.set_local(group, *c, true);
        }
    }

    /// Adds or takes local client `c` to or from `group`'s local members and the index.
    fn set_local(&mut self, group: &str, c: ClientId, member: bool) {
        // A member's copy of the fan-out lines starts where it joins and ends where it
        // leaves.
        self.catch_up(c);
        if member {
            let binary = self.is_binary(c);
            if let Some(f) = self.fanout.as_mut().filter(|f| f.group == group) {
                let start = f.lines_mut(binary).len();
                f.from.insert(c, start);
            }
            self.local.entry(group.to_string()).or_default().insert(c);
            self.local_of
                .entry(c)
                .or_default()
                .insert(group.to_string());
            return;
        }
        if let Some(f) = self.fanout.as_mut().filter(|f| f.group == group) {
            f.from.remove(&c);
        }
        if let Some(l) = self.local.get_mut(group) {
            l.remove(&c);
            if l.is_empty() {
                self.local.remove(group);
            }
        }
        if let Some(gs) = self.local_of.get_mut(&c) {
            gs.remove(group);
            if gs.is_empty() {
                self.local_of.remove(&c);
            }
        }
    }

    /// What follows a change of `group`'s table: the service table for a service
    /// group; otherwise the notices (`610` whole to whom it is news, `611` with the one
    /// member to the others) and the joins and leaves it answers. `before`: the local
    /// members before the change, and whether the table changed at all.
    fn after_group_view(
        &mut self,
        now: Instant,
        group: &str,
        place: &Place,
        cause: Cause,
        changed: Option<(String, String)>,
        (before, differs): (Option<BTreeSet<ClientId>>, bool),
    ) {
        if let Some(s) = service_of(group) {
            // A service's list has one agent per node at most: a copy is cheap.
            let members: Vec<(String, String)> = self
                .tables
                .get(group)
                .map(|t| t.members.iter().cloned().collect())
                .unwrap_or_default();
            let s = s.to_string();
            let nodes: BTreeSet<String> = members.iter().map(|(_, d)| d.clone()).collect();
            let changes = self.services.members(&s, nodes, place);
            self.apply(now, changes);
            self.answer_service_waiters(now, &s, &members);
            return;
        }
        let cause_word = match cause {
            Cause::Join => "join",
            Cause::Leave => "leave",
            Cause::Disconnect => "disconnect",
            Cause::Network => "network",
        };
        let (view, seq) = (&place.view, place.seq);
        let members = self.tables.get(group).map(|t| &t.members);
        let count = members.map_or(0, BTreeSet::len);
        // The whole list goes to whom it is news (the client that joined or left, and
        // everyone at a network change); the others hear only who came or went, so a
        // group of n members costs O(n) per change, not O(n²).
        let causer = changed
            .as_ref()
            .filter(|(_, d)| *d == self.me)
            .and_then(|(who, _)| self.names.get(who).copied());
        // Built only when someone hears it: it lists up to NOTICE_MEMBERS members.
        let full = (causer.is_some() || (changed.is_none() && differs)).then(|| {
            let mut line = format!("610 {group} {view} {seq} {cause_word} {count}");
            for (c, d) in members.into_iter().flatten().take(NOTICE_MEMBERS) {
                // Pushed piece by piece: a thousand members, no allocation each.
                line.push(' ');
                line.push_str(c);
                line.push('@');
                line.push_str(d);
            }
            line
        });
        match (&changed, &full) {
            (None, Some(full)) => {
                // Everyone who was or is a local member hears the new list.
                let mut audience = before.unwrap_or_default();
                audience.extend(self.local.get(group).into_iter().flatten().copied());
                for c in &audience {
                    self.notice(*c, full);
                }
            }
            (None, None) => {}
            (Some((who, d)), full) => {
                if let (Some(c), Some(full)) = (causer, full) {
                    self.notice(c, full);
                }
                // The other local members: the local index already holds the change, so
                // it is everyone who hears, but the member that joined or left.
                let delta = format!("611 {group} {view} {seq} {cause_word} {count} {who}@{d}");
                self.fan_out(group, &delta, causer);
            }
        }
        // Joins and leaves waiting for this change are answered after its notice. A join
        // or a leave answers only its own client's request; a view change may answer any.
        let waiting: Vec<(ClientId, Waiting)> = match &changed {
            Some((who, d)) if *d == self.me => self
                .names
                .get(who)
                .and_then(|id| Some((*id, self.clients.get(id)?.waiting.clone()?)))
                .into_iter()
                .collect(),
            Some(_) => Vec::new(),
            None => self.waiting_on(group),
        };
        for (id, w) in waiting {
            let name = &self.clients[&id].name;
            let member = self
                .tables
                .get(group)
                .is_some_and(|t| t.members.contains(&(name.clone(), self.me.clone())));
            match w {
                Waiting::Join(g) if g == group && member => {
                    self.say(id, 250, &format!("joined {g}"));
                    self.unblock(now, id);
                }
                Waiting::Leave(g) if g == group && !member => {
                    self.say(id, 250, &format!("left {g}"));
                    self.unblock(now, id);
                }
                _ => {}
            }
        }
    }

    /// Binds and releases waiting on service `s`, after a change of its members.
    fn answer_service_waiters(&mut self, now: Instant, s: &str, members: &[(String, String)]) {
        for (id, w) in self.waiting_on(&service_group(s)) {
            match w {
                Waiting::Bind(x) if x == s => {
                    let name = &self.clients[&id].name;
                    let member = members.iter().any(|(c, d)| c == name && *d == self.me);
                    if member && let Some(h) = self.services.port(s) {
                        let (port, since) = (h.port, h.since.clone());
                        self.answer_bind(now, id, s, port, since);
                    }
                    // Otherwise the port comes with a claim (right after a view change).
                }
                Waiting::Release { service, holder } if service == s => {
                    let still = members.iter().any(|(c, d)| *c == holder && *d == self.me);
                    if !still {
                        if let Some(h) = self.names.get(&holder).copied()
                            && h != id
                        {
                            self.notice(h, &format!("625 {s} released"));
                        }
                        self.say(id, 250, &format!("released {s}"));
                        self.unblock(now, id);
                    }
                }
                _ => {}
            }
        }
    }

    /// A view change finished: the service table starts again and every daemon says what
    /// it told its own agents.
    fn on_closed(&mut self, now: Instant) {
        let view = self.groups.view().id.clone();
        // Each claim names the range its port came from, for a move after a conflict,
        // and the view it is for (one carried into a later view is stale there).
        let claims: Vec<(String, Control)> = self
            .binders
            .keys()
            .map(|s| {
                let range = self.services.range_of(s);
                let (port, since) = self.told.get(s).cloned().unwrap_or_else(|| {
                    let view = view.clone();
                    (0, Place { view, seq: 0 })
                });
                let claim = Claim { port, since, range };
                let view = view.clone();
                (s.clone(), Control::Claim { claim, view })
            })
            .collect();
        self.services.reset();
        // Claims held for an earlier view are stale: these replace them.
        self.held_claims = claims;
        self.send_held_claims(now);
    }

    /// Claims held for room go, in order, while there is room.
    fn send_held_claims(&mut self, now: Instant) {
        while let Some((s, c)) = self.held_claims.first().cloned() {
            if self.control(now, &s, &c).is_err() {
                return;
            }
            self.held_claims.remove(0);
        }
    }

    /// Sends a control message to service `s`'s group; refused only while this daemon
    /// has [`super::MAX_PENDING`] items on their way (the caller holds it for room).
    fn control(&mut self, now: Instant, s: &str, c: &Control) -> Result<(), GroupsError> {
        self.groups_cmd(
            now,
            GroupsCommand::Send {
                group: service_group(s),
                sender: CONTROL_SENDER.to_string(),
                payload: Bytes::from(c.encode()),
            },
        )
    }

    fn on_control(&mut self, now: Instant, s: &str, origin: &str, payload: &[u8], place: Place) {
        let changes = match Control::decode(payload) {
            Some(Control::Claim { claim, view }) => {
                let mine = self.binders.contains_key(s);
                self.services
                    .claim(s, (claim, &view), origin, (&place, mine))
            }
            Some(Control::Range(lo, hi)) => {
                self.services.range_for(s, (lo, hi));
                Vec::new()
            }
            Some(Control::Done(event)) => self.services.done(s, &event, origin),
            None => {
                self.stats.bad_control += 1;
                return;
            }
        };
        self.apply(now, changes);
    }

    /// Tells this node's agents what the service table's changes mean for them.
    fn apply(&mut self, now: Instant, changes: Vec<Change>) {
        for ch in changes {
            match ch {
                Change::Port { service, port } => {
                    let Some(&agent) = self.binders.get(&service) else {
                        continue;
                    };
                    let since = self.services.port(&service).map(|h| h.since.clone());
                    let Some(since) = since else { continue };
                    let waiting = self.clients.get(&agent).and_then(|c| c.waiting.clone());
                    if waiting == Some(Waiting::Bind(service.clone())) {
                        // Answered when its join shows in the table (it may be this
                        // very change, handled by the caller next).
                        let member = self.is_local_member(&service, agent);
                        if member {
                            self.answer_bind(now, agent, &service, port, since);
                        }
                        continue;
                    }
                    // A move: after a heal (the service lost its port), or a port freed
                    // for a service that had none (told 0).
                    let before = self.told.insert(service.clone(), (port, since));
                    if before.is_some_and(|(p, _)| p != port) {
                        self.notice(agent, &format!("624 {service} moved {port}"));
                        self.outbox.event(FrontEvent::PortMoved { service, port });
                    }
                }
                Change::Exhausted(service) => {
                    let Some(&agent) = self.binders.get(&service) else {
                        continue;
                    };
                    let (lo, hi) = self.services.range_of(&service);
                    let waiting = self.clients.get(&agent).and_then(|c| c.waiting.clone());
                    if waiting == Some(Waiting::Bind(service.clone())) {
                        self.say(
                            agent,
                            452,
                            &format!("no free cluster port in {lo}-{hi}: {service} not bound"),
                        );
                        self.give_up_binding(now, agent, &service);
                        self.unblock(now, agent);
                    } else if let Some(told) = self.told.get_mut(&service)
                        && told.0 != 0
                    {
                        // Port 0 is remembered as told: the port that frees for it later
                        // is a move too (`624`).
                        told.0 = 0;
                        self.notice(agent, &format!("624 {service} moved 0"));
                        self.outbox
                            .event(FrontEvent::PortMoved { service, port: 0 });
                    }
                }
                Change::Freed(service) => {
                    self.told.remove(&service);
                }
                Change::Begun(service) => self.barrier_begun(now, &service),
                Change::Finished { service, event } => {
                    self.timers.cancel(&Timer::Barrier(service.clone()));
                    if let Some(&agent) = self.binders.get(&service)
                        && self.is_local_member(&service, agent)
                    {
                        self.notice(agent, &format!("622 {service} finish {event}"));
                    }
                }
            }
        }
    }

    fn is_local_member(&self, service: &str, agent: ClientId) -> bool {
        self.local
            .get(&service_group(service))
            .is_some_and(|l| l.contains(&agent))
    }

    fn barrier_begun(&mut self, now: Instant, s: &str) {
        let Some(b) = self.services.current_barrier(s) else {
            return;
        };
        let event = b.event.clone();
        let nodes: Vec<String> = b.members.iter().cloned().collect();
        let port = self.services.port(s).map_or(0, |h| h.port);
        self.timers
            .set(Timer::Barrier(s.to_string()), now + self.barrier_report);
        // An agent whose bind is not answered yet hears of it right after the answer;
        // one whose connection waits for something else (room, a join) hears of it now
        // (notices come between replies).
        if let Some(&agent) = self.binders.get(s)
            && self.is_local_member(s, agent)
            && self
                .clients
                .get(&agent)
                .is_some_and(|c| c.waiting != Some(Waiting::Bind(s.to_string())))
            && self.told_barrier.get(s) != Some(&event)
        {
            self.told_barrier.insert(s.to_string(), event.clone());
            self.notice(agent, &format!("620 {s} stop {event}"));
            self.notice(
                agent,
                &format!(
                    "621 {s} start {event} {port} {} {}",
                    nodes.len(),
                    nodes.join(" ")
                ),
            );
        }
    }

    /// A bind is answered with its port; the barrier in progress follows.
    fn answer_bind(&mut self, now: Instant, agent: ClientId, s: &str, port: u16, since: Place) {
        self.told.insert(s.to_string(), (port, since));
        self.say(agent, 250, &port.to_string());
        self.clear_wait(agent);
        if self.services.current_barrier(s).is_some() {
            self.barrier_begun(now, s);
        }
        self.unblock(now, agent);
    }

    fn on_barrier_timer(&mut self, s: &str) {
        let Some(b) = self.services.barrier(s) else {
            return;
        };
        let missing: Vec<String> = b.members.difference(&b.done).cloned().collect();
        let event = b.event.clone();
        if let Some(&agent) = self.binders.get(s)
            && self.is_local_member(s, agent)
        {
            self.notice(
                agent,
                &format!("623 {s} waiting {event} {}", missing.join(" ")),
            );
        }
        self.outbox.event(FrontEvent::BarrierWaiting {
            service: s.to_string(),
            event,
            missing,
        });
    }

    /// A binding that will not be: the client leaves the service group again.
    fn give_up_binding(&mut self, now: Instant, agent: ClientId, service: &str) {
        let Some(c) = self.clients.get_mut(&agent) else {
            return;
        };
        c.binds.remove(service);
        let name = c.name.clone();
        self.binders.remove(service);
        self.told_barrier.remove(service);
        let _ = self.groups_cmd(
            now,
            GroupsCommand::Disconnect {
                group: service_group(service),
                client: name,
            },
        );
    }

    // ----- clients -----

    fn on_opened(
        &mut self,
        now: Instant,
        client: ClientId,
        origin: ClientOrigin,
    ) -> Result<(), FrontError> {
        if self.clients.contains_key(&client) {
            return Err(FrontError::DuplicateClient(client));
        }
        let name = format!("c{}", client.0);
        self.names.insert(name.clone(), client);
        self.clients.insert(
            client,
            Conn {
                name,
                origin,
                lines: LineBuffer::new(MAX_REQUEST_LINE),
                joined: BTreeSet::new(),
                binds: BTreeSet::new(),
                waiting: None,
                forwarded: false,
                binary: false,
                body: None,
            },
        );
        let _ = now;
        Ok(())
    }

    fn on_data(&mut self, now: Instant, client: ClientId, data: &[u8]) -> Result<(), FrontError> {
        let Some(c) = self.clients.get_mut(&client) else {
            return Err(FrontError::UnknownClient(client));
        };
        c.lines.push(data);
        self.pump(now, client);
        Ok(())
    }

    /// Reads and answers the client's complete lines, until one must wait.
    fn pump(&mut self, now: Instant, client: ClientId) {
        loop {
            let Some(c) = self.clients.get_mut(&client) else {
                return;
            };
            if c.waiting.is_some() {
                // Requests sent while one waits are kept, up to a bound.
                if c.lines.pending() > MAX_BACKLOG {
                    self.say(
                        client,
                        421,
                        "too many requests sent while one waits: closing",
                    );
                    self.close(client);
                }
                break;
            }
            // A `bsend` line's bytes are taken by count once all are in: never scanned.
            if let Some((_, size)) = &c.body {
                if c.lines.pending() < *size {
                    break;
                }
                let Some((line, size)) = c.body.take() else {
                    break;
                };
                let body = c.lines.take(size);
                self.on_line(now, client, &line, Some(body));
                continue;
            }
            match c.lines.next_line() {
                Ok(Some(line)) => {
                    self.stats.requests += 1;
                    self.on_line(now, client, &line, None);
                }
                Ok(None) => break,
                Err(e) => {
                    self.say(client, 500, &e.to_string());
                    self.close(client);
                    return;
                }
            }
        }
        let partial = self
            .clients
            .get(&client)
            .is_some_and(|c| c.waiting.is_none() && (c.lines.pending() > 0 || c.body.is_some()));
        if partial {
            if !self.timers.contains(&Timer::PartialLine(client)) {
                self.timers
                    .set(Timer::PartialLine(client), now + PARTIAL_LINE);
            }
        } else {
            self.timers.cancel(&Timer::PartialLine(client));
        }
    }

    fn unblock(&mut self, now: Instant, client: ClientId) {
        if self.clients.contains_key(&client) {
            self.clear_wait(client);
            self.pump(now, client);
        }
    }

    fn wait(&mut self, client: ClientId, w: Waiting) {
        self.clear_wait(client);
        if let Some(c) = self.clients.get_mut(&client) {
            self.waiters.entry(w.key()).or_default().insert(client);
            c.waiting = Some(w);
        }
    }

    /// The client's request no longer waits; returns what it waited for.
    fn clear_wait(&mut self, client: ClientId) -> Option<Waiting> {
        let w = self.clients.get_mut(&client)?.waiting.take()?;
        let key = w.key();
        if let Some(set) = self.waiters.get_mut(&key) {
            set.remove(&client);
            if set.is_empty() {
                self.waiters.remove(&key);
            }
        }
        Some(w)
    }

    /// The clients whose request waits on `key` (a group, or [`ROOM`]).
    fn waiting_on(&self, key: &str) -> Vec<(ClientId, Waiting)> {
        self.waiters
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| Some((*id, self.clients.get(id)?.waiting.clone()?)))
            .collect()
    }

    /// A request the groups machine refused: too many items on their way holds it (and
    /// the client's later requests) until there is room, so a sender that pipelines is
    /// slowed rather than refused; anything else is answered.
    fn busy(&mut self, client: ClientId, e: GroupsError, line: &str) {
        self.busy_with(client, e, (line, None));
    }

    /// [`Self::busy`] for a request with the bytes that followed its line.
    fn busy_with(&mut self, client: ClientId, e: GroupsError, (line, body): (&str, Option<Bytes>)) {
        match e {
            GroupsError::Busy => self.wait(client, Waiting::Room(line.to_string(), body)),
            other => self.say(client, 501, &other.to_string()),
        }
    }

    /// Requests held for room go again, oldest client first, while there is room.
    fn wake_held(&mut self, now: Instant) {
        self.send_held_claims(now);
        if !self.held_claims.is_empty() {
            return;
        }
        for (id, _) in self.waiting_on(ROOM) {
            if self.groups.pending() >= super::MAX_PENDING {
                return;
            }
            let Some(Waiting::Room(line, body)) = self.clear_wait(id) else {
                continue;
            };
            self.on_line(now, id, &line, body);
            self.pump(now, id);
        }
    }

    /// One request: its line, and for `bsend` the bytes that followed it (once all are
    /// in; before, `None`, and the line waits for them).
    fn on_line(&mut self, now: Instant, client: ClientId, line: &str, body: Option<Bytes>) {
        let req = match parse_request(line) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(r) => {
                if r.skip > 0 && body.is_none() {
                    // The bytes that belong to the line go first; then the refusal.
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.body = Some((line.to_string(), r.skip));
                    }
                    return;
                }
                self.say(client, r.code, &r.text);
                if r.close {
                    self.close(client);
                }
                return;
            }
        };
        let (name, joined, binds) = {
            let c = &self.clients[&client];
            (c.name.clone(), c.joined.len(), c.binds.len())
        };
        match req {
            Request::Name(n) => {
                if joined + binds > 0 {
                    self.say(client, 450, "a name is set before joining or binding");
                } else if n
                    .strip_prefix('c')
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                {
                    self.say(
                        client,
                        501,
                        "names c<digits> are the daemon's own: choose another",
                    );
                } else if n != name && (self.names.contains_key(&n) || self.named_in_tables(&n)) {
                    self.say(client, 450, &format!("{n} is taken on this daemon"));
                } else {
                    self.names.remove(&name);
                    self.names.insert(n.clone(), client);
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.name = n.clone();
                    }
                    self.say(client, 250, &n);
                }
            }
            Request::Join(g) => {
                if self.clients[&client].joined.contains(&g) {
                    self.say(client, 450, &format!("already a member of {g}"));
                } else if let Some(full) = self.full() {
                    self.say(client, 452, &full);
                } else if joined >= MAX_GROUPS_PER_CLIENT {
                    self.say(
                        client,
                        452,
                        &format!("at most {MAX_GROUPS_PER_CLIENT} groups per connection"),
                    );
                } else {
                    // Waiting before the command: on the sequencer the join may be
                    // delivered inside it.
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.joined.insert(g.clone());
                    }
                    self.wait(client, Waiting::Join(g.clone()));
                    let cmd = GroupsCommand::Join {
                        group: g.clone(),
                        client: name,
                    };
                    if let Err(e) = self.groups_cmd(now, cmd) {
                        if let Some(c) = self.clients.get_mut(&client) {
                            c.joined.remove(&g);
                        }
                        self.clear_wait(client);
                        self.busy(client, e, line);
                    }
                }
            }
            Request::Leave(g) => {
                if !self.clients[&client].joined.contains(&g) {
                    self.say(client, 450, &format!("not a member of {g}"));
                } else {
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.joined.remove(&g);
                    }
                    self.wait(client, Waiting::Leave(g.clone()));
                    let cmd = GroupsCommand::Leave {
                        group: g.clone(),
                        client: name,
                    };
                    if let Err(e) = self.groups_cmd(now, cmd) {
                        if let Some(c) = self.clients.get_mut(&client) {
                            c.joined.insert(g);
                        }
                        self.clear_wait(client);
                        self.busy(client, e, line);
                    }
                }
            }
            Request::Send {
                group,
                payload,
                fifo,
            } => {
                let payload = Bytes::from(payload);
                self.send_message(now, (client, name), (group, payload, fifo), (line, None));
            }
            Request::SendSized { group, size, fifo } => match body {
                Some(payload) => {
                    let held = Some(payload.clone());
                    self.send_message(now, (client, name), (group, payload, fifo), (line, held));
                }
                None => {
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.body = Some((line.to_string(), size));
                    }
                }
            },
            Request::Binary => {
                // What was written so far in text reaches this client in text.
                self.spill();
                if let Some(c) = self.clients.get_mut(&client) {
                    c.binary = true;
                }
                self.say(
                    client,
                    250,
                    "binary: messages come as 602/603 GROUP SENDER@DAEMON E.C SEQ SIZE, then SIZE bytes",
                );
            }
            Request::Members(g) => {
                let t = self.tables.get(&g).cloned().unwrap_or_default();
                let view = t
                    .view
                    .map_or_else(|| self.groups.view().id.to_string(), |v| v.to_string());
                let mut lines = vec![format!("group {g} view {view} members={}", t.members.len())];
                lines.extend(t.members.iter().map(|(c, d)| format!("{c}@{d}")));
                lines.push(format!("{} members", t.members.len()));
                let b = reply_lines(250, lines.iter().map(String::as_str));
                self.write(client, &b);
            }
            Request::Groups => {
                let mut lines: Vec<String> = self
                    .tables
                    .iter()
                    .filter(|(g, _)| service_of(g).is_none())
                    .map(|(g, t)| format!("{g} {}", t.members.len()))
                    .collect();
                lines.push(format!("{} groups", lines.len()));
                let b = reply_lines(250, lines.iter().map(String::as_str));
                self.write(client, &b);
            }
            Request::Services => {
                let mut lines: Vec<String> = self
                    .services
                    .list()
                    .map(|(s, p, n)| {
                        format!(
                            "{s} {} {}",
                            p.unwrap_or(0),
                            n.iter().cloned().collect::<Vec<_>>().join(",")
                        )
                    })
                    .collect();
                lines.push(format!("{} services", lines.len()));
                let b = reply_lines(250, lines.iter().map(String::as_str));
                self.write(client, &b);
            }
            Request::Bind(s) => self.on_bind(now, (client, line), name, s),
            Request::Release(s) => self.on_release(now, (client, line), s),
            Request::Resolve { node, service } => self.on_resolve(client, &node, &service),
            Request::Done { service, event } => {
                self.on_done(now, (client, line), &service, event);
            }
            Request::Daemon => {
                self.flush_client(client);
                let origin = self.clients[&client].origin;
                if let Some(c) = self.clients.get_mut(&client)
                    && !c.forwarded
                {
                    c.forwarded = true;
                    self.outbox.event(FrontEvent::Forward {
                        client,
                        what: Forward::Open(origin),
                    });
                }
                self.outbox.event(FrontEvent::Forward {
                    client,
                    what: Forward::Line(Bytes::from(format!("{line}\n"))),
                });
            }
            Request::Help => {
                let mut lines: Vec<&str> = HELP.to_vec();
                lines.push("end of help");
                let b = reply_lines(214, lines);
                self.write(client, &b);
            }
            Request::Quit => {
                self.say(client, 221, "bye");
                self.close(client);
            }
        }
    }

    fn named_in_tables(&self, n: &str) -> bool {
        self.tables
            .values()
            .any(|t| t.members.iter().any(|(c, d)| c == n && *d == self.me))
    }

    /// Why the cluster takes no more memberships, if it does not.
    fn full(&self) -> Option<String> {
        (self.memberships >= self.max_memberships).then(|| {
            format!(
                "the cluster holds {} memberships, the most it takes: leave some first",
                self.memberships
            )
        })
    }

    /// A message from a client to the groups machine: `250 sent`, or held for room.
    fn send_message(
        &mut self,
        now: Instant,
        (client, sender): (ClientId, String),
        (group, payload, fifo): (String, Bytes, bool),
        held: (&str, Option<Bytes>),
    ) {
        let cmd = GroupsCommand::message(fifo, group, sender, payload);
        match self.groups_cmd(now, cmd) {
            Ok(()) => self.say(client, 250, "sent"),
            Err(e) => self.busy_with(client, e, held),
        }
    }

    fn on_bind(&mut self, now: Instant, (client, line): (ClientId, &str), name: String, s: String) {
        if let Some(full) = self.full() {
            self.say(client, 452, &full);
            return;
        }
        let here = self
            .services
            .nodes(&s)
            .is_some_and(|n| n.contains(&self.me));
        if self.binders.contains_key(&s) || here {
            let me = self.me.clone();
            self.say(
                client,
                450,
                &format!("{s} is already bound on {me} (one agent per node per service)"),
            );
            return;
        }
        // The range goes just ahead of the join (FIFO per daemon): every daemon then
        // hands the port from the same range, whatever its own configuration says.
        let (lo, hi) = self.services.range();
        // Refused only when the join is too: the bind then waits for room and comes
        // again, range first.
        let _ = self.control(now, &s, &Control::Range(lo, hi));
        self.binders.insert(s.clone(), client);
        if let Some(c) = self.clients.get_mut(&client) {
            c.binds.insert(s.clone());
        }
        self.wait(client, Waiting::Bind(s.clone()));
        let cmd = GroupsCommand::Join {
            group: service_group(&s),
            client: name,
        };
        if let Err(e) = self.groups_cmd(now, cmd) {
            self.binders.remove(&s);
            self.told_barrier.remove(&s);
            if let Some(c) = self.clients.get_mut(&client) {
                c.binds.remove(&s);
            }
            self.clear_wait(client);
            self.busy(client, e, line);
        }
    }

    fn on_release(&mut self, now: Instant, (client, line): (ClientId, &str), s: String) {
        let holder = self.binders.get(&s).copied();
        let bound = holder.is_some_and(|h| {
            self.clients
                .get(&h)
                .is_some_and(|c| c.waiting != Some(Waiting::Bind(s.clone())))
        });
        let (Some(h), true) = (holder, bound) else {
            let me = self.me.clone();
            self.say(client, 450, &format!("{s} is not bound on {me}"));
            return;
        };
        let holder_name = self.clients[&h].name.clone();
        self.binders.remove(&s);
        self.told_barrier.remove(&s);
        if let Some(c) = self.clients.get_mut(&h) {
            c.binds.remove(&s);
        }
        self.wait(
            client,
            Waiting::Release {
                service: s.clone(),
                holder: holder_name.clone(),
            },
        );
        let cmd = GroupsCommand::Leave {
            group: service_group(&s),
            client: holder_name,
        };
        if let Err(e) = self.groups_cmd(now, cmd) {
            self.binders.insert(s.clone(), h);
            if let Some(c) = self.clients.get_mut(&h) {
                c.binds.insert(s);
            }
            self.clear_wait(client);
            self.busy(client, e, line);
        }
    }

    fn on_resolve(&mut self, client: ClientId, node: &str, s: &str) {
        let Some(m) = self.daemon_view.member(node) else {
            self.say(client, 450, &format!("no daemon {node} in the view"));
            return;
        };
        let ip = m.addr.ip();
        if !self.services.nodes(s).is_some_and(|n| n.contains(node)) {
            self.say(client, 450, &format!("{s} is not bound on {node}"));
            return;
        }
        match self.services.port(s) {
            Some(h) => {
                let addr = core::net::SocketAddr::new(ip, h.port);
                self.say(client, 250, &addr.to_string());
            }
            None if self.services.settling() => self.say(
                client,
                451,
                &format!("{s} has no port yet (a view change is settling): try again"),
            ),
            None => {
                let (lo, hi) = self.services.range_of(s);
                self.say(
                    client,
                    451,
                    &format!(
                        "{s} has no port: none of {lo}-{hi} is free (it gets the first that \
                         frees): try again"
                    ),
                );
            }
        }
    }

    fn on_done(
        &mut self,
        now: Instant,
        (client, line): (ClientId, &str),
        s: &str,
        event: Option<String>,
    ) {
        if self.binders.get(s) != Some(&client) {
            let me = self.me.clone();
            self.say(
                client,
                450,
                &format!("this connection is not {s}'s agent on {me}"),
            );
            return;
        }
        // Only the barrier the agent was told of and that still waits takes a done: one
        // for any other event would be answered but never finish anything.
        let Some(current) = self.services.current_barrier(s).map(|b| b.event.clone()) else {
            self.say(
                client,
                450,
                &format!("no recovery barrier of {s} is waiting"),
            );
            return;
        };
        if let Some(e) = event
            && e != current
        {
            self.say(
                client,
                450,
                &format!("{e} is not the barrier of {s} that waits ({current}): not done"),
            );
            return;
        }
        match self.control(now, s, &Control::Done(current.clone())) {
            Ok(()) => self.say(client, 250, &format!("done {s} {current}")),
            Err(e) => self.busy(client, e, line),
        }
    }

    /// A client is gone: it leaves every group it was in, and its bindings.
    fn forget(&mut self, client: ClientId) {
        self.clear_wait(client);
        let Some(c) = self.clients.remove(&client) else {
            return;
        };
        self.out.remove(&client);
        if let Some(f) = &mut self.fanout {
            f.from.remove(&client);
        }
        self.timers.cancel(&Timer::PartialLine(client));
        if self.names.get(&c.name) == Some(&client) {
            self.names.remove(&c.name);
        }
        for g in self.local_of.remove(&client).unwrap_or_default() {
            if let Some(l) = self.local.get_mut(&g) {
                l.remove(&client);
                if l.is_empty() {
                    self.local.remove(&g);
                }
            }
        }
        if c.forwarded {
            self.outbox.event(FrontEvent::Forward {
                client,
                what: Forward::Close,
            });
        }
        let mut gone: Vec<String> = c.joined.iter().cloned().collect();
        for s in &c.binds {
            if self.binders.get(s) == Some(&client) {
                self.binders.remove(s);
                self.told_barrier.remove(s);
                self.told.remove(s);
            }
            gone.push(service_group(s));
        }
        self.pending_gone
            .extend(gone.into_iter().map(|g| (g, c.name.clone())));
    }

    fn submit_gone(&mut self, now: Instant) {
        for (group, client) in std::mem::take(&mut self.pending_gone) {
            let _ = self.groups_cmd(now, GroupsCommand::Disconnect { group, client });
        }
    }

    fn check(&self) -> Result<(), String> {
        self.groups.check_invariants()?;
        self.services.check()?;
        if !self.held_claims.is_empty() && self.groups.pending() < super::MAX_PENDING {
            return Err("claims held for room while there is room".into());
        }
        // Output waits for the next poll only for clients still open (a close flushes).
        if let Some(c) = self.out.keys().find(|c| !self.clients.contains_key(c)) {
            return Err(format!("output kept for client {c}, which is closed"));
        }
        if let Some(f) = &self.fanout {
            let members = self.local.get(&f.group);
            for (c, at) in &f.from {
                let len = f.len(self.is_binary(*c));
                if !members.is_some_and(|l| l.contains(c)) || *at > len {
                    return Err(format!(
                        "fan-out of {}: client {c} starts at {at} of {len} bytes, a member: {}",
                        f.group,
                        members.is_some_and(|l| l.contains(c))
                    ));
                }
            }
        }
        let counted: usize = self.tables.values().map(|t| t.members.len()).sum();
        if counted != self.memberships {
            return Err(format!(
                "{} memberships counted, {counted} in the table",
                self.memberships
            ));
        }
        for (n, id) in &self.names {
            if self.clients.get(id).map(|c| &c.name) != Some(n) {
                return Err(format!("name {n} points at a client that is not it"));
            }
        }
        if self.names.len() != self.clients.len() {
            return Err("a client without its name".into());
        }
        for (s, b) in &self.binders {
            if !self.clients.get(b).is_some_and(|c| c.binds.contains(s)) {
                return Err(format!("the agent of {s} does not hold it"));
            }
        }
        for (g, l) in &self.local {
            if l.is_empty() || !l.iter().all(|c| self.clients.contains_key(c)) {
                return Err(format!("local members of {g} that are not clients"));
            }
            if !l
                .iter()
                .all(|c| self.local_of.get(c).is_some_and(|gs| gs.contains(g)))
            {
                return Err(format!("the index of {g}'s local members disagrees"));
            }
        }
        let indexed: usize = self.local_of.values().map(BTreeSet::len).sum();
        let counted: usize = self.local.values().map(BTreeSet::len).sum();
        if indexed != counted {
            return Err("local members indexed twice or not at all".into());
        }
        let waiting = self
            .clients
            .values()
            .filter(|c| c.waiting.is_some())
            .count();
        let indexed: usize = self.waiters.values().map(BTreeSet::len).sum();
        if waiting != indexed {
            return Err(format!("{waiting} requests wait, {indexed} are indexed"));
        }
        for (k, ids) in &self.waiters {
            let right = |id: &ClientId| {
                self.clients
                    .get(id)
                    .and_then(|c| c.waiting.as_ref())
                    .is_some_and(|w| w.key() == *k)
            };
            if ids.is_empty() || !ids.iter().all(right) {
                return Err(format!("waiters on {k:?} that do not wait on it"));
            }
        }
        Ok(())
    }
}

impl Machine for GroupsFront {
    type Command = FrontCommand;
    type Event = FrontEvent;
    type Error = FrontError;
    type Effect = NoEffect;
    type EffectValue = NoEffect;

    fn handle(
        &mut self,
        now: Instant,
        input: Input<FrontCommand, NoEffect>,
    ) -> Result<(), FrontError> {
        let r = match input {
            Input::Frame { from, frame } => {
                let r = self.groups.handle(now, Input::Frame { from, frame });
                self.drain(now);
                r.map_err(FrontError::from)
            }
            Input::Command(FrontCommand::View(v)) => {
                if v.id > self.daemon_view.id || self.daemon_view.id.epoch == 0 {
                    self.daemon_view = v.clone();
                }
                self.groups_cmd(now, GroupsCommand::View(v))
                    .map_err(FrontError::from)
            }
            Input::Command(FrontCommand::Groups(c)) => {
                self.groups_cmd(now, c).map_err(FrontError::from)
            }
            Input::ClientOpened { client, origin } => self.on_opened(now, client, origin),
            Input::ClientData(client, data) => self.on_data(now, client, &data),
            // A client this layer closed itself is already forgotten.
            Input::ClientClosed(client) => {
                self.forget(client);
                Ok(())
            }
            Input::EffectDone { .. } => Ok(()),
        };
        self.end_turn(now);
        r
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.groups.poll_timeout().is_some_and(|t| t <= now) {
            self.groups.handle_timeout(now);
            self.drain(now);
        }
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::PartialLine(c) => {
                    if self.clients.contains_key(&c) {
                        self.say(
                            c,
                            421,
                            "line left unfinished for 30s: closing the connection",
                        );
                        self.close(c);
                    }
                }
                Timer::Barrier(s) => self.on_barrier_timer(&s),
            }
        }
        self.end_turn(now);
    }

    fn poll_output(&mut self) -> Option<OutputOf<Self>> {
        // Client bytes and the groups machine's batch wait until the outbox is drained:
        // inputs handled back to back (a driver taking a batch of input in one turn)
        // write once per client, and their frames share batches.
        if self.outbox.is_empty() {
            self.groups.end_batch();
            self.drain(self.now);
        }
        if self.outbox.is_empty() && (!self.out.is_empty() || self.fanout.is_some()) {
            self.flush_all();
        }
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.groups.poll_timeout(), self.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.check()
    }
}

impl crate::compose::Part for GroupsFront {
    fn owns_family(&self, family: u8) -> bool {
        family == super::msg::FAMILY
    }
}

#[cfg(test)]
mod tests;
