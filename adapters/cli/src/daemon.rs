//! What every daemon of the binary shares (the ship daemons and `floodd`): exit codes, the
//! `error: …` message, a client cap below the descriptor limit, and the signals that stop
//! a daemon.

use std::process::ExitCode;

use bytes::Bytes;
use flotilla_tokio::DriverConfig;

/// Exit code for a configuration a daemon cannot start with.
pub(crate) const EXIT_CONFIG: u8 = 2;

/// Prints `error: …` and returns `code`.
pub(crate) fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// Reads a configuration file of at most `limit` bytes, refusing a larger one before
/// reading it all; errors name the file (`PATH: why`). `what` names the kind of file in
/// the refusal ("a flood configuration").
pub(crate) fn read_config_file(
    path: &std::path::Path,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: {e}"))?;
    if bytes.len() > limit {
        return Err(format!(
            "{shown}: larger than {limit} bytes, the most {what} may hold"
        ));
    }
    Ok(bytes)
}

/// The process's open-file limit (the soft one), from `/proc/self/limits` where there is
/// one.
fn descriptor_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// How many clients to hold at once: below the descriptor limit by enough that peers,
/// files, child processes and a refusal to the next client always find a descriptor. Past
/// it a client is told why and closed instead of every client hanging on a full table.
fn client_cap() -> (usize, Option<u64>) {
    let limit = descriptor_limit();
    let cap = match limit {
        Some(l) => l.saturating_sub(64.max(l / 8)).max(1),
        None => 100_000,
    };
    (
        usize::try_from(cap).unwrap_or(usize::MAX).min(100_000),
        limit,
    )
}

/// Sets the driver's client cap (see [`client_cap`]) and the line a refused client reads,
/// which `refusal` writes in the daemon's own protocol from the cap. Returns the cap and
/// the descriptor limit it came from, for the startup log.
pub(crate) fn cap_clients(
    config: &mut DriverConfig,
    refusal: impl FnOnce(usize) -> String,
) -> (usize, Option<u64>) {
    let (cap, limit) = client_cap();
    config.max_clients = cap;
    let mut line = refusal(cap);
    if !line.ends_with('\n') {
        line.push('\n');
    }
    config.refusal = Bytes::from(line);
    (cap, limit)
}

/// Resolves when the daemon is asked to stop by Ctrl-C or SIGTERM, naming which; an error
/// if Ctrl-C cannot be waited for.
pub(crate) async fn stop_signal() -> Result<&'static str, String> {
    tokio::select! {
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => Ok("interrupted"),
            Err(e) => Err(format!("cannot wait for Ctrl-C: {e}")),
        },
        () = terminated() => Ok("terminated"),
    }
}

/// Resolves on SIGTERM; never where there is no such signal.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut s) = signal(SignalKind::terminate()) {
            s.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_free_and_the_refusal_is_one_line() {
        let mut config = DriverConfig::new(flotilla_tokio::PeerTransport::None);
        let (cap, limit) = cap_clients(&mut config, |n| format!("421 too many ({n})"));
        assert_eq!(config.max_clients, cap);
        assert!(cap >= 1);
        if let Some(l) = limit {
            assert!(
                (cap as u64) < l || l <= 1,
                "cap {cap} not below the limit {l}"
            );
        }
        assert_eq!(
            config.refusal,
            Bytes::from(format!("421 too many ({cap})\n"))
        );
    }
}
