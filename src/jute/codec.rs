//! Jute primitives: a zero-copy reader over a frame and a writer into a `BytesMut`.
//!
//! The reader hands out `Bytes` slices of the frame for `buffer` fields, so data payloads are
//! never copied between the socket and the tree.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Why a record could not be decoded. Any of these closes the offending connection.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record truncated: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("negative length {length} at offset {offset}")]
    BadLength { offset: usize, length: i32 },
    #[error("string at offset {offset} is not valid UTF-8")]
    BadUtf8 { offset: usize },
    #[error("unknown opcode {0}")]
    UnknownOpCode(i32),
    #[error("invalid record: {0}")]
    Invalid(&'static str),
    /// A well-formed record with a null where a value is required. ZooKeeper answers these
    /// with MarshallingError and keeps the connection.
    #[error("{0} is null")]
    NullField(&'static str),
}

/// Reads jute values from one frame body.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..start + n])
    }

    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// Reads a length; -1 (null) comes back as `None`, other negatives are errors.
    fn read_len(&mut self) -> Result<Option<usize>, DecodeError> {
        let offset = self.pos;
        let len = self.read_i32()?;
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(DecodeError::BadLength { offset, length: n }),
            n => {
                let n = n as usize;
                if n > self.remaining() {
                    return Err(DecodeError::Truncated {
                        offset: self.pos,
                        needed: n - self.remaining(),
                    });
                }
                Ok(Some(n))
            }
        }
    }

    /// A `buffer` field: `None` when the sender wrote null (-1).
    pub fn read_buffer(&mut self) -> Result<Option<Bytes>, DecodeError> {
        match self.read_len()? {
            None => Ok(None),
            Some(n) => {
                let start = self.pos;
                self.pos += n;
                Ok(Some(self.buf.slice(start..start + n)))
            }
        }
    }

    /// A `ustring` field; null decodes as the empty string, which every path check rejects.
    pub fn read_string(&mut self) -> Result<String, DecodeError> {
        Ok(self.read_opt_string()?.unwrap_or_default())
    }

    /// A path: null is a [`DecodeError::NullField`].
    pub fn read_path(&mut self) -> Result<String, DecodeError> {
        self.read_required_string("path")
    }

    /// A string that must not be null.
    pub fn read_required_string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.read_opt_string()?.ok_or(DecodeError::NullField(what))
    }

    pub fn read_opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        let offset = self.pos;
        match self.read_len()? {
            None => Ok(None),
            Some(n) => {
                let b = self.take(n)?;
                // Java decodes invalid UTF-8 with replacement characters, which path
                // validation then rejects (BadArguments); do the same rather than failing
                // the whole request.
                let _ = offset;
                Ok(Some(String::from_utf8_lossy(b).into_owned()))
            }
        }
    }

    /// A vector; null decodes as empty.
    pub fn read_vec<T>(
        &mut self,
        mut item: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let offset = self.pos;
        let count = self.read_i32()?;
        if count == -1 {
            return Ok(Vec::new());
        }
        if count < 0 {
            return Err(DecodeError::BadLength {
                offset,
                length: count,
            });
        }
        // Every item takes at least one byte, which bounds the allocation by the frame size.
        let count = count as usize;
        if count > self.remaining() {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: count - self.remaining(),
            });
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(item(self)?);
        }
        Ok(out)
    }

    pub fn read_string_vec(&mut self) -> Result<Vec<String>, DecodeError> {
        self.read_vec(|r| r.read_string())
    }
}

/// Writes jute values.
#[derive(Debug, Default)]
pub struct Writer {
    buf: BytesMut,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            buf: BytesMut::new(),
        }
    }

    pub fn with_buf(buf: BytesMut) -> Self {
        Writer { buf }
    }

    pub fn into_inner(self) -> BytesMut {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn write_i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    pub fn write_i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    pub fn write_bool(&mut self, v: bool) {
        self.buf.put_u8(v as u8);
    }

    pub fn write_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.buf.put_i32(-1),
            Some(b) => {
                self.buf.put_i32(b.len() as i32);
                self.buf.put_slice(b);
            }
        }
    }

    pub fn write_string(&mut self, v: &str) {
        self.buf.put_i32(v.len() as i32);
        self.buf.put_slice(v.as_bytes());
    }

    pub fn write_vec<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Writer, &T)) {
        self.buf.put_i32(items.len() as i32);
        for i in items {
            item(self, i);
        }
    }

    pub fn write_string_vec<S: AsRef<str>>(&mut self, items: &[S]) {
        self.write_vec(items, |w, s| w.write_string(s.as_ref()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut w = Writer::new();
        w.write_i32(-7);
        w.write_i64(1 << 40);
        w.write_bool(true);
        w.write_buffer(None);
        w.write_buffer(Some(b"abc"));
        w.write_string("/zoo");
        w.write_string_vec(&["a", "b"]);
        let mut r = Reader::new(w.into_inner().freeze());
        assert_eq!(r.read_i32().unwrap(), -7);
        assert_eq!(r.read_i64().unwrap(), 1 << 40);
        assert!(r.read_bool().unwrap());
        assert_eq!(r.read_buffer().unwrap(), None);
        assert_eq!(r.read_buffer().unwrap().unwrap().as_ref(), b"abc");
        assert_eq!(r.read_string().unwrap(), "/zoo");
        assert_eq!(r.read_string_vec().unwrap(), vec!["a", "b"]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn truncated_and_bad_lengths_are_errors() {
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0]));
        assert!(matches!(r.read_i32(), Err(DecodeError::Truncated { .. })));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]));
        assert!(matches!(
            r.read_buffer(),
            Err(DecodeError::BadLength { .. })
        ));
        // Claims 100 bytes, has 1.
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 100, 1]));
        assert!(matches!(
            r.read_string(),
            Err(DecodeError::Truncated { .. })
        ));
        // A vector claiming two billion items must not allocate for them.
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]));
        assert!(r.read_string_vec().is_err());
        // Invalid UTF-8 decodes with replacement characters, as Java does.
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 1, 0xff]));
        assert_eq!(r.read_string().unwrap(), "\u{fffd}");
    }
}
