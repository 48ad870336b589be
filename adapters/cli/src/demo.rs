//! `flotilla demo`: N heartbeat nodes in one process on loopback. The last node is stopped
//! a third of the way through and restarted (same port, new incarnation) at two thirds;
//! every event is printed, and the exit code says whether the others saw it go up, down,
//! and up again.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig, HeartbeatEvent};
use flotilla_core::{Instant, Rng};
use flotilla_tokio::{Driver, DriverConfig, NodeHandle};
use tokio::sync::mpsc;

use crate::Outcome;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=100))]
    nodes: u16,
    /// Length of the run, in seconds.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(3..=3600))]
    seconds: u64,
}

const INTERVAL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_millis(500);

/// What one node saw of the victim (the last node): `(time, up)` in order.
type Sightings = Vec<(Instant, bool)>;

async fn start_node(
    i: usize,
    driver: Driver,
    addrs: &[SocketAddr],
    events: &mpsc::Sender<(usize, HeartbeatEvent)>,
) -> Result<(NodeHandle<Heartbeat>, u64), Box<dyn std::error::Error>> {
    let me = driver.local_addrs().peer();
    let mut cfg = HeartbeatConfig::lan(me, addrs.to_vec());
    cfg.interval = INTERVAL;
    cfg.timeout = TIMEOUT;
    let seed = crate::random_seed() ^ i as u64;
    let machine = Heartbeat::new(cfg, driver.now(), Rng::from_seed(seed))?;
    let incarnation = machine.incarnation();
    let mut node = driver.start(machine);
    // Merge every node's events into one stream, tagged with the node's index.
    if let Some(mut rx) = node.take_events() {
        let tx = events.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tx.send((i, ev)).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok((node, incarnation))
}

pub(crate) async fn run(args: Args) -> Outcome {
    let n = usize::from(args.nodes);
    let victim = n - 1;
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    // Bind everything first: each node's machine must know every other node's port.
    let mut drivers = Vec::with_capacity(n);
    for _ in 0..n {
        drivers.push(Driver::bind(DriverConfig::udp(any)).await?);
    }
    let addrs: Vec<SocketAddr> = drivers.iter().map(|d| d.local_addrs().peer()).collect();
    let name = |a: SocketAddr| match addrs.iter().position(|x| *x == a) {
        Some(j) => format!("node{}", j + 1),
        None => a.to_string(),
    };
    for (j, a) in addrs.iter().enumerate() {
        println!("node{} listens on udp {a}", j + 1);
    }

    let (tx, mut rx) = mpsc::channel(1024);
    let mut nodes: Vec<Option<NodeHandle<Heartbeat>>> = Vec::with_capacity(n);
    for (i, d) in drivers.into_iter().enumerate() {
        nodes.push(Some(start_node(i, d, &addrs, &tx).await?.0));
    }
    // Node 1 is never stopped: its clock times the whole run.
    let now = |nodes: &[Option<NodeHandle<Heartbeat>>]| {
        nodes[0].as_ref().map_or(Instant::ZERO, NodeHandle::now)
    };
    let t0 = now(&nodes);
    let secs = |t: Instant| (t - t0).as_secs_f64();

    let total = Duration::from_secs(args.seconds);
    let stop_at = t0 + total / 3;
    let restart_at = t0 + total * 2 / 3;
    let end_at = t0 + total;
    let mut stopped = false;
    let mut restarted = false;
    let mut seen: Vec<Sightings> = vec![Vec::new(); n];
    let mut victim_sees = 0usize;

    loop {
        let t = now(&nodes);
        if t >= end_at {
            break;
        }
        if !stopped && t >= stop_at {
            stopped = true;
            println!("t={:.3}s stopping node{}", secs(t), victim + 1);
            if let Some(v) = nodes[victim].take() {
                v.shutdown().await;
            }
            continue;
        }
        if !restarted && t >= restart_at {
            restarted = true;
            let d = Driver::bind(DriverConfig::udp(addrs[victim])).await?;
            let (node, inc) = start_node(victim, d, &addrs, &tx).await?;
            println!(
                "t={:.3}s restarting node{} on {} (new incarnation {inc})",
                secs(now(&nodes)),
                victim + 1,
                addrs[victim]
            );
            nodes[victim] = Some(node);
            continue;
        }
        let next = [stop_at, restart_at, end_at]
            .into_iter()
            .filter(|m| *m > t)
            .min()
            .unwrap_or(end_at);
        let wait = next - t;
        let Ok(Some((i, ev))) = tokio::time::timeout(wait, rx.recv()).await else {
            continue;
        };
        let t = now(&nodes);
        let (peer, what) = match ev {
            HeartbeatEvent::PeerUp { peer, incarnation } => {
                (peer, format!("up (incarnation {incarnation})"))
            }
            HeartbeatEvent::PeerRestarted { peer, incarnation } => {
                (peer, format!("restarted (incarnation {incarnation})"))
            }
            HeartbeatEvent::PeerDown { peer } => (peer, "down".to_string()),
        };
        println!("t={:.3}s node{} sees {} {what}", secs(t), i + 1, name(peer));
        let up = !what.starts_with("down");
        if peer == addrs[victim] {
            seen[i].push((t, up));
        } else if i == victim && restarted && up {
            victim_sees += 1;
        }
    }

    for node in nodes.into_iter().flatten() {
        node.shutdown().await;
    }

    // Each survivor must have seen the victim up before the stop, down between the stop
    // and the restart, and up after the restart; the restarted victim must see everyone.
    let ok_for = |s: &Sightings| {
        let up_before = s.iter().any(|&(t, up)| up && t < stop_at);
        let down_between = s
            .iter()
            .any(|&(t, up)| !up && t >= stop_at && t < restart_at);
        let up_after = s.iter().any(|&(t, up)| up && t >= restart_at);
        up_before && down_between && up_after
    };
    let good = seen[..victim].iter().filter(|s| ok_for(s)).count();
    let all_good = good == victim && victim_sees >= victim;
    println!(
        "summary: {n} nodes; {good} of {victim} saw node{} up, down, and up again; \
         restarted node{} saw {victim_sees} of {victim} up: {}",
        victim + 1,
        victim + 1,
        if all_good { "ok" } else { "FAILED" }
    );
    Ok(if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
