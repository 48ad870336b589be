//! `flotilla heartbeat`: one heartbeat node over UDP or TCP until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;
use flotilla_core::Rng;
use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig, HeartbeatEvent};
use flotilla_tokio::{Driver, DriverConfig};

use crate::Outcome;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Address to bind. Peers must list this exact address, so use one they can reach
    /// (not 0.0.0.0).
    #[arg(long)]
    listen: SocketAddr,
    /// A peer's address; repeat for each peer.
    #[arg(long = "peer", required = true)]
    peers: Vec<SocketAddr>,
    /// Time between beats, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Silence after which a peer is reported down, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// How frames travel between nodes.
    #[arg(long, value_enum, default_value_t = Transport::Udp)]
    transport: Transport,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Transport {
    Udp,
    Tcp,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let config = match args.transport {
        Transport::Udp => DriverConfig::udp(args.listen),
        Transport::Tcp => DriverConfig::tcp(args.listen),
    };
    let driver = Driver::bind(config).await?;
    let me = driver.local_addrs().peer();
    let mut hb = HeartbeatConfig::lan(me, args.peers);
    hb.interval = Duration::from_millis(args.interval_ms);
    hb.timeout = Duration::from_millis(args.timeout_ms);
    let machine = Heartbeat::new(hb, driver.now(), Rng::from_seed(crate::random_seed()))?;
    tracing::info!(%me, incarnation = machine.incarnation(), "heartbeat node started");
    let mut node = driver.start(machine);
    loop {
        tokio::select! {
            ev = node.next_event() => match ev {
                Some(HeartbeatEvent::PeerUp { peer, incarnation }) => {
                    println!("up {peer} incarnation={incarnation}");
                }
                Some(HeartbeatEvent::PeerRestarted { peer, incarnation }) => {
                    println!("restarted {peer} incarnation={incarnation}");
                }
                Some(HeartbeatEvent::PeerDown { peer }) => println!("down {peer}"),
                None => break,
            },
            r = tokio::signal::ctrl_c() => {
                r?;
                break;
            }
        }
    }
    let stats = node.stats();
    let machine = node.shutdown().await;
    tracing::info!(?stats, beats = ?machine.stats(), "heartbeat node stopped");
    Ok(ExitCode::SUCCESS)
}
