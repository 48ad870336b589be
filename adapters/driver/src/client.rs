//! A client of any flotilla line protocol (SPEC.md §1.5), over TCP or a Unix-domain
//! socket, written once for every runtime: requests with their final replies, `1xx`
//! progress lines, and `6xx` notices the server sends unasked (a group's messages, a
//! membership change), which are kept in order until read with
//! [`LineClient::next_notice`].
//!
//! One request at a time per connection (the methods take `&mut self`). A request future
//! dropped before its final reply leaves the connection in an unknown state: later
//! requests on it fail with [`io::ErrorKind::InvalidInput`]. Open a new connection
//! instead.

use core::fmt;
use core::net::SocketAddr;
use std::collections::VecDeque;
use std::io;
use std::path::Path;

use flotilla_core::line::{Call, ClientError, Notice, ReplyReader, Step};

use crate::conn::looks_like_path;
use crate::runtime::{ReadHalf, Runtime, WriteHalf};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection failed, or the server closed it before the final reply.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The server refused the request, or answered something unexpected.
    #[error(transparent)]
    Server(#[from] ClientError),
}

/// Notices kept unread before the client gives up on a reader that never reads them.
pub const MAX_UNREAD_NOTICES: usize = 100_000;

enum Reader<R: Runtime> {
    Tcp(R::TcpRead),
    Unix(R::UnixRead),
}

enum Writer<R: Runtime> {
    Tcp(R::TcpWrite),
    Unix(R::UnixWrite),
}

impl<R: Runtime> Reader<R> {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Tcp(r) => r.read(buf).await,
            Reader::Unix(r) => r.read(buf).await,
        }
    }
}

impl<R: Runtime> Writer<R> {
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.write_all(buf).await,
            Writer::Unix(w) => w.write_all(buf).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.shutdown().await,
            Writer::Unix(w) => w.shutdown().await,
        }
    }
}

type Progress = Box<dyn FnMut(&str) + Send>;

/// A connection to a line-protocol port.
pub struct LineClient<R: Runtime> {
    reader: Reader<R>,
    writer: Writer<R>,
    replies: ReplyReader,
    notices: VecDeque<Notice>,
    progress: Option<Progress>,
    /// A request was started and not finished (its future was dropped).
    dirty: bool,
    buf: Vec<u8>,
}

impl<R: Runtime> fmt::Debug for LineClient<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineClient")
            .field("unread_notices", &self.notices.len())
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

/// Picks an IPv4 address when a name has both, so `localhost` meets a server listening
/// on 127.0.0.1.
fn prefer_v4(all: &[SocketAddr]) -> Option<SocketAddr> {
    all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
}

impl<R: Runtime> LineClient<R> {
    /// Connects to `HOST:PORT` over TCP, or to a Unix-domain socket when `addr` is a path
    /// (`/run/flotilla.sock`, `./x.sock`) or starts with `unix:`.
    pub async fn connect(addr: &str) -> io::Result<Self> {
        if let Some(path) = looks_like_path(addr) {
            return Self::connect_unix(path).await;
        }
        let rt = R::default();
        let all = rt.resolve(addr).await?;
        let a = prefer_v4(&all).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{addr} resolves to no address"),
            )
        })?;
        Self::connect_tcp(a).await
    }

    /// Connects over TCP.
    pub async fn connect_tcp(addr: SocketAddr) -> io::Result<Self> {
        let (r, w) = R::default().tcp_connect(addr).await?;
        Ok(Self::new(Reader::Tcp(r), Writer::Tcp(w)))
    }

    /// Connects to a Unix-domain socket.
    pub async fn connect_unix(path: &Path) -> io::Result<Self> {
        let (r, w) = R::default().unix_connect(path).await?;
        Ok(Self::new(Reader::Unix(r), Writer::Unix(w)))
    }

    fn new(reader: Reader<R>, writer: Writer<R>) -> Self {
        LineClient {
            reader,
            writer,
            replies: ReplyReader::default(),
            notices: VecDeque::new(),
            progress: None,
            dirty: false,
            buf: vec![0u8; 16 * 1024],
        }
    }

    /// Calls `f` with the text of every `1xx` progress line from now on.
    pub fn on_progress(&mut self, f: impl FnMut(&str) + Send + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// Sends one raw request line (without its newline) and returns the text of the
    /// final `2xx` reply (the lines of a multi-line reply joined with `\n`).
    pub async fn request(&mut self, line: &str) -> Result<String, Error> {
        self.call(Call::raw(line)?).await
    }

    /// Sends a typed request and reads replies until its final one.
    pub async fn call<T>(&mut self, call: Call<T>) -> Result<T, Error> {
        let text = self.exchange(call.line().as_bytes()).await?;
        Ok(call.finish(&text)?)
    }

    /// Sends `bytes` as they are (a request line with a body, say) and reads replies
    /// until the final one.
    pub async fn exchange(&mut self, bytes: &[u8]) -> Result<String, Error> {
        if self.dirty {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an earlier request on this connection was abandoned; reconnect",
            )
            .into());
        }
        self.dirty = true;
        self.writer.write_all(bytes).await?;
        loop {
            match self.next_step().await? {
                Step::Progress(text) => {
                    if let Some(f) = self.progress.as_mut() {
                        f(&text);
                    }
                }
                Step::Notice(n) => self.keep(n)?,
                Step::Done(result) => {
                    self.dirty = false;
                    return Ok(result?);
                }
            }
        }
    }

    /// The next notice the server sent unasked, in order; waits for one if none is
    /// unread. A reply line that arrives while no request is pending is a protocol error.
    pub async fn next_notice(&mut self) -> Result<Notice, Error> {
        if let Some(n) = self.notices.pop_front() {
            return Ok(n);
        }
        loop {
            match self.next_step().await? {
                Step::Notice(n) => return Ok(n),
                Step::Progress(_) => {}
                Step::Done(Ok(text)) => {
                    return Err(ClientError::Protocol(format!(
                        "a reply with no request pending: {text}"
                    ))
                    .into());
                }
                Step::Done(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Notices of these codes carry bytes after their line (see
    /// [`ReplyReader::sized_notices`]).
    pub fn sized_notices(&mut self, codes: &[u16]) {
        self.replies.sized_notices(codes);
    }

    /// Notices received and not yet read.
    pub fn unread_notices(&self) -> usize {
        self.notices.len()
    }

    /// Closes the writing direction (the server sees the end of the stream).
    pub async fn close(&mut self) -> io::Result<()> {
        self.writer.shutdown().await
    }

    fn keep(&mut self, n: Notice) -> Result<(), Error> {
        if self.notices.len() >= MAX_UNREAD_NOTICES {
            return Err(io::Error::other(format!(
                "more than {MAX_UNREAD_NOTICES} notices unread: read them with next_notice"
            ))
            .into());
        }
        self.notices.push_back(n);
        Ok(())
    }

    async fn next_step(&mut self) -> Result<Step, Error> {
        loop {
            if let Some(step) = self.replies.next_step() {
                return Ok(step);
            }
            let n = self.reader.read(&mut self.buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )
                .into());
            }
            self.replies.push(&self.buf[..n]);
        }
    }
}
