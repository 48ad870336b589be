//! Frame codec throughput (BENCHMARKS.md "Codec").

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_core::heartbeat::encode_beat;
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

criterion_group!(benches, small_frames, large_payloads);
criterion_main!(benches);
