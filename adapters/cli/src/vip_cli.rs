//! `flotilla vip …`: the application's side of the VIP agent (SPEC.md §11.7), over
//! `vipd`'s control socket — no root needed, the socket's mode decides. `status` (every
//! VIP, its holder, since where, the view), `eligible on|off`, `prefer VIP NODE|*`,
//! `move VIP NODE` (waits until the move is done or fails, and says which), and `watch`
//! (changes as they happen, until Ctrl-C). `--json` prints one object per line.
//!
//! Exit status: 0 done; 1 refused (the agent's reason on stderr, as `error: …`) or the
//! agent cannot be reached.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use flotilla_tokio::vip_client::{VipClient, VipNotice, VipState, VipStatus};

use crate::Outcome;
use crate::daemon::fail;
use crate::flood_cli::json_string;
use crate::group_cli::json_strings;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The agent's control socket (vipd's --socket).
    #[arg(long, global = true, env = "VIPD_SOCKET", default_value = crate::vipd::DEFAULT_SOCKET, value_name = "PATH")]
    socket: PathBuf,
    /// Print JSON: one object per line.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: VipCommandLine,
}

#[derive(Subcommand, Debug)]
enum VipCommandLine {
    /// Every VIP: its holder, whether its addresses are up, since where in the group's
    /// order, its preference, this node's addresses; then the agent's view.
    Status,
    /// Let this node hold VIPs (on), or move them away from it (off).
    Eligible {
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Make NODE the VIP's preferred node (`*`: the file's preference again).
    Prefer {
        /// The VIP.
        vip: String,
        /// The node, or `*`.
        node: String,
    },
    /// Move the VIP to NODE now; waits until NODE has the addresses, or says why not.
    Move {
        /// The VIP.
        vip: String,
        /// The node.
        node: String,
    },
    /// Print every holder change and every change of this node's addresses, as they
    /// happen, until Ctrl-C.
    Watch,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let mut c = match VipClient::connect(&args.socket).await {
        Ok(c) => c,
        Err(e) => {
            return Ok(fail(
                1,
                format_args!("cannot reach vipd at {}: {e}", args.socket.display()),
            ));
        }
    };
    let json = args.json;
    let result = match args.command {
        VipCommandLine::Status => c.status().await.map(|s| {
            for line in status_lines(&s, json) {
                println!("{line}");
            }
        }),
        VipCommandLine::Eligible { state } => {
            let on = state == "on";
            c.set_eligible(on).await.map(|()| {
                if json {
                    println!("{{\"eligible\":{on}}}");
                } else {
                    println!("eligible {state}");
                }
            })
        }
        VipCommandLine::Prefer { vip, node } => {
            let target = (node != "*").then_some(node.as_str());
            c.prefer(&vip, target).await.map(|()| {
                if json {
                    println!(
                        "{{\"vip\":{},\"prefer\":{}}}",
                        json_string(&vip),
                        opt_json(target)
                    );
                } else {
                    println!("prefer {vip} {node}: sent");
                }
            })
        }
        VipCommandLine::Move { vip, node } => c.move_vip(&vip, &node).await.map(|holder| {
            if json {
                println!(
                    "{{\"vip\":{},\"moved\":true,\"holder\":{}}}",
                    json_string(&vip),
                    json_string(&holder)
                );
            } else {
                println!("moved {vip} to {holder}");
            }
        }),
        VipCommandLine::Watch => return watch(c, json).await,
    };
    Ok(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e),
    })
}

async fn watch(mut c: VipClient, json: bool) -> Outcome {
    if let Err(e) = c.watch().await {
        return Ok(fail(1, e));
    }
    let stop = crate::daemon::stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            n = c.next_notice() => match n {
                Ok(n) => {
                    println!("{}", notice_line(&n, json));
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                }
                Err(e) => return Ok(fail(1, format_args!("vipd: {e}"))),
            },
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn opt_json(v: Option<&str>) -> String {
    v.map_or("null".to_string(), json_string)
}

fn notice_line(n: &VipNotice, json: bool) -> String {
    if !json {
        return n.to_string();
    }
    match n {
        VipNotice::Holder { vip, holder, at } => format!(
            "{{\"vip\":{},\"holder\":{},\"at\":{}}}",
            json_string(vip),
            opt_json(holder.as_deref()),
            json_string(at)
        ),
        VipNotice::Local { vip, change } => format!(
            "{{\"vip\":{},\"local\":{}}}",
            json_string(vip),
            json_string(change)
        ),
        VipNotice::Other { code, text } => {
            format!("{{\"code\":{code},\"text\":{}}}", json_string(text))
        }
    }
}

fn vip_line(v: &VipState, json: bool) -> String {
    if json {
        return format!(
            "{{\"vip\":{},\"holder\":{},\"acquired\":{},\"since\":{},\"prefer\":{},\"releasing\":{},\"local\":{},\"addresses\":{}}}",
            json_string(&v.name),
            opt_json(v.holder.as_deref()),
            v.acquired,
            opt_json(v.since.as_deref()),
            opt_json(v.prefer.as_deref()),
            json_strings(&v.releasing),
            json_string(&v.local),
            json_strings(&v.addresses),
        );
    }
    let state = match (&v.holder, v.acquired) {
        (None, _) => "unheld".to_string(),
        (Some(h), true) => format!("held by {h}"),
        (Some(h), false) => format!("granted to {h} (adding)"),
    };
    let mut line = format!(
        "{} {} {state} since {}",
        v.name,
        v.addresses.join(","),
        v.since.as_deref().unwrap_or("-")
    );
    if let Some(p) = &v.prefer {
        line.push_str(&format!(" prefer {p}"));
    }
    if !v.releasing.is_empty() {
        line.push_str(&format!(" releasing {}", v.releasing.join(",")));
    }
    line.push_str(&format!(" local {}", v.local));
    line
}

fn status_lines(s: &VipStatus, json: bool) -> Vec<String> {
    let mut lines: Vec<String> = s.vips.iter().map(|v| vip_line(v, json)).collect();
    if json {
        lines.push(format!(
            "{{\"node\":{},\"generation\":{},\"members\":{},\"primary\":{},\"settled\":{},\"eligible\":{},\"healthy\":{},\"fenced\":{}}}",
            json_string(&s.node),
            opt_json(s.generation.as_deref()),
            json_strings(&s.members),
            s.primary,
            s.settled,
            s.eligible,
            s.healthy,
            s.fenced
        ));
    } else {
        let yn = |b| if b { "yes" } else { "no" };
        lines.push(format!(
            "node {} generation {} members {} primary {} settled {} eligible {} healthy {} fenced {}",
            s.node,
            s.generation.as_deref().unwrap_or("-"),
            if s.members.is_empty() {
                "-".to_string()
            } else {
                s.members.join(",")
            },
            yn(s.primary),
            yn(s.settled),
            yn(s.eligible),
            yn(s.healthy),
            yn(s.fenced)
        ));
    }
    lines
}
