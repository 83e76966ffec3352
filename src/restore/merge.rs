//! Merging an archive into a non-empty active file: the archived entries
//! whose keys are absent from the active file are added after the active
//! ones, and the active version of a key present in both is kept.
//!
//! The output has the layout of Python's `json.dump(data, f, indent=2)`
//! with its default `ensure_ascii=True`: `{`, each member on its own line
//! indented by two spaces, `,` between members, `": "` after each key, and
//! `\n}` at the end. Keys are written with Python's escapes. Each value is
//! copied with its exact bytes from the file it came from, so no number or
//! string inside a session is reformatted. A session that the backend wrote
//! at this depth already has the layout `json.dump` gives it.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::journal::hex;
use crate::restore::members::Members;
use crate::scan::{Scanner, Summary};

/// The outcome of a merge.
#[derive(Debug)]
pub struct Merged {
    /// Distinct keys added from the archive.
    pub added: u64,
    /// Keys present in both files, in archive order; the active version was kept.
    pub conflicts: Vec<String>,
    /// Byte count and SHA-256 of the active file as it was read.
    pub active: (u64, String),
    /// Byte count and SHA-256 of the archive as it was read.
    pub archive: (u64, String),
    /// Counts of the merged document, from scanning the output as it was written.
    pub summary: Summary,
    /// Byte count and SHA-256 of the merged document.
    pub output: (u64, String),
}

/// Writes the merge of `active` and `archive` to `output`.
///
/// Memory grows with the number of distinct keys in the active file, which
/// are kept to recognise conflicts, but not with the size of a value. A
/// structural error in either input is returned as
/// [`io::ErrorKind::InvalidData`].
pub fn merge(active: impl Read, archive: impl Read, output: impl Write) -> io::Result<Merged> {
    let mut writer = ObjectWriter::new(output);

    let mut active_keys: HashSet<Vec<u16>> = HashSet::new();
    let mut members = Members::new(active);
    while let Some(raw_key) = members.next_key()? {
        let key = decode_key(&raw_key)?;
        writer.begin_member(&key)?;
        members.copy_value(&mut writer.output)?;
        active_keys.insert(key);
    }
    let active_read = members.finish()?;

    let mut added: HashSet<Vec<u16>> = HashSet::new();
    let mut conflicting: HashSet<Vec<u16>> = HashSet::new();
    let mut conflicts = Vec::new();
    let mut members = Members::new(archive);
    while let Some(raw_key) = members.next_key()? {
        let key = decode_key(&raw_key)?;
        if active_keys.contains(&key) {
            members.copy_value(&mut io::sink())?;
            if conflicting.insert(key.clone()) {
                conflicts.push(String::from_utf16_lossy(&key));
            }
            continue;
        }
        // A key repeated in the archive is written each time, so that
        // Python's json.load keeps its last value, as it did reading the
        // archive.
        writer.begin_member(&key)?;
        members.copy_value(&mut writer.output)?;
        added.insert(key);
    }
    let archive_read = members.finish()?;

    let (summary, output) = writer.finish()?;
    Ok(Merged {
        added: added.len() as u64,
        conflicts,
        active: active_read,
        archive: archive_read,
        summary,
        output,
    })
}

/// Writer of the top-level object in `json.dump(indent=2)` layout.
struct ObjectWriter<W> {
    output: CheckedWriter<W>,
    members: u64,
}

impl<W: Write> ObjectWriter<W> {
    fn new(output: W) -> ObjectWriter<W> {
        ObjectWriter {
            output: CheckedWriter::new(output),
            members: 0,
        }
    }

    /// Writes what comes before a member's value: the separator and the key.
    fn begin_member(&mut self, key: &[u16]) -> io::Result<()> {
        let separator: &[u8] = if self.members == 0 {
            b"{\n  "
        } else {
            b",\n  "
        };
        self.output.write_all(separator)?;
        self.output.write_all(&encode_key(key))?;
        self.output.write_all(b": ")?;
        self.members += 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<(Summary, (u64, String))> {
        let end: &[u8] = if self.members == 0 { b"{}" } else { b"\n}" };
        self.output.write_all(end)?;
        self.output.finish()
    }
}

/// Passes bytes through to the output while hashing and scanning them, so
/// that a merge that would write anything but a valid object of objects
/// fails instead of reaching the active file.
struct CheckedWriter<W> {
    inner: W,
    scanner: Scanner,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> CheckedWriter<W> {
    fn new(inner: W) -> CheckedWriter<W> {
        CheckedWriter {
            inner,
            scanner: Scanner::new(),
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(mut self) -> io::Result<(Summary, (u64, String))> {
        self.inner.flush()?;
        let summary = self.scanner.finish().map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the merged document is not valid: {error}"),
            )
        })?;
        Ok((summary, (self.bytes, hex(&self.hasher.finalize()))))
    }
}

impl<W: Write> Write for CheckedWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let count = self.inner.write(bytes)?;
        let written = &bytes[..count];
        self.scanner.feed(written).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the merged document is not valid: {error}"),
            )
        })?;
        self.hasher.update(written);
        self.bytes += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decodes a JSON string, quotes included, into UTF-16 code units.
///
/// Python's `json` module keeps a lone surrogate from a `\u` escape in the
/// string, which Rust's `String` cannot represent. Code units compare the way
/// Python compares the decoded keys, lone surrogates included, and an
/// escaped surrogate pair equals the character it encodes.
fn decode_key(raw: &[u8]) -> io::Result<Vec<u16>> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid member key {}", String::from_utf8_lossy(raw)),
        )
    };
    let inner = raw
        .strip_prefix(b"\"")
        .and_then(|rest| rest.strip_suffix(b"\""))
        .ok_or_else(invalid)?;
    let text = std::str::from_utf8(inner).map_err(|_| invalid())?;
    let mut units = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buffer = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buffer));
            continue;
        }
        let unit = match chars.next().ok_or_else(invalid)? {
            '"' => 0x22,
            '\\' => 0x5c,
            '/' => 0x2f,
            'b' => 0x08,
            'f' => 0x0c,
            'n' => 0x0a,
            'r' => 0x0d,
            't' => 0x09,
            'u' => {
                let digits: String = chars.by_ref().take(4).collect();
                if digits.len() != 4 {
                    return Err(invalid());
                }
                u16::from_str_radix(&digits, 16).map_err(|_| invalid())?
            }
            _ => return Err(invalid()),
        };
        units.push(unit);
    }
    Ok(units)
}

/// Encodes a key as Python's `json.dumps(key)` does with `ensure_ascii=True`.
/// Printable ASCII stays as it is, `"` and `\` are escaped, and control
/// characters get the usual short escapes. Every other code unit becomes `\u`
/// with four lowercase hex digits, so a character above U+FFFF becomes an
/// escaped surrogate pair.
fn encode_key(key: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    out.push(b'"');
    for &unit in key {
        match unit {
            0x22 => out.extend_from_slice(b"\\\""),
            0x5c => out.extend_from_slice(b"\\\\"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0d => out.extend_from_slice(b"\\r"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x20..=0x7e => out.push(unit as u8),
            _ => out.extend_from_slice(format!("\\u{unit:04x}").as_bytes()),
        }
    }
    out.push(b'"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge_text(active: &str, archive: &str) -> (String, Merged) {
        let mut output = Vec::new();
        let merged = merge(active.as_bytes(), archive.as_bytes(), &mut output).unwrap();
        (String::from_utf8(output).unwrap(), merged)
    }

    #[test]
    fn absent_keys_are_added_after_active_ones() {
        let active = "{\n  \"a\": {\n    \"n\": 1.0\n  },\n  \"b\": {}\n}";
        let archive = "{\n  \"b\": {\n    \"old\": true\n  },\n  \"c\": {\n    \"n\": 2.50\n  }\n}";
        let (text, merged) = merge_text(active, archive);
        assert_eq!(
            text,
            "{\n  \"a\": {\n    \"n\": 1.0\n  },\n  \"b\": {},\n  \"c\": {\n    \"n\": 2.50\n  }\n}"
        );
        assert_eq!(merged.added, 1);
        assert_eq!(merged.conflicts, vec!["b".to_string()]);
        assert_eq!(merged.summary.entries, 3);
        assert_eq!(merged.active.0, active.len() as u64);
        assert_eq!(merged.archive.0, archive.len() as u64);
        assert_eq!(merged.output.1, crate::journal::sha256_hex(text.as_bytes()));
    }

    #[test]
    fn layout_matches_python_for_compact_input() {
        let (text, _) = merge_text("{\"a\":{}}", "{ \"b\" : {\"x\":[1,2]} }");
        assert_eq!(text, "{\n  \"a\": {},\n  \"b\": {\"x\":[1,2]}\n}");
    }

    #[test]
    fn keys_compare_decoded() {
        let (text, merged) = merge_text("{\"\\u00e9\": {}}", "{\"é\": {}, \"\\u0041\": {}}");
        assert_eq!(merged.conflicts, vec!["é".to_string()]);
        assert_eq!(merged.added, 1);
        assert_eq!(text, "{\n  \"\\u00e9\": {},\n  \"A\": {}\n}");
    }

    #[test]
    fn keys_use_python_escapes() {
        let key = "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{7f}é\u{1F600}";
        let units: Vec<u16> = key.encode_utf16().collect();
        assert_eq!(
            String::from_utf8(encode_key(&units)).unwrap(),
            "\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u007f\\u00e9\\ud83d\\ude00\""
        );
    }

    #[test]
    fn lone_surrogates_round_trip() {
        let units = decode_key(b"\"\\ud800x\\uDC00\"").unwrap();
        assert_eq!(units, vec![0xd800, 0x78, 0xdc00]);
        assert_eq!(encode_key(&units), b"\"\\ud800x\\udc00\"");
    }

    #[test]
    fn escaped_pair_equals_the_character() {
        assert_eq!(
            decode_key(b"\"\\ud83d\\ude00\"").unwrap(),
            decode_key("\"\u{1F600}\"".as_bytes()).unwrap()
        );
    }

    #[test]
    fn repeated_archive_key_is_written_each_time() {
        let (text, merged) = merge_text("{\"a\": {}}", "{\"b\": {\"v\": 1}, \"b\": {\"v\": 2}}");
        assert_eq!(merged.added, 1);
        assert_eq!(
            text,
            "{\n  \"a\": {},\n  \"b\": {\"v\": 1},\n  \"b\": {\"v\": 2}\n}"
        );
    }

    #[test]
    fn merged_output_must_be_an_object_of_objects() {
        let error = merge(
            "{\"a\": {}}".as_bytes(),
            "{\"b\": 1}".as_bytes(),
            io::sink(),
        )
        .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
