//! The ship daemons and client commands as real `flotilla` processes on loopback: a
//! three-level hierarchy brokering across daughterships, configuration flowing down,
//! deadlines, losing the mothership, and the daemons' startup errors.
//!
//! Waits are bounded (see `flotilla_tests::process::LIMIT`); nothing asserts on timing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_tests::process::{Daemon, LIMIT, Running, command, free_addr, run, wait_until};

/// The README's example configuration, which the tests serve.
fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ship.conf")
}

/// A file in the temp directory with `text`, named for this test process.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("flotilla-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// `conn=ID` from a line of words.
fn conn_id(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("conn="))
}

/// `flotilla config get PATH --ship SHIP`, if it succeeds.
fn get(ship: &Daemon, path: &str) -> Option<String> {
    let out = run(
        &["config", "get", path, "--ship", &ship.ship()],
        Duration::ZERO,
    );
    out.status.success().then(|| out.stdout.trim().to_string())
}

/// Waits until `ship` holds `n` waiting requests (so the next command comes second).
fn wait_pending(ship: &Daemon, n: usize) {
    let want = format!("pending={n} ");
    wait_until(&format!("{want}at {}", ship.addr), LIMIT, || {
        ship.status().contains(&want).then_some(())
    });
}

/// An accept at `acceptor` and a connect at `connector` for `key`, in either order;
/// checks what each prints and that both name the same connection.
fn broker_pair(acceptor: &Daemon, connector: &Daemon, key: &str, connect_first: bool) {
    let accept_args = [
        "broker",
        "accept",
        key,
        "--advertise",
        "127.0.0.1:7777",
        "--timeout",
        "20",
        "--ship",
        &acceptor.ship(),
    ];
    let connect_args = [
        "broker",
        "connect",
        key,
        "--timeout",
        "20",
        "--name",
        "bob",
        "--ship",
        &connector.ship(),
    ];
    let (accepted, connected) = if connect_first {
        let connecting = Running::spawn(&connect_args);
        wait_pending(connector, 1);
        let accepted = run(&accept_args, Duration::from_secs(20));
        (accepted, connecting.finish(LIMIT + Duration::from_secs(20)))
    } else {
        let accepting = Running::spawn(&accept_args);
        wait_pending(acceptor, 1);
        let connected = run(&connect_args, Duration::from_secs(20));
        (accepting.finish(LIMIT + Duration::from_secs(20)), connected)
    };
    let accepted = accepted.expect_success("broker accept");
    let connected = connected.expect_success("broker connect");
    assert_eq!(connected.stdout, "127.0.0.1:7777\n", "{connected:#?}");
    assert!(accepted.stdout.contains("conn="), "{accepted:#?}");
    assert!(accepted.stdout.contains("client=bob"), "{accepted:#?}");
    assert_eq!(accepted.stdout.lines().count(), 1, "{accepted:#?}");
    let a = conn_id(&accepted.stdout).expect("accept names the connection");
    let c = conn_id(&connected.stderr).expect("connect names the connection on stderr");
    assert_eq!(a, c, "both halves name one connection");
}

#[test]
fn three_level_tree_brokers_and_syncs() {
    let m = Daemon::mothership(&example_config());
    let a = Daemon::daughtership(m.addr);
    let b = Daemon::daughtership(m.addr);
    a.wait_synced();
    b.wait_synced();
    let g = Daemon::daughtership(a.addr);
    g.wait_synced();
    assert_eq!(get(&g, "mode").as_deref(), Some("fast"));
    assert_eq!(get(&g, "db/host").as_deref(), Some("db1.example"));

    // (a) Sibling daughterships meet, whichever half comes first; so do a grandchild and
    // its aunt, through the mothership.
    broker_pair(&a, &b, "svc", false);
    broker_pair(&a, &b, "svc2", true);
    broker_pair(&b, &g, "svc3", false);

    // (b) A change made at the mothership reaches the grandchild.
    let set = run(
        &["config", "set", "render/port", "7001", "--ship", &m.ship()],
        Duration::ZERO,
    )
    .expect_success("config set");
    assert!(set.stdout.starts_with("version="), "{set:#?}");
    wait_until("render/port=7001 at the grandchild", LIMIT, || {
        (get(&g, "render/port")? == "7001").then_some(())
    });
    // A change made at the grandchild is read back there at once (read-your-writes)
    // and reaches its aunt.
    run(
        &[
            "config",
            "set",
            "mode",
            "slow",
            "and",
            "steady",
            "--ship",
            &g.ship(),
        ],
        Duration::ZERO,
    )
    .expect_success("config set at the grandchild");
    assert_eq!(get(&g, "mode").as_deref(), Some("slow and steady"));
    wait_until("mode at B", LIMIT, || {
        (get(&b, "mode")? == "slow and steady").then_some(())
    });
    // Claims are decided once, at the root.
    let first = run(
        &[
            "config",
            "claim",
            "render/*",
            "--host",
            "gpu7",
            "--ship",
            &g.ship(),
        ],
        Duration::ZERO,
    )
    .expect_success("claim at G");
    let second = run(
        &[
            "config",
            "claim",
            "render/*",
            "--host",
            "gpu8",
            "--ship",
            &b.ship(),
        ],
        Duration::ZERO,
    )
    .expect_success("claim at B");
    assert_eq!(first.stdout, "render/r1\n");
    assert_eq!(second.stdout, "render/r2\n");
    assert_eq!(get(&b, "render/r1/host").as_deref(), Some("gpu7"));
    let third = run(
        &["config", "claim", "render/*", "--ship", &a.ship()],
        Duration::ZERO,
    );
    assert_eq!(third.status.code(), Some(1), "{third:#?}");
    assert!(third.stderr.starts_with("error: "), "{third:#?}");
    let missing = run(
        &["config", "get", "nope", "--ship", &g.ship()],
        Duration::ZERO,
    );
    assert_eq!(missing.status.code(), Some(1), "{missing:#?}");
    assert!(missing.stderr.contains("nope"), "{missing:#?}");

    // (c) A connect nobody accepts expires, naming its key.
    let lonely = run(
        &[
            "broker",
            "connect",
            "lonely",
            "--timeout",
            "1",
            "--ship",
            &g.ship(),
        ],
        Duration::from_secs(1),
    );
    assert_eq!(lonely.status.code(), Some(1), "{lonely:#?}");
    assert!(lonely.stderr.contains("lonely"), "{lonely:#?}");
    assert!(lonely.stdout.is_empty(), "{lonely:#?}");

    // Nobody was refused or died on the way.
    for (name, mut d) in [("M", m), ("A", a), ("B", b), ("G", g)] {
        assert!(d.running(), "{name} exited; stderr:\n{}", d.stderr());
    }
}

#[test]
fn a_daughtership_outlives_its_mothership() {
    let mut m = Daemon::mothership(&example_config());
    let mut a = Daemon::daughtership(m.addr);
    a.wait_synced();
    run(
        &["config", "set", "render/port", "7002", "--ship", &a.ship()],
        Duration::ZERO,
    )
    .expect_success("config set before the loss");

    m.kill();
    // (d) Reads come from A's copy, and pairs at A still match, before and after A
    // notices the loss.
    assert_eq!(get(&a, "render/port").as_deref(), Some("7002"));
    broker_pair(&a, &a, "local1", false);
    wait_until("A to notice its parent is gone", LIMIT, || {
        a.status().contains("parent=lost").then_some(())
    });
    assert_eq!(get(&a, "mode").as_deref(), Some("fast"));
    broker_pair(&a, &a, "local2", false);
    broker_pair(&a, &a, "local3", true);
    // A change needs the mothership: it is refused in time, not left hanging.
    let set = run(
        &["config", "set", "mode", "slow", "--ship", &a.ship()],
        Duration::from_secs(10),
    );
    assert_eq!(set.status.code(), Some(1), "{set:#?}");
    assert!(set.stderr.starts_with("error: "), "{set:#?}");
    assert!(a.running(), "A exited; stderr:\n{}", a.stderr());
}

#[test]
fn a_config_error_names_its_line_and_column() {
    let path = temp_file(
        "bad.conf",
        "(:param mode fast)\n(:node db (:host db1)\n          (:host db2))\n",
    );
    let out = run(
        &[
            "mothership",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            &free_addr().to_string(),
        ],
        Duration::ZERO,
    );
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    let want = format!("error: {}:3:", path.display());
    assert!(out.stderr.starts_with(&want), "want {want:?}: {out:#?}");
    assert!(out.stderr.contains("two hosts"), "{out:#?}");
}

#[test]
fn an_empty_config_is_served_and_the_environment_names_the_ship() {
    let path = temp_file("empty.conf", "");
    let addr = free_addr();
    let mut cmd = command(&["mothership", "--config", path.to_str().unwrap()]);
    cmd.env("CRMOTHERSHIP", addr.to_string());
    let m = Daemon::start(cmd, addr);
    let _ = std::fs::remove_file(&path);

    let mut cmd = command(&["config", "set", "mode", "fast"]);
    cmd.env("CRMOTHERSHIP", m.ship());
    Running::spawn_command(cmd)
        .finish(LIMIT)
        .expect_success("set through CRMOTHERSHIP");
    assert_eq!(get(&m, "mode").as_deref(), Some("fast"));
}

#[test]
fn startup_and_reachability_errors_are_clear() {
    // (f) A daughtership that would be its own parent.
    let addr = free_addr().to_string();
    let own = run(
        &["daughtership", "--parent", &addr, "--listen", &addr],
        Duration::ZERO,
    );
    assert!(!own.status.success(), "{own:#?}");
    assert!(own.stderr.contains("own parent"), "{own:#?}");

    // No parent at all.
    let none = run(&["daughtership", "--listen", &addr], Duration::ZERO);
    assert!(!none.status.success(), "{none:#?}");
    assert!(none.stderr.contains("CRMOTHERSHIP"), "{none:#?}");

    // No ship at the address.
    let gone = run(&["config", "get", "mode", "--ship", &addr], Duration::ZERO);
    assert_eq!(gone.status.code(), Some(1), "{gone:#?}");
    let want = format!("error: cannot reach ship at {addr}");
    assert!(gone.stderr.starts_with(&want), "{gone:#?}");
}

#[test]
fn a_second_root_and_a_cycle_are_refused() {
    // A second mothership on the hierarchy's address is refused with a clear error.
    let m = Daemon::mothership(&example_config());
    let second = run(
        &[
            "mothership",
            "--listen",
            &m.ship(),
            "--config",
            example_config().to_str().unwrap(),
        ],
        Duration::ZERO,
    );
    assert_eq!(second.status.code(), Some(1), "{second:#?}");
    assert!(
        second.stderr.contains("exactly one mothership"),
        "{second:#?}"
    );

    // Two daughterships that name each other as parent: one of them is refused and
    // exits with the reason.
    let (a, b) = (free_addr().to_string(), free_addr().to_string());
    let mut first = Running::spawn(&["daughtership", "--listen", &a, "--parent", &b]);
    let mut other = Running::spawn(&["daughtership", "--listen", &b, "--parent", &a]);
    wait_until("a daughtership in the cycle to exit", LIMIT, || {
        (first.has_exited() || other.has_exited()).then_some(())
    });
    let refused = if first.has_exited() { first } else { other };
    let out = refused.finish(LIMIT);
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("refused by parent: cycle"), "{out:#?}");
}

#[test]
fn a_mothership_with_a_state_file_keeps_acknowledged_changes_across_a_crash() {
    let state = std::env::temp_dir().join(format!("flotilla-{}-state", std::process::id()));
    let _ = std::fs::remove_file(&state);
    let addr = free_addr();
    let start = || {
        let mut cmd = command(&["mothership", "--listen", &addr.to_string()]);
        cmd.arg("--config")
            .arg(example_config())
            .arg("--state")
            .arg(&state);
        Daemon::start(cmd, addr)
    };
    let mut m = start();
    let d = Daemon::daughtership(addr);
    d.wait_synced();
    let set = run(
        &["config", "set", "render/port", "7444", "--ship", &m.ship()],
        Duration::ZERO,
    )
    .expect_success("set");
    assert_eq!(set.stdout.trim(), "version=1");
    let claim = run(
        &[
            "config",
            "claim",
            "render/*",
            "--host",
            "gpu1",
            "--ship",
            &d.ship(),
        ],
        Duration::ZERO,
    )
    .expect_success("claim");
    assert_eq!(claim.stdout.trim(), "render/r1");
    let epoch = |status: String| {
        status
            .split_whitespace()
            .find_map(|w| w.strip_prefix("epoch=").map(str::to_string))
            .unwrap()
    };
    let before = epoch(m.status());

    // A crash (SIGKILL), then a restart from the state file: same epoch, same values,
    // and the next claim takes the next node.
    m.kill();
    let m = start();
    assert_eq!(epoch(m.status()), before);
    assert_eq!(get(&m, "render/port").as_deref(), Some("7444"));
    assert_eq!(get(&m, "render/r1/host").as_deref(), Some("gpu1"));
    let next = run(
        &[
            "config",
            "claim",
            "render/*",
            "--host",
            "gpu2",
            "--ship",
            &m.ship(),
        ],
        Duration::ZERO,
    )
    .expect_success("claim after restart");
    assert_eq!(next.stdout.trim(), "render/r2");
    // The daughtership resumes by version, without losing anything either.
    wait_until("the daughtership to catch up", LIMIT, || {
        (get(&d, "render/r2/host").as_deref() == Some("gpu2")).then_some(())
    });
    assert_eq!(epoch(d.status()), before);
    let _ = std::fs::remove_file(&state);
}
