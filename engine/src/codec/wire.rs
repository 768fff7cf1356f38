//! MQTT wire primitives: variable byte integers, and a bounds-checked
//! reader and writers for the big-endian integers, strings and binary data
//! every packet is made of.
//!
//! Everything here is shared by the validation walk, the packets Parley
//! decodes itself and the encoders; nothing here knows about packet types.

use bytes::{BufMut, BytesMut};

use super::DecodeError;

/// The largest value a variable byte integer can hold (four bytes).
pub(crate) const VARINT_MAX: usize = 268_435_455;

/// The outcome of reading a variable byte integer from the front of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarInt {
    /// The value and the number of bytes encoding it.
    Complete(usize, usize),
    /// The slice ends before the last byte of the integer.
    Incomplete,
    /// More than four bytes, or not the shortest encoding of its value.
    Invalid,
}

/// Reads the variable byte integer at the front of `buf`.
///
/// MQTT requires the shortest encoding, so a trailing zero byte after a
/// continuation (`0x80 0x00`) is [`VarInt::Invalid`], as is a fifth byte.
pub(crate) fn read_varint(buf: &[u8]) -> VarInt {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return VarInt::Invalid;
            }
            return VarInt::Complete(value, i + 1);
        }
    }
    if buf.len() >= 4 {
        VarInt::Invalid
    } else {
        VarInt::Incomplete
    }
}

/// Number of bytes the variable byte integer encoding of `value` takes.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `value` as a variable byte integer.
///
/// Values above [`VARINT_MAX`] cannot be represented; callers keep packets
/// and identifiers within it (debug builds assert it).
pub(crate) fn put_varint(buf: &mut BytesMut, value: usize) {
    debug_assert!(
        value <= VARINT_MAX,
        "variable byte integer {value} too large"
    );
    let mut x = value;
    loop {
        let mut byte = (x % 128) as u8;
        x /= 128;
        if x > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if x == 0 {
            break;
        }
    }
}

/// Appends a two-byte length followed by `data` (binary data or a UTF-8 string).
///
/// MQTT lengths are 16 bits; longer data is a caller bug (debug builds assert it).
pub(crate) fn put_binary(buf: &mut BytesMut, data: &[u8]) {
    debug_assert!(
        data.len() <= usize::from(u16::MAX),
        "field longer than 65535 bytes"
    );
    buf.put_u16(data.len() as u16);
    buf.extend_from_slice(data);
}

/// A cursor over one packet's bytes whose reads fail with
/// [`DecodeError::Malformed`] instead of running past the end.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the next `n` bytes; `what` names the field for the error.
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Malformed(format!(
                "{what} runs past the end of the packet"
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads a big-endian two-byte integer.
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a big-endian four-byte integer.
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a variable byte integer (shortest encoding, at most four bytes).
    pub(crate) fn varint(&mut self, what: &str) -> Result<usize, DecodeError> {
        match read_varint(self.buf) {
            VarInt::Complete(value, len) => {
                self.buf = &self.buf[len..];
                Ok(value)
            }
            VarInt::Incomplete => Err(DecodeError::Malformed(format!(
                "{what} runs past the end of the packet"
            ))),
            VarInt::Invalid => Err(DecodeError::Malformed(format!(
                "{what} is not a valid variable byte integer"
            ))),
        }
    }

    /// Reads two-byte-length-prefixed binary data.
    pub(crate) fn binary(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// Reads a two-byte-length-prefixed UTF-8 string.
    ///
    /// Invalid UTF-8 and the null character U+0000 are malformed (MQTT 5
    /// §1.5.4, 3.1.1 §1.5.3); UTF-16 surrogates cannot occur in valid UTF-8.
    pub(crate) fn utf8(&mut self, what: &str) -> Result<&'a str, DecodeError> {
        let bytes = self.binary(what)?;
        let s = std::str::from_utf8(bytes)
            .map_err(|_| DecodeError::Malformed(format!("{what} is not valid UTF-8")))?;
        if s.contains('\0') {
            return Err(DecodeError::Malformed(format!(
                "{what} contains the null character"
            )));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_at_boundaries() {
        for value in [
            0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX,
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            assert_eq!(buf.len(), varint_len(value), "{value}");
            assert_eq!(read_varint(&buf), VarInt::Complete(value, buf.len()));
            assert_eq!(read_varint(&buf[..buf.len() - 1]), VarInt::Incomplete);
        }
    }

    #[test]
    fn varint_rejects_long_and_non_minimal_encodings() {
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]),
            VarInt::Invalid
        );
        assert_eq!(read_varint(&[0x80, 0x80, 0x80, 0x80]), VarInt::Invalid);
        assert_eq!(read_varint(&[0x80, 0x00]), VarInt::Invalid);
        assert_eq!(read_varint(&[0x81, 0x80, 0x00]), VarInt::Invalid);
        assert_eq!(read_varint(&[]), VarInt::Incomplete);
        assert_eq!(read_varint(&[0x00]), VarInt::Complete(0, 1));
    }

    #[test]
    fn reader_refuses_to_overrun() {
        let mut r = Reader::new(&[0, 3, b'a', b'b']);
        assert!(matches!(r.utf8("topic"), Err(DecodeError::Malformed(_))));
        let mut r = Reader::new(&[0, 2, b'a', 0]);
        assert!(matches!(r.utf8("topic"), Err(DecodeError::Malformed(_))));
        let mut r = Reader::new(&[0, 2, 0xc3, 0x28]);
        assert!(matches!(r.utf8("topic"), Err(DecodeError::Malformed(_))));
        let mut r = Reader::new(&[0, 2, b'o', b'k', 1]);
        assert_eq!(r.utf8("topic").unwrap(), "ok");
        assert_eq!(r.remaining(), 1);
        assert!(r.u16("id").is_err());
    }
}
