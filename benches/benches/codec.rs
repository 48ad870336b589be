//! Frame codec throughput (BENCHMARKS.md "Codec").

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_core::groups::{GroupMsg, Item, MsgId, What};
use flotilla_core::heartbeat::encode_beat;
use flotilla_core::membership::view::ViewId;
use flotilla_core::wire::{Frame, Kind, Limits, decode_frame, split_frame};
use std::hint::black_box;

fn small_frames(c: &mut Criterion) {
    let limits = Limits::default();
    let beat = encode_beat(7, 42).to_bytes();
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_small", |b| {
        b.iter(|| decode_frame(black_box(&beat), &limits).unwrap())
    });
    let frame = encode_beat(7, 42);
    let mut out = BytesMut::with_capacity(64);
    g.bench_function("encode_small", |b| {
        b.iter(|| {
            out.clear();
            black_box(&frame).encode(&mut out);
            black_box(out.len())
        })
    });
    // A stream of 1000 frames split out of one buffer (the TCP reader's path).
    let mut stream = BytesMut::new();
    for i in 0..1000u64 {
        encode_beat(1, i).encode(&mut stream);
    }
    let stream = stream.freeze();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("split_stream_1000", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&stream[..]);
            let mut n = 0;
            while let Some(f) = split_frame(&mut buf, &limits).unwrap() {
                n += f.payload.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn large_payloads(c: &mut Criterion) {
    // Decoding slices the input: the cost must not grow with the payload size.
    let limits = Limits {
        max_payload: 16 << 20,
    };
    let mut g = c.benchmark_group("frame_large");
    for size in [1usize << 10, 1 << 20, 16 << 20] {
        let bytes = Frame::new(Kind(0x0203), Bytes::from(vec![0u8; size])).to_bytes();
        g.bench_function(format!("decode_{}KiB", size >> 10), |b| {
            b.iter(|| {
                decode_frame(black_box(&bytes), &limits)
                    .unwrap()
                    .payload
                    .len()
            })
        });
    }
    g.finish();
}

/// 100 ordered group messages of `size` bytes, each encoded into frame bytes, read back and
/// decoded: as 100 frames of one item (before batches), and as one batch (SPEC.md §10.3).
fn group_batches(c: &mut Criterion) {
    let limits = Limits {
        max_payload: 16 << 20,
    };
    let view = ViewId {
        epoch: 3,
        coordinator: "daemon-a".into(),
        incarnation: 17,
    };
    let mut g = c.benchmark_group("group_order");
    g.throughput(Throughput::Elements(100));
    for size in [100usize, 10 << 10] {
        let items: Vec<Item> = (1..=100u64)
            .map(|lseq| Item {
                id: MsgId {
                    origin: "daemon-b".into(),
                    incarnation: 99,
                    lseq,
                },
                group: "bench".into(),
                what: What::Data {
                    sender: "#sender#daemon-b".into(),
                    payload: Bytes::from(vec![b'x'; size]),
                },
            })
            .collect();
        let round_trip = |msg: GroupMsg| {
            let bytes = msg.to_frame().to_bytes();
            let frame = decode_frame(&bytes, &limits).unwrap();
            match GroupMsg::decode(&frame).unwrap() {
                GroupMsg::Order { items, .. } => items.len(),
                _ => 0,
            }
        };
        g.bench_function(format!("single_100x{size}B"), |b| {
            b.iter(|| {
                let mut n = 0;
                for (k, it) in items.iter().enumerate() {
                    n += round_trip(GroupMsg::Order {
                        view: view.clone(),
                        seq: k as u64 + 1,
                        stable: 0,
                        items: vec![it.clone()],
                    });
                }
                black_box(n)
            })
        });
        g.bench_function(format!("batch_100x{size}B"), |b| {
            b.iter(|| {
                black_box(round_trip(GroupMsg::Order {
                    view: view.clone(),
                    seq: 1,
                    stable: 0,
                    items: items.clone(),
                }))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, small_frames, large_payloads, group_batches);
criterion_main!(benches);
