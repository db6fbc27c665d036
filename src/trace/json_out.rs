//! The JSON serializer for trace records: compact JSON, byte for byte what
//! `serde_json::to_writer` writes (the tests compare the two), for much less work.
//!
//! A trace record is mostly strings (header values, URLs, body text) and a hundred field names.
//! serde_json escapes every string, field names included, one byte at a time and writes each
//! run between two escapes separately; here strings are checked eight bytes at a time and field
//! names, which are our own identifiers, are written as they are. Numbers are left to serde_json
//! so that they are formatted exactly as before.

use std::fmt::Display;

use serde::ser::{self, Serialize};

/// A value that cannot be written as JSON (a map key that is not a string, a failing
/// `Serialize` impl).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Appends `value` to `out` as compact JSON.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut Writer { out })
}

/// How many leading bytes of `bytes` stand for themselves inside a JSON string: all but `"`,
/// `\` and control characters. Also how JSON bodies are scanned (see `json_body`): a string runs
/// to the first of those bytes.
///
/// Eight bytes are looked at at once, and a string's last bytes as the word that ends it, so a
/// plain string of 8 bytes or more is never read byte by byte.
pub fn plain_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(chunk) = bytes[at..].first_chunk::<8>() {
        if let Some(first) = first_special(chunk) {
            return at + first;
        }
        at += 8;
    }
    if at == bytes.len() {
        return at;
    }
    if let Some(last) = bytes.last_chunk::<8>() {
        // The bytes this word shares with the ones already read are plain.
        let start = bytes.len() - 8;
        return first_special(last).map_or(bytes.len(), |first| start + first);
    }
    bytes
        .iter()
        .position(|&b| matches!(b, b'"' | b'\\' | 0..=0x1f))
        .unwrap_or(bytes.len())
}

/// The index of the first `"`, `\` or control character in 8 bytes.
fn first_special(chunk: &[u8; 8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let word = u64::from_le_bytes(*chunk);
    // The bit tricks for "a byte is zero" and "a byte is below n": a borrow only runs upwards
    // from a byte that matches, so the lowest flagged byte is the first match.
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let flags = ((quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (word.wrapping_sub(ONES * 0x20) & !word))
        & HIGH;
    (flags != 0).then(|| flags.trailing_zeros() as usize / 8)
}

/// `s` as a JSON string, escaped as serde_json escapes it: the two-character forms for
/// `\b \t \n \f \r " \`, `\u00xx` for the other control characters, all else as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut rest = s.as_bytes();
    loop {
        let plain = plain_len(rest);
        out.extend_from_slice(&rest[..plain]);
        let Some((&byte, tail)) = rest[plain..].split_first() else {
            break;
        };
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
        rest = tail;
    }
    out.push(b'"');
}

struct Writer<'b> {
    out: &'b mut Vec<u8>,
}

impl<'b> Writer<'b> {
    fn number(&mut self, value: impl Serialize) -> Result<(), Error> {
        serde_json::to_writer(&mut *self.out, &value).map_err(|e| Error(e.to_string()))
    }

    /// `{"variant":` before the content of an enum variant with data.
    fn variant(&mut self, variant: &str) {
        self.out.push(b'{');
        string(self.out, variant);
        self.out.push(b':');
    }

    fn compound<'s>(&'s mut self, open: u8, close: &'static [u8]) -> Compound<'s, 'b> {
        self.out.push(open);
        Compound {
            writer: self,
            first: true,
            close,
        }
    }
}

impl<'s, 'b> ser::Serializer for &'s mut Writer<'b> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'b>;
    type SerializeTuple = Compound<'s, 'b>;
    type SerializeTupleStruct = Compound<'s, 'b>;
    type SerializeTupleVariant = Compound<'s, 'b>;
    type SerializeMap = Compound<'s, 'b>;
    type SerializeStruct = Compound<'s, 'b>;
    type SerializeStructVariant = Compound<'s, 'b>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.number(v)
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        string(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        use ser::SerializeSeq as _;
        let mut seq = self.compound(b'[', b"]");
        for byte in v {
            seq.serialize_element(byte)?;
        }
        seq.end()
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant(variant);
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'[', b"]"))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'[', b"]"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'[', b"]"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'b>, Error> {
        self.variant(variant);
        Ok(self.compound(b'[', b"]}"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'{', b"}"))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'s, 'b>, Error> {
        Ok(self.compound(b'{', b"}"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'b>, Error> {
        self.variant(variant);
        Ok(self.compound(b'{', b"}}"))
    }
}

/// An array or object being written: a comma before every element but the first.
struct Compound<'s, 'b> {
    writer: &'s mut Writer<'b>,
    first: bool,
    close: &'static [u8],
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.writer.out.push(b',');
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.writer)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.comma();
        string(self.writer.out, key);
        self.writer.out.push(b':');
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), Error> {
        self.writer.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let at = self.writer.out.len() + usize::from(!self.first);
        self.element(key)?;
        // JSON object keys are strings; serde_json would quote a number, we need neither.
        if self.writer.out.get(at) != Some(&b'"') {
            return Err(Error("a map key that is not a string".into()));
        }
        self.writer.out.push(b':');
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;

    fn ours<T: Serialize + ?Sized>(value: &T) -> String {
        let mut out = Vec::new();
        write(&mut out, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "a", "bcdefgh", "\"", "\\", "\n", "\t", "\r", "\u{8}", "\u{c}", "\u{0}", "\u{1f}",
            "\u{7f}", "é", "\u{2028}", "😀", "/", " ", "12345678",
        ];
        for _ in 0..5000 {
            let len = (random() % 40) as usize;
            let s: String = (0..len)
                .map(|_| pieces[(random() % pieces.len() as u64) as usize])
                .collect();
            assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
            let plain = plain_len(s.as_bytes());
            assert!(s.as_bytes()[..plain]
                .iter()
                .all(|b| !matches!(b, b'"' | b'\\' | 0..=0x1f)));
            assert!(s
                .as_bytes()
                .get(plain)
                .is_none_or(|b| matches!(b, b'"' | b'\\' | 0..=0x1f)));
        }
        for byte in 0..=0x7fu8 {
            let s = char::from(byte).to_string();
            assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{byte:#x}");
        }
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i64, f64),
        Struct { a: Option<bool>, b: char },
    }

    #[derive(Serialize)]
    struct Everything<'a> {
        #[serde(rename = "_odd \"key\"")]
        odd: (),
        numbers: (i8, u16, i32, u64, i128, u128, f32, f64, f64, f64),
        text: &'a str,
        bytes: &'a [u8],
        shapes: Vec<Shape>,
        map: BTreeMap<&'a str, Vec<Option<u8>>>,
        empty: (Vec<u8>, BTreeMap<String, u8>),
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_json_writes_it() {
        let mut map = BTreeMap::new();
        map.insert("k\"1", vec![Some(1), None]);
        map.insert("", vec![]);
        let value = Everything {
            odd: (),
            numbers: (
                -8,
                16,
                -32,
                u64::MAX,
                i128::MIN,
                u128::MAX,
                1.5,
                12.0,
                f64::NAN,
                -0.000_123,
            ),
            text: "line\nbreak",
            bytes: &[0, 255],
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-1, 1e300),
                Shape::Struct {
                    a: Some(true),
                    b: '"',
                },
            ],
            map,
            empty: (Vec::new(), BTreeMap::new()),
        };
        assert_eq!(ours(&value), serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn a_map_key_that_is_not_a_string_is_an_error() {
        let mut map = BTreeMap::new();
        map.insert(1, 2);
        assert!(write(&mut Vec::new(), &map).is_err());
    }
}
