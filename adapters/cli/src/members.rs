//! `flotilla members`: the view a group daemon holds (SPEC.md §9.6), from the daemon
//! named by `--daemon` or `GROUPD` (default `127.0.0.1:4803`). Prints
//!
//! ```text
//! view 7 n1 primary members=3 config=0 incarnation=8d2c…
//! n1 127.0.0.1:4803 incarnation=8d2c…
//! …
//! ```
//!
//! or, with `--json`, one object. Failures print `error: …` and exit 1.

use std::process::ExitCode;
use std::time::Duration;

use flotilla_tokio::client::LineClient;
use flotilla_tokio::group_client::{DaemonView, parse_daemon_view};

use crate::Outcome;
use crate::flood_cli::json_string;
use crate::ship_cli::{CONNECT_TIMEOUT, fail};

/// A working daemon answers at once.
const LIMIT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The group daemon to ask (its --listen address).
    #[arg(long, env = "GROUPD", default_value = crate::groupd::DEFAULT_ADDR, value_name = "HOST:PORT")]
    daemon: String,
    /// Print one JSON object: {"view": {"epoch", "coordinator", "incarnation"}, "primary",
    /// "config",
    /// "members": [{"name", "address", "incarnation"}]}.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let daemon = args.daemon.as_str();
    let mut client = match tokio::time::timeout(CONNECT_TIMEOUT, LineClient::connect(daemon)).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Ok(fail(format_args!("cannot reach groupd at {daemon}: {e}"))),
        Err(_) => {
            return Ok(fail(format_args!(
                "cannot reach groupd at {daemon}: no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    let text = match tokio::time::timeout(LIMIT, client.request("members")).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Ok(fail(format_args!("groupd at {daemon}: {e}"))),
        Err(_) => {
            return Ok(fail(format_args!(
                "groupd at {daemon}: no answer within {}s",
                LIMIT.as_secs()
            )));
        }
    };
    let _ = client.request("quit").await;
    let shown = match parse_daemon_view(&text) {
        Ok(s) => s,
        Err(e) => return Ok(fail(format_args!("groupd at {daemon}: {e}"))),
    };
    if args.json {
        println!("{}", to_json(&shown));
    } else {
        // The daemon's own lines, without the final count.
        for line in text
            .lines()
            .filter(|l| !l.ends_with(" members") || l.starts_with("view "))
        {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(s: &DaemonView) -> String {
    let members: Vec<String> = s
        .members
        .iter()
        .map(|m| {
            format!(
                "{{\"name\":{},\"address\":{},\"incarnation\":\"{:016x}\"}}",
                json_string(&m.name),
                json_string(&m.addr.to_string()),
                m.incarnation
            )
        })
        .collect();
    // The view id's incarnation, as the members' (absent from an older daemon).
    let incarnation = s
        .incarnation
        .map(|i| format!(",\"incarnation\":\"{i:016x}\""))
        .unwrap_or_default();
    format!(
        "{{\"view\":{{\"epoch\":{},\"coordinator\":{}{incarnation}}},\"primary\":{},\"config\":{},\"members\":[{}]}}",
        s.epoch,
        json_string(&s.coordinator),
        s.primary,
        s.config,
        members.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "view 3 n1 primary members=2 config=1 incarnation=00000000000000ff\n\
                        n1 127.0.0.1:4803 incarnation=00000000000000ff\n\
                        n2 127.0.0.1:4804 incarnation=0000000000000100\n\
                        2 members";

    #[test]
    fn reads_a_view_and_writes_json() {
        let s = parse_daemon_view(TEXT).unwrap();
        assert_eq!(s.epoch, 3);
        assert!(s.primary);
        assert_eq!(s.members[1].name, "n2");
        assert_eq!(
            to_json(&s),
            "{\"view\":{\"epoch\":3,\"coordinator\":\"n1\",\"incarnation\":\"00000000000000ff\"},\"primary\":true,\"config\":1,\
             \"members\":[{\"name\":\"n1\",\"address\":\"127.0.0.1:4803\",\"incarnation\":\"00000000000000ff\"},\
             {\"name\":\"n2\",\"address\":\"127.0.0.1:4804\",\"incarnation\":\"0000000000000100\"}]}"
        );
    }

    #[test]
    fn refuses_what_is_not_a_view() {
        assert!(parse_daemon_view("hello").is_err());
        assert!(parse_daemon_view(&TEXT.replace("members=2", "members=3")).is_err());
        assert!(parse_daemon_view(&TEXT.replace("primary", "maybe")).is_err());
    }
}
