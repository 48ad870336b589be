//! The client side of the ship line protocol, without I/O: request lines out, reply
//! lines in. The tokio and smol client libraries are thin loops around it.

use core::time::Duration;

pub use crate::line::{Call, ClientError, Notice, ReplyReader, Step};

fn word(what: &'static str, w: &str) -> Result<(), ClientError> {
    if w.is_empty() || w.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ClientError::Invalid(what));
    }
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// `get PATH`
pub fn get_line(path: &str) -> Result<String, ClientError> {
    word("path", path)?;
    Ok(format!("get {path}\n"))
}

/// `set PATH VALUE`
pub fn set_line(path: &str, value: &str) -> Result<String, ClientError> {
    word("path", path)?;
    if value.trim().is_empty() || value.chars().any(|c| c.is_control()) {
        return Err(ClientError::Invalid("value"));
    }
    Ok(format!("set {path} {value}\n"))
}

/// `claim PATTERN [HOST]`
pub fn claim_line(pattern: &str, host: Option<&str>) -> Result<String, ClientError> {
    word("pattern", pattern)?;
    match host {
        Some(h) => {
            word("host", h)?;
            Ok(format!("claim {pattern} {h}\n"))
        }
        None => Ok(format!("claim {pattern}\n")),
    }
}

/// `accept KEY ADDRESS [TIMEOUT]`
pub fn accept_line(
    key: &str,
    advertise: &str,
    timeout: Option<Duration>,
) -> Result<String, ClientError> {
    word("key", key)?;
    word("address", advertise)?;
    Ok(match timeout {
        Some(t) => format!("accept {key} {advertise} {}\n", secs(t)),
        None => format!("accept {key} {advertise}\n"),
    })
}

/// `connect KEY [TIMEOUT [NAME]]`
pub fn connect_line(
    key: &str,
    timeout: Option<Duration>,
    name: Option<&str>,
) -> Result<String, ClientError> {
    word("key", key)?;
    if let Some(n) = name {
        word("name", n)?;
    }
    Ok(match (timeout, name) {
        (Some(t), Some(n)) => format!("connect {key} {} {n}\n", secs(t)),
        (Some(t), None) => format!("connect {key} {}\n", secs(t)),
        (None, Some(n)) => format!(
            "connect {key} {} {n}\n",
            secs(super::machine::DEFAULT_CONNECT_TIMEOUT)
        ),
        (None, None) => format!("connect {key}\n"),
    })
}

/// A successful connect: where the acceptor listens, and the connection id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The acceptor's advertised address.
    pub acceptor: String,
    /// Connection id.
    pub conn: String,
}

/// A successful accept: the connection id and the connecting client's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Connection id.
    pub conn: String,
    /// The client's name.
    pub client: String,
}

/// Reads `ADDRESS conn=ID`.
pub fn parse_connected(text: &str) -> Result<Connected, ClientError> {
    let mut it = text.split_whitespace();
    match (it.next(), it.next().and_then(|w| w.strip_prefix("conn="))) {
        (Some(acceptor), Some(conn)) => Ok(Connected {
            acceptor: acceptor.to_string(),
            conn: conn.to_string(),
        }),
        _ => Err(ClientError::Protocol(format!(
            "unexpected connect reply: {text}"
        ))),
    }
}

/// Reads `conn=ID client=NAME`.
pub fn parse_accepted(text: &str) -> Result<Accepted, ClientError> {
    let mut it = text.split_whitespace();
    match (
        it.next().and_then(|w| w.strip_prefix("conn=")),
        it.next().and_then(|w| w.strip_prefix("client=")),
    ) {
        (Some(conn), Some(client)) => Ok(Accepted {
            conn: conn.to_string(),
            client: client.to_string(),
        }),
        _ => Err(ClientError::Protocol(format!(
            "unexpected accept reply: {text}"
        ))),
    }
}

/// Reads `version=N` from a `set` reply.
pub fn parse_version(text: &str) -> Result<u64, ClientError> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("version="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("unexpected set reply: {text}")))
}

impl Call<String> {
    /// `get PATH`: a parameter's value, a node's host, or a node's one-line summary.
    pub fn get(path: &str) -> Result<Self, ClientError> {
        Ok(Call::new(get_line(path)?, crate::line::text))
    }

    /// `claim PATTERN [HOST]`: the path of the dynamic node claimed.
    pub fn claim(pattern: &str, host: Option<&str>) -> Result<Self, ClientError> {
        Ok(Call::new(claim_line(pattern, host)?, crate::line::text))
    }

    /// `status`: the ship's one-line status.
    pub fn status() -> Self {
        Call::new("status\n".to_string(), crate::line::text)
    }
}

impl Call<u64> {
    /// `set PATH VALUE`: the version of the change, once the ship asked has applied it.
    pub fn set(path: &str, value: &str) -> Result<Self, ClientError> {
        Ok(Call::new(set_line(path, value)?, parse_version))
    }
}

impl Call<Accepted> {
    /// `accept KEY ADDRESS [TIMEOUT]`: the match, once a connect takes this accept.
    pub fn accept(
        key: &str,
        advertise: &str,
        timeout: Option<Duration>,
    ) -> Result<Self, ClientError> {
        Ok(Call::new(
            accept_line(key, advertise, timeout)?,
            parse_accepted,
        ))
    }
}

impl Call<Connected> {
    /// `connect KEY [TIMEOUT [NAME]]`: the acceptor's address and the connection id.
    pub fn connect(
        key: &str,
        timeout: Option<Duration>,
        name: Option<&str>,
    ) -> Result<Self, ClientError> {
        Ok(Call::new(
            connect_line(key, timeout, name)?,
            parse_connected,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ship::command::{Request, parse_request};

    #[test]
    fn request_lines_parse_back() {
        let l = connect_line("svc", Some(Duration::from_millis(1500)), Some("me")).unwrap();
        assert_eq!(
            parse_request(l.trim_end()).unwrap(),
            Request::Connect {
                key: "svc".into(),
                timeout: Some(Duration::from_millis(1500)),
                name: Some("me".into())
            }
        );
        let l = accept_line("svc", "127.0.0.1:9", None).unwrap();
        assert!(matches!(
            parse_request(l.trim_end()).unwrap(),
            Request::Accept { .. }
        ));
        assert_eq!(get_line("a b"), Err(ClientError::Invalid("path")));
        assert_eq!(set_line("p", "v w").unwrap(), "set p v w\n");
    }

    #[test]
    fn calls_build_lines_and_read_results() {
        let set = Call::set("a/b", "7").unwrap();
        assert_eq!(set.line(), "set a/b 7\n");
        assert_eq!(set.finish("version=12"), Ok(12));
        assert!(set.finish("version=x").is_err());
        assert_eq!(
            Call::raw("get a\nset b 1").unwrap_err(),
            ClientError::Invalid("request line")
        );
        let c = Call::connect("k", None, None).unwrap();
        assert_eq!(
            c.finish("1.2.3.4:5 conn=a-1").unwrap().acceptor,
            "1.2.3.4:5"
        );
        assert_eq!(Call::status().line(), "status\n");
    }

    #[test]
    fn reader_steps() {
        let mut r = ReplyReader::default();
        r.push(b"100 waiting\n200 1.2.3.4:5 conn=ab-1\n404 no such path x\nhello\n");
        assert_eq!(r.next_step(), Some(Step::Progress("waiting".into())));
        let Some(Step::Done(Ok(t))) = r.next_step() else {
            panic!()
        };
        assert_eq!(
            parse_connected(&t).unwrap(),
            Connected {
                acceptor: "1.2.3.4:5".into(),
                conn: "ab-1".into()
            }
        );
        assert_eq!(
            r.next_step(),
            Some(Step::Done(Err(ClientError::Refused {
                code: 404,
                text: "no such path x".into()
            })))
        );
        assert!(matches!(
            r.next_step(),
            Some(Step::Done(Err(ClientError::Protocol(_))))
        ));
        assert_eq!(r.next_step(), None);
        assert_eq!(
            parse_accepted("conn=x-1 client=bob").unwrap(),
            Accepted {
                conn: "x-1".into(),
                client: "bob".into()
            }
        );
    }
}
