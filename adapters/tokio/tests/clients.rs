//! Client streams and peer streams through the tokio driver, with a tiny test machine that
//! echoes client lines upper-cased, closes a client on "quit", and reflects peer frames.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::wire::{Frame, Kind, Limits, decode_frame, split_frame, transport};
use flotilla_core::{ClientId, Input, Instant, Machine, Outbox, Output};
use flotilla_tokio::{Driver, DriverConfig, NodeHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const LIVENESS: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Opened(ClientId),
    Closed(ClientId),
    Frame(SocketAddr, Frame),
}

/// Echoes lines upper-cased; "quit" closes the client; peer frames come back to the sender.
#[derive(Default)]
struct Echo {
    lines: BTreeMap<ClientId, Vec<u8>>,
    out: Outbox<Seen>,
}

impl Machine for Echo {
    type Command = ();
    type Event = Seen;
    type Error = Infallible;

    fn handle(&mut self, _now: Instant, input: Input<()>) -> Result<(), Infallible> {
        match input {
            Input::Frame { from, frame } => {
                self.out.transmit(from, frame.clone());
                self.out.event(Seen::Frame(from, frame));
            }
            Input::ClientOpened(c) => {
                self.lines.insert(c, Vec::new());
                self.out.event(Seen::Opened(c));
            }
            Input::ClientData(c, data) => {
                let Some(buf) = self.lines.get_mut(&c) else {
                    return Ok(());
                };
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    if line.trim_ascii() == b"quit" {
                        self.out.close_client(c);
                    } else if line.trim_ascii() == b"flood" {
                        // Far more than a client queue and socket buffers hold.
                        for _ in 0..256 {
                            self.out.to_client(c, Bytes::from(vec![b'x'; 64 * 1024]));
                        }
                    } else {
                        self.out
                            .to_client(c, Bytes::from(line.to_ascii_uppercase()));
                    }
                }
            }
            Input::ClientClosed(c) => {
                if self.lines.remove(&c).is_some() {
                    self.out.event(Seen::Closed(c));
                }
            }
            Input::Command(()) => {}
        }
        Ok(())
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Option<Output<Seen>> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

async fn event(node: &mut NodeHandle<Echo>) -> Seen {
    timeout(LIVENESS, node.next_event())
        .await
        .expect("no event in time")
        .expect("node stopped")
}

/// Sends `line`, expects it back upper-cased, then quits and expects the server to close.
async fn echo_and_quit(addr: SocketAddr, line: &str) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(line.as_bytes()).await.unwrap();
    let mut got = vec![0u8; line.len()];
    timeout(LIVENESS, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, line.to_ascii_uppercase().as_bytes());
    s.write_all(b"quit\n").await.unwrap();
    let mut rest = Vec::new();
    timeout(LIVENESS, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "unexpected bytes after quit: {rest:?}");
}

#[tokio::test]
async fn clients_on_both_ports_and_peer_frames_on_the_shared_port() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let driver = Driver::bind(DriverConfig::tcp(any).with_client_listen(any))
        .await
        .unwrap();
    let local = driver.local_addrs();
    let mut node = driver.start(Echo::default());

    // The client-only port.
    echo_and_quit(local.client.unwrap(), "hello there\n").await;
    assert_eq!(event(&mut node).await, Seen::Opened(ClientId(1)));
    assert_eq!(event(&mut node).await, Seen::Closed(ClientId(1)));

    // The peer port: text is a client, told apart by its first byte.
    echo_and_quit(local.peer, "abc\n").await;
    assert_eq!(event(&mut node).await, Seen::Opened(ClientId(2)));
    assert_eq!(event(&mut node).await, Seen::Closed(ClientId(2)));

    // The peer port: a frame stream, named by its hello, answered on the same stream.
    let me: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ping = Frame::new(Kind(0x7701), Bytes::from_static(b"ping"));
    let mut s = TcpStream::connect(local.peer).await.unwrap();
    let mut wire = transport::encode_hello(me).to_bytes().to_vec();
    wire.extend_from_slice(&ping.to_bytes());
    s.write_all(&wire).await.unwrap();
    assert_eq!(event(&mut node).await, Seen::Frame(me, ping.clone()));
    let mut buf = bytes::BytesMut::new();
    let back = timeout(LIVENESS, async {
        loop {
            if let Some(f) = split_frame(&mut buf, &Limits::default()).unwrap() {
                return f;
            }
            assert_ne!(s.read_buf(&mut buf).await.unwrap(), 0, "stream closed");
        }
    })
    .await
    .unwrap();
    assert_eq!(back, ping);

    // A stream that does not decode is closed, not passed in.
    let mut bad = TcpStream::connect(local.peer).await.unwrap();
    bad.write_all(&[0xF1, 9, 0, 0, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = timeout(LIVENESS, bad.read_to_end(&mut rest)).await.unwrap();

    let stats = node.stats();
    assert_eq!(stats.clients_opened, 2);
    assert_eq!(stats.frames_in, 1);
    assert_eq!(stats.decode_errors, 1);
    node.shutdown().await;
}

#[tokio::test]
async fn bad_datagrams_are_counted_not_delivered() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let driver = Driver::bind(DriverConfig::udp(any)).await.unwrap();
    let addr = driver.local_addrs().peer;
    let mut node = driver.start(Echo::default());
    let sock = UdpSocket::bind(any).await.unwrap();
    sock.send_to(b"not a frame", addr).await.unwrap();
    let ping = Frame::new(Kind(0x7701), Bytes::from_static(b"ping"));
    sock.send_to(&ping.to_bytes(), addr).await.unwrap();
    // Only the good datagram reaches the machine, and its reply comes back.
    let from = sock.local_addr().unwrap();
    assert_eq!(event(&mut node).await, Seen::Frame(from, ping.clone()));
    let mut buf = vec![0u8; 2048];
    let (n, _) = timeout(LIVENESS, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let back = decode_frame(&Bytes::copy_from_slice(&buf[..n]), &Limits::default()).unwrap();
    assert_eq!(back, ping);
    let stats = node.stats();
    assert_eq!((stats.decode_errors, stats.frames_in), (1, 1));
    node.shutdown().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = DriverConfig::tcp(any).with_client_listen(any);
    config.client_queue = 4;
    let driver = Driver::bind(config).await.unwrap();
    let addr = driver.local_addrs().client.unwrap();
    let mut node = driver.start(Echo::default());
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"flood\n").await.unwrap();
    assert_eq!(event(&mut node).await, Seen::Opened(ClientId(1)));
    assert_eq!(event(&mut node).await, Seen::Closed(ClientId(1)));
    assert_eq!(node.stats().slow_clients, 1);
    // The connection is closed: reading ends (with EOF or a reset) well before 16 MiB.
    let mut sink = Vec::new();
    let _ = timeout(LIVENESS, s.read_to_end(&mut sink)).await.unwrap();
    assert!(sink.len() < 256 * 64 * 1024);
    node.shutdown().await;
}
