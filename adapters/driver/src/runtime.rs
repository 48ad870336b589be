//! What a runtime must provide for the driver: spawning, a clock and timers, and sockets.
//! Everything else — the machine's loop, routing, queues, effects, clients — is written
//! once in this crate. `flotilla-tokio` and `flotilla-smol` each implement [`Runtime`] in
//! about a hundred lines.

use core::future::Future;
use core::net::SocketAddr;
use core::time::Duration;
use std::io;
use std::path::Path;

/// The reading half of a byte stream.
pub trait ReadHalf: Send + 'static {
    /// Reads into `buf`; `Ok(0)` at the end of the stream. Must be cancel-safe: a read
    /// dropped before it completes loses no bytes.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// The writing half of a byte stream.
pub trait WriteHalf: Send + 'static {
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Flushes and closes the writing direction.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Asks the kernel to give the connection up (the next read or write fails) once
    /// bytes written to it have gone unacknowledged by the peer for `limit`
    /// (`TCP_USER_TIMEOUT` on Linux; SPEC §7.1). Streams without such a setting (Unix
    /// sockets, other systems) ignore it.
    fn limit_unacknowledged(&self, limit: Duration) -> io::Result<()> {
        let _ = limit;
        Ok(())
    }
}

/// Sets `TCP_USER_TIMEOUT` on a TCP socket (what [`WriteHalf::limit_unacknowledged`]
/// does for the adapters' TCP streams): the kernel gives the connection up once written
/// bytes have gone unacknowledged for `limit`, instead of retransmitting at a backed-off
/// pace for minutes. A no-op where the system has no such setting.
pub fn limit_unacknowledged(socket: &impl std::os::fd::AsFd, limit: Duration) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        socket2::SockRef::from(socket).set_tcp_user_timeout(Some(limit))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (socket, limit);
        Ok(())
    }
}

/// An accepted TCP connection.
pub struct TcpAccepted<R: Runtime> {
    /// Its reading half.
    pub read: R::TcpRead,
    /// Its writing half.
    pub write: R::TcpWrite,
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address it reached.
    pub local: SocketAddr,
}

/// An async runtime, as the driver uses it. Implementations are zero-sized handles.
pub trait Runtime: Clone + Default + Send + Sync + 'static {
    /// A spawned task's result. Awaiting it yields the task's output (a panic in the
    /// task is resumed in the awaiting one); dropping it lets the task run on.
    type Join<T: Send + 'static>: Future<Output = T> + Send + 'static;
    /// A bound TCP listener.
    type TcpListener: Send + Sync + 'static;
    /// The reading half of a TCP stream.
    type TcpRead: ReadHalf;
    /// The writing half of a TCP stream.
    type TcpWrite: WriteHalf;
    /// A bound Unix-domain stream listener.
    type UnixListener: Send + Sync + 'static;
    /// The reading half of a Unix-domain stream.
    type UnixRead: ReadHalf;
    /// The writing half of a Unix-domain stream.
    type UnixWrite: WriteHalf;
    /// A bound UDP socket.
    type Udp: Send + Sync + 'static;

    /// The monotonic clock. The only clock the driver reads.
    fn now(&self) -> std::time::Instant;
    /// Runs `fut` as a task.
    fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Self::Join<T>;
    /// Completes at (or soon after) `at`.
    fn sleep_until(&self, at: std::time::Instant) -> impl Future<Output = ()> + Send + 'static;
    /// Resolves `HOST:PORT`.
    fn resolve(&self, host: &str) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;

    /// Binds a TCP listener.
    fn tcp_bind(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::TcpListener>> + Send;
    /// The address a TCP listener is bound to.
    fn tcp_local_addr(&self, l: &Self::TcpListener) -> io::Result<SocketAddr>;
    /// Accepts one connection (with Nagle's algorithm off).
    fn tcp_accept(
        &self,
        l: &Self::TcpListener,
    ) -> impl Future<Output = io::Result<TcpAccepted<Self>>> + Send;
    /// Connects (with Nagle's algorithm off).
    fn tcp_connect(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::TcpRead, Self::TcpWrite)>> + Send;

    /// Binds a Unix-domain stream listener at `path`.
    fn unix_bind(&self, path: &Path) -> io::Result<Self::UnixListener>;
    /// Accepts one connection.
    fn unix_accept(
        &self,
        l: &Self::UnixListener,
    ) -> impl Future<Output = io::Result<(Self::UnixRead, Self::UnixWrite)>> + Send;
    /// Connects to `path`.
    fn unix_connect(
        &self,
        path: &Path,
    ) -> impl Future<Output = io::Result<(Self::UnixRead, Self::UnixWrite)>> + Send;

    /// Binds a UDP socket.
    fn udp_bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Udp>> + Send;
    /// The address a UDP socket is bound to.
    fn udp_local_addr(&self, s: &Self::Udp) -> io::Result<SocketAddr>;
    /// Receives one datagram.
    fn udp_recv_from(
        &self,
        s: &Self::Udp,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    /// Sends one datagram if the socket can take it now; never waits.
    fn udp_try_send_to(&self, s: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize>;
}

/// Runs `fut` for at most `limit`; `None` if the time ran out first.
pub async fn timeout<R: Runtime, T>(
    rt: &R,
    limit: core::time::Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    let deadline = rt.now() + limit;
    tokio::select! {
        biased;
        v = fut => Some(v),
        () = rt.sleep_until(deadline) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound reaches the socket as `TCP_USER_TIMEOUT` (SPEC §7.1).
    #[test]
    #[cfg(target_os = "linux")]
    fn the_unacknowledged_bound_reaches_the_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let before = socket2::SockRef::from(&s).tcp_user_timeout().unwrap();
        assert_eq!(before, None, "the kernel's default is no bound");
        limit_unacknowledged(&s, Duration::from_millis(1500)).unwrap();
        let after = socket2::SockRef::from(&s).tcp_user_timeout().unwrap();
        assert_eq!(after, Some(Duration::from_millis(1500)));
    }
}
