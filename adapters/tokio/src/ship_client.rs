//! A client for a ship's line protocol (SPEC.md §5.1) over a tokio TCP stream: a thin I/O
//! loop around the sans-IO codec in [`flotilla_core::ship::client`].
//!
//! One request at a time per connection (the methods take `&mut self`). `1xx` progress
//! lines are skipped, or handed to the callback set with [`ShipClient::on_progress`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), flotilla_tokio::ship_client::Error> {
//! use flotilla_tokio::ship_client::ShipClient;
//!
//! let mut ship = ShipClient::connect("127.0.0.1:10000").await?;
//! let port = ship.get("db/port").await?;
//! let version = ship.set("render/port", "7001").await?;
//! println!("db/port={port}, render/port set at version {version}");
//! # Ok(()) }
//! ```
//!
//! A request future that is dropped before its final reply (for example by
//! `tokio::time::timeout`) leaves the connection in an unknown state: later requests on
//! it fail with [`io::ErrorKind::InvalidInput`]. Open a new connection instead.

use std::fmt;
use std::io;
use std::time::Duration;

pub use flotilla_core::ship::client::{Accepted, Connected};
use flotilla_core::ship::client::{Call, ClientError, ReplyReader, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection failed, or the ship closed it before the final reply.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The ship refused the request, or answered something unexpected.
    #[error(transparent)]
    Ship(#[from] ClientError),
}

type Progress = Box<dyn FnMut(&str) + Send>;

/// A connection to one ship's client port.
pub struct ShipClient {
    stream: TcpStream,
    reader: ReplyReader,
    progress: Option<Progress>,
    /// A request was started and not finished (its future was dropped).
    dirty: bool,
}

impl fmt::Debug for ShipClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShipClient")
            .field("stream", &self.stream)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl ShipClient {
    /// Connects to a ship's listen address (`HOST:PORT`).
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(ShipClient {
            stream,
            reader: ReplyReader::default(),
            progress: None,
            dirty: false,
        })
    }

    /// Calls `f` with the text of every `1xx` progress line from now on.
    pub fn on_progress(&mut self, f: impl FnMut(&str) + Send + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// Sends one raw request line (without its newline) and returns the text of the
    /// final `2xx` reply. The typed methods below are built the same way.
    pub async fn request(&mut self, line: &str) -> Result<String, Error> {
        self.call(Call::raw(line)?).await
    }

    /// `get PATH`: a parameter's value, a node's host, or a node's one-line summary.
    pub async fn get(&mut self, path: &str) -> Result<String, Error> {
        self.call(Call::get(path)?).await
    }

    /// `set PATH VALUE`: returns the version of the change, once this ship has applied
    /// it.
    pub async fn set(&mut self, path: &str, value: &str) -> Result<u64, Error> {
        self.call(Call::set(path, value)?).await
    }

    /// `claim PATTERN [HOST]`: returns the path of the dynamic node now claimed for
    /// `host` (the ship names the connection if `host` is `None`).
    pub async fn claim(&mut self, pattern: &str, host: Option<&str>) -> Result<String, Error> {
        self.call(Call::claim(pattern, host)?).await
    }

    /// `accept KEY ADDRESS [TIMEOUT]`: waits until a connect for `key` is matched with
    /// this accept (anywhere in the hierarchy), or the ship's timeout passes (an
    /// [`Error::Ship`] with code 408). `None` takes the ship's default (30 s).
    pub async fn accept(
        &mut self,
        key: &str,
        advertise: &str,
        timeout: Option<Duration>,
    ) -> Result<Accepted, Error> {
        self.call(Call::accept(key, advertise, timeout)?).await
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
        self.call(Call::connect(key, timeout, name)?).await
    }

    /// `status`: the ship's one-line status (`role=… id=… parent=… …`).
    pub async fn status(&mut self) -> Result<String, Error> {
        self.call(Call::status()).await
    }

    /// Sends a typed request and reads replies until its final one.
    pub async fn call<T>(&mut self, call: Call<T>) -> Result<T, Error> {
        let text = self.send(call.line()).await?;
        Ok(call.finish(&text)?)
    }

    async fn send(&mut self, line: &str) -> Result<String, Error> {
        if self.dirty {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an earlier request on this connection was abandoned; reconnect",
            )
            .into());
        }
        self.dirty = true;
        self.stream.write_all(line.as_bytes()).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            while let Some(step) = self.reader.next_step() {
                match step {
                    Step::Progress(text) => {
                        if let Some(f) = self.progress.as_mut() {
                            f(&text);
                        }
                    }
                    Step::Done(result) => {
                        self.dirty = false;
                        return Ok(result?);
                    }
                }
            }
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the ship closed the connection before its reply",
                )
                .into());
            }
            self.reader.push(&buf[..n]);
        }
    }
}
