//! The machine's task: the one loop that feeds the machine and drains its outputs.

use core::net::SocketAddr;
use core::ops::ControlFlow;
use core::time::Duration;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use flotilla_core::turns::{Source, Turns};
use flotilla_core::wire::{Frame, decode_frame, transport};
use flotilla_core::{
    ClientId, EffectError, EffectId, EffectRequest, Input, InputOf, Instant, Lane, Machine, Output,
    Transmit,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use crate::config::{DriverConfig, PeerTransport};
use crate::congestion::Congestion;
use crate::conn::{ClientTx, Inbound, Link, Shared, Tx, dial};
use crate::effects::{Admit, EffectQueue, EffectRunner};
use crate::runtime::{Runtime, timeout};
use crate::tables::{ClientSend, ClientTable, Epoch, LinkSend, PeerLinks, Stat};

/// Most client inputs taken in one turn of the loop before its outputs are flushed.
const CLIENT_BATCH: usize = 128;
/// Client bytes past which a turn takes no further client input: a batch is for many
/// small requests (a join storm), not for bulk input, whose frames to peers must meet
/// the congestion check after every input (it is looked at only when they are flushed).
const CLIENT_BATCH_BYTES: usize = 4096;

/// A command and, when the sender waits for it, where the machine's verdict goes.
pub(crate) type CommandMsg<M> = (
    <M as Machine>::Command,
    Option<oneshot::Sender<Result<(), <M as Machine>::Error>>>,
);

type EffectDone<M> = (EffectId, Result<<M as Machine>::EffectValue, EffectError>);

/// The queues the node's loop takes input from, besides commands and effect outcomes.
pub(crate) struct Inlets {
    /// Frames read on peers' control lanes, and their connections' comings and goings.
    pub(crate) control: mpsc::Receiver<Inbound>,
    /// The same for data lanes (and every datagram).
    pub(crate) peers: mpsc::Receiver<Inbound>,
    /// Client streams.
    pub(crate) clients: mpsc::Receiver<Inbound>,
}

/// Where frames for peers go.
pub(crate) enum PeerOut<R: Runtime> {
    Udp(Arc<R::Udp>),
    Tcp(PeerLinks<Tx<Frame>>),
    None,
}

impl<R: Runtime> PeerOut<R> {
    pub(crate) fn start(
        shared: &Arc<Shared<R>>,
        peers: PeerTransport,
        udp: Option<R::Udp>,
    ) -> Self {
        match (peers, udp) {
            (PeerTransport::Udp { .. }, Some(s)) => {
                let s = Arc::new(s);
                shared.spawn(udp_reader(shared.clone(), s.clone()));
                PeerOut::Udp(s)
            }
            (PeerTransport::Tcp, _) => PeerOut::Tcp(PeerLinks::default()),
            _ => PeerOut::None,
        }
    }
}

/// Sends an effect's outcome when dropped without one (its runner panicked, or the task
/// was cancelled): the machine hears exactly one outcome per effect.
struct Outcome<V> {
    id: EffectId,
    permit: Option<mpsc::OwnedPermit<(EffectId, Result<V, EffectError>)>>,
}

impl<V> Outcome<V> {
    fn send(mut self, outcome: Result<V, EffectError>) {
        if let Some(p) = self.permit.take() {
            p.send((self.id, outcome));
        }
    }
}

impl<V> Drop for Outcome<V> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            let why = "the effect's task ended without an outcome (its runner panicked)";
            p.send((self.id, Err(EffectError::Failed(why.to_string()))));
        }
    }
}

pub(crate) struct Node<M: Machine, R: Runtime, X> {
    machine: M,
    epoch: Epoch,
    shared: Arc<Shared<R>>,
    peers: PeerOut<R>,
    clients: ClientTable<ClientTx, oneshot::Sender<()>>,
    events: mpsc::Sender<M::Event>,
    /// Clients evicted while draining: the machine hears `ClientClosed` after the drain.
    evicted: Vec<ClientId>,
    runner: Arc<X>,
    effects: EffectQueue<M::Effect>,
    effect_tx: mpsc::Sender<EffectDone<M>>,
    effect_rx: mpsc::Receiver<EffectDone<M>>,
    effect_timeout: Duration,
    /// Effects refused while draining (the queue was full): answered after the drain.
    overloaded: Vec<EffectId>,
    congestion: Congestion,
    /// Client input read before peers became congested, held in arrival order until they
    /// drain (peer frames are never held).
    parked: std::collections::VecDeque<Inbound>,
    /// Which waiting input goes next (control lane first, then the rest in turn).
    turns: Turns,
}

impl<M, R, X> Node<M, R, X>
where
    M: Machine + Send + 'static,
    M::Command: Send + 'static,
    M::Event: Send + 'static,
    M::Effect: Send + 'static,
    M::EffectValue: Send + 'static,
    R: Runtime,
    X: EffectRunner<M::Effect, M::EffectValue>,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        machine: M,
        epoch: Epoch,
        shared: Arc<Shared<R>>,
        peers: PeerOut<R>,
        events: mpsc::Sender<M::Event>,
        runner: Arc<X>,
        c: &DriverConfig,
        hold_clients: watch::Sender<bool>,
    ) -> Self {
        let effects = EffectQueue::new(c.effect_concurrency, c.effect_queue);
        // One slot per running effect: an effect's outcome can always be sent, even from
        // a destructor.
        let (effect_tx, effect_rx) = mpsc::channel(effects.concurrency());
        Node {
            machine,
            epoch,
            shared,
            peers,
            clients: ClientTable::default(),
            events,
            evicted: Vec::new(),
            runner,
            effects,
            effect_tx,
            effect_rx,
            effect_timeout: c.effect_timeout,
            overloaded: Vec::new(),
            congestion: Congestion::new(c.peer_queue.max(1), hold_clients),
            parked: std::collections::VecDeque::new(),
            turns: Turns::new(),
        }
    }

    fn now(&self) -> Instant {
        self.epoch.instant(self.shared.rt.now())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run(
        mut self,
        mut inlets: Inlets,
        mut commands: mpsc::Receiver<CommandMsg<M>>,
        mut shutdown: oneshot::Receiver<()>,
        stop: watch::Sender<()>,
        mut alive: mpsc::Receiver<()>,
        unix_paths: Vec<PathBuf>,
    ) -> M {
        let mut commands_open = true;
        loop {
            // A fresh `now` on every turn, and an overdue deadline fires here rather than
            // through the timer: a runtime that judges expiry by another clock reading, or
            // a sleep starved by a cooperative budget, cannot delay or spin it.
            let now = self.now();
            let deadline = self.machine.poll_timeout();
            if deadline.is_some_and(|d| d <= now) {
                self.machine.handle_timeout(now);
                if self.flush(&mut shutdown).await.is_break() {
                    break;
                }
                continue;
            }
            // While peers are congested, look at their queues again soon: client input
            // waits for them to drain.
            let recheck = match &self.peers {
                PeerOut::Tcp(links) => self
                    .congestion
                    .recheck(now, |p| links.room((p, Lane::Data))),
                _ => None,
            };
            let deadline = match recheck {
                Some(d) => Some(deadline.map_or(now + d, |t| t.min(now + d))),
                None => deadline,
            };
            // Client input held back while peers were congested goes first once they
            // have drained, one message per turn (each may congest them again).
            if !self.congestion.holding()
                && let Some(msg) = self.parked.pop_front()
            {
                self.handle_inbound(msg);
                if self.flush(&mut shutdown).await.is_break() {
                    break;
                }
                continue;
            }
            // Input that already waits is taken in the shared order: the control lane
            // first, then peers' data, clients and the program's own input in turn.
            let waiting = self.turns.next(|s| match s {
                Source::Control => !inlets.control.is_empty(),
                Source::Peers => !inlets.peers.is_empty(),
                Source::Clients => !inlets.clients.is_empty(),
                Source::Local => {
                    !self.effect_rx.is_empty() || (commands_open && !commands.is_empty())
                }
            });
            if let Some(source) = waiting {
                // A busy loop never reaches the select below: look for shutdown here.
                if !matches!(
                    shutdown.try_recv(),
                    Err(oneshot::error::TryRecvError::Empty)
                ) {
                    break;
                }
                match source {
                    Source::Control => {
                        self.take(&mut inlets.control);
                    }
                    Source::Peers => {
                        self.take(&mut inlets.peers);
                    }
                    Source::Clients => {
                        // A batch per turn, flushed once: a burst of joins is one write
                        // per client, not one per join (a machine may hold its client
                        // bytes until polled). Peers and the control lane still get their
                        // turn after each batch.
                        let mut bytes = self.take(&mut inlets.clients);
                        for _ in 1..CLIENT_BATCH {
                            if bytes >= CLIENT_BATCH_BYTES
                                || self.congestion.holding()
                                || inlets.clients.is_empty()
                            {
                                break;
                            }
                            bytes += self.take(&mut inlets.clients);
                        }
                    }
                    Source::Local => {
                        if let Ok((id, outcome)) = self.effect_rx.try_recv() {
                            self.on_effect_done(id, outcome);
                        } else {
                            match commands.try_recv() {
                                Ok((c, verdict)) => self.on_command(c, verdict),
                                Err(mpsc::error::TryRecvError::Disconnected) => {
                                    commands_open = false;
                                }
                                Err(mpsc::error::TryRecvError::Empty) => {}
                            }
                        }
                    }
                }
                if self.flush(&mut shutdown).await.is_break() {
                    break;
                }
                continue;
            }
            let wake = deadline.and_then(|d| self.epoch.deadline(d));
            let rt = self.shared.rt.clone();
            let sleep = async move {
                match wake {
                    Some(at) => rt.sleep_until(at).await,
                    None => core::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                Some(msg) = inlets.control.recv() => self.on_inbound(msg),
                Some(msg) = inlets.peers.recv() => self.on_inbound(msg),
                Some(msg) = inlets.clients.recv() => self.on_inbound(msg),
                Some((id, outcome)) = self.effect_rx.recv() => self.on_effect_done(id, outcome),
                cmd = commands.recv(), if commands_open => match cmd {
                    Some((c, verdict)) => self.on_command(c, verdict),
                    None => commands_open = false,
                },
                () = sleep => {}
            }
            if self.flush(&mut shutdown).await.is_break() {
                break;
            }
        }
        // Stop every connection and listener task, then wait until each has dropped its
        // socket, so the caller can bind the same ports again as soon as this returns.
        drop(stop);
        self.shared.stopping();
        while alive.recv().await.is_some() {}
        for p in unix_paths {
            let _ = std::fs::remove_file(p);
        }
        self.machine
    }

    /// Feeds one input; a refusal is counted and logged (frames and client bytes from
    /// outside may be refused at any time).
    fn feed(&mut self, input: InputOf<M>) -> Result<(), M::Error> {
        let now = self.now();
        let r = self.machine.handle(now, input);
        if let Err(e) = &r {
            self.shared.stats.bump(Stat::HandleErrors);
            debug!(error = %e, "machine refused input");
        }
        r
    }

    fn on_command(
        &mut self,
        cmd: M::Command,
        verdict: Option<oneshot::Sender<Result<(), M::Error>>>,
    ) {
        let r = self.feed(Input::Command(cmd));
        if let Some(v) = verdict {
            // The program hears the machine's typed verdict; if it stopped waiting, so be it.
            let _ = v.send(r);
        }
    }

    fn on_effect_done(&mut self, id: EffectId, outcome: Result<M::EffectValue, EffectError>) {
        let stat = match &outcome {
            Ok(_) => Stat::EffectsDone,
            Err(EffectError::TimedOut(_)) => Stat::EffectsTimedOut,
            Err(_) => Stat::EffectsFailed,
        };
        self.shared.stats.bump(stat);
        if let Some(next) = self.effects.finished() {
            self.spawn_effect(next);
        }
        let _ = self.feed(Input::EffectDone { id, outcome });
    }

    fn start_effect(&mut self, req: EffectRequest<M::Effect>) {
        match self.effects.admit(req) {
            Admit::Start(req) => self.spawn_effect(req),
            Admit::Queued => {}
            Admit::Refuse(req) => self.overloaded.push(req.id),
        }
    }

    fn spawn_effect(&mut self, req: EffectRequest<M::Effect>) {
        let permit = self
            .effect_tx
            .clone()
            .try_reserve_owned()
            .unwrap_or_else(|_| unreachable!("one outcome slot per running effect"));
        let outcome = Outcome {
            id: req.id,
            permit: Some(permit),
        };
        let limit = req.timeout.unwrap_or(self.effect_timeout);
        let work = self.runner.run(req.effect);
        let rt = self.shared.rt.clone();
        self.shared.spawn(async move {
            let result = match timeout(&rt, limit, work).await {
                Some(r) => r,
                None => Err(EffectError::TimedOut(limit)),
            };
            outcome.send(result);
        });
    }

    /// Handles the next waiting input of `from`, if any; the client bytes it carried.
    fn take(&mut self, from: &mut mpsc::Receiver<Inbound>) -> usize {
        let Ok(msg) = from.try_recv() else {
            return 0;
        };
        let bytes = match &msg {
            Inbound::ClientData(_, data) => data.len(),
            _ => 0,
        };
        self.on_inbound(msg);
        bytes
    }

    fn on_inbound(&mut self, msg: Inbound) {
        // Client input waits while peers are congested, and behind what already waits, so
        // each client's opens, bytes and closes keep their order.
        let client_input = matches!(
            msg,
            Inbound::ClientOpened { .. } | Inbound::ClientData(..) | Inbound::ClientGone(_)
        );
        if client_input && (self.congestion.holding() || !self.parked.is_empty()) {
            self.parked.push_back(msg);
            return;
        }
        self.handle_inbound(msg);
    }

    fn handle_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Frame { from, frame } => {
                self.shared.stats.bump(Stat::FramesIn);
                let _ = self.feed(Input::Frame { from, frame });
            }
            Inbound::PeerConnected {
                peer,
                lane,
                conn,
                tx,
            } => {
                if let PeerOut::Tcp(links) = &mut self.peers
                    && links.insert((peer, lane), conn, Tx(tx))
                {
                    debug!(%peer, %lane, conn, "newer connection replaces the link");
                }
            }
            Inbound::PeerLost { peer, lane, conn } => {
                if let PeerOut::Tcp(links) = &mut self.peers {
                    links.lost((peer, lane), conn);
                }
            }
            Inbound::ClientOpened {
                id,
                origin,
                tx,
                kill,
            } => {
                self.shared.stats.bump(Stat::ClientsOpened);
                self.clients.opened(id, tx, kill);
                let _ = self.feed(Input::ClientOpened { client: id, origin });
            }
            Inbound::ClientData(id, data) => {
                // Bytes read before an eviction may still be queued; the machine has
                // already been told the client is gone.
                if self.clients.contains(id) {
                    let _ = self.feed(Input::ClientData(id, data));
                }
            }
            Inbound::ClientGone(id) => {
                if self.clients.gone(id) {
                    let _ = self.feed(Input::ClientClosed(id));
                }
            }
        }
    }

    /// Drains the machine's outputs. Evicted clients and refused effects are reported back
    /// to it after the drain, each report drained in turn. Breaks if shutdown is asked
    /// while an event waits for room.
    async fn flush(&mut self, shutdown: &mut oneshot::Receiver<()>) -> ControlFlow<()> {
        loop {
            while let Some(out) = self.machine.poll_output() {
                match out {
                    Output::Transmit(t) => self.transmit(t),
                    Output::ToClient(id, data) => {
                        let sent = self.clients.write(id, data);
                        self.after_client_send(id, sent);
                    }
                    Output::CloseClient(id) => {
                        let sent = self.clients.close(id);
                        self.after_client_send(id, sent);
                    }
                    Output::Event(e) => {
                        tokio::select! {
                            // An error means the program dropped the receiver: nobody
                            // listens, so the event is discarded.
                            _ = self.events.send(e) => {}
                            _ = &mut *shutdown => return ControlFlow::Break(()),
                        }
                    }
                    Output::Effect(req) => self.start_effect(req),
                }
            }
            if let Some(id) = self.evicted.pop() {
                let _ = self.feed(Input::ClientClosed(id));
            } else if let Some(id) = self.overloaded.pop() {
                self.shared.stats.bump(Stat::EffectsFailed);
                let outcome = Err(EffectError::Overloaded);
                let _ = self.feed(Input::EffectDone { id, outcome });
            } else {
                return ControlFlow::Continue(());
            }
        }
    }

    fn after_client_send(&mut self, id: ClientId, sent: ClientSend) {
        if sent == ClientSend::Evicted {
            self.shared.stats.bump(Stat::SlowClients);
            debug!(client = %id, "client queue full: closing a slow consumer");
            self.evicted.push(id);
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let stats = &self.shared.stats;
        match &mut self.peers {
            PeerOut::Udp(sock) => {
                match self
                    .shared
                    .rt
                    .udp_try_send_to(sock, &t.frame.to_bytes(), t.to)
                {
                    Ok(_) => stats.bump(Stat::FramesOut),
                    Err(e) => {
                        stats.bump(Stat::FramesDropped);
                        debug!(peer = %t.to, error = %e, "datagram dropped");
                    }
                }
            }
            PeerOut::Tcp(links) => match links.send((t.to, t.lane), t.frame) {
                LinkSend::Queued => {
                    // Only bulk traffic holds clients back: the control lane is small.
                    if t.lane == Lane::Data
                        && let Some(room) = links.room((t.to, t.lane))
                    {
                        let now = self.epoch.instant(self.shared.rt.now());
                        self.congestion.queued(now, t.to, room);
                    }
                }
                LinkSend::Dropped => {
                    stats.bump(Stat::FramesDropped);
                    debug!(peer = %t.to, lane = %t.lane, "peer queue full: frame dropped");
                }
                LinkSend::NoLink(frame) => {
                    let conn = self.shared.next_conn();
                    let (tx, rx) = mpsc::channel(self.shared.peer_queue);
                    // A fresh queue always has room for its first frame.
                    let _ = tx.try_send(frame);
                    links.insert((t.to, t.lane), conn, Tx(tx));
                    let link = Link {
                        peer: t.to,
                        lane: t.lane,
                        conn,
                    };
                    self.shared.spawn(dial(self.shared.clone(), link, rx));
                }
            },
            PeerOut::None => {
                stats.bump(Stat::FramesDropped);
                debug!(peer = %t.to, "no peer transport: frame dropped");
            }
        }
    }
}

async fn udp_reader<R: Runtime>(shared: Arc<Shared<R>>, sock: Arc<R::Udp>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from): (usize, SocketAddr) = match shared.rt.udp_recv_from(&sock, &mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors can surface here on some systems; the socket stays usable.
                debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let bytes = Bytes::copy_from_slice(&buf[..n]);
        match decode_frame(&bytes, &shared.limits) {
            Ok(frame) if transport::is_transport(&frame) => {
                debug!(%from, kind = %frame.kind, "transport frame ignored over udp");
            }
            Ok(frame) => {
                if shared
                    .lane_inbound(Lane::Data)
                    .send(Inbound::Frame { from, frame })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                shared.stats.bump(Stat::DecodeErrors);
                debug!(%from, error = %e, "undecodable datagram dropped");
            }
        }
    }
}
