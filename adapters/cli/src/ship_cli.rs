//! What the client subcommands (`broker`, `config`, `status`, and `flood`'s) share: which ship to ask,
//! connecting to it, a bound on every wait, and printing failures as `error: …` with
//! exit status 1.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use flotilla_core::ship::client::ClientError;
use flotilla_tokio::ship_client::{Error, ShipClient};

/// How long connecting to a ship (or a flood daemon) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to a request's own timeout before the client gives up on a silent ship.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// The ship a client command talks to.
#[derive(clap::Args, Debug)]
pub(crate) struct ShipOpt {
    /// The ship to ask (the mothership or any daughtership).
    #[arg(
        long,
        global = true,
        env = "CRMOTHERSHIP",
        default_value = "127.0.0.1:10000",
        value_name = "HOST:PORT"
    )]
    pub(crate) ship: String,
}

/// Prints `error: …` and returns exit status 1.
pub(crate) fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

/// Connects to the ship, or explains why not.
pub(crate) async fn connect(ship: &str) -> Result<ShipClient, ExitCode> {
    match tokio::time::timeout(CONNECT_TIMEOUT, ShipClient::connect(ship)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(fail(format_args!("cannot reach ship at {ship}: {e}"))),
        Err(_) => Err(fail(format_args!(
            "cannot reach ship at {ship}: no connection within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Runs one request with a bound of `limit`. On failure prints `error: …` (the ship's
/// own text for a refusal; `what` names the request otherwise) and returns status 1.
pub(crate) async fn ask<T>(
    ship: &str,
    what: &str,
    limit: Duration,
    req: impl Future<Output = Result<T, Error>>,
) -> Result<T, ExitCode> {
    ask_server(&format!("ship at {ship}"), what, limit, req).await
}

/// [`ask`] for any line-protocol server, named by `server` (`floodd at HOST:PORT`).
pub(crate) async fn ask_server<T>(
    server: &str,
    what: &str,
    limit: Duration,
    req: impl Future<Output = Result<T, Error>>,
) -> Result<T, ExitCode> {
    match tokio::time::timeout(limit, req).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(Error::Server(ClientError::Refused { text, .. }))) => Err(fail(text)),
        Ok(Err(Error::Server(e))) => Err(fail(format_args!("{what}: {e}"))),
        Ok(Err(Error::Io(e))) => Err(fail(format_args!(
            "{what}: lost the connection to {server}: {e}"
        ))),
        Err(_) => Err(fail(format_args!(
            "{what}: no reply from {server} within {:.1}s",
            limit.as_secs_f64()
        ))),
    }
}

/// Parses a positive number of seconds.
pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err("must be more than 0 and at most 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_positive_and_bounded() {
        assert_eq!(parse_secs("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
        assert!(parse_secs("1e9").is_err());
    }
}
