//! `flotilla sim` as a user runs it: listing, a failing scenario with its replay line,
//! a passing sweep, a trace, and a scenario file with an error.

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
