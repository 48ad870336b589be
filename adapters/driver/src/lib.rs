//! # flotilla-driver
//!
//! Runs any [`flotilla_core::Machine`] over real sockets, timers and effect runners —
//! written once, generic over a small [`Runtime`] trait. `flotilla-tokio` and
//! `flotilla-smol` implement that trait and re-export this driver under their names; an
//! embedding program uses one of them.
//!
//! One task owns the machine. It selects over peer frames, client streams, effect
//! outcomes, a bounded command channel, shutdown, and one sleep set to `poll_timeout()`;
//! after every input it drains the machine's outputs to sockets, client writers, the
//! effect runner and a bounded event channel (SPEC.md §7).
//!
//! Binding comes first, so the machine can be built with the addresses the driver really
//! got (port 0 works) and with the driver's clock:
//!
//! ```text
//! let driver = Driver::<Tokio>::bind(DriverConfig::tcp(addr)).await?;
//! let machine = MyMachine::new(driver.local_addrs().peer(), driver.now(), rng);
//! let mut node = driver.start(machine);                 // machines without effects
//! let mut node = driver.start_with(machine, runner);    // machines with effects
//! node.command(cmd).await?;        // the machine's verdict: Ok, or its typed error
//! while let Some(event) = node.next_event().await { … }
//! let machine = node.shutdown().await;
//! ```
//!
//! Every queue is bounded. Peer delivery is best effort: a frame for a peer whose queue is
//! full is dropped and counted. A client that does not read its output is closed; past
//! `max_clients` a new client is told why and closed. Events are never dropped: the driver
//! waits for the program to take them. Effects run at most `effect_concurrency` at once,
//! each under a time limit, off the machine's loop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
mod congestion;
mod conn;
pub mod effects;
pub mod flood_client;
pub mod group_client;
mod node;
pub mod runtime;
pub mod ship_client;
pub mod tables;
pub mod vip_client;

use std::io;
use std::sync::{Arc, Mutex};

use flotilla_core::{Instant, Machine};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

pub use config::{Carries, DriverConfig, ListenAddr, Listener, LocalAddrs, PeerTransport};
pub use effects::{EffectRunner, NoRunner};
pub use runtime::{ReadHalf, Runtime, TcpAccepted, WriteHalf, limit_unacknowledged, timeout};
pub use tables::DriverStats;

/// Re-exports the driver and the client libraries for one runtime under that runtime
/// crate's names: `Driver`, `NodeHandle<M>`, `client::LineClient`,
/// `ship_client::ShipClient`, `flood_client::FloodClient`, `group_client::GroupClient`, `vip_client::VipClient`,
/// and the configuration types.
/// `flotilla-tokio` and `flotilla-smol` each invoke it once with their runtime type.
#[macro_export]
macro_rules! runtime_api {
    ($rt:ty) => {
        pub use $crate::{
            Carries, CommandError, Commander, DriverConfig, DriverStats, EffectRunner, ListenAddr,
            Listener, LocalAddrs, PeerTransport,
        };

        /// Sockets bound, machine not yet running.
        pub type Driver = $crate::Driver<$rt>;
        /// A running node.
        pub type NodeHandle<M> = $crate::NodeHandle<M, $rt>;

        /// A client of any flotilla line protocol over TCP or a Unix socket.
        pub mod client {
            pub use $crate::client::{Error, MAX_UNREAD_NOTICES};
            /// A line-protocol connection under this runtime.
            pub type LineClient = $crate::client::LineClient<$rt>;
        }

        /// A client of a ship's line protocol (SPEC.md §5.1).
        pub mod ship_client {
            pub use $crate::ship_client::{Accepted, Connected, Error};
            /// A ship connection under this runtime.
            pub type ShipClient = $crate::ship_client::ShipClient<$rt>;
        }

        /// A client of a flood daemon's client port (seed 002).
        pub mod flood_client {
            pub use $crate::flood_client::{
                Error, Flooded, Gap, GapKind, GroupSummary, Link, Member, NEAREST_CACHE, Nearest,
                PROBE_TIMEOUT, Topology,
            };
            /// A flood daemon connection under this runtime.
            pub type FloodClient = $crate::flood_client::FloodClient<$rt>;
        }

        /// A client of a group daemon's client protocol: groups and services (SPEC.md
        /// §10.6).
        pub mod group_client {
            pub use $crate::group_client::{
                Cause, Daemon, DaemonView, Delivery, Error, GroupMembers, GroupNotice, MAX_LISTED,
                MemberId, Service, ViewId, parse_daemon_view,
            };
            /// A group daemon connection under this runtime.
            pub type GroupClient = $crate::group_client::GroupClient<$rt>;
        }

        /// A client of a VIP agent's control socket (SPEC.md §11.7).
        pub mod vip_client {
            pub use $crate::vip_client::{
                Error, VipNotice, VipState, VipStatus, parse_notice, parse_status,
            };
            /// A VIP agent connection under this runtime.
            pub type VipClient = $crate::vip_client::VipClient<$rt>;
        }
    };
}

use conn::{Bound, Shared};
use node::{CommandMsg, Node};
use tables::{Counters, Epoch};

/// Sockets bound, machine not yet running. See the crate docs for the order of calls.
pub struct Driver<R: Runtime> {
    rt: R,
    config: DriverConfig,
    udp: Option<R::Udp>,
    bound: Vec<Bound<R>>,
    local: LocalAddrs,
    epoch: Epoch,
}

impl<R: Runtime> core::fmt::Debug for Driver<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Driver")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Driver<R> {
    /// Binds the UDP socket (if peers use UDP) and every listener. The driver's clock
    /// starts here: [`Driver::now`] is near [`Instant::ZERO`].
    pub async fn bind(config: DriverConfig) -> io::Result<Self> {
        let rt = R::default();
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let epoch = Epoch::new(rt.now());
        let mut udp = None;
        let mut peer = None;
        if let PeerTransport::Udp { bind } = config.peers {
            let s = rt.udp_bind(bind).await?;
            peer = Some(rt.udp_local_addr(&s)?);
            udp = Some(s);
        }
        let mut bound = Vec::new();
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let b = Bound::bind(&rt, l).await?;
            let addr = b.local_addr(&rt)?;
            if config.peers == PeerTransport::Tcp
                && peer.is_none()
                && l.carries != Carries::Clients
                && let ListenAddr::Tcp(a) = addr
            {
                peer = Some(a);
            }
            listeners.push((l.id, addr));
            bound.push(b);
        }
        Ok(Driver {
            rt,
            local: LocalAddrs { peer, listeners },
            config,
            udp,
            bound,
            epoch,
        })
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> &LocalAddrs {
        &self.local
    }

    /// The driver's current time: pass it to the machine's constructor.
    pub fn now(&self) -> Instant {
        self.epoch.instant(self.rt.now())
    }

    /// Starts a machine with no effect runner: for machines that need no effects (any
    /// effect asked for is answered `Unsupported`).
    pub fn start<M>(self, machine: M) -> NodeHandle<M, R>
    where
        M: Machine + Send + 'static,
        M::Command: Send + 'static,
        M::Event: Send + 'static,
        M::Effect: Send + 'static,
        M::EffectValue: Send + 'static,
    {
        self.start_with(machine, NoRunner)
    }

    /// Starts a machine whose effects `runner` runs.
    pub fn start_with<M, X>(self, machine: M, runner: X) -> NodeHandle<M, R>
    where
        M: Machine + Send + 'static,
        M::Command: Send + 'static,
        M::Event: Send + 'static,
        M::Effect: Send + 'static,
        M::EffectValue: Send + 'static,
        X: EffectRunner<M::Effect, M::EffectValue>,
    {
        let c = &self.config;
        let (inbound_tx, inbound_rx) = mpsc::channel(c.inbound_capacity.max(1));
        let (control_tx, control_rx) = mpsc::channel(c.inbound_capacity.max(1));
        let (data_tx, data_rx) = mpsc::channel(c.inbound_capacity.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(c.command_capacity.max(1));
        let (ev_tx, ev_rx) = mpsc::channel(c.event_capacity.max(1));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = watch::channel(());
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let (hold_tx, hold_clients) = watch::channel(false);
        let stats = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            rt: self.rt.clone(),
            inbound: inbound_tx,
            from_peers: [control_tx, data_tx],
            stats: stats.clone(),
            ids: Default::default(),
            conns: Default::default(),
            limits: c.limits,
            peer_queue: c.peer_queue.max(1),
            client_queue: c.client_queue.max(1),
            client_bytes: c.client_bytes.max(1),
            connect_timeout: c.connect_timeout,
            control_stall: c.control_stall,
            data_stall: c.data_stall,
            heard: Default::default(),
            me: self.local.peer,
            stop: stop_rx,
            alive: Mutex::new(Some(alive_tx)),
            open_clients: Default::default(),
            max_clients: c.max_clients,
            refusal: c.refusal.clone(),
            slow_notice: c.slow_notice.clone(),
            hold_clients,
        });
        let unix_paths = self.bound.iter().filter_map(Bound::unix_path).collect();
        for b in self.bound {
            b.serve(&shared);
        }
        let peers = node::PeerOut::start(&shared, c.peers, self.udp);
        let node = Node::new(
            machine,
            self.epoch,
            shared,
            peers,
            ev_tx,
            Arc::new(runner),
            c,
            hold_tx,
        );
        let task = self.rt.spawn(node.run(
            node::Inlets {
                control: control_rx,
                peers: data_rx,
                clients: inbound_rx,
            },
            cmd_rx,
            shutdown_rx,
            stop_tx,
            alive_rx,
            unix_paths,
        ));
        NodeHandle {
            commands: cmd_tx,
            events: Some(ev_rx),
            local: self.local,
            epoch: self.epoch,
            rt: self.rt,
            stats,
            shutdown: Some(shutdown_tx),
            task,
        }
    }
}

/// Why a command did not take effect.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommandError<E> {
    /// The machine refused it; its state is unchanged.
    #[error("refused: {0}")]
    Refused(E),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// Sends commands to a running node from anywhere (clone it freely).
pub struct Commander<M: Machine> {
    tx: mpsc::Sender<CommandMsg<M>>,
}

impl<M: Machine> Clone for Commander<M> {
    fn clone(&self) -> Self {
        Commander {
            tx: self.tx.clone(),
        }
    }
}

impl<M: Machine> Commander<M> {
    /// Feeds `cmd` to the machine (waiting for room in the bounded queue) and returns its
    /// verdict: `Ok`, or the machine's typed error.
    pub async fn command(&self, cmd: M::Command) -> Result<(), CommandError<M::Error>> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((cmd, Some(tx)))
            .await
            .map_err(|_| CommandError::Stopped)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CommandError::Refused(e)),
            Err(_) => Err(CommandError::Stopped),
        }
    }
}

/// A running node. Dropping it stops the node (without waiting); [`NodeHandle::shutdown`]
/// stops it, waits until its sockets are closed, and returns the machine.
pub struct NodeHandle<M: Machine + Send + 'static, R: Runtime> {
    commands: mpsc::Sender<CommandMsg<M>>,
    events: Option<mpsc::Receiver<M::Event>>,
    local: LocalAddrs,
    epoch: Epoch,
    rt: R,
    stats: Arc<Counters>,
    shutdown: Option<oneshot::Sender<()>>,
    task: R::Join<M>,
}

impl<M: Machine + Send + 'static, R: Runtime> core::fmt::Debug for NodeHandle<M, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl<M: Machine + Send + 'static, R: Runtime> NodeHandle<M, R> {
    /// The addresses the node bound.
    pub fn local_addrs(&self) -> &LocalAddrs {
        &self.local
    }

    /// The driver's current time, on the clock the machine sees.
    pub fn now(&self) -> Instant {
        self.epoch.instant(self.rt.now())
    }

    /// Feeds `cmd` to the machine and returns its verdict: `Ok`, or the machine's typed
    /// error (state unchanged). Waits while the bounded command queue is full.
    pub async fn command(&self, cmd: M::Command) -> Result<(), CommandError<M::Error>> {
        self.commander().command(cmd).await
    }

    /// A handle to send commands from other tasks.
    pub fn commander(&self) -> Commander<M> {
        Commander {
            tx: self.commands.clone(),
        }
    }

    /// The next event; `None` once the node stopped or the receiver was taken.
    pub async fn next_event(&mut self) -> Option<M::Event> {
        self.events.as_mut()?.recv().await
    }

    /// Takes the event receiver, to read events from another task. Dropping it tells
    /// the driver nobody listens: events are then discarded.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<M::Event>> {
        self.events.take()
    }

    /// The driver's counters.
    pub fn stats(&self) -> DriverStats {
        self.stats.snapshot()
    }

    /// Stops the node, waits until its listeners and sockets are closed (so the ports can
    /// be bound again, and Unix socket files are removed), and returns the machine.
    ///
    /// # Panics
    /// If the driver task panicked (a bug in the machine): the panic is resumed here.
    pub async fn shutdown(self) -> M {
        let NodeHandle { shutdown, task, .. } = self;
        if let Some(s) = shutdown {
            let _ = s.send(());
        }
        task.await
    }
}
