//! Driving a flotilla machine with nothing but the standard library.
//!
//! This is the whole driving convention in one loop, for people embedding the core in
//! their own daemon: wait for a datagram until the machine's next deadline, feed what
//! happened (a frame, or the passage of time), drain the outputs, repeat.
//!
//! ```text
//! cargo run -p flotilla-core --example std_udp -- --listen 127.0.0.1:7001 --peer 127.0.0.1:7002
//! cargo run -p flotilla-core --example std_udp -- --listen 127.0.0.1:7002 --peer 127.0.0.1:7001 --seconds 5
//! ```

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig, HeartbeatEvent};
use flotilla_core::time::duration_nanos;
use flotilla_core::wire::{Limits, decode_frame};
use flotilla_core::{Input, Instant, Machine, Output, Rng};

/// The one place this program reads the clock. The core never does: it is told the time.
#[allow(clippy::disallowed_methods)]
fn clock() -> std::time::Instant {
    std::time::Instant::now()
}

struct Args {
    listen: SocketAddr,
    peers: Vec<SocketAddr>,
    seconds: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut peers = Vec::new();
    let mut seconds = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|e| bad(&e))?),
            "--peer" => peers.push(value.parse().map_err(|e| bad(&e))?),
            "--seconds" => seconds = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let listen = listen.ok_or("--listen ADDR is required")?;
    Ok(Args {
        listen,
        peers,
        seconds,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| {
        format!("{e}\nusage: std_udp --listen ADDR --peer ADDR [--peer ADDR ...] [--seconds N]")
    })?;
    let socket = UdpSocket::bind(args.listen)?;
    let me = socket.local_addr()?;

    // Core time is a count from an origin we pick: here, program start.
    let origin = clock();
    let now = || Instant::from_nanos(duration_nanos(clock().duration_since(origin)));
    let stop_at = args.seconds.map(Instant::from_secs);

    // A different seed on every run gives a restarted node a new incarnation; the
    // standard library's random hasher keys are a handy source.
    let seed = RandomState::new().hash_one(me);
    let config = HeartbeatConfig::lan(me, args.peers);
    let mut machine = Heartbeat::new(config, now(), Rng::from_seed(seed))?;
    println!("listening on {me}, incarnation {}", machine.incarnation());

    let mut buf = [0u8; 65_536];
    loop {
        // 1. Drain everything the machine wants done.
        while let Some(out) = machine.poll_output() {
            match out {
                // Best effort, like the machine expects: a failed send is just a lost frame.
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.frame.to_bytes(), t.to);
                }
                Output::Event(e) => match e {
                    HeartbeatEvent::PeerUp { peer, incarnation } => {
                        println!("up {peer} incarnation={incarnation}")
                    }
                    HeartbeatEvent::PeerRestarted { peer, incarnation } => {
                        println!("restarted {peer} incarnation={incarnation}")
                    }
                    HeartbeatEvent::PeerDown { peer } => println!("down {peer}"),
                },
                // Heartbeat has no client port; a daemon with one would write here.
                Output::ToClient(..) | Output::CloseClient(_) => {}
                Output::Effect(req) => match req.effect {},
            }
        }

        // 2. Sleep until the next deadline, or until a datagram arrives.
        let t = now();
        if stop_at.is_some_and(|s| t >= s) {
            return Ok(());
        }
        let deadline = [machine.poll_timeout(), stop_at]
            .into_iter()
            .flatten()
            .min();
        let wait = deadline.map_or(Duration::from_secs(3600), |d| d - t);
        if wait.is_zero() {
            // Due now: let the timers fire (never wait with a zero timeout, which
            // std rejects).
            machine.handle_timeout(t);
            continue;
        }
        socket.set_read_timeout(Some(wait))?;

        // 3. Feed what happened.
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let bytes = Bytes::copy_from_slice(&buf[..n]);
                let Ok(frame) = decode_frame(&bytes, &Limits::default()) else {
                    continue; // not a frame: ignore it
                };
                // A refused input leaves the machine unchanged; log it and go on.
                if let Err(e) = machine.handle(now(), Input::Frame { from, frame }) {
                    eprintln!("ignored frame from {from}: {e}");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                machine.handle_timeout(now());
            }
            // ICMP "port unreachable" from a peer that is down shows up here on some
            // systems: not fatal.
            Err(e) => eprintln!("receive: {e}"),
        }
    }
}
