//! A client for a ship's line protocol (SPEC.md §5.1): typed requests on a
//! [`LineClient`], written once for every runtime.
//!
//! ```text
//! let mut ship = ShipClient::<Tokio>::connect("127.0.0.1:10000").await?;
//! let port = ship.get("db/port").await?;
//! let version = ship.set("render/port", "7001").await?;
//! ```

use std::io;
use std::time::Duration;

use flotilla_core::ship::client::Call;
pub use flotilla_core::ship::client::{Accepted, Connected};

pub use crate::client::Error;
use crate::client::LineClient;
use crate::runtime::Runtime;

/// A connection to one ship's client port.
#[derive(Debug)]
pub struct ShipClient<R: Runtime> {
    line: LineClient<R>,
}

impl<R: Runtime> ShipClient<R> {
    /// Connects to a ship's listen address (`HOST:PORT`), or to a Unix-domain socket
    /// path.
    pub async fn connect(addr: &str) -> io::Result<Self> {
        Ok(ShipClient {
            line: LineClient::connect(addr).await?,
        })
    }

    /// The line client underneath, for raw requests and notices.
    pub fn line(&mut self) -> &mut LineClient<R> {
        &mut self.line
    }

    /// Calls `f` with the text of every `1xx` progress line from now on.
    pub fn on_progress(&mut self, f: impl FnMut(&str) + Send + 'static) {
        self.line.on_progress(f);
    }

    /// Sends one raw request line (without its newline) and returns the text of the
    /// final `2xx` reply.
    pub async fn request(&mut self, line: &str) -> Result<String, Error> {
        self.line.request(line).await
    }

    /// `get PATH`: a parameter's value, a node's host, or a node's one-line summary.
    pub async fn get(&mut self, path: &str) -> Result<String, Error> {
        self.line.call(Call::get(path)?).await
    }

    /// `set PATH VALUE`: returns the version of the change, once this ship has applied
    /// it.
    pub async fn set(&mut self, path: &str, value: &str) -> Result<u64, Error> {
        self.line.call(Call::set(path, value)?).await
    }

    /// `claim PATTERN [HOST]`: returns the path of the dynamic node now claimed for
    /// `host` (the ship names the connection if `host` is `None`).
    pub async fn claim(&mut self, pattern: &str, host: Option<&str>) -> Result<String, Error> {
        self.line.call(Call::claim(pattern, host)?).await
    }

    /// `accept KEY ADDRESS [TIMEOUT]`: waits until a connect for `key` is matched with
    /// this accept (anywhere in the hierarchy), or the ship's timeout passes (an
    /// [`Error::Server`] with code 408). `None` takes the ship's default (30 s).
    pub async fn accept(
        &mut self,
        key: &str,
        advertise: &str,
        timeout: Option<Duration>,
    ) -> Result<Accepted, Error> {
        self.line.call(Call::accept(key, advertise, timeout)?).await
    }

    /// `connect KEY [TIMEOUT [NAME]]`: waits until an accept for `key` is found and
    /// returns the acceptor's advertised address, or fails with code 408 when the
    /// timeout passes. `name` is told to the acceptor.
    pub async fn connect_key(
        &mut self,
        key: &str,
        timeout: Option<Duration>,
        name: Option<&str>,
    ) -> Result<Connected, Error> {
        self.line.call(Call::connect(key, timeout, name)?).await
    }

    /// `status`: the ship's one-line status (`role=… id=… parent=… …`).
    pub async fn status(&mut self) -> Result<String, Error> {
        self.line.call(Call::status()).await
    }
}
