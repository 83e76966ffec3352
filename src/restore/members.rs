//! Streaming reader of the top-level members of a JSON object, which hands
//! out each member's key and copies its value text unchanged.
//!
//! A merge must not reformat a session, because the backend's own bytes are
//! the record. This reader lets it copy each value's exact text to the output
//! or skip it, without parsing the value. Memory stays at one buffer and one
//! key, whatever the size of a value.
//!
//! The reader checks only the structure it needs to find member boundaries.
//! Callers validate the whole document with [`crate::scan::Scanner`] first,
//! and compare the SHA-256 that [`Members::finish`] returns with the one of
//! that pass, so that a file that changed in between is noticed.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::journal::hex;

/// Size of the read buffer.
const CHUNK: usize = 64 * 1024;

/// Reader of the members of one top-level JSON object.
pub struct Members<R> {
    input: R,
    buffer: Vec<u8>,
    position: usize,
    filled: usize,
    hasher: Sha256,
    bytes: u64,
    /// True after the opening `{` was read.
    started: bool,
    /// True after the closing `}` was read.
    ended: bool,
}

impl<R: Read> Members<R> {
    pub fn new(input: R) -> Members<R> {
        Members {
            input,
            buffer: vec![0; CHUNK],
            position: 0,
            filled: 0,
            hasher: Sha256::new(),
            bytes: 0,
            started: false,
            ended: false,
        }
    }

    /// Reads the next member's key and returns its raw text, quotes and
    /// escapes included, or `None` after the last member. The caller must
    /// then call [`Members::copy_value`] before asking for the next key.
    pub fn next_key(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.ended {
            return Ok(None);
        }
        let mut byte = self.next_non_space()?;
        if !self.started {
            if byte != b'{' {
                return Err(invalid(format!(
                    "expected '{{' at the start of the document, found {}",
                    describe(byte)
                )));
            }
            self.started = true;
            byte = self.next_non_space()?;
            if byte == b'}' {
                return self.end();
            }
        } else {
            match byte {
                b',' => byte = self.next_non_space()?,
                b'}' => return self.end(),
                _ => {
                    return Err(invalid(format!(
                        "expected ',' or '}}' after a member, found {}",
                        describe(byte)
                    )));
                }
            }
        }
        if byte != b'"' {
            return Err(invalid(format!(
                "expected a member key, found {}",
                describe(byte)
            )));
        }
        let mut key = vec![b'"'];
        self.copy_string_rest(&mut key)?;
        let colon = self.next_non_space()?;
        if colon != b':' {
            return Err(invalid(format!(
                "expected ':' after a member key, found {}",
                describe(colon)
            )));
        }
        Ok(Some(key))
    }

    /// Copies the text of the current member's value to `output`, from its
    /// first byte to its last, without the whitespace around it.
    pub fn copy_value(&mut self, output: &mut impl Write) -> io::Result<()> {
        let first = self.next_non_space()?;
        match first {
            b'{' | b'[' => self.copy_container(first, output),
            b'"' => {
                let mut text = vec![b'"'];
                self.copy_string_rest(&mut text)?;
                output.write_all(&text)
            }
            _ => self.copy_scalar(first, output),
        }
    }

    /// Reads the whitespace after the closing `}` up to the end of the input
    /// and returns the byte count and SHA-256 of everything read.
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        if !self.ended {
            return Err(invalid("the document ended before its closing '}'"));
        }
        while let Some(byte) = self.next_byte()? {
            if !is_space(byte) {
                return Err(invalid(format!(
                    "extra data after the top-level object: {}",
                    describe(byte)
                )));
            }
        }
        Ok((self.bytes, hex(&self.hasher.finalize())))
    }

    fn end(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.ended = true;
        Ok(None)
    }

    /// Copies an object or array whose opening byte `first` was read.
    /// Brackets inside strings are skipped by tracking string and escape
    /// state; the rest of the syntax was checked by the scanner.
    fn copy_container(&mut self, first: u8, output: &mut impl Write) -> io::Result<()> {
        let mut depth = 1usize;
        let mut in_string = false;
        let mut escaped = false;
        let mut pending = Vec::with_capacity(CHUNK);
        pending.push(first);
        while depth > 0 {
            let byte = self.expect_byte()?;
            pending.push(byte);
            if in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = false;
                }
            } else {
                match byte {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => depth -= 1,
                    _ => {}
                }
            }
            if pending.len() >= CHUNK {
                output.write_all(&pending)?;
                pending.clear();
            }
        }
        output.write_all(&pending)
    }

    /// Copies a number or a literal (`true`, `NaN`, ...) whose first byte was
    /// read, up to the byte that ends it, which stays unread.
    fn copy_scalar(&mut self, first: u8, output: &mut impl Write) -> io::Result<()> {
        let mut text = vec![first];
        loop {
            let byte = self.peek_byte()?.ok_or_else(|| {
                invalid("the document ended inside a value, before its closing '}'")
            })?;
            if is_space(byte) || matches!(byte, b',' | b'}' | b']') {
                break;
            }
            text.push(byte);
            self.position += 1;
        }
        output.write_all(&text)
    }

    /// Appends the rest of a string, after its opening quote, to `text`.
    fn copy_string_rest(&mut self, text: &mut Vec<u8>) -> io::Result<()> {
        let mut escaped = false;
        loop {
            let byte = self.expect_byte()?;
            text.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                return Ok(());
            }
        }
    }

    fn next_non_space(&mut self) -> io::Result<u8> {
        loop {
            let byte = self.expect_byte()?;
            if !is_space(byte) {
                return Ok(byte);
            }
        }
    }

    fn expect_byte(&mut self) -> io::Result<u8> {
        self.next_byte()?
            .ok_or_else(|| invalid("the document ended before its closing '}'"))
    }

    fn next_byte(&mut self) -> io::Result<Option<u8>> {
        let byte = self.peek_byte()?;
        if byte.is_some() {
            self.position += 1;
        }
        Ok(byte)
    }

    fn peek_byte(&mut self) -> io::Result<Option<u8>> {
        if self.position == self.filled && !self.refill()? {
            return Ok(None);
        }
        Ok(Some(self.buffer[self.position]))
    }

    /// Reads the next chunk and hashes it; returns false at the end of input.
    fn refill(&mut self) -> io::Result<bool> {
        loop {
            match self.input.read(&mut self.buffer) {
                Ok(0) => return Ok(false),
                Ok(count) => {
                    self.hasher.update(&self.buffer[..count]);
                    self.bytes += count as u64;
                    self.position = 0;
                    self.filled = count;
                    return Ok(true);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

/// JSON whitespace, as Python's `json` module accepts it.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn describe(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", byte as char)
    } else {
        format!("byte 0x{byte:02x}")
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns each member as (key text, value text), and the byte count.
    fn members(text: &[u8]) -> io::Result<(Vec<(String, String)>, u64)> {
        let mut reader = Members::new(text);
        let mut found = Vec::new();
        while let Some(key) = reader.next_key()? {
            let mut value = Vec::new();
            reader.copy_value(&mut value)?;
            found.push((
                String::from_utf8(key).unwrap(),
                String::from_utf8(value).unwrap(),
            ));
        }
        let (bytes, _) = reader.finish()?;
        Ok((found, bytes))
    }

    #[test]
    fn values_keep_their_exact_text() {
        let text = b"{\n  \"a\": {\n    \"x\": 1.0,\n    \"s\": \"}\\\"{[\"\n  },\n  \"b\\u00e9\" : [1, {\"y\": NaN}] ,\"c\":-Infinity,\"d\":\"v\",\"e\":true}\n";
        let (found, bytes) = members(text).unwrap();
        assert_eq!(bytes, text.len() as u64);
        let expected = [
            ("\"a\"", "{\n    \"x\": 1.0,\n    \"s\": \"}\\\"{[\"\n  }"),
            ("\"b\\u00e9\"", "[1, {\"y\": NaN}]"),
            ("\"c\"", "-Infinity"),
            ("\"d\"", "\"v\""),
            ("\"e\"", "true"),
        ];
        assert_eq!(found.len(), expected.len());
        for ((key, value), (expected_key, expected_value)) in found.iter().zip(expected) {
            assert_eq!(key, expected_key);
            assert_eq!(value, expected_value);
        }
    }

    #[test]
    fn empty_object_has_no_members() {
        let (found, bytes) = members(b" { } ").unwrap();
        assert!(found.is_empty());
        assert_eq!(bytes, 5);
    }

    #[test]
    fn hash_covers_every_byte() {
        let text = b"{\"a\": {}}\n";
        let mut reader = Members::new(&text[..]);
        while reader.next_key().unwrap().is_some() {
            reader.copy_value(&mut io::sink()).unwrap();
        }
        let (bytes, sha256) = reader.finish().unwrap();
        assert_eq!(bytes, text.len() as u64);
        assert_eq!(sha256, crate::journal::sha256_hex(text));
    }

    #[test]
    fn values_longer_than_the_buffer_are_copied_whole() {
        let long = "x".repeat(3 * CHUNK);
        let text = format!("{{\"a\": {{\"s\": \"{long}\"}}, \"b\": [\"{long}\"]}}");
        let (found, _) = members(text.as_bytes()).unwrap();
        assert_eq!(found[0].1, format!("{{\"s\": \"{long}\"}}"));
        assert_eq!(found[1].1, format!("[\"{long}\"]"));
    }

    #[test]
    fn broken_structure_is_an_error() {
        for text in [
            &b""[..],
            b"[]",
            b"{\"a\": {}",
            b"{\"a\" {}}",
            b"{\"a\": {}} x",
            b"{\"a\": {} \"b\": {}}",
            b"{1: {}}",
            b"{\"a\": 1",
        ] {
            let error = members(text).unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidData,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
