//! The protobuf wire format, read in place: a message is a sequence of
//! fields, each read as its wire type says (a varint, 8 or 4 bytes, or a
//! length-delimited slice borrowed from the input) and either used or
//! passed over. Nothing is copied and nothing is decoded that is not asked
//! for; a length-delimited field passed over costs its key and its length.
//!
//! The rules are prost's, so that an export is rejected for the same
//! structural faults: a varint of more than 10 bytes (or a 10th byte above
//! 1), a key above `u32::MAX`, field number 0, wire types 6 and 7, an end
//! group without its start (or with another field's number), a length past
//! the end of its message, and groups nested past the recursion limit.

use crate::ingest::DecodeError;

/// How deep messages and groups may nest (prost's limit).
const RECURSION_LIMIT: u32 = 100;

/// A field's value as the wire carries it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// A length-delimited field: a string, bytes, a message, or a packed
    /// repeated scalar.
    Bytes(&'a [u8]),
    /// A group (a deprecated encoding no OTLP field uses), passed over
    /// whole.
    Group,
}

impl<'a> Value<'a> {
    #[inline]
    pub(super) fn varint(self, what: &'static str) -> Result<u64, DecodeError> {
        match self {
            Value::Varint(v) => Ok(v),
            other => Err(other.unexpected(what, "varint")),
        }
    }

    #[inline]
    pub(super) fn fixed64(self, what: &'static str) -> Result<u64, DecodeError> {
        match self {
            Value::Fixed64(v) => Ok(v),
            other => Err(other.unexpected(what, "64-bit")),
        }
    }

    #[inline]
    pub(super) fn fixed32(self, what: &'static str) -> Result<u32, DecodeError> {
        match self {
            Value::Fixed32(v) => Ok(v),
            other => Err(other.unexpected(what, "32-bit")),
        }
    }

    #[inline]
    pub(super) fn bytes(self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        match self {
            Value::Bytes(b) => Ok(b),
            other => Err(other.unexpected(what, "length-delimited")),
        }
    }

    /// A string field, which must be UTF-8.
    #[inline]
    pub(super) fn str(self, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| invalid(format!("{what} is not UTF-8")))
    }

    /// Appends the values of a repeated 64-bit field (`fixed64` or
    /// `double`: `from_bits` makes one of its 8 bytes), packed (one
    /// length-delimited run) or not (one value per field).
    pub(super) fn push_64<T>(
        self,
        out: &mut Vec<T>,
        from_bits: impl Fn(u64) -> T,
        what: &'static str,
    ) -> Result<(), DecodeError> {
        match self {
            Value::Fixed64(v) => out.push(from_bits(v)),
            Value::Bytes(b) if b.len() % 8 == 0 => {
                out.reserve(b.len() / 8);
                out.extend(b.chunks_exact(8).map(|c| {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(c);
                    from_bits(u64::from_le_bytes(le))
                }));
            }
            Value::Bytes(b) => {
                return Err(invalid(format!(
                    "{what}: {} bytes of packed 64-bit values",
                    b.len()
                )))
            }
            other => return Err(other.unexpected(what, "64-bit or packed")),
        }
        Ok(())
    }

    #[cold]
    fn unexpected(self, what: &'static str, expected: &str) -> DecodeError {
        let actual = match self {
            Value::Varint(_) => "varint",
            Value::Fixed64(_) => "64-bit",
            Value::Fixed32(_) => "32-bit",
            Value::Bytes(_) => "length-delimited",
            Value::Group => "group",
        };
        invalid(format!("{what} has wire type {actual}, not {expected}"))
    }
}

#[cold]
fn past_the_end(len: u64, rest: usize) -> DecodeError {
    invalid(format!(
        "a field of {len} bytes where its message has {rest} left"
    ))
}

#[cold]
fn invalid(msg: String) -> DecodeError {
    DecodeError::new(format!("invalid protobuf: {msg}"))
}

/// The fields of one message, in wire order.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// How deep this message is nested (the request is 0).
    depth: u32,
}

impl<'a> Reader<'a> {
    /// The fields of a whole request.
    pub(super) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            depth: 0,
        }
    }

    /// The fields of a message carried by a field of this one.
    pub(super) fn nested(&self, buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            depth: self.depth + 1,
        }
    }

    /// The fields of this message between two of its positions (each the
    /// start of a field, or its end), read again.
    pub(super) fn range(&self, from: usize, to: usize) -> Reader<'a> {
        Reader {
            buf: self
                .buf
                .get(from..to.min(self.buf.len()))
                .unwrap_or_default(),
            pos: 0,
            depth: self.depth,
        }
    }

    /// Where the next field starts.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// The next field: its number and value; `None` at the message's end.
    #[inline(always)]
    #[allow(clippy::should_implement_trait)]
    pub(super) fn next(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        let Some(&key) = self.buf.get(self.pos) else {
            return Ok(None);
        };
        // Fields 1 to 15 have a one-byte key: every field OTLP's messages
        // are made of but a span's flags.
        if !(8..0x80).contains(&key) {
            return self.next_slow();
        }
        self.pos += 1;
        self.field(u32::from(key >> 3), u64::from(key & 7))
    }

    /// [`Reader::next`] for a key of more than one byte (or field 0).
    #[inline(never)]
    fn next_slow(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        let (field, wire_type) = self.key()?;
        self.field(field, wire_type)
    }

    /// The value of field `field` of wire type `wire_type`, whose key was
    /// just read.
    #[inline(always)]
    fn field(
        &mut self,
        field: u32,
        wire_type: u64,
    ) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        let value = match wire_type {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take()?)),
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.slice(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take()?)),
            _ => return self.group_or_error(field, wire_type),
        };
        Ok(Some((field, value)))
    }

    /// A field of wire type 3 (a group, passed over), 4 (an end group
    /// without its start), 6 or 7 (none).
    #[inline(never)]
    fn group_or_error(
        &mut self,
        field: u32,
        wire_type: u64,
    ) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        match wire_type {
            3 => {
                self.skip_group(field, 1)?;
                Ok(Some((field, Value::Group)))
            }
            4 => Err(invalid("an end group without its start".into())),
            _ => Err(invalid(format!("wire type {wire_type} does not exist"))),
        }
    }

    /// A field's key: its number and wire type.
    fn key(&mut self) -> Result<(u32, u64), DecodeError> {
        let key = self.varint()?;
        let Ok(key) = u32::try_from(key) else {
            return Err(invalid(format!("key {key} is out of range")));
        };
        let wire_type = u64::from(key & 7);
        if wire_type > 5 {
            return Err(invalid(format!("wire type {wire_type} does not exist")));
        }
        let field = key >> 3;
        if field == 0 {
            return Err(invalid("field number 0".into()));
        }
        Ok((field, wire_type))
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_slow(),
        }
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos + i) else {
                break;
            };
            if i == 9 && b > 1 {
                break;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(invalid("a truncated or overlong varint".into()))
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.slice(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline(always)]
    fn slice(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        let rest = self.buf.len() - self.pos;
        match usize::try_from(len) {
            Ok(len) if len <= rest => {
                let out = &self.buf[self.pos..self.pos + len];
                self.pos += len;
                Ok(out)
            }
            _ => Err(past_the_end(len, rest)),
        }
    }

    /// Passes over the rest of a group started by field `field`, whose
    /// fields are `level` groups deep in this message.
    fn skip_group(&mut self, field: u32, level: u32) -> Result<(), DecodeError> {
        loop {
            if self.pos >= self.buf.len() {
                return Err(invalid(format!("group {field} is never ended")));
            }
            let (inner, wire_type) = self.key()?;
            if wire_type == 4 {
                if inner != field {
                    return Err(invalid(format!("group {field} ended as {inner}")));
                }
                return Ok(());
            }
            if self.depth + level >= RECURSION_LIMIT {
                return Err(invalid("groups nested too deep".into()));
            }
            match wire_type {
                0 => drop(self.varint()?),
                1 => drop(self.slice(8)?),
                2 => {
                    let len = self.varint()?;
                    self.slice(len)?;
                }
                3 => self.skip_group(inner, level + 1)?,
                _ => drop(self.slice(4)?),
            }
        }
    }
}
