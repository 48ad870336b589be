//! `flotilla group join|send|watch|members|list` and `flotilla service
//! bind|release|resolve|list`: clients of a group daemon's client protocol (SPEC.md
//! §10.6), at the daemon named by `--daemon` (`HOST:PORT` or a Unix socket path) or
//! `GROUPD` (default `127.0.0.1:4803`). Failures print `error: …` and exit 1.
//!
//! `join`, `watch` and `service bind` run until Ctrl-C or SIGTERM and print one line per
//! notice, flushed at once so that a program reading a pipe sees each as it comes. Plain
//! lines start with what they are:
//!
//! ```text
//! message GROUP SENDER@DAEMON VIEW SEQ TEXT        (TEXT escaped as on the wire)
//! fifo-message GROUP SENDER@DAEMON VIEW N TEXT     (sent with --fifo: N counts the
//!                                                  sender daemon's FIFO messages)
//! view GROUP VIEW SEQ CAUSE N MEMBER…              (at most 1000 members listed)
//! stop SERVICE EVENT
//! start SERVICE EVENT PORT N NODE…
//! done SERVICE EVENT                               (this command's answer to start)
//! finish SERVICE EVENT
//! waiting SERVICE EVENT NODE…
//! moved SERVICE PORT
//! released SERVICE
//! ```
//!
//! With `--json` every line is one JSON object with a `"type"` naming the same thing
//! (and `bind`'s first line `{"type":"bound","service":…,"port":…}`):
//!
//! ```text
//! {"type":"message","group":…,"sender":…,"daemon":…,"view":{"epoch":3,"coordinator":"n1"},
//!  "seq":7,"delivery":"agreed","payload":"…","escaped":false}   (delivery "fifo" for
//!  --fifo messages; escaped: payload not UTF-8, shown as TEXT)
//! {"type":"view","group":…,"view":{…},"seq":8,"cause":"join","count":2,
//!  "members":[{"client":…,"daemon":…},…]}
//! {"type":"start","service":…,"event":…,"port":4810,"nodes":[…]}   (stop, finish, done:
//!  service and event; waiting: and nodes; moved: service and port; released: service)
//! ```
//!
//! JSON is written here by hand (the binary has no JSON dependency); every string goes
//! through [`json_string`].

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use flotilla_core::line::{ClientError, escape};
use flotilla_tokio::group_client::{Delivery, Error, GroupClient, GroupNotice, MemberId, ViewId};

use crate::Outcome;
use crate::daemon::stop_signal;
use crate::flood_cli::json_string;
use crate::ship_cli::{CONNECT_TIMEOUT, ask_server, fail};

/// Queries are answered at once by a working daemon.
const LIMIT: Duration = Duration::from_secs(10);

/// Joins, leaves, binds and releases are answered once the cluster has put them in its
/// agreed order: a round of messages among the daemons, longer while a view changes.
const ORDERED_LIMIT: Duration = Duration::from_secs(30);

/// How often `group send` tries a message the daemon is too busy to take, and how long
/// it waits between tries (all within [`LIMIT`]).
const BUSY_TRIES: u32 = 20;
const BUSY_PAUSE: Duration = Duration::from_millis(250);

/// How long a command that is stopping waits to say goodbye: the daemon treats a closed
/// connection as a `quit` anyway.
const QUIT_LIMIT: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub(crate) struct GroupArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ServiceArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The group daemon: its --listen address, or its --socket path.
    #[arg(
        long,
        global = true,
        env = "GROUPD",
        default_value = crate::groupd::DEFAULT_ADDR,
        value_name = "HOST:PORT|PATH"
    )]
    daemon: String,
    /// Print JSON: one object per line.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// Join GROUP and print its membership changes (`view …` lines) until Ctrl-C or
    /// SIGTERM; the group is left when the command ends.
    Join {
        /// The group: 1 to 64 printable ASCII characters without spaces.
        group: String,
        /// This client's name in the group (default: the daemon's `cN`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Send MESSAGE to GROUP (the sender need not be a member). Prints nothing, or
    /// {"sent":true} with --json.
    Send {
        /// The group.
        group: String,
        /// The message, sent as it is (at most 65536 bytes; it may start with '-').
        #[arg(allow_hyphen_values = true)]
        message: String,
        /// The sender's name (default: the daemon's `cN`).
        #[arg(long)]
        name: Option<String>,
        /// Send in the cheaper FIFO mode (`fsend`): members get each sender's messages
        /// in the order it sent them, with no order between senders.
        #[arg(long)]
        fifo: bool,
    },
    /// Join GROUP and print every message and membership change, one per line, until
    /// Ctrl-C or SIGTERM.
    Watch {
        /// The group.
        group: String,
        /// This client's name in the group (default: the daemon's `cN`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print GROUP's view and members: `group GROUP view VIEW members=N`, then one
    /// CLIENT@DAEMON per line.
    Members {
        /// The group.
        group: String,
    },
    /// List the groups that have members: `GROUP N` per line.
    List,
}

#[derive(Subcommand, Debug)]
enum ServiceCommand {
    /// Bind SERVICE on this node: print its cluster port, then hold the binding and print
    /// its recovery barriers (answering each `start` with `done`) until Ctrl-C, SIGTERM,
    /// or a `release` from elsewhere.
    Bind {
        /// The service: 1 to 64 letters, digits, '.', '_' or '-'.
        service: String,
        /// This client's name (default: the daemon's `cN`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Release this node's binding of SERVICE, whichever client holds it.
    Release {
        /// The service.
        service: String,
    },
    /// Print where SERVICE is reached on NODE (IP:PORT). Takes NODE SERVICE, or
    /// NODE:SERVICE.
    Resolve {
        /// The node (a daemon's name), or NODE:SERVICE.
        node: String,
        /// The service.
        service: Option<String>,
    },
    /// List the bound services: `SERVICE PORT NODE,NODE…` per line.
    List,
}

/// Where a command's lines go.
struct Out {
    json: bool,
}

impl Out {
    /// Writes one line and flushes it. `Err` carries the exit status when standard output
    /// is gone: a reader that closed the pipe (`… | head`) has all it wanted, so that
    /// ends the command quietly and successfully.
    fn line(&self, line: &str) -> Result<(), ExitCode> {
        let mut out = io::stdout().lock();
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(ExitCode::SUCCESS),
            Err(e) => Err(fail(format_args!("cannot write to standard output: {e}"))),
        }
    }

    /// The plain or the JSON form, as asked.
    fn either(&self, plain: impl FnOnce() -> String, json: impl FnOnce() -> String) -> String {
        if self.json { json() } else { plain() }
    }
}

/// A connection and the name errors give its daemon.
struct Session {
    client: GroupClient,
    server: String,
}

impl Session {
    async fn open(daemon: &str) -> Result<Session, ExitCode> {
        let server = format!("groupd at {daemon}");
        match tokio::time::timeout(CONNECT_TIMEOUT, GroupClient::connect(daemon)).await {
            Ok(Ok(client)) => Ok(Session { client, server }),
            Ok(Err(e)) => Err(fail(format_args!("cannot reach {server}: {e}"))),
            Err(_) => Err(fail(format_args!(
                "cannot reach {server}: no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn name(&mut self, name: Option<&str>) -> Result<(), ExitCode> {
        if let Some(n) = name {
            ask_server(&self.server, "name", LIMIT, self.client.set_name(n)).await?;
        }
        Ok(())
    }

    /// Says goodbye, within a bound: the answer is in, and a daemon that has gone does
    /// not change it.
    async fn quit(mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.client.quit()).await;
    }

    /// Why following notices stopped, as an exit status.
    fn lost(&self, e: Error) -> ExitCode {
        match e {
            Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                fail(format_args!("{} closed the connection", self.server))
            }
            Error::Io(e) => fail(format_args!("lost the connection to {}: {e}", self.server)),
            Error::Server(e) => fail(format_args!("{}: {e}", self.server)),
        }
    }
}

pub(crate) async fn run_group(args: GroupArgs) -> Outcome {
    let out = Out {
        json: args.common.json,
    };
    let mut s = match Session::open(&args.common.daemon).await {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let result = match args.command {
        GroupCommand::Join { group, name } => follow_group(&mut s, &out, &group, name, false).await,
        GroupCommand::Watch { group, name } => follow_group(&mut s, &out, &group, name, true).await,
        GroupCommand::Send {
            group,
            message,
            name,
            fifo,
        } => send(&mut s, &out, (&group, &message, fifo), name.as_deref()).await,
        GroupCommand::Members { group } => {
            let req = s.client.members(&group);
            match ask_server(&s.server, "members", LIMIT, req).await {
                Ok(m) => members_lines(&out, &m.group, &m.view, &m.members)
                    .iter()
                    .try_for_each(|l| out.line(l))
                    .map(|()| ExitCode::SUCCESS),
                Err(code) => Err(code),
            }
        }
        GroupCommand::List => match ask_server(&s.server, "groups", LIMIT, s.client.groups()).await
        {
            Ok(groups) => groups_lines(&out, &groups)
                .iter()
                .try_for_each(|l| out.line(l))
                .map(|()| ExitCode::SUCCESS),
            Err(code) => Err(code),
        },
    };
    s.quit(QUIT_LIMIT).await;
    Ok(result.unwrap_or_else(|code| code))
}

pub(crate) async fn run_service(args: ServiceArgs) -> Outcome {
    let out = Out {
        json: args.common.json,
    };
    // Checked before connecting: a wrong argument is not the daemon's problem.
    let target = match &args.command {
        ServiceCommand::Resolve { node, service } => match resolve_target(node, service) {
            Ok(t) => Some(t),
            Err(e) => return Ok(fail(e)),
        },
        _ => None,
    };
    let mut s = match Session::open(&args.common.daemon).await {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let result = match args.command {
        ServiceCommand::Bind { service, name } => bind(&mut s, &out, &service, name).await,
        ServiceCommand::Release { service } => {
            let req = s.client.release(&service);
            match ask_server(&s.server, "release", ORDERED_LIMIT, req).await {
                Ok(()) if out.json => out.line("{\"released\":true}").map(|()| ExitCode::SUCCESS),
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(code) => Err(code),
            }
        }
        ServiceCommand::Resolve { .. } => {
            let (node, service) = target.unwrap_or_default();
            let req = s.client.resolve(&node, &service);
            match ask_server(&s.server, "resolve", LIMIT, req).await {
                Ok(addr) => out
                    .line(&out.either(
                        || addr.to_string(),
                        || {
                            format!(
                                "{{\"node\":{},\"service\":{},\"address\":{}}}",
                                json_string(&node),
                                json_string(&service),
                                json_string(&addr.to_string())
                            )
                        },
                    ))
                    .map(|()| ExitCode::SUCCESS),
                Err(code) => Err(code),
            }
        }
        ServiceCommand::List => {
            match ask_server(&s.server, "services", LIMIT, s.client.services()).await {
                Ok(services) => {
                    let lines = if out.json {
                        let all: Vec<String> = services
                            .iter()
                            .map(|sv| {
                                format!(
                                    "{{\"service\":{},\"port\":{},\"nodes\":{}}}",
                                    json_string(&sv.name),
                                    sv.port,
                                    json_strings(&sv.nodes)
                                )
                            })
                            .collect();
                        vec![format!("{{\"services\":[{}]}}", all.join(","))]
                    } else {
                        services
                            .iter()
                            .map(|sv| format!("{} {} {}", sv.name, sv.port, sv.nodes.join(",")))
                            .collect()
                    };
                    lines
                        .iter()
                        .try_for_each(|l| out.line(l))
                        .map(|()| ExitCode::SUCCESS)
                }
                Err(code) => Err(code),
            }
        }
    };
    s.quit(QUIT_LIMIT).await;
    Ok(result.unwrap_or_else(|code| code))
}

/// `NODE SERVICE`, or `NODE:SERVICE` in one argument (names hold no colon).
fn resolve_target(node: &str, service: &Option<String>) -> Result<(String, String), String> {
    match (node.split_once(':'), service) {
        (None, Some(s)) => Ok((node.to_string(), s.clone())),
        (Some((n, s)), None) if !n.is_empty() && !s.is_empty() => {
            Ok((n.to_string(), s.to_string()))
        }
        (Some(_), Some(_)) => Err(format!(
            "'{node}' holds a colon: give NODE SERVICE, or NODE:SERVICE alone"
        )),
        _ => Err(format!("'{node}': give NODE SERVICE, or NODE:SERVICE")),
    }
}

async fn send(
    s: &mut Session,
    out: &Out,
    (group, message, fifo): (&str, &str, bool),
    name: Option<&str>,
) -> Result<ExitCode, ExitCode> {
    s.name(name).await?;
    let client = &mut s.client;
    let req = async move {
        // `451` says too many messages are on their way and asks to try again: the
        // command does, a few times, before it reports the refusal.
        let mut tries = 1;
        loop {
            let sent = if fifo {
                client.send_fifo(group, message.as_bytes()).await
            } else {
                client.send(group, message.as_bytes()).await
            };
            match sent {
                Err(Error::Server(ClientError::Refused { code: 451, .. }))
                    if tries < BUSY_TRIES =>
                {
                    tries += 1;
                    tokio::time::sleep(BUSY_PAUSE).await;
                }
                other => return other,
            }
        }
    };
    ask_server(&s.server, "send", LIMIT, req).await?;
    if out.json {
        out.line("{\"sent\":true}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `join` (membership notices only) and `watch` (messages too): joins, then prints
/// until a signal, or until the daemon closes the connection (an error).
async fn follow_group(
    s: &mut Session,
    out: &Out,
    group: &str,
    name: Option<String>,
    messages: bool,
) -> Result<ExitCode, ExitCode> {
    s.name(name.as_deref()).await?;
    ask_server(&s.server, "join", ORDERED_LIMIT, s.client.join(group)).await?;
    // Pinned once, so a signal between two notices is not missed.
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let notice = tokio::select! {
            // Reading a notice is safe to abandon: bytes are taken in only once read
            // whole, and no request is pending.
            n = s.client.next_notice() => n,
            r = &mut stop => return r.map(|_| ExitCode::SUCCESS).map_err(fail),
        };
        match notice {
            Ok(n @ (GroupNotice::View { .. } | GroupNotice::Change { .. })) => {
                out.line(&notice_line(out.json, &n))?;
            }
            Ok(n @ GroupNotice::Message { .. }) if messages => {
                out.line(&notice_line(out.json, &n))?;
            }
            Ok(GroupNotice::Closing(why)) => return Err(closing(s, &why)),
            // Another group's notice cannot come to this connection; others are not
            // this command's to show.
            Ok(_) => {}
            Err(e) => return Err(s.lost(e)),
        }
    }
}

/// `service bind`: binds, prints the port, then the barrier notices, answering `done`
/// to every `start` (this command has nothing to recover, so it is done at once).
async fn bind(
    s: &mut Session,
    out: &Out,
    service: &str,
    name: Option<String>,
) -> Result<ExitCode, ExitCode> {
    s.name(name.as_deref()).await?;
    let port = ask_server(&s.server, "bind", ORDERED_LIMIT, s.client.bind(service)).await?;
    out.line(&out.either(
        || port.to_string(),
        || {
            format!(
                "{{\"type\":\"bound\",\"service\":{},\"port\":{port}}}",
                json_string(service)
            )
        },
    ))?;
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let notice = tokio::select! {
            n = s.client.next_notice() => n,
            r = &mut stop => return r.map(|_| ExitCode::SUCCESS).map_err(fail),
        };
        let n = match notice {
            Ok(GroupNotice::Closing(why)) => return Err(closing(s, &why)),
            Ok(n) => n,
            Err(e) => return Err(s.lost(e)),
        };
        match &n {
            GroupNotice::Start { service, event, .. } => {
                out.line(&notice_line(out.json, &n))?;
                let req = s.client.done(service, Some(event.as_str()));
                match tokio::time::timeout(ORDERED_LIMIT, req).await {
                    Ok(Ok(counted)) => out.line(&done_line(out.json, service, &counted))?,
                    // A barrier a newer one replaced has nothing to finish: say so and
                    // keep the binding.
                    Ok(Err(Error::Server(
                        e @ flotilla_core::line::ClientError::Refused { .. },
                    ))) => {
                        eprintln!("warning: done {service} {event}: {e}");
                    }
                    Ok(Err(e)) => return Err(s.lost(e)),
                    Err(_) => {
                        return Err(fail(format_args!(
                            "done {service} {event}: no reply from {} within {}s",
                            s.server,
                            ORDERED_LIMIT.as_secs()
                        )));
                    }
                }
            }
            GroupNotice::Released { .. } => {
                out.line(&notice_line(out.json, &n))?;
                return Ok(ExitCode::SUCCESS);
            }
            GroupNotice::Stop { .. }
            | GroupNotice::Finish { .. }
            | GroupNotice::Waiting { .. }
            | GroupNotice::Moved { .. } => out.line(&notice_line(out.json, &n))?,
            _ => {}
        }
    }
}

fn closing(s: &Session, why: &str) -> ExitCode {
    fail(format_args!(
        "{} is closing the connection: {why}",
        s.server
    ))
}

/// One notice as a line: plain, or one JSON object.
fn notice_line(json: bool, n: &GroupNotice) -> String {
    if json { notice_json(n) } else { notice_text(n) }
}

fn member_text((client, daemon): &MemberId) -> String {
    format!("{client}@{daemon}")
}

fn notice_text(n: &GroupNotice) -> String {
    let words = |w: &[String]| w.iter().map(|x| format!(" {x}")).collect::<String>();
    match n {
        GroupNotice::Message {
            group,
            sender,
            daemon,
            view,
            seq,
            payload,
            delivery,
        } => format!(
            "{} {group} {sender}@{daemon} {view} {seq} {}",
            match delivery {
                Delivery::Agreed => "message",
                Delivery::Fifo => "fifo-message",
            },
            escape(payload)
        ),
        GroupNotice::View {
            group,
            view,
            seq,
            cause,
            count,
            members,
        } => {
            let m: Vec<String> = members.iter().map(member_text).collect();
            format!("view {group} {view} {seq} {cause} {count}{}", words(&m))
        }
        GroupNotice::Change {
            group,
            view,
            seq,
            cause,
            count,
            member,
        } => format!(
            "change {group} {view} {seq} {cause} {count} {}",
            member_text(member)
        ),
        GroupNotice::Stop { service, event } => format!("stop {service} {event}"),
        GroupNotice::Start {
            service,
            event,
            port,
            nodes,
        } => format!(
            "start {service} {event} {port} {}{}",
            nodes.len(),
            words(nodes)
        ),
        GroupNotice::Finish { service, event } => format!("finish {service} {event}"),
        GroupNotice::Waiting {
            service,
            event,
            nodes,
        } => format!("waiting {service} {event}{}", words(nodes)),
        GroupNotice::Moved { service, port } => format!("moved {service} {port}"),
        GroupNotice::Released { service } => format!("released {service}"),
        GroupNotice::Closing(text) => format!("closing {text}"),
        GroupNotice::Other { code, text } => format!("notice {code} {text}"),
    }
}

fn view_json(v: &ViewId) -> String {
    format!(
        "{{\"epoch\":{},\"coordinator\":{}}}",
        v.epoch,
        json_string(&v.coordinator)
    )
}

fn members_json(members: &[MemberId]) -> String {
    let all: Vec<String> = members
        .iter()
        .map(|(c, d)| {
            format!(
                "{{\"client\":{},\"daemon\":{}}}",
                json_string(c),
                json_string(d)
            )
        })
        .collect();
    format!("[{}]", all.join(","))
}

pub(crate) fn json_strings(words: &[String]) -> String {
    let all: Vec<String> = words.iter().map(|w| json_string(w)).collect();
    format!("[{}]", all.join(","))
}

/// A payload as a JSON string: its text when it is UTF-8, else escaped as on the wire
/// (`"escaped":true` tells which).
fn payload_json(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) => format!("\"payload\":{},\"escaped\":false", json_string(text)),
        Err(_) => format!(
            "\"payload\":{},\"escaped\":true",
            json_string(&escape(payload))
        ),
    }
}

fn notice_json(n: &GroupNotice) -> String {
    let head = |kind: &str, service: &str| {
        format!("{{\"type\":\"{kind}\",\"service\":{}", json_string(service))
    };
    match n {
        GroupNotice::Message {
            group,
            sender,
            daemon,
            view,
            seq,
            payload,
            delivery,
        } => format!(
            "{{\"type\":\"message\",\"group\":{},\"sender\":{},\"daemon\":{},\"view\":{},\"seq\":{seq},\"delivery\":\"{}\",{}}}",
            json_string(group),
            json_string(sender),
            json_string(daemon),
            view_json(view),
            match delivery {
                Delivery::Agreed => "agreed",
                Delivery::Fifo => "fifo",
            },
            payload_json(payload)
        ),
        GroupNotice::View {
            group,
            view,
            seq,
            cause,
            count,
            members,
        } => format!(
            "{{\"type\":\"view\",\"group\":{},\"view\":{},\"seq\":{seq},\"cause\":\"{cause}\",\"count\":{count},\"members\":{}}}",
            json_string(group),
            view_json(view),
            members_json(members)
        ),
        GroupNotice::Change {
            group,
            view,
            seq,
            cause,
            count,
            member: (c, d),
        } => format!(
            "{{\"type\":\"change\",\"group\":{},\"view\":{},\"seq\":{seq},\"cause\":\"{cause}\",\"count\":{count},\"member\":{{\"client\":{},\"daemon\":{}}}}}",
            json_string(group),
            view_json(view),
            json_string(c),
            json_string(d)
        ),
        GroupNotice::Stop { service, event } => format!(
            "{},\"event\":{}}}",
            head("stop", service),
            json_string(event)
        ),
        GroupNotice::Start {
            service,
            event,
            port,
            nodes,
        } => format!(
            "{},\"event\":{},\"port\":{port},\"nodes\":{}}}",
            head("start", service),
            json_string(event),
            json_strings(nodes)
        ),
        GroupNotice::Finish { service, event } => format!(
            "{},\"event\":{}}}",
            head("finish", service),
            json_string(event)
        ),
        GroupNotice::Waiting {
            service,
            event,
            nodes,
        } => format!(
            "{},\"event\":{},\"nodes\":{}}}",
            head("waiting", service),
            json_string(event),
            json_strings(nodes)
        ),
        GroupNotice::Moved { service, port } => {
            format!("{},\"port\":{port}}}", head("moved", service))
        }
        GroupNotice::Released { service } => format!("{}}}", head("released", service)),
        GroupNotice::Closing(text) => {
            format!("{{\"type\":\"closing\",\"text\":{}}}", json_string(text))
        }
        GroupNotice::Other { code, text } => format!(
            "{{\"type\":\"notice\",\"code\":{code},\"text\":{}}}",
            json_string(text)
        ),
    }
}

fn done_line(json: bool, service: &str, event: &str) -> String {
    if json {
        format!(
            "{{\"type\":\"done\",\"service\":{},\"event\":{}}}",
            json_string(service),
            json_string(event)
        )
    } else {
        format!("done {service} {event}")
    }
}

/// `group members`: the daemon's head line and one member per line, or one object.
fn members_lines(out: &Out, group: &str, view: &ViewId, members: &[MemberId]) -> Vec<String> {
    if out.json {
        return vec![format!(
            "{{\"group\":{},\"view\":{},\"members\":{}}}",
            json_string(group),
            view_json(view),
            members_json(members)
        )];
    }
    let mut lines = vec![format!(
        "group {group} view {view} members={}",
        members.len()
    )];
    lines.extend(members.iter().map(member_text));
    lines
}

/// `group list`: `GROUP N` per group, or one object.
fn groups_lines(out: &Out, groups: &[(String, usize)]) -> Vec<String> {
    if out.json {
        let all: Vec<String> = groups
            .iter()
            .map(|(g, n)| format!("{{\"group\":{},\"members\":{n}}}", json_string(g)))
            .collect();
        return vec![format!("{{\"groups\":[{}]}}", all.join(","))];
    }
    groups.iter().map(|(g, n)| format!("{g} {n}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_tokio::group_client::Cause;

    fn view() -> ViewId {
        ViewId {
            epoch: 3,
            coordinator: "n1".into(),
        }
    }

    fn message(payload: &[u8]) -> GroupNotice {
        GroupNotice::Message {
            group: "chat".into(),
            sender: "alice".into(),
            daemon: "n1".into(),
            view: view(),
            seq: 7,
            payload: payload.to_vec(),
            delivery: Delivery::Agreed,
        }
    }

    #[test]
    fn messages_print_on_one_line() {
        assert_eq!(
            notice_text(&message(b"hi\nthere")),
            "message chat alice@n1 3.n1 7 hi\\nthere"
        );
        assert_eq!(
            notice_json(&message("h\u{e9} \"x\"".as_bytes())),
            "{\"type\":\"message\",\"group\":\"chat\",\"sender\":\"alice\",\"daemon\":\"n1\",\
             \"view\":{\"epoch\":3,\"coordinator\":\"n1\"},\"seq\":7,\"delivery\":\"agreed\",\"payload\":\"h\u{e9} \\\"x\\\"\",\
             \"escaped\":false}"
        );
        assert!(
            notice_json(&message(b"a\xffb"))
                .ends_with("\"payload\":\"a\\\\xffb\",\"escaped\":true}")
        );
        let mut fifo = message(b"x");
        if let GroupNotice::Message { delivery, .. } = &mut fifo {
            *delivery = Delivery::Fifo;
        }
        assert_eq!(notice_text(&fifo), "fifo-message chat alice@n1 3.n1 7 x");
        assert!(notice_json(&fifo).contains(",\"seq\":7,\"delivery\":\"fifo\","));
    }

    #[test]
    fn views_and_barriers_print_as_documented() {
        let v = GroupNotice::View {
            group: "chat".into(),
            view: view(),
            seq: 8,
            cause: Cause::Join,
            count: 2,
            members: vec![("alice".into(), "n1".into()), ("c4".into(), "n2".into())],
        };
        assert_eq!(notice_text(&v), "view chat 3.n1 8 join 2 alice@n1 c4@n2");
        assert_eq!(
            notice_json(&v),
            "{\"type\":\"view\",\"group\":\"chat\",\"view\":{\"epoch\":3,\"coordinator\":\"n1\"},\
             \"seq\":8,\"cause\":\"join\",\"count\":2,\"members\":[{\"client\":\"alice\",\"daemon\":\"n1\"},\
             {\"client\":\"c4\",\"daemon\":\"n2\"}]}"
        );
        let start = GroupNotice::Start {
            service: "db".into(),
            event: "3.a:17".into(),
            port: 4810,
            nodes: vec!["n1".into(), "n2".into()],
        };
        assert_eq!(notice_text(&start), "start db 3.a:17 4810 2 n1 n2");
        assert_eq!(
            notice_json(&start),
            "{\"type\":\"start\",\"service\":\"db\",\"event\":\"3.a:17\",\"port\":4810,\"nodes\":[\"n1\",\"n2\"]}"
        );
        let moved = GroupNotice::Moved {
            service: "db".into(),
            port: 4811,
        };
        assert_eq!(notice_text(&moved), "moved db 4811");
        assert_eq!(
            notice_json(&moved),
            "{\"type\":\"moved\",\"service\":\"db\",\"port\":4811}"
        );
        let released = GroupNotice::Released {
            service: "db".into(),
        };
        assert_eq!(
            notice_json(&released),
            "{\"type\":\"released\",\"service\":\"db\"}"
        );
        assert_eq!(done_line(false, "db", "3.a:17"), "done db 3.a:17");
        assert_eq!(
            done_line(true, "db", "3.a:17"),
            "{\"type\":\"done\",\"service\":\"db\",\"event\":\"3.a:17\"}"
        );
    }

    #[test]
    fn members_and_groups_print_as_documented() {
        let plain = Out { json: false };
        let json = Out { json: true };
        let members = vec![("alice".to_string(), "n1".to_string())];
        assert_eq!(
            members_lines(&plain, "chat", &view(), &members),
            ["group chat view 3.n1 members=1", "alice@n1"]
        );
        assert_eq!(
            members_lines(&json, "chat", &view(), &members),
            [
                "{\"group\":\"chat\",\"view\":{\"epoch\":3,\"coordinator\":\"n1\"},\
              \"members\":[{\"client\":\"alice\",\"daemon\":\"n1\"}]}"
            ]
        );
        let groups = vec![("chat".to_string(), 2)];
        assert_eq!(groups_lines(&plain, &groups), ["chat 2"]);
        assert_eq!(
            groups_lines(&json, &groups),
            ["{\"groups\":[{\"group\":\"chat\",\"members\":2}]}"]
        );
    }

    #[test]
    fn resolve_takes_two_words_or_one_with_a_colon() {
        assert_eq!(
            resolve_target("n1", &Some("db".into())),
            Ok(("n1".into(), "db".into()))
        );
        assert_eq!(
            resolve_target("n1:db", &None),
            Ok(("n1".into(), "db".into()))
        );
        assert!(resolve_target("n1", &None).is_err());
        assert!(resolve_target("n1:", &None).is_err());
        assert!(resolve_target("n1:db", &Some("db".into())).is_err());
    }
}
