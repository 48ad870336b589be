//! `flood-load`: updates per second and bytes per second through flood daemons on
//! loopback. It floods N updates of B bytes into the first daemon's client port
//! (`binary B`, sent back to back on one connection while another thread reads the
//! replies) and stops the clock when every other daemon's `statistics` shows them all
//! exported. Used by `benches/flood-throughput.sh`; results in BENCHMARKS.md.
//!
//! ```text
//! flood-load --updates 20000 --bytes 100 127.0.0.1:2000 127.0.0.1:2010 127.0.0.1:2020
//! ```

// A load generator: threads, sockets and the clock are what it is for.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn usage() -> String {
    "usage: flood-load --updates N --bytes B ORIGIN-CLIENT-ADDR OTHER-CLIENT-ADDR...".into()
}

/// The counter `name` of a daemon's `statistics`.
fn stat(addr: SocketAddr, name: &str) -> Result<u64, String> {
    let s = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    w.write_all(b"statistics\n").map_err(|e| e.to_string())?;
    let prefix = format!("211-{name} ");
    let mut found = None;
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err(format!("{addr} closed the connection"));
        }
        if let Some(v) = line.trim_end().strip_prefix(&prefix) {
            found = v.parse().ok();
        }
        if line.as_bytes().get(3) == Some(&b' ') {
            return found.ok_or_else(|| format!("{addr} has no counter {name}"));
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut updates, mut bytes, mut addrs) = (0usize, 0usize, Vec::<SocketAddr>::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--updates" => updates = args.next().and_then(|v| v.parse().ok()).ok_or_else(usage)?,
            "--bytes" => bytes = args.next().and_then(|v| v.parse().ok()).ok_or_else(usage)?,
            _ => addrs.push(a.parse().map_err(|e| format!("{a}: {e}"))?),
        }
    }
    if updates == 0 || bytes == 0 || addrs.len() < 2 {
        return Err(usage());
    }
    let before: Vec<u64> = addrs[1..]
        .iter()
        .map(|a| stat(*a, "exported"))
        .collect::<Result<_, _>>()?;
    let conn = TcpStream::connect(addrs[0]).map_err(|e| e.to_string())?;
    conn.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
    let mut greeting = String::new();
    r.read_line(&mut greeting).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let replies = std::thread::spawn(move || -> Result<(), String> {
        let mut line = String::new();
        for _ in 0..updates {
            line.clear();
            if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("the daemon closed the connection".into());
            }
            if !line.starts_with("250 ") {
                return Err(format!("refused: {}", line.trim_end()));
            }
        }
        Ok(())
    });
    let mut w = std::io::BufWriter::with_capacity(1 << 20, conn);
    let body = vec![b'x'; bytes];
    for _ in 0..updates {
        writeln!(w, "binary {bytes}").map_err(|e| e.to_string())?;
        w.write_all(&body).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())?;
    replies.join().map_err(|_| "the reply reader panicked")??;
    let flooded = start.elapsed();
    for (a, b) in addrs[1..].iter().zip(&before) {
        loop {
            if stat(*a, "exported")? >= b + updates as u64 {
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                return Err(format!("{a} did not export them all in 600 s"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let all = start.elapsed().as_secs_f64();
    println!(
        "{updates} updates of {bytes} B: {:.0} updates/s, {:.1} MB/s (taken in {:.2}s, exported at {} daemons in {all:.2}s)",
        updates as f64 / all,
        (updates * bytes) as f64 / all / 1e6,
        flooded.as_secs_f64(),
        addrs.len() - 1
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
