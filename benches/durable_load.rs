//! `durable-load`: acknowledged durable writes per second against a flotilla mothership
//! (`set KEY VALUE` on its line port) or an etcd server (`PUT` through its v3 HTTP
//! gateway), each writer on its own persistent connection sending its next write only
//! once the last is acknowledged — the same kind of client for both. Used by
//! `benches/durable-vs-etcd.sh`; results in BENCHMARKS.md.
//!
//! ```text
//! durable-load flotilla 127.0.0.1:10000 --writers 8 --seconds 5 [--value-bytes 100]
//! durable-load etcd 127.0.0.1:2379 --writers 1 --seconds 5
//! durable-load etcd 127.0.0.1:2379 --fill 67108864     # preload a keyspace, then exit
//! ```

// A load generator: threads, sockets and the clock are what it is for.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Flotilla,
    Etcd,
}

struct Opts {
    target: Target,
    addr: SocketAddr,
    writers: usize,
    seconds: f64,
    value_bytes: usize,
    fill: Option<u64>,
}

fn usage() -> String {
    "usage: durable-load flotilla|etcd HOST:PORT [--writers N] [--seconds S] [--value-bytes B] [--fill BYTES]".to_string()
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let target = match args.next().as_deref() {
        Some("flotilla") => Target::Flotilla,
        Some("etcd") => Target::Etcd,
        _ => return Err(usage()),
    };
    let addr = args
        .next()
        .ok_or_else(usage)?
        .parse()
        .map_err(|e| format!("bad address: {e}"))?;
    let mut o = Opts {
        target,
        addr,
        writers: 1,
        seconds: 5.0,
        value_bytes: 100,
        fill: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--writers" => o.writers = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => o.seconds = value.parse().map_err(|e| bad(&e))?,
            "--value-bytes" => o.value_bytes = value.parse().map_err(|e| bad(&e))?,
            "--fill" => o.fill = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(usage()),
        }
    }
    if o.writers == 0 || o.seconds <= 0.0 {
        return Err("--writers and --seconds must be positive".into());
    }
    Ok(o)
}

/// One writer's connection.
enum Conn {
    Flotilla {
        out: TcpStream,
        replies: BufReader<TcpStream>,
    },
    Etcd {
        out: TcpStream,
        replies: BufReader<TcpStream>,
        host: String,
    },
}

impl Conn {
    fn open(target: Target, addr: SocketAddr) -> std::io::Result<Conn> {
        let out = TcpStream::connect(addr)?;
        out.set_nodelay(true)?;
        out.set_read_timeout(Some(Duration::from_secs(30)))?;
        let replies = BufReader::new(out.try_clone()?);
        Ok(match target {
            Target::Flotilla => Conn::Flotilla { out, replies },
            Target::Etcd => Conn::Etcd {
                out,
                replies,
                host: addr.to_string(),
            },
        })
    }

    /// Writes `key = value` and waits for its acknowledgement.
    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        match self {
            Conn::Flotilla { out, replies } => {
                out.write_all(format!("set {key} {value}\n").as_bytes())
                    .map_err(|e| e.to_string())?;
                let mut line = String::new();
                loop {
                    line.clear();
                    if replies.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                        return Err("the ship closed the connection".into());
                    }
                    // 1xx lines are progress; the final reply follows.
                    if !line.starts_with('1') {
                        break;
                    }
                }
                if line.starts_with("200 ") {
                    Ok(())
                } else {
                    Err(format!("set refused: {}", line.trim_end()))
                }
            }
            Conn::Etcd { out, replies, host } => {
                let body = format!(
                    "{{\"key\":\"{}\",\"value\":\"{}\"}}",
                    base64(key.as_bytes()),
                    base64(value.as_bytes())
                );
                let req = format!(
                    "POST /v3/kv/put HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                out.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
                read_http_response(replies)
            }
        }
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked); Ok if it is a 200.
fn read_http_response(r: &mut BufReader<TcpStream>) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let mut status = String::new();
    if r.read_line(&mut status).map_err(io)? == 0 {
        return Err("etcd closed the connection".into());
    }
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).map_err(io)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(io)?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).map_err(io)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        let n = length.ok_or("etcd's reply has no length")?;
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(io)?;
    }
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!(
            "put refused: {} {}",
            status.trim_end(),
            String::from_utf8_lossy(&body)
        ))
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Preloads `bytes` of 1,000-byte values under `fill-K`, eight writers at once.
fn fill(o: &Opts, bytes: u64) -> Result<(), String> {
    let value = "f".repeat(1000);
    let keys = bytes / 1000;
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (next, value, target, addr) = (next.clone(), value.clone(), o.target, o.addr);
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = Conn::open(target, addr).map_err(|e| e.to_string())?;
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= keys {
                        return Ok(());
                    }
                    c.put(&format!("fill-{k}"), &value)?;
                }
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| "a fill writer panicked".to_string())??;
    }
    println!("filled {keys} keys of 1000 bytes");
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(bytes) = o.fill {
        return match fill(&o, bytes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let value = "v".repeat(o.value_bytes);
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..o.writers)
        .map(|w| {
            let (stop, counting, acked) = (stop.clone(), counting.clone(), acked.clone());
            let (value, target, addr) = (value.clone(), o.target, o.addr);
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = Conn::open(target, addr).map_err(|e| e.to_string())?;
                let key = format!("bench-w{w}");
                while !stop.load(Ordering::Relaxed) {
                    c.put(&key, &value)?;
                    if counting.load(Ordering::Relaxed) {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    // A short warm-up (connections open, a first store written), then the count.
    std::thread::sleep(Duration::from_millis(500));
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(o.seconds));
    let n = acked.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => return ExitCode::FAILURE,
        }
    }
    println!(
        "{:.0} acknowledged writes/s ({n} in {elapsed:.2}s, {} writers)",
        n as f64 / elapsed,
        o.writers
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_rfc_examples() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in cases {
            assert_eq!(base64(plain.as_bytes()), coded, "{plain}");
        }
    }
}
