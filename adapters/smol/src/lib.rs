//! # flotilla-smol
//!
//! Runs any [`flotilla_core::Machine`] over smol: the driver of `flotilla-driver`, with
//! smol's tasks (on its global executor), timers and sockets underneath. Only what differs
//! between runtimes is here — the [`Runtime`](flotilla_driver::Runtime) implementation;
//! the loop, routing, queues, effects and the client libraries are written once in
//! `flotilla-driver` and re-exported under this crate's names.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig};
//! use flotilla_core::Rng;
//! use flotilla_smol::{Driver, DriverConfig};
//!
//! smol::block_on(async {
//!     let driver = Driver::bind(DriverConfig::udp("127.0.0.1:0".parse()?)).await?;
//!     let me = driver.local_addrs().peer();
//!     let peers = vec!["127.0.0.1:7002".parse()?];
//!     let machine = Heartbeat::new(HeartbeatConfig::lan(me, peers), driver.now(), Rng::from_seed(7))?;
//!     let mut node = driver.start(machine);
//!     while let Some(event) = node.next_event().await {
//!         println!("{event:?}");
//!     }
//!     node.shutdown().await;
//!     Ok(())
//! })
//! # }
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
use smol::Async;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::unix::{UnixListener, UnixStream};
use smol::net::{TcpListener, TcpStream};

/// The smol runtime, as the driver sees it. Tasks run on smol's global executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

flotilla_driver::runtime_api!(crate::Smol);

/// A task's result. Dropping it lets the task run on (smol would cancel it); awaiting it
/// resumes a panic of the task.
pub struct Join<T>(Option<smol::Task<T>>);

impl<T> Future for Join<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.0.as_mut() {
            Some(t) => Pin::new(t).poll(cx),
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for Join<T> {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.detach();
        }
    }
}

/// A stream's reading half (smol streams are shared handles: a clone reads, a clone
/// writes).
pub struct Read<S>(S);
/// A stream's writing half.
pub struct Write<S>(S);

impl<S> ReadHalf for Read<S>
where
    S: smol::io::AsyncRead + Unpin + Send + 'static,
{
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        AsyncReadExt::read(&mut self.0, buf).await
    }
}

impl WriteHalf for Write<TcpStream> {
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(&mut self.0, buf).await
    }
    async fn shutdown(&mut self) -> io::Result<()> {
        AsyncWriteExt::flush(&mut self.0).await?;
        self.0.shutdown(std::net::Shutdown::Write)
    }
    fn limit_unacknowledged(&self, limit: core::time::Duration) -> io::Result<()> {
        flotilla_driver::limit_unacknowledged(&self.0, limit)
    }
}

impl WriteHalf for Write<UnixStream> {
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(&mut self.0, buf).await
    }
    async fn shutdown(&mut self) -> io::Result<()> {
        AsyncWriteExt::flush(&mut self.0).await?;
        self.0.shutdown(std::net::Shutdown::Write)
    }
}

impl flotilla_driver::Runtime for Smol {
    type Join<T: Send + 'static> = Join<T>;
    type TcpListener = TcpListener;
    type TcpRead = Read<TcpStream>;
    type TcpWrite = Write<TcpStream>;
    type UnixListener = UnixListener;
    type UnixRead = Read<UnixStream>;
    type UnixWrite = Write<UnixStream>;
    // Async<std UdpSocket> rather than smol::net::UdpSocket: it gives the non-blocking
    // `send_to` that lets the machine's task drop a frame instead of waiting.
    type Udp = Async<std::net::UdpSocket>;

    // The one clock read of this crate: the core takes time as an argument, and the
    // driver is where it comes from.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }

    fn spawn<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Join<T> {
        Join(Some(smol::spawn(fut)))
    }

    fn sleep_until(&self, at: std::time::Instant) -> impl Future<Output = ()> + Send + 'static {
        let timer = smol::Timer::at(at);
        async move {
            timer.await;
        }
    }

    async fn resolve(&self, host: &str) -> io::Result<Vec<SocketAddr>> {
        smol::net::resolve(host).await
    }

    async fn tcp_bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    fn tcp_local_addr(&self, l: &TcpListener) -> io::Result<SocketAddr> {
        l.local_addr()
    }

    async fn tcp_accept(&self, l: &TcpListener) -> io::Result<TcpAccepted<Self>> {
        let (s, peer) = l.accept().await?;
        let local = s.local_addr()?;
        let _ = s.set_nodelay(true);
        Ok(TcpAccepted {
            read: Read(s.clone()),
            write: Write(s),
            peer,
            local,
        })
    }

    async fn tcp_connect(&self, addr: SocketAddr) -> io::Result<(Self::TcpRead, Self::TcpWrite)> {
        let s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        Ok((Read(s.clone()), Write(s)))
    }

    fn unix_bind(&self, path: &Path) -> io::Result<UnixListener> {
        UnixListener::bind(path)
    }

    async fn unix_accept(&self, l: &UnixListener) -> io::Result<(Self::UnixRead, Self::UnixWrite)> {
        let (s, _) = l.accept().await?;
        Ok((Read(s.clone()), Write(s)))
    }

    async fn unix_connect(&self, path: &Path) -> io::Result<(Self::UnixRead, Self::UnixWrite)> {
        let s = UnixStream::connect(path).await?;
        Ok((Read(s.clone()), Write(s)))
    }

    async fn udp_bind(&self, addr: SocketAddr) -> io::Result<Self::Udp> {
        Async::<std::net::UdpSocket>::bind(addr)
    }

    fn udp_local_addr(&self, s: &Self::Udp) -> io::Result<SocketAddr> {
        s.get_ref().local_addr()
    }

    async fn udp_recv_from(
        &self,
        s: &Self::Udp,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        s.recv_from(buf).await
    }

    fn udp_try_send_to(&self, s: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        s.get_ref().send_to(buf, to)
    }
}
