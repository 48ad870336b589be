//! The ship client port's request lines (SPEC.md §5.1).

use core::time::Duration;

/// Longest timeout a request may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// One parsed request line.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `help`
    Help,
    /// `status`
    Status,
    /// `quit`
    Quit,
    /// `get PATH`
    Get {
        /// Path.
        path: String,
    },
    /// `set PATH VALUE…` (the value is the rest of the line).
    Set {
        /// Path.
        path: String,
        /// Value.
        value: String,
    },
    /// `claim PATTERN [HOST]`
    Claim {
        /// Node pattern.
        pattern: String,
        /// Claimant host; the ship names the client if absent.
        host: Option<String>,
    },
    /// `accept KEY ADVERTISE [TIMEOUT-SECS]`
    Accept {
        /// Rendezvous key.
        key: String,
        /// Address the acceptor can be reached at.
        advertise: String,
        /// How long to wait.
        timeout: Option<Duration>,
    },
    /// `connect KEY [TIMEOUT-SECS] [NAME]`
    Connect {
        /// Rendezvous key.
        key: String,
        /// How long to wait.
        timeout: Option<Duration>,
        /// The client's name, told to the acceptor.
        name: Option<String>,
    },
}

/// Why a line is not a request: a reply code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRequest {
    /// 400, 401 or 402.
    pub code: u16,
    /// For the person at the other end.
    pub text: String,
}

fn bad(code: u16, text: impl Into<String>) -> BadRequest {
    BadRequest {
        code,
        text: text.into(),
    }
}

fn timeout(word: &str) -> Result<Duration, BadRequest> {
    let secs: f64 = word
        .parse()
        .map_err(|_| bad(400, format!("timeout '{word}' is not a number of seconds")))?;
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_TIMEOUT.as_secs_f64() {
        return Err(bad(
            400,
            format!(
                "timeout must be between 0 and {} seconds",
                MAX_TIMEOUT.as_secs()
            ),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn word_ok(what: &str, w: &str) -> Result<String, BadRequest> {
    if w.len() > 256 {
        return Err(bad(400, format!("{what} longer than 256 bytes")));
    }
    if w.chars().any(|c| c.is_control()) {
        return Err(bad(400, format!("{what} contains control characters")));
    }
    Ok(w.to_string())
}

/// Checks an advertised address: `HOST:PORT` with a port from 1 to 65535 and a host that
/// is an IP address (IPv6 in brackets) or a host name (letters, digits, `-`, `.`, `_`).
/// The connecting side is told it as is, so a typo must not reach it.
fn address(w: &str) -> Result<String, BadRequest> {
    let w = word_ok("address", w)?;
    let invalid = |why: &str| bad(400, format!("invalid address '{w}': {why}"));
    let Some((host, port)) = w.rsplit_once(':') else {
        return Err(invalid("expected HOST:PORT"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(invalid("the port must be a number from 1 to 65535")),
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<core::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    };
    if !host_ok {
        return Err(invalid("the host must be an IP address or a host name"));
    }
    Ok(w)
}

/// Parses one request line. Commands are case-insensitive, as in Chromium's mothership.
pub fn parse_request(line: &str) -> Result<Request, BadRequest> {
    let mut words = line.split_whitespace();
    let Some(cmd) = words.next() else {
        return Err(bad(401, "nothing to say"));
    };
    let args: Vec<&str> = words.collect();
    let usage = |u: &str| bad(400, format!("usage: {u}"));
    match cmd.to_ascii_lowercase().as_str() {
        "help" => Ok(Request::Help),
        "status" => Ok(Request::Status),
        "quit" | "disconnect" => Ok(Request::Quit),
        "get" => match args[..] {
            [path] => Ok(Request::Get {
                path: word_ok("path", path)?,
            }),
            _ => Err(usage("get PATH")),
        },
        "set" => {
            let rest = line.trim_start()[cmd.len()..].trim_start();
            let Some((path, value)) = rest.split_once(char::is_whitespace) else {
                return Err(usage("set PATH VALUE"));
            };
            Ok(Request::Set {
                path: word_ok("path", path)?,
                value: value.trim().to_string(),
            })
        }
        "claim" => match args[..] {
            [pattern] => Ok(Request::Claim {
                pattern: word_ok("pattern", pattern)?,
                host: None,
            }),
            [pattern, host] => Ok(Request::Claim {
                pattern: word_ok("pattern", pattern)?,
                host: Some(word_ok("host", host)?),
            }),
            _ => Err(usage("claim PATTERN [HOST]")),
        },
        "accept" => match args[..] {
            [key, adv] => Ok(Request::Accept {
                key: word_ok("key", key)?,
                advertise: address(adv)?,
                timeout: None,
            }),
            [key, adv, t] => Ok(Request::Accept {
                key: word_ok("key", key)?,
                advertise: address(adv)?,
                timeout: Some(timeout(t)?),
            }),
            _ => Err(usage("accept KEY ADVERTISE-ADDRESS [TIMEOUT-SECS]")),
        },
        "connect" => match args[..] {
            [key] => Ok(Request::Connect {
                key: word_ok("key", key)?,
                timeout: None,
                name: None,
            }),
            [key, t] => Ok(Request::Connect {
                key: word_ok("key", key)?,
                timeout: Some(timeout(t)?),
                name: None,
            }),
            [key, t, name] => Ok(Request::Connect {
                key: word_ok("key", key)?,
                timeout: Some(timeout(t)?),
                name: Some(word_ok("name", name)?),
            }),
            _ => Err(usage("connect KEY [TIMEOUT-SECS] [NAME]")),
        },
        other => Err(bad(
            402,
            format!(
                "unknown command {} (try help)",
                other.chars().take(32).collect::<String>()
            ),
        )),
    }
}

/// The `help` reply text.
pub const HELP: &str = "commands: get PATH | set PATH VALUE | claim PATTERN [HOST] | accept KEY ADDRESS [TIMEOUT] | connect KEY [TIMEOUT] [NAME] | status | help | quit";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_requests() {
        assert_eq!(
            parse_request("SET render/port  7000 extra words").unwrap(),
            Request::Set {
                path: "render/port".into(),
                value: "7000 extra words".into()
            }
        );
        assert_eq!(
            parse_request("connect k 2.5 alice").unwrap(),
            Request::Connect {
                key: "k".into(),
                timeout: Some(Duration::from_millis(2500)),
                name: Some("alice".into())
            }
        );
        assert_eq!(parse_request("   ").unwrap_err().code, 401);
        assert_eq!(parse_request("frobnicate").unwrap_err().code, 402);
        assert_eq!(parse_request("accept k").unwrap_err().code, 400);
        for bad in [
            "notanaddr",
            "h:0",
            "h:70000",
            ":80",
            "a b:1",
            "h!:1",
            "[zz]:1",
            "h:port",
        ] {
            let e = parse_request(&format!("accept k {bad}"));
            assert!(
                matches!(&e, Err(e) if e.code == 400 && e.text.contains("invalid address")),
                "{bad}: {e:?}"
            );
        }
        for good in [
            "127.0.0.1:7000",
            "render-3.example:80",
            "[::1]:9",
            "h_1:65535",
        ] {
            assert!(
                parse_request(&format!("accept k {good} 5")).is_ok(),
                "{good}"
            );
        }
        assert_eq!(parse_request("connect k -1").unwrap_err().code, 400);
        assert_eq!(parse_request("connect k NaN").unwrap_err().code, 400);
        assert_eq!(parse_request("set onlypath").unwrap_err().code, 400);
    }

    proptest! {
        #[test]
        fn any_line_parses_or_is_refused_with_a_4xx(line in ".{0,80}") {
            if let Err(e) = parse_request(&line) {
                prop_assert!((400..500).contains(&e.code));
            }
        }
    }
}
