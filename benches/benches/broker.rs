//! Broker matching in the core, without I/O (BENCHMARKS.md "Broker").
//!
//! `local`: one ship, an accept then a connect on the same key from two clients.
//! `cross`: a mothership with two daughterships; accept on one, connect on the other,
//! frames passed by hand (no network), so the figure is the machines' own cost.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_core::machine::{ClientId, Input, Machine, Output, PeerAddr};
use flotilla_core::ship::machine::request_line;
use flotilla_core::ship::tree::ConfigTree;
use flotilla_core::ship::{Ship, ShipConfig};
use flotilla_core::wire::decode_frame;
use flotilla_core::{ClientOrigin, Instant, ListenerId, Rng};
use std::time::Duration;

fn addr(i: u8) -> PeerAddr {
    PeerAddr::from(([10, 0, 0, i], 10000))
}

/// Delivers every pending output among `ships` until quiet; returns final replies seen.
fn pump(ships: &mut [Ship], now: Instant) -> usize {
    let mut finals = 0;
    loop {
        let mut moved = false;
        for i in 0..ships.len() {
            while let Some(o) = ships[i].poll_output() {
                moved = true;
                match o {
                    Output::Transmit(t) => {
                        let j = ships
                            .iter()
                            .position(|s| s.config().listen == t.to)
                            .unwrap();
                        let frame = decode_frame(&t.frame.to_bytes(), &Default::default()).unwrap();
                        let _ = ships[j].handle(
                            now,
                            Input::Frame {
                                from: addr(i as u8 + 1),
                                frame,
                            },
                        );
                    }
                    Output::ToClient(_, b) if b.starts_with(b"200") => finals += 1,
                    _ => {}
                }
            }
        }
        if !moved {
            return finals;
        }
    }
}

fn local(c: &mut Criterion) {
    let mut ship = Ship::new(
        ShipConfig::mothership(addr(1), ConfigTree::default()),
        Instant::ZERO,
        Rng::from_seed(1),
    )
    .unwrap();
    let (a, b) = (ClientId(1), ClientId(2));
    ship.handle(
        Instant::ZERO,
        Input::ClientOpened {
            client: a,
            origin: ClientOrigin::unix(ListenerId(0)),
        },
    )
    .unwrap();
    ship.handle(
        Instant::ZERO,
        Input::ClientOpened {
            client: b,
            origin: ClientOrigin::unix(ListenerId(0)),
        },
    )
    .unwrap();
    let accept = request_line("accept svc 10.0.0.9:7000 30");
    let connect = request_line("connect svc 30 bench");
    let mut g = c.benchmark_group("broker");
    g.throughput(Throughput::Elements(1));
    let mut now = Instant::ZERO;
    g.bench_function("local_match", |bch| {
        bch.iter(|| {
            // Virtual time moves 1 ms per match so housekeeping timers fire and state
            // stays bounded, as it would in a running ship.
            now += Duration::from_millis(1);
            ship.handle_timeout(now);
            ship.handle(now, Input::ClientData(a, accept.clone()))
                .unwrap();
            ship.handle(now, Input::ClientData(b, connect.clone()))
                .unwrap();
            let mut n = 0;
            while let Some(o) = ship.poll_output() {
                n += matches!(o, Output::ToClient(_, ref b) if b.starts_with(b"200")) as usize;
            }
            assert_eq!(n, 2);
        })
    });
    g.finish();
}

fn cross(c: &mut Criterion) {
    let mut ships = vec![
        Ship::new(
            ShipConfig::mothership(addr(1), ConfigTree::default()),
            Instant::ZERO,
            Rng::from_seed(1),
        )
        .unwrap(),
        Ship::new(
            ShipConfig::daughtership(addr(2), addr(1)),
            Instant::ZERO,
            Rng::from_seed(2),
        )
        .unwrap(),
        Ship::new(
            ShipConfig::daughtership(addr(3), addr(1)),
            Instant::ZERO,
            Rng::from_seed(3),
        )
        .unwrap(),
    ];
    let mut now = Instant::ZERO;
    for s in ships.iter_mut() {
        s.handle_timeout(now);
    }
    pump(&mut ships, now);
    let (a, b) = (ClientId(1), ClientId(2));
    ships[1]
        .handle(
            now,
            Input::ClientOpened {
                client: a,
                origin: ClientOrigin::unix(ListenerId(0)),
            },
        )
        .unwrap();
    ships[2]
        .handle(
            now,
            Input::ClientOpened {
                client: b,
                origin: ClientOrigin::unix(ListenerId(0)),
            },
        )
        .unwrap();
    let accept = request_line("accept svc 10.0.0.9:7000 30");
    let connect = request_line("connect svc 30 bench");
    let mut g = c.benchmark_group("broker");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cross_daughtership_match", |bch| {
        bch.iter(|| {
            now += Duration::from_millis(1);
            for s in ships.iter_mut() {
                s.handle_timeout(now);
            }
            ships[1]
                .handle(now, Input::ClientData(a, accept.clone()))
                .unwrap();
            pump(&mut ships, now);
            ships[2]
                .handle(now, Input::ClientData(b, connect.clone()))
                .unwrap();
            assert_eq!(pump(&mut ships, now), 2);
        })
    });
    g.finish();
}

criterion_group!(benches, local, cross);
criterion_main!(benches);
