//! The embedding example (`core/examples/std_udp.rs`): two processes that link the core
//! with nothing but the standard library find each other on loopback.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use flotilla_tests::process::free_addr;

fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "flotilla-core",
                "--example",
                "std_udp",
            ])
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of the std_udp example failed"
        );
    }
    dir.join("examples")
        .join(format!("std_udp{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn two_std_only_nodes_see_each_other() {
    let bin = example();
    let (a, b) = (free_addr().to_string(), free_addr().to_string());
    let spawn = |me: &str, peer: &str| {
        Command::new(&bin)
            .args(["--listen", me, "--peer", peer, "--seconds", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn std_udp")
    };
    let (pa, pb) = (spawn(&a, &b), spawn(&b, &a));
    let (oa, ob) = (
        pa.wait_with_output().expect("std_udp a"),
        pb.wait_with_output().expect("std_udp b"),
    );
    let (sa, sb) = (
        String::from_utf8_lossy(&oa.stdout),
        String::from_utf8_lossy(&ob.stdout),
    );
    assert!(oa.status.success() && ob.status.success(), "{sa}\n{sb}");
    assert!(sa.contains(&format!("up {b}")), "a never saw b: {sa}");
    assert!(sb.contains(&format!("up {a}")), "b never saw a: {sb}");
}
