//! Byte-level primitives of the trace format: LEB128 varints, zigzag for
//! signed deltas, and a bounds-checked cursor that never panics and never
//! allocates on behalf of the input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Corruption;

/// Appends `v` as an unsigned LEB128 varint (1 byte below 128, at most 10).
pub(crate) fn put_u64(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Maps small negative and positive numbers to small unsigned ones, so a
/// delta of -3 costs one byte like a delta of +3.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_i64(buf: &mut Vec<u8>, v: i64) {
    put_u64(buf, zigzag(v));
}

pub(crate) fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    put_u64(buf, s.len() as u64);
    buf.extend_from_slice(s);
}

/// Family byte (4 or 6) then the address bytes in network order. IPv4-mapped
/// IPv6 addresses stay IPv6: the kernel reported them that way.
pub(crate) fn put_addr(buf: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(a) => {
            buf.push(4);
            buf.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            buf.push(6);
            buf.extend_from_slice(&a.octets());
        }
    }
}

/// Reads a record payload. Every method checks bounds and returns a
/// [`Corruption`]; `pos` says where, for error messages.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Corruption> {
        let b = *self.buf.get(self.pos).ok_or(Corruption::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Corruption> {
        if n > self.remaining() {
            return Err(Corruption::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Corruption> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            // The 10th byte holds only the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(Corruption::VarintOverflow);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Corruption::VarintOverflow)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Corruption> {
        self.u64().map(unzigzag)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, Corruption> {
        u32::try_from(self.u64()?).map_err(|_| Corruption::OutOfRange(what))
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, Corruption> {
        u16::try_from(self.u64()?).map_err(|_| Corruption::OutOfRange(what))
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, Corruption> {
        i32::try_from(self.i64()?).map_err(|_| Corruption::OutOfRange(what))
    }

    /// A length, checked against `max` and against what is left, before
    /// anything is allocated for it.
    pub(crate) fn len(&mut self, max: usize, what: &'static str) -> Result<usize, Corruption> {
        let n = self.u64()?;
        if n > max as u64 {
            return Err(Corruption::TooLong { what, len: n, max });
        }
        Ok(n as usize)
    }

    pub(crate) fn str(&mut self, max: usize, what: &'static str) -> Result<String, Corruption> {
        let n = self.len(max, what)?;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| Corruption::NotUtf8(what))
    }

    pub(crate) fn addr(&mut self) -> Result<IpAddr, Corruption> {
        match self.u8()? {
            4 => {
                let b: [u8; 4] = self.bytes(4)?.try_into().expect("4 bytes");
                Ok(IpAddr::V4(Ipv4Addr::from(b)))
            }
            6 => {
                let b: [u8; 16] = self.bytes(16)?.try_into().expect("16 bytes");
                Ok(IpAddr::V6(Ipv6Addr::from(b)))
            }
            f => Err(Corruption::Family(f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [
            0,
            1,
            127,
            128,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_u64(&mut b, v);
            assert!(b.len() <= 10);
            let mut c = Cursor::new(&b);
            assert_eq!(c.u64().unwrap(), v);
            assert!(c.is_empty());
        }
    }

    #[test]
    fn zigzag_keeps_small_deltas_small() {
        for v in [0i64, -1, 1, -64, 63, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn overlong_varints_are_rejected() {
        let b = [0xffu8; 11];
        assert_eq!(Cursor::new(&b).u64(), Err(Corruption::VarintOverflow));
        let mut b = [0xffu8; 10];
        b[9] = 0x02;
        assert_eq!(Cursor::new(&b).u64(), Err(Corruption::VarintOverflow));
        assert_eq!(Cursor::new(&[0x80]).u64(), Err(Corruption::Truncated));
    }

    #[test]
    fn lengths_are_checked_before_allocation() {
        let mut b = Vec::new();
        put_u64(&mut b, 1 << 40);
        let err = Cursor::new(&b).str(100, "hostname").unwrap_err();
        assert!(matches!(err, Corruption::TooLong { .. }));
        let mut b = Vec::new();
        put_u64(&mut b, 50);
        assert_eq!(Cursor::new(&b).str(100, "x"), Err(Corruption::Truncated));
    }
}
