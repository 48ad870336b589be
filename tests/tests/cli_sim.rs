//! `flotilla sim` as a user runs it: listing, a failing scenario with its replay line,
//! a passing sweep, a sweep that prints only what failed, a trace, a drawn timeline, and
//! a scenario file with an error.

use std::time::Duration;

use flotilla_tests::process::run;

#[test]
fn list_names_every_builtin_scenario() {
    let out = run(&["sim", "--list"], Duration::ZERO).expect_success("sim --list");
    for name in [
        "heartbeat-partition",
        "daughtership-hang",
        "daughtership-hang-fixed",
        "broker-random",
        "broker-chaos",
        "broker-slow-store",
        "broker-swarm",
        "ship-canary",
        "broker-1000",
    ] {
        assert!(out.stdout.contains(name), "{name} missing: {}", out.stdout);
    }
}

#[test]
fn the_seed_hang_fails_with_a_replay_command_and_the_fix_passes() {
    let hang = run(&["sim", "daughtership-hang", "--seed", "4"], Duration::ZERO);
    assert_eq!(hang.status.code(), Some(1), "{hang:#?}");
    assert!(hang.stdout.contains("FAIL all-answered"), "{hang:#?}");
    assert!(
        hang.stdout
            .contains("replay: flotilla sim daughtership-hang --seed 4 --trace"),
        "{hang:#?}"
    );
    let fixed = run(
        &["sim", "daughtership-hang-fixed", "--seeds", "0..5"],
        Duration::ZERO,
    )
    .expect_success("the fixed scenario");
    assert!(fixed.stdout.contains("5 passed, 0 failed"), "{fixed:#?}");
}

#[test]
fn a_trace_is_printed_on_request_and_is_the_same_twice() {
    let args = ["sim", "heartbeat-partition", "--seed", "2", "--trace"];
    let a = run(&args, Duration::ZERO).expect_success("trace");
    let b = run(&args, Duration::ZERO).expect_success("trace again");
    assert!(
        a.stdout.contains("-- partition {n1} {n2 n3}"),
        "{}",
        a.stdout
    );
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn a_scenario_file_error_names_its_line_and_column() {
    let path = std::env::temp_dir().join(format!("flotilla-cli-sim-{}.scn", std::process::id()));
    std::fs::write(
        &path,
        "(:scenario x (:protocol ship) (:nodes 2) (:duration 2s)\n  (:ship (:parents (n3 n1))))\n",
    )
    .unwrap();
    let out = run(
        &["sim", "--file", path.to_str().unwrap(), "--seed", "1"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stdout
            .contains(":2:21: expected a node name n1..n2, found n3"),
        "{out:#?}"
    );
    let _ = std::fs::remove_file(&path);
}

/// A sweep prints the failing seeds (their verdicts and replay commands) and a summary,
/// not every seed's verdicts; `--verbose` prints them all.
#[test]
fn a_sweep_prints_what_failed_and_a_summary() {
    let quiet = run(&["sim", "ship-canary", "--seeds", "0..12"], Duration::ZERO);
    assert_eq!(quiet.status.code(), Some(1), "{quiet:#?}");
    let out = &quiet.stdout;
    let summary = out
        .lines()
        .find(|l| l.starts_with("ship-canary: seeds 0..12: "))
        .unwrap_or_else(|| panic!("no summary line: {out}"));
    let failed: usize = summary
        .split(", ")
        .nth(1)
        .and_then(|f| f.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(failed > 0, "{summary}");
    // One verdict block per failing seed, none for the passing ones.
    assert_eq!(out.matches("FAILED (").count(), failed, "{out}");
    assert_eq!(out.matches(": ok (").count(), 0, "{out}");
    assert_eq!(
        out.matches("    replay: flotilla sim ship-canary --seed ")
            .count(),
        failed,
        "{out}"
    );
    let verbose = run(
        &["sim", "ship-canary", "--seeds", "0..12", "--verbose"],
        Duration::ZERO,
    );
    assert_eq!(
        verbose.stdout.matches("ship-canary seed ").count(),
        12,
        "{verbose:#?}"
    );
}

/// `--svg` and `--html` write a drawing of one run that a browser opens: lanes, arrows,
/// the partition band and the verdicts.
#[test]
fn a_run_is_drawn_as_svg_and_html() {
    let dir = std::env::temp_dir().join(format!("flotilla-cli-draw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (svg, html) = (dir.join("run.svg"), dir.join("run.html"));
    let out = run(
        &[
            "sim",
            "heartbeat-partition",
            "--seed",
            "3",
            "--svg",
            svg.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
        Duration::ZERO,
    )
    .expect_success("drawing");
    assert!(out.stdout.contains("timeline written to"), "{out:#?}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(text.trim_end().ends_with("</svg>"));
    for lane in ["n1", "n2", "n3"] {
        assert!(text.contains(&format!(">{lane}</text>")), "lane {lane}");
    }
    assert!(text.matches("class=\"msg").count() > 100);
    assert!(text.contains("cut: {n1} {n2 n3}"));
    assert!(text.contains("PASS converged"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("<svg").count(), 1);
    // Drawing is for one run.
    let refused = run(
        &[
            "sim",
            "heartbeat-partition",
            "--seeds",
            "0..2",
            "--svg",
            svg.to_str().unwrap(),
        ],
        Duration::ZERO,
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
