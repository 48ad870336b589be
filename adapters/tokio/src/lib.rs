//! # flotilla-tokio
//!
//! Runs any [`flotilla_core::Machine`] over tokio: the driver of `flotilla-driver`, with
//! tokio's tasks, timers and sockets underneath. Only what differs between runtimes is
//! here — the [`Runtime`] implementation; the loop, routing, queues, effects and the client
//! libraries are written once in `flotilla-driver` and re-exported under this crate's
//! names.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig};
//! use flotilla_core::Rng;
//! use flotilla_tokio::{Driver, DriverConfig};
//!
//! let driver = Driver::bind(DriverConfig::udp("127.0.0.1:0".parse()?)).await?;
//! let me = driver.local_addrs().peer();
//! let peers = vec!["127.0.0.1:7002".parse()?];
//! let machine = Heartbeat::new(HeartbeatConfig::lan(me, peers), driver.now(), Rng::from_seed(7))?;
//! let mut node = driver.start(machine);
//! while let Some(event) = node.next_event().await {
//!     println!("{event:?}");
//! }
//! let _machine = node.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use flotilla_driver::{ReadHalf, TcpAccepted, WriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream, tcp, unix};

/// Connections waiting to be accepted on a TCP listener, at most.
const LISTEN_BACKLOG: u32 = 4096;

/// The tokio runtime, as the driver sees it. Use it inside a tokio runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

flotilla_driver::runtime_api!(crate::Tokio);

/// A task's result; awaiting resumes a panic of the task.
pub struct Join<T>(tokio::task::JoinHandle<T>);

impl<T> Future for Join<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(v)) => Poll::Ready(v),
            Poll::Ready(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Poll::Ready(Err(e)) => panic!("task cancelled: {e}"),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Reading half of a tokio TCP stream.
pub struct TcpRead(tcp::OwnedReadHalf);
/// Writing half of a tokio TCP stream.
pub struct TcpWrite(tcp::OwnedWriteHalf);
/// Reading half of a tokio Unix stream.
pub struct UnixRead(unix::OwnedReadHalf);
/// Writing half of a tokio Unix stream.
pub struct UnixWrite(unix::OwnedWriteHalf);

macro_rules! wrapped_halves {
    ($read:ident, $write:ident $(, $extra:item)*) => {
        impl ReadHalf for $read {
            async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                AsyncReadExt::read(&mut self.0, buf).await
            }
        }
        impl WriteHalf for $write {
            async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
                AsyncWriteExt::write_all(&mut self.0, buf).await
            }
            async fn shutdown(&mut self) -> io::Result<()> {
                AsyncWriteExt::shutdown(&mut self.0).await
            }
            $($extra)*
        }
    };
}

wrapped_halves!(
    TcpRead,
    TcpWrite,
    fn limit_unacknowledged(&self, limit: core::time::Duration) -> io::Result<()> {
        flotilla_driver::limit_unacknowledged(self.0.as_ref(), limit)
    }
);
wrapped_halves!(UnixRead, UnixWrite);
fn split_tcp(s: TcpStream) -> (TcpRead, TcpWrite) {
    let (r, w) = s.into_split();
    (TcpRead(r), TcpWrite(w))
}

fn split_unix(s: UnixStream) -> (UnixRead, UnixWrite) {
    let (r, w) = s.into_split();
    (UnixRead(r), UnixWrite(w))
}

impl flotilla_driver::Runtime for Tokio {
    type Join<T: Send + 'static> = Join<T>;
    type TcpListener = TcpListener;
    type TcpRead = TcpRead;
    type TcpWrite = TcpWrite;
    type UnixListener = UnixListener;
    type UnixRead = UnixRead;
    type UnixWrite = UnixWrite;
    type Udp = UdpSocket;

    // The one clock read of this crate: the core takes time as an argument, and the
    // driver is where it comes from.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }

    fn spawn<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Join<T> {
        Join(tokio::spawn(fut))
    }

    fn sleep_until(&self, at: std::time::Instant) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep_until(at.into())
    }

    async fn resolve(&self, host: &str) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host(host).await?.collect())
    }

    async fn tcp_bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        // A deep accept queue: thousands of clients connecting at once are not left to
        // retry their SYNs a second later (the default backlog is 128).
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    }

    fn tcp_local_addr(&self, l: &TcpListener) -> io::Result<SocketAddr> {
        l.local_addr()
    }

    async fn tcp_accept(&self, l: &TcpListener) -> io::Result<TcpAccepted<Self>> {
        let (s, peer) = l.accept().await?;
        let local = s.local_addr()?;
        let _ = s.set_nodelay(true);
        let (read, write) = split_tcp(s);
        Ok(TcpAccepted {
            read,
            write,
            peer,
            local,
        })
    }

    async fn tcp_connect(&self, addr: SocketAddr) -> io::Result<(TcpRead, TcpWrite)> {
        let s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        Ok(split_tcp(s))
    }

    fn unix_bind(&self, path: &Path) -> io::Result<UnixListener> {
        UnixListener::bind(path)
    }

    async fn unix_accept(&self, l: &UnixListener) -> io::Result<(UnixRead, UnixWrite)> {
        let (s, _) = l.accept().await?;
        Ok(split_unix(s))
    }

    async fn unix_connect(&self, path: &Path) -> io::Result<(UnixRead, UnixWrite)> {
        Ok(split_unix(UnixStream::connect(path).await?))
    }

    async fn udp_bind(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        let s = UdpSocket::bind(addr).await?;
        // tokio learns a socket is writable from the reactor; until it has, `try_send_to`
        // says WouldBlock and the first datagrams would be dropped.
        s.writable().await?;
        Ok(s)
    }

    fn udp_local_addr(&self, s: &UdpSocket) -> io::Result<SocketAddr> {
        s.local_addr()
    }

    async fn udp_recv_from(
        &self,
        s: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        s.recv_from(buf).await
    }

    fn udp_try_send_to(&self, s: &UdpSocket, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        s.try_send_to(buf, to)
    }
}
