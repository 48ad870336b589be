//! The group daemon's configuration file (SPEC.md §9.7), in the project's S-expression
//! syntax:
//!
//! ```text
//! (:daemon (:name n1) (:address 10.0.0.1:4803))
//! (:daemon (:name n2) (:address 10.0.0.2:4803))
//! (:timing (:heartbeat 100ms) (:suspect-after 400ms))
//! ```
//!
//! Every form is optional: a file with only a `:timing` form is a cluster formed by
//! joins with other timings. Addresses are literal `IP:PORT` (the core resolves no
//! names).

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeMap;

use super::msg::{ClusterConfig, MAX_MEMBERS, MAX_NAME, Timing};
use crate::sexpr::{self, Node, Pos, SexprError};

/// Largest configuration file read.
pub const MAX_CONFIG_FILE_BYTES: usize = 1 << 20;

/// Shortest and longest timing a file may set.
const MIN_TIMING: Duration = Duration::from_millis(1);
const MAX_TIMING: Duration = Duration::from_secs(3600);

pub use super::msg::valid_name;

/// Reads a configuration file's text (its version is 0: versions are the cluster's).
pub fn parse(text: &str) -> Result<ClusterConfig, SexprError> {
    let forms = sexpr::parse_with_limit(text, MAX_CONFIG_FILE_BYTES)?;
    let mut cfg = ClusterConfig::default();
    let mut names: BTreeMap<String, Pos> = BTreeMap::new();
    let mut addrs: BTreeMap<SocketAddr, Pos> = BTreeMap::new();
    let mut timing_at: Option<Pos> = None;
    for form in &forms {
        match form.head() {
            Some("daemon") => {
                if cfg.daemons.len() >= MAX_MEMBERS {
                    return Err(SexprError::new(
                        form.pos,
                        format!("too many daemons: a file lists at most {MAX_MEMBERS}"),
                    ));
                }
                let (name, addr, name_pos) = read_daemon(form)?;
                if let Some(first) = names.get(&name) {
                    return Err(SexprError::new(
                        name_pos,
                        format!("daemon {name} is listed twice (first at {first})"),
                    ));
                }
                if let Some(first) = addrs.get(&addr) {
                    return Err(SexprError::new(
                        name_pos,
                        format!("address {addr} is listed twice (first at {first})"),
                    ));
                }
                names.insert(name.clone(), form.pos);
                addrs.insert(addr, form.pos);
                cfg.daemons.push((name, addr));
            }
            Some("timing") => {
                if let Some(first) = timing_at {
                    return Err(SexprError::new(
                        form.pos,
                        format!("a second (:timing …) form (the first is at {first})"),
                    ));
                }
                timing_at = Some(form.pos);
                cfg.timing = read_timing(form)?;
            }
            Some(other) => {
                return Err(SexprError::new(
                    form.pos,
                    format!("unknown form :{other} (use :daemon or :timing)"),
                ));
            }
            None => {
                return Err(SexprError::new(
                    form.pos,
                    format!(
                        "expected a form such as (:daemon …), found {}",
                        form.describe()
                    ),
                ));
            }
        }
    }
    Ok(cfg)
}

/// Reads a configuration file from its bytes: text that is not UTF-8 is an error at the
/// first bad byte's line and column.
pub fn parse_bytes(bytes: &[u8]) -> Result<ClusterConfig, SexprError> {
    parse(sexpr::file_text(bytes, MAX_CONFIG_FILE_BYTES)?)
}

fn single<'a>(item: &'a Node, what: &str) -> Result<&'a Node, SexprError> {
    match item.args() {
        [one] => Ok(one),
        _ => Err(SexprError::new(
            item.pos,
            format!("(:{what} …) takes exactly one value"),
        )),
    }
}

fn read_daemon(form: &Node) -> Result<(String, SocketAddr, Pos), SexprError> {
    let mut name: Option<(String, Pos)> = None;
    let mut addr: Option<SocketAddr> = None;
    for item in form.args() {
        match item.head() {
            Some("name") => {
                let v = single(item, "name")?;
                let n = v.text()?;
                if !valid_name(&n) {
                    return Err(SexprError::new(
                        v.pos,
                        format!(
                            "daemon name {n:?}: use 1 to {MAX_NAME} letters, digits, '.', '_' or '-'"
                        ),
                    ));
                }
                name = Some((n, v.pos));
            }
            Some("address") => {
                let v = single(item, "address")?;
                let t = v.text()?;
                addr = Some(t.parse().map_err(|_| {
                    SexprError::new(v.pos, format!("address {t:?} is not IP:PORT"))
                })?);
            }
            _ => {
                return Err(SexprError::new(
                    item.pos,
                    "a daemon has (:name NAME) and (:address IP:PORT)",
                ));
            }
        }
    }
    match (name, addr) {
        (Some((n, pos)), Some(a)) => Ok((n, a, pos)),
        (None, _) => Err(SexprError::new(form.pos, "this daemon has no (:name NAME)")),
        (Some((n, _)), None) => Err(SexprError::new(
            form.pos,
            format!("daemon {n} has no (:address IP:PORT)"),
        )),
    }
}

fn read_timing(form: &Node) -> Result<Timing, SexprError> {
    let mut t = Timing::default();
    for item in form.args() {
        let Some(key) = item.head() else {
            return Err(SexprError::new(
                item.pos,
                format!("expected (:SETTING DURATION), found {}", item.describe()),
            ));
        };
        let v = single(item, key)?;
        // The wire carries microseconds: finer is rounded down here, so that what the
        // file says is what every daemon runs with.
        let d = v.duration()?;
        let d = Duration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        if !(MIN_TIMING..=MAX_TIMING).contains(&d) {
            return Err(SexprError::new(
                v.pos,
                format!("{key} of {d:?} is outside 1ms..1h"),
            ));
        }
        let slot = match key {
            "heartbeat" => &mut t.heartbeat,
            "suspect-after" => &mut t.suspect_after,
            "verify-for" => &mut t.verify_for,
            "retry" => &mut t.retry,
            "ack-timeout" => &mut t.ack_timeout,
            "commit-timeout" => &mut t.commit_timeout,
            "hello" => &mut t.hello,
            _ => {
                return Err(SexprError::new(
                    item.pos,
                    format!(
                        "unknown timing :{key} (use :heartbeat :suspect-after :verify-for \
                         :retry :ack-timeout :commit-timeout :hello)"
                    ),
                ));
            }
        };
        *slot = d;
    }
    check_timing(&t).map_err(|m| SexprError::new(form.pos, m))?;
    Ok(t)
}

/// Relations between timings without which the protocol misbehaves (a neighbour
/// suspected between two heartbeats, a commit awaited for less than a proposal takes).
pub fn check_timing(t: &Timing) -> Result<(), String> {
    if t.suspect_after < t.heartbeat * 2 {
        return Err(format!(
            "suspect-after ({:?}) must be at least twice the heartbeat ({:?})",
            t.suspect_after, t.heartbeat
        ));
    }
    if t.ack_timeout < t.retry * 2 {
        return Err(format!(
            "ack-timeout ({:?}) must be at least twice retry ({:?})",
            t.ack_timeout, t.retry
        ));
    }
    if t.commit_timeout <= t.ack_timeout {
        return Err(format!(
            "commit-timeout ({:?}) must be longer than ack-timeout ({:?})",
            t.commit_timeout, t.ack_timeout
        ));
    }
    if t.verify_for < t.retry {
        return Err(format!(
            "verify-for ({:?}) must be at least retry ({:?})",
            t.verify_for, t.retry
        ));
    }
    Ok(())
}

/// The file that would produce `cfg` (its version and removed list are not written).
pub fn render(cfg: &ClusterConfig) -> String {
    let mut s = String::new();
    for (n, a) in &cfg.daemons {
        s.push_str(&format!("(:daemon (:name {n}) (:address {a}))\n"));
    }
    let t = &cfg.timing;
    s.push_str(&format!(
        "(:timing (:heartbeat {}us) (:suspect-after {}us) (:verify-for {}us) (:retry {}us) \
         (:ack-timeout {}us) (:commit-timeout {}us) (:hello {}us))\n",
        t.heartbeat.as_micros(),
        t.suspect_after.as_micros(),
        t.verify_for.as_micros(),
        t.retry.as_micros(),
        t.ack_timeout.as_micros(),
        t.commit_timeout.as_micros(),
        t.hello.as_micros()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_daemons_and_timings() {
        let c = parse(
            "; three daemons\n(:daemon (:name n1) (:address 127.0.0.1:4803))\n\
             (:daemon (:name n2) (:address \"[::1]:4804\"))\n\
             (:timing (:heartbeat 50ms) (:suspect-after 200ms))",
        )
        .unwrap();
        assert_eq!(c.daemons.len(), 2);
        assert_eq!(c.daemons[1].1, "[::1]:4804".parse().unwrap());
        assert_eq!(c.timing.heartbeat, Duration::from_millis(50));
        assert_eq!(c.timing.suspect_after, Duration::from_millis(200));
        assert_eq!(c.timing.hello, Timing::default().hello);
        assert_eq!(parse("").unwrap(), ClusterConfig::default());
    }

    #[test]
    fn refuses_with_a_position() {
        for (text, want) in [
            ("(:daemon (:name n1))", "has no (:address"),
            ("(:daemon (:address 1.2.3.4:5))", "no (:name"),
            ("(:daemon (:name n1) (:address nowhere))", "is not IP:PORT"),
            (
                "(:daemon (:name \"a b\") (:address 1.2.3.4:5))",
                "daemon name",
            ),
            (
                "(:daemon (:name a) (:address 1.2.3.4:5))\n(:daemon (:name a) (:address 1.2.3.4:6))",
                "listed twice",
            ),
            (
                "(:daemon (:name a) (:address 1.2.3.4:5))\n(:daemon (:name b) (:address 1.2.3.4:5))",
                "address 1.2.3.4:5 is listed twice",
            ),
            ("(:timing (:heartbeat 0ms))", "outside"),
            ("(:timing (:heartbeat 300ms))", "twice the heartbeat"),
            ("(:timing (:beat 3ms))", "unknown timing"),
            ("(:timing) (:timing)", "second"),
            ("(:node a)", "unknown form"),
            ("42", "expected a form"),
            ("(:daemon", "never closed"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            let pos: Vec<&str> = e.splitn(3, ':').collect();
            assert!(
                pos.len() == 3 && pos[0].parse::<u32>().is_ok() && pos[1].parse::<u32>().is_ok(),
                "{text:?}: {e} names no line:column"
            );
        }
    }

    #[test]
    fn refuses_files_past_the_limit() {
        let big = vec![b' '; MAX_CONFIG_FILE_BYTES + 1];
        assert!(parse_bytes(&big).unwrap_err().to_string().contains("limit"));
        let at = vec![b' '; MAX_CONFIG_FILE_BYTES];
        assert!(parse_bytes(&at).is_ok());
        assert!(parse_bytes(b"(:daemon \xff)").is_err());
    }

    proptest! {
        #[test]
        fn render_then_parse_is_the_identity(
            n in 0usize..20,
            hb in 1u64..100,
        ) {
            let mut c = ClusterConfig::default();
            for i in 0..n {
                c.daemons.push((format!("d{i}"), format!("10.0.0.{}:{}", i + 1, 4000 + i).parse().unwrap()));
            }
            c.timing.heartbeat = Duration::from_millis(hb);
            c.timing.suspect_after = Duration::from_millis(hb * 4);
            prop_assert_eq!(parse(&render(&c)).unwrap(), c);
        }
    }
}
