//! `flotilla flood stats|topology|send|groups`: a client of a flood daemon's client port
//! (seed 002), named by `--daemon` or `FLOODD` (default `127.0.0.1:2000`, the seed's
//! client port). Failures print `error: …` and exit 1.
//!
//! `--json` output is written here by hand (the binary has no JSON dependency); every
//! string goes through [`json_string`].

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use flotilla_core::flood::MAX_UPDATE_BYTES;
use flotilla_tokio::flood_client::{FloodClient, Topology};

use crate::Outcome;
use crate::ship_cli::{self, CONNECT_TIMEOUT, fail};

/// How long one request may take: every one is answered at once by a working daemon.
const LIMIT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The flood daemon's client port.
    #[arg(
        long,
        global = true,
        env = "FLOODD",
        default_value = "127.0.0.1:2000",
        value_name = "HOST:PORT"
    )]
    daemon: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the daemon's counters (`name value` per line).
    Stats {
        /// Print one JSON object: {"site": …, "values": {…}, "groups": […]}.
        #[arg(long)]
        json: bool,
    },
    /// Print a group's topology: its version and master, then one `A B cost=Nus` line per
    /// link.
    Topology {
        /// The group (needed when the daemon's site is in several).
        group: Option<String>,
        /// Print one JSON object: {"group", "version", "master", "members", "links"}.
        #[arg(long)]
        json: bool,
    },
    /// Flood a file, or standard input, to a group; prints the update's origin,
    /// incarnation and sequence number. With one argument, it is the GROUP (`-` alone is
    /// standard input).
    Send {
        /// Send the bytes exactly as they are (`binary SIZE`); without it they go as
        /// lines (`data`), which ends the last line with a newline and reads CRLF as LF.
        #[arg(long)]
        binary: bool,
        /// The group (needed when the daemon's site is in several).
        group: Option<String>,
        /// What to flood; `-` or absent: standard input.
        file: Option<PathBuf>,
    },
    /// List the groups of the daemon's site.
    Groups,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let daemon = args.daemon.as_str();
    let server = format!("floodd at {daemon}");
    // Read before connecting: a file that cannot be sent is not the daemon's problem.
    let update = match &args.command {
        Command::Send { group, file, .. } => {
            let file = match (group.as_deref(), file) {
                (Some("-"), None) => None,
                (Some(g), None) if !is_group_name(g) => {
                    return Ok(fail(format_args!(
                        "'{g}' is not a group name (1 to 64 of A-Z a-z 0-9 _ . -): a single \
                         argument is the GROUP; to flood a file, give both: \
                         flotilla flood send GROUP FILE"
                    )));
                }
                (_, f) => f.as_ref().filter(|f| f.as_os_str() != "-"),
            };
            match read_update(file) {
                Ok(u) => Some(u),
                Err(e) => return Ok(fail(e)),
            }
        }
        _ => None,
    };
    let mut client = match tokio::time::timeout(CONNECT_TIMEOUT, FloodClient::connect(daemon)).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Ok(fail(format_args!("cannot reach {server}: {e}"))),
        Err(_) => {
            return Ok(fail(format_args!(
                "cannot reach {server}: no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    let out = match args.command {
        Command::Stats { json } => {
            let req = client.statistics();
            ship_cli::ask_server(&server, "statistics", LIMIT, req)
                .await
                .map(|values| {
                    if json {
                        stats_json(&values)
                    } else {
                        values.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
                    }
                })
        }
        Command::Topology { group, json } => {
            let req = client.topology(group.as_deref());
            match ship_cli::ask_server(&server, "topology", LIMIT, req).await {
                Ok(t) if json => {
                    // The topology reply counts its members; `group` names them.
                    let req = client.group(Some(&t.group));
                    ship_cli::ask_server(&server, "group", LIMIT, req)
                        .await
                        .map(|members| {
                            let names: Vec<String> = members.into_iter().map(|m| m.site).collect();
                            topology_json(&t, &names)
                        })
                }
                Ok(t) => Ok(topology_text(&t)),
                Err(code) => Err(code),
            }
        }
        Command::Send { binary, group, .. } => {
            let group = group.filter(|g| g != "-");
            let data = update.unwrap_or_default();
            let result = if binary {
                let req = client.binary(group.as_deref(), &data);
                ship_cli::ask_server(&server, "binary", LIMIT, req).await
            } else {
                let req = client.data(group.as_deref(), &data);
                ship_cli::ask_server(&server, "data", LIMIT, req).await
            };
            result.map(|f| {
                format!(
                    "flooded to {} as {} {:016x} {} ({} bytes)\n",
                    f.group, f.origin, f.incarnation, f.seq, f.bytes
                )
            })
        }
        Command::Groups => ship_cli::ask_server(&server, "groups", LIMIT, client.groups())
            .await
            .map(|groups| {
                groups
                    .iter()
                    .map(|g| {
                        format!(
                            "{} master={} members={} mode={}\n",
                            g.name, g.master, g.members, g.mode
                        )
                    })
                    .collect()
            }),
    };
    // Said politely, but the answer is in: a daemon that has gone does not change it.
    let _ = tokio::time::timeout(LIMIT, client.quit()).await;
    Ok(match out {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    })
}

/// The update to send: a file, or standard input, of at most one update's size.
fn read_update(file: Option<&PathBuf>) -> Result<Vec<u8>, String> {
    let (name, reader): (String, Box<dyn Read>) = match file {
        Some(path) => {
            let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            (path.display().to_string(), Box::new(f))
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("reading the update from standard input (end it with Ctrl-D)");
            }
            ("standard input".to_string(), Box::new(stdin))
        }
    };
    let mut data = Vec::new();
    reader
        .take(MAX_UPDATE_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("{name}: {e}"))?;
    if data.len() > MAX_UPDATE_BYTES {
        return Err(format!(
            "{name} holds more than {MAX_UPDATE_BYTES} bytes, the most one update may hold"
        ));
    }
    Ok(data)
}

/// What the daemon takes as a group name; checked here so that a file named where the
/// group goes is caught before standard input is read.
fn is_group_name(g: &str) -> bool {
    (1..=64).contains(&g.len())
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn topology_text(t: &Topology) -> String {
    let mut out = format!(
        "group {} version {} master {} members {}\n",
        t.group, t.version, t.master, t.members
    );
    for l in &t.links {
        out.push_str(&format!("{} {} cost={}us\n", l.a, l.b, l.cost_us));
    }
    out
}

/// `text` as a JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            // U+2028 and U+2029 are valid JSON but end lines in JavaScript.
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A counter's value: a JSON number when it is a plain decimal integer, else a string.
/// Leading zeros would change what a number means (and JSON forbids them), and an
/// incarnation is hexadecimal even when it happens to have no letters.
fn json_value(name: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'))
        && value.parse::<u64>().is_ok();
    if plain && name != "incarnation" {
        value.to_string()
    } else {
        json_string(value)
    }
}

fn json_object(fields: &[(String, String)]) -> String {
    let inner: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_string(k)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// `{"site": …, "values": {name: number-or-string}, "groups": [{"name": …, key: …}]}`
/// from `statistics`, whose `group` lines read `NAME key=value …`.
fn stats_json(values: &[(String, String)]) -> String {
    let mut site = None;
    let mut plain = Vec::new();
    let mut groups = Vec::new();
    for (k, v) in values {
        match k.as_str() {
            "site" => site = Some(json_string(v)),
            "group" => {
                let mut words = v.split(' ');
                let name = words.next().unwrap_or_default();
                let mut fields = vec![("name".to_string(), json_string(name))];
                for w in words {
                    match w.split_once('=') {
                        Some((k, v)) => fields.push((k.to_string(), json_value(k, v))),
                        None => fields.push((w.to_string(), "true".to_string())),
                    }
                }
                groups.push(json_object(&fields));
            }
            _ => plain.push((k.clone(), json_value(k, v))),
        }
    }
    format!(
        "{{\"site\":{},\"values\":{},\"groups\":[{}]}}\n",
        site.unwrap_or_else(|| "null".to_string()),
        json_object(&plain),
        groups.join(",")
    )
}

/// `{"group":…,"version":…,"master":…,"members":[…],"links":[{"a":…,"b":…,"cost_us":…}]}`
fn topology_json(t: &Topology, members: &[String]) -> String {
    let members: Vec<String> = members.iter().map(|m| json_string(m)).collect();
    let links: Vec<String> = t
        .links
        .iter()
        .map(|l| {
            format!(
                "{{\"a\":{},\"b\":{},\"cost_us\":{}}}",
                json_string(&l.a),
                json_string(&l.b),
                l.cost_us
            )
        })
        .collect();
    format!(
        "{{\"group\":{},\"version\":{},\"master\":{},\"members\":[{}],\"links\":[{}]}}\n",
        json_string(&t.group),
        t.version,
        json_string(&t.master),
        members.join(","),
        links.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_tokio::flood_client::Link;

    #[test]
    fn strings_are_escaped_for_json() {
        assert_eq!(json_string("plain"), r#""plain""#);
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_string("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(json_string("\u{0}\u{1f}\u{7f}"), "\"\\u0000\\u001f\u{7f}\"");
        assert_eq!(json_string("é ☃ \u{2028}"), "\"é ☃ \\u2028\"");
        assert_eq!(json_string(""), r#""""#);
    }

    #[test]
    fn counters_are_numbers_unless_they_are_not_plain_integers() {
        assert_eq!(json_value("delivered", "12"), "12");
        assert_eq!(json_value("delivered", "0"), "0");
        assert_eq!(
            json_value("incarnation", "1234567890123456"),
            r#""1234567890123456""#
        );
        assert_eq!(json_value("x", "007"), r#""007""#);
        assert_eq!(json_value("x", "2/3"), r#""2/3""#);
        assert_eq!(
            json_value("x", "99999999999999999999999"),
            r#""99999999999999999999999""#
        );
        assert_eq!(json_value("x", "-1"), r#""-1""#);
        assert_eq!(json_value("x", ""), r#""""#);
    }

    #[test]
    fn stats_and_topology_as_json() {
        let values: Vec<(String, String)> = [
            ("site", "a\"b"),
            ("incarnation", "00000000000000ff"),
            ("delivered", "3"),
            ("group", "g version=2 neighbours=1/2 streams=4"),
            ("3 values", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            stats_json(&values),
            "{\"site\":\"a\\\"b\",\"values\":{\"incarnation\":\"00000000000000ff\",\"delivered\":3,\
             \"3 values\":\"x\"},\"groups\":[{\"name\":\"g\",\"version\":2,\"neighbours\":\"1/2\",\
             \"streams\":4}]}\n"
        );
        let t = Topology {
            group: "g".into(),
            version: 5,
            master: "a".into(),
            members: 2,
            links: vec![Link {
                a: "a".into(),
                b: "b".into(),
                cost_us: 120,
            }],
        };
        assert_eq!(
            topology_json(&t, &["a".into(), "b".into()]),
            "{\"group\":\"g\",\"version\":5,\"master\":\"a\",\"members\":[\"a\",\"b\"],\
             \"links\":[{\"a\":\"a\",\"b\":\"b\",\"cost_us\":120}]}\n"
        );
    }
}
