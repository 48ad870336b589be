//! Real `flotilla` processes for integration tests: finding (and if needed building) the
//! binary, free ports, daemons that are killed when dropped, client commands run with a
//! bound, and raw line-protocol requests.
//!
//! Every wait here is bounded and generous: a test fails with the processes' output when
//! something never happens, and never asserts how long anything took.

// Tests drive processes: they need threads, sleeps and the clock, which the workspace
// lint keeps out of the core.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long anything that should happen promptly may take before a test gives up.
pub const LIMIT: Duration = Duration::from_secs(15);

/// The `flotilla` binary of this build (`target/<profile>/flotilla`, next to the test
/// executable's `deps` directory). Under cargo it is built once per test process (a
/// no-op when fresh), so a test never runs a stale binary.
///
/// # Panics
/// If the binary is missing and cannot be built.
pub fn flotilla() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test executable lives in target/<profile>/deps");
        let bin = dir.join(format!("flotilla{}", std::env::consts::EXE_SUFFIX));
        if let Some(cargo) = std::env::var_os("CARGO") {
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "flotilla", "--bin", "flotilla"]);
            if dir.file_name().is_some_and(|p| p == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(
                status.success(),
                "cargo build of the flotilla binary failed"
            );
        }
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p flotilla`",
            bin.display()
        );
        bin
    })
}

/// An example program of this build (`target/<profile>/examples/NAME`), built from
/// `package` first when run under cargo.
///
/// # Panics
/// If it is missing and cannot be built.
pub fn example(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", package, "--example", name]);
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("run cargo build").success());
    }
    let bin = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// A `flotilla` command with the ship and flood environment variables cleared, so the
/// caller's shell cannot point a test at another ship or flood daemon.
pub fn command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(flotilla());
    cmd.args(args)
        .env_remove("CRMOTHERSHIP")
        .env_remove("CRDAUGHTERSHIP")
        .env_remove("FLOODD")
        .env_remove("GROUPD")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// A loopback address with a port that was free a moment ago.
///
/// # Panics
/// If no port can be bound.
pub fn free_addr() -> SocketAddr {
    // The kernel may hand the same ephemeral port out again as soon as it is released:
    // a test that asks for several addresses in a row must get distinct ones.
    static GIVEN: OnceLock<Mutex<std::collections::BTreeSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let a = l.local_addr().expect("local address");
        if given.lock().unwrap().insert(a.port()) {
            return a;
        }
    }
}

/// The environment variable `name` parsed, or `default` when unset or unparsable (the
/// knobs of on-demand runs: client counts, durations).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `f` every 50 ms until it gives a value; panics naming `what` after `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends one line-protocol request and returns the final reply line (`CODE TEXT`),
/// skipping `1xx` progress lines.
///
/// # Errors
/// If the ship cannot be reached, closes the connection, or says nothing for [`LIMIT`].
pub fn ask(ship: SocketAddr, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&ship, LIMIT)?;
    s.set_read_timeout(Some(LIMIT))?;
    s.write_all(format!("{request}\n").as_bytes())?;
    let mut lines = BufReader::new(s);
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if !line.starts_with('1') {
            return Ok(line.trim_end().to_string());
        }
    }
}

/// Collects a pipe's text on a thread.
fn drain(
    mut pipe: impl Read + Send + 'static,
) -> (Arc<Mutex<String>>, Option<thread::JoinHandle<()>>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let handle = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (text, Some(handle))
}

/// A running `flotilla mothership`, `flotilla daughtership` or `flotilla floodd`, killed
/// when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// The address it listens on (ships and clients; a flood daemon's data address).
    pub addr: SocketAddr,
    /// Its stdout after the ready line, and its stderr.
    output: (Arc<Mutex<String>>, Arc<Mutex<String>>),
}

impl Daemon {
    /// `flotilla mothership --config CONFIG --listen <free port>`, once ready.
    pub fn mothership(config: &Path) -> Daemon {
        let addr = free_addr();
        let mut cmd = command(&["mothership", "--listen", &addr.to_string()]);
        cmd.arg("--config").arg(config);
        Daemon::start(cmd, addr)
    }

    /// `flotilla daughtership --parent PARENT --listen <free port>`, once ready (not
    /// yet synced: see [`Daemon::wait_synced`]).
    pub fn daughtership(parent: SocketAddr) -> Daemon {
        let addr = free_addr();
        let cmd = command(&[
            "daughtership",
            "--parent",
            &parent.to_string(),
            "--listen",
            &addr.to_string(),
        ]);
        Daemon::start(cmd, addr)
    }

    /// `flotilla floodd --config CONFIG --site SITE`, once ready: its ready line names
    /// `data`, the site's data address in the file.
    pub fn floodd(config: &Path, site: &str, data: SocketAddr) -> Daemon {
        let mut cmd = command(&["floodd", "--site", site]);
        cmd.arg("--config").arg(config);
        Daemon::start(cmd, data)
    }

    /// `flotilla groupd --name NAME --listen LISTEN` with `extra` arguments, once ready.
    pub fn groupd<S: AsRef<std::ffi::OsStr>>(
        name: &str,
        listen: SocketAddr,
        extra: &[S],
    ) -> Daemon {
        let mut cmd = command(&["groupd", "--name", name, "--listen", &listen.to_string()]);
        cmd.args(extra);
        Daemon::start(cmd, listen)
    }

    /// Spawns `cmd` (which must listen on `addr`) and waits for its ready line, which
    /// must name `addr`.
    ///
    /// # Panics
    /// If it exits or stays silent for [`LIMIT`].
    pub fn start(cmd: Command, addr: SocketAddr) -> Daemon {
        Daemon::start_ready(cmd, addr, &["listening on", &addr.to_string()])
    }

    /// Spawns `cmd` and waits for its ready line, which must contain every one of
    /// `words`; `addr` is what [`Daemon::addr`] reports.
    ///
    /// # Panics
    /// If it exits or stays silent for [`LIMIT`].
    pub fn start_ready(mut cmd: Command, addr: SocketAddr, words: &[&str]) -> Daemon {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flotilla");
        let (err, _) = drain(child.stderr.take().expect("stderr"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // The first line is the ready line; whatever follows is kept with the output.
        let out = Arc::new(Mutex::new(String::new()));
        let rest = out.clone();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut first = String::new();
            let _ = lines.read_line(&mut first);
            let _ = tx.send(first);
            let _ = read_all(lines, &rest);
        });
        let mut daemon = Daemon {
            child,
            addr,
            output: (out, err),
        };
        let ready = rx.recv_timeout(LIMIT).unwrap_or_default();
        assert!(
            words.iter().all(|w| ready.contains(w)),
            "no ready line with {words:?} (got {ready:?}; status {:?}); stderr:\n{}",
            daemon.child.try_wait(),
            daemon.stderr()
        );
        daemon
    }

    /// The address as `HOST:PORT` text, for `--ship` and `--parent`.
    pub fn ship(&self) -> String {
        self.addr.to_string()
    }

    /// Waits until the ship answers reads (a daughtership holds a snapshot): `get mode`
    /// answers anything but `503`.
    pub fn wait_synced(&self) {
        wait_until(&format!("{} to sync", self.addr), LIMIT, || {
            ask(self.addr, "get mode")
                .ok()
                .filter(|r| !r.starts_with("503"))
        });
    }

    /// `status` through the line protocol.
    ///
    /// # Panics
    /// If the ship does not answer.
    pub fn status(&self) -> String {
        ask(self.addr, "status").expect("status")
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit by itself and returns how it ended;
    /// `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL: a crash, not a shutdown) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.output.1.lock().unwrap().clone()
    }

    /// What it wrote to stdout after the ready line so far.
    pub fn stdout(&self) -> String {
        self.output.0.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_all(mut r: BufReader<ChildStdout>, into: &Mutex<String>) -> std::io::Result<()> {
    let mut line = String::new();
    while r.read_line(&mut line)? > 0 {
        into.lock().unwrap().push_str(&line);
        line.clear();
    }
    Ok(())
}

/// A client command's result.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Finished {
    /// Panics with the whole output unless the command succeeded.
    pub fn expect_success(self, what: &str) -> Finished {
        assert!(self.status.success(), "{what} failed: {self:#?}");
        self
    }
}

/// A client command running in the background, killed when dropped.
#[derive(Debug)]
pub struct Running {
    child: Child,
    out: (Arc<Mutex<String>>, Option<thread::JoinHandle<()>>),
    err: (Arc<Mutex<String>>, Option<thread::JoinHandle<()>>),
}

impl Running {
    /// Spawns `flotilla ARGS`.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Running {
        Running::spawn_command(command(args))
    }

    /// Spawns a prepared command (see [`command`]).
    pub fn spawn_command(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flotilla");
        let out = drain(child.stdout.take().expect("stdout"));
        let err = drain(child.stderr.take().expect("stderr"));
        Running { child, out, err }
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the exit (at most `limit`, then kills it and panics) and returns the
    /// output.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for flotilla") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "flotilla did not exit within {limit:?}; stdout {:?}, stderr {:?}",
                    self.out.0.lock().unwrap(),
                    self.err.0.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        // The pipes close with the process; the threads end with them.
        for h in [self.out.1.take(), self.err.1.take()].into_iter().flatten() {
            let _ = h.join();
        }
        let stdout = self.out.0.lock().unwrap().clone();
        let stderr = self.err.0.lock().unwrap().clone();
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `flotilla ARGS` to completion (bounded by [`LIMIT`] plus `extra`).
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S], extra: Duration) -> Finished {
    Running::spawn(args).finish(LIMIT + extra)
}
