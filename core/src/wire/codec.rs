//! Field-level payload codec shared by every protocol (SPEC.md §2.2).
//!
//! Integers are big-endian; byte strings and text carry a `u32` length prefix that is
//! checked against the field's bound and against the bytes actually present before any
//! allocation; addresses are a family byte, the address, and a port.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use super::DecodeError;

/// Reads fields off a payload. Byte fields are zero-copy slices of the payload.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                needed: n,
                have: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }

    /// A boolean encoded as 0 or 1; anything else is an error.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::InvalidValue {
                field,
                value: u64::from(v),
            }),
        }
    }

    /// A count prefix (`u32`) for a list, bounded by `max`; also refuses counts that could
    /// not possibly fit in the remaining bytes at `min_item_len` bytes each, so a hostile
    /// count cannot drive a large `Vec::with_capacity`.
    pub fn count(
        &mut self,
        field: &'static str,
        max: usize,
        min_item_len: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(DecodeError::TooLong { field, len: n, max });
        }
        let needed = n.saturating_mul(min_item_len.max(1));
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                needed,
                have: self.remaining(),
            });
        }
        Ok(n)
    }

    /// A length-prefixed byte string of at most `max` bytes, as a slice of the payload.
    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(DecodeError::TooLong { field, len: n, max });
        }
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                needed: n,
                have: self.remaining(),
            });
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let b = self.bytes(field, max)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidUtf8(field))
    }

    /// A socket address: family (4 or 6), address bytes, port.
    pub fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            4 => {
                let s = self.take(4)?;
                IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                IpAddr::V6(Ipv6Addr::from(a))
            }
            f => {
                return Err(DecodeError::InvalidValue {
                    field: "address family",
                    value: u64::from(f),
                });
            }
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Writes fields in the layout [`Reader`] reads.
#[derive(Debug, Default)]
pub struct Writer {
    buf: BytesMut,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.put_u8(v);
        self
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.put_u16(v);
        self
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.put_u32(v);
        self
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.put_u64(v);
        self
    }

    /// A boolean as 0 or 1.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.put_u8(u8::from(v));
        self
    }

    /// A list count.
    ///
    /// # Panics
    /// If `n` exceeds `u32::MAX`, a sender bug.
    pub fn count(&mut self, n: usize) -> &mut Self {
        self.buf
            .put_u32(u32::try_from(n).expect("list longer than u32::MAX"));
        self
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.count(v.len());
        self.buf.put_slice(v);
        self
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// A socket address.
    pub fn addr(&mut self, a: SocketAddr) -> &mut Self {
        match a.ip() {
            IpAddr::V4(ip) => {
                self.buf.put_u8(4);
                self.buf.put_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.buf.put_u8(6);
                self.buf.put_slice(&ip.octets());
            }
        }
        self.buf.put_u16(a.port());
        self
    }

    /// The finished payload.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fields_round_trip(a: u8, b: u16, c: u32, d: u64, s in ".{0,40}", raw in proptest::collection::vec(any::<u8>(), 0..64), ip: [u8; 16], v4: bool, port: u16, flag: bool) {
            let addr = if v4 {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])), port)
            } else {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)
            };
            let mut w = Writer::new();
            w.u8(a).u16(b).u32(c).u64(d).str(&s).bytes(&raw).addr(addr).bool(flag);
            let buf = w.finish();
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.u8().unwrap(), a);
            prop_assert_eq!(r.u16().unwrap(), b);
            prop_assert_eq!(r.u32().unwrap(), c);
            prop_assert_eq!(r.u64().unwrap(), d);
            prop_assert_eq!(r.str("s", 1000).unwrap(), s);
            prop_assert_eq!(&r.bytes("raw", 1000).unwrap()[..], &raw[..]);
            prop_assert_eq!(r.addr().unwrap(), addr);
            prop_assert_eq!(r.bool("flag").unwrap(), flag);
            prop_assert!(r.finish().is_ok());
        }
    }

    #[test]
    fn hostile_lengths_are_refused_without_allocating() {
        let buf = Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(
            Reader::new(&buf).bytes("name", 64),
            Err(DecodeError::TooLong {
                field: "name",
                len: u32::MAX as usize,
                max: 64
            })
        );
        assert!(matches!(
            Reader::new(&buf).count("items", usize::MAX, 8),
            Err(DecodeError::Truncated { .. })
        ));
        let buf = Bytes::from_static(&[0, 0, 0, 9, b'a']);
        assert_eq!(
            Reader::new(&buf).bytes("name", 64),
            Err(DecodeError::Truncated { needed: 9, have: 1 })
        );
    }

    #[test]
    fn invalid_utf8_and_bool_are_typed() {
        let buf = Bytes::from_static(&[0, 0, 0, 1, 0xFF]);
        assert_eq!(
            Reader::new(&buf).str("name", 8),
            Err(DecodeError::InvalidUtf8("name"))
        );
        let buf = Bytes::from_static(&[2]);
        assert_eq!(
            Reader::new(&buf).bool("flag"),
            Err(DecodeError::InvalidValue {
                field: "flag",
                value: 2
            })
        );
    }
}
