//! Transport frames (family `0x00`): messages that belong to the driver, not to a protocol.
//!
//! Over TCP a connection's remote port is ephemeral, yet machines name peers by the address
//! they listen on. So a dialer's first frame is a hello carrying its own listen address;
//! the acceptor attributes everything on that connection to it, and sends frames for that
//! address back over the same connection. Datagram transports need no hello: the source
//! address of a UDP datagram already is the sender's bound address.

use core::net::SocketAddr;

use super::{DecodeError, Frame, Kind, Reader, Writer};

/// Protocol family byte of transport frames. Drivers consume these; machines never see them.
pub const FAMILY: u8 = 0x00;
/// "My listen address is …": the first frame a dialer sends on a new stream.
pub const KIND_HELLO: Kind = Kind(0x0001);

/// True for frames the driver handles itself.
pub fn is_transport(frame: &Frame) -> bool {
    frame.kind.family() == FAMILY
}

/// A hello announcing `listen` as the sender's identity.
pub fn encode_hello(listen: SocketAddr) -> Frame {
    let mut w = Writer::new();
    w.addr(listen);
    Frame::new(KIND_HELLO, w.finish())
}

/// The listen address a hello announces.
pub fn decode_hello(frame: &Frame) -> Result<SocketAddr, DecodeError> {
    if frame.kind != KIND_HELLO {
        return Err(DecodeError::UnknownKind(frame.kind));
    }
    let mut r = Reader::new(&frame.payload);
    let addr = r.addr()?;
    r.finish()?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Limits, decode_frame};
    use bytes::Bytes;

    #[test]
    fn hello_round_trips_v4_and_v6() {
        for a in ["127.0.0.1:7001", "[::1]:65535", "10.1.2.3:0"] {
            let a: SocketAddr = a.parse().unwrap();
            let f = encode_hello(a);
            assert!(is_transport(&f));
            let wire = f.to_bytes();
            let back = decode_frame(&wire, &Limits::default()).unwrap();
            assert_eq!(decode_hello(&back), Ok(a));
        }
    }

    #[test]
    fn hello_layout_is_family_address_port() {
        let f = encode_hello("1.2.3.4:258".parse().unwrap());
        assert_eq!(&f.payload[..], &[4, 1, 2, 3, 4, 1, 2]);
        assert_eq!(KIND_HELLO.family(), FAMILY);
    }

    #[test]
    fn bad_hellos_are_refused() {
        let other = Frame::new(Kind(0x0101), Bytes::from_static(&[4, 1, 2, 3, 4, 0, 1]));
        assert_eq!(
            decode_hello(&other),
            Err(DecodeError::UnknownKind(Kind(0x0101)))
        );
        let short = Frame::new(KIND_HELLO, Bytes::from_static(&[4, 1, 2]));
        assert!(matches!(
            decode_hello(&short),
            Err(DecodeError::Truncated { .. })
        ));
        let long = Frame::new(KIND_HELLO, Bytes::from_static(&[4, 1, 2, 3, 4, 0, 1, 9]));
        assert_eq!(decode_hello(&long), Err(DecodeError::TrailingBytes(1)));
        let family = Frame::new(KIND_HELLO, Bytes::from_static(&[5, 0, 0]));
        assert!(matches!(
            decode_hello(&family),
            Err(DecodeError::InvalidValue { .. })
        ));
    }
}
