//! Transport frames (family `0x00`): messages that belong to the driver, not to a protocol.
//!
//! Over TCP a connection's remote port is ephemeral, yet machines name peers by the address
//! they listen on. So a dialer's first frame is a hello carrying its own listen address;
//! the acceptor attributes everything on that connection to it, and sends frames for that
//! address back over the same connection. Datagram transports need no hello: the source
//! address of a UDP datagram already is the sender's bound address.
//!
//! A hello also names the [`Lane`] the connection carries: a driver keeps one connection
//! per lane to each peer, so bulk traffic never blocks membership behind a lost segment.
//! A hello without the lane byte (an older dialler) carries the data lane.

use core::net::SocketAddr;

use super::{DecodeError, Frame, Kind, Reader, Writer};
use crate::machine::Lane;

/// Protocol family byte of transport frames. Drivers consume these; machines never see them.
pub const FAMILY: u8 = 0x00;
/// "My listen address is …": the first frame a dialer sends on a new stream.
pub const KIND_HELLO: Kind = Kind(0x0001);

/// True for frames the driver handles itself.
pub fn is_transport(frame: &Frame) -> bool {
    frame.kind.family() == FAMILY
}

/// A hello announcing `listen` as the sender's identity, for a connection carrying `lane`.
pub fn encode_hello(listen: SocketAddr, lane: Lane) -> Frame {
    let mut w = Writer::new();
    w.addr(listen);
    w.u8(lane.to_byte());
    Frame::new(KIND_HELLO, w.finish())
}

/// The listen address a hello announces, and the lane its connection carries.
pub fn decode_hello(frame: &Frame) -> Result<(SocketAddr, Lane), DecodeError> {
    if frame.kind != KIND_HELLO {
        return Err(DecodeError::UnknownKind(frame.kind));
    }
    let mut r = Reader::new(&frame.payload);
    let addr = r.addr()?;
    let lane = if r.remaining() == 0 {
        Lane::Data
    } else {
        let b = r.u8()?;
        Lane::from_byte(b).ok_or(DecodeError::InvalidValue {
            field: "lane",
            value: u64::from(b),
        })?
    };
    r.finish()?;
    Ok((addr, lane))
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
            for lane in Lane::ALL {
                let f = encode_hello(a, lane);
                assert!(is_transport(&f));
                let wire = f.to_bytes();
                let back = decode_frame(&wire, &Limits::default()).unwrap();
                assert_eq!(decode_hello(&back), Ok((a, lane)));
            }
        }
    }

    #[test]
    fn hello_layout_is_family_address_port_lane() {
        let f = encode_hello("1.2.3.4:258".parse().unwrap(), Lane::Control);
        assert_eq!(&f.payload[..], &[4, 1, 2, 3, 4, 1, 2, 0]);
        assert_eq!(KIND_HELLO.family(), FAMILY);
        // An older dialler's hello has no lane byte: its connection carries data.
        let old = Frame::new(KIND_HELLO, Bytes::from_static(&[4, 1, 2, 3, 4, 1, 2]));
        assert_eq!(
            decode_hello(&old),
            Ok(("1.2.3.4:258".parse().unwrap(), Lane::Data))
        );
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
        let lane = Frame::new(KIND_HELLO, Bytes::from_static(&[4, 1, 2, 3, 4, 0, 1, 9]));
        assert_eq!(
            decode_hello(&lane),
            Err(DecodeError::InvalidValue {
                field: "lane",
                value: 9
            })
        );
        let long = Frame::new(KIND_HELLO, Bytes::from_static(&[4, 1, 2, 3, 4, 0, 1, 1, 0]));
        assert_eq!(decode_hello(&long), Err(DecodeError::TrailingBytes(1)));
        let family = Frame::new(KIND_HELLO, Bytes::from_static(&[5, 0, 0]));
        assert!(matches!(
            decode_hello(&family),
            Err(DecodeError::InvalidValue { .. })
        ));
    }
}
