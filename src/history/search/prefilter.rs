//! A fast check of whether a file contains a search term as JSON text, so that
//! `history search` parses only the archives that can hold a match.
//!
//! The term is looked for as Python's `json.dump` writes it, both with
//! `ensure_ascii` (the default: non-ASCII characters as lowercase `\uXXXX`
//! escapes) and without it (UTF-8). Each 1 MiB buffer that is valid UTF-8 is
//! searched with `str::contains`. For needles of 2 to 32 bytes on x86_64, the
//! standard library's `core::str::pattern` runs an SSE2 filter on the first
//! and last byte, so a longer needle is looked for by its first 32 bytes
//! first.
//!
//! NOTE: a file that spells the term with other escapes, such as uppercase
//! hex digits or `\/`, is not found, although it is valid JSON for the same
//! text. Python's `json` module never writes those.

use std::io::{self, Read};

/// Size of the read buffer.
const CHUNK: usize = 1024 * 1024;

/// Length of the prefix of a longer needle that is searched first, because
/// `str::contains` uses its SIMD search only up to this length.
const PREFIX_BYTES: usize = 32;

/// The encoded forms of one search term.
#[derive(Debug)]
pub struct Needles {
    forms: Vec<String>,
    max_len: usize,
}

impl Needles {
    /// Builds the forms of a non-empty term.
    pub fn new(term: &str) -> Needles {
        let mut forms = vec![json_escape(term, false)];
        let ascii = json_escape(term, true);
        if ascii != forms[0] {
            forms.push(ascii);
        }
        let max_len = forms.iter().map(String::len).max().unwrap_or(0);
        Needles { forms, max_len }
    }

    /// Returns the encoded forms looked for.
    #[cfg(test)]
    pub fn forms(&self) -> &[String] {
        &self.forms
    }

    /// Reads `input` until a form of the term is found, and returns whether
    /// one was.
    pub fn found_in(&self, input: &mut impl Read) -> io::Result<bool> {
        // Bytes carried over to the next read: max_len - 1, up to 3 more to
        // start at a character boundary, and up to 3 of a character cut at
        // the end of the buffer.
        let max_carried = self.max_len.saturating_sub(1) + 6;
        let mut buffer = vec![0u8; CHUNK + max_carried];
        let mut carried = 0;
        loop {
            let count = match input.read(&mut buffer[carried..carried + CHUNK]) {
                Ok(0) => return Ok(false),
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            let filled = carried + count;
            let window = &buffer[..filled];
            let (found, searched) = self.search(window);
            if found {
                return Ok(true);
            }
            // Keep the bytes not searched yet and the last max_len - 1 bytes
            // searched, where a needle may begin that the next read completes,
            // starting at a character boundary.
            let mut start = searched.saturating_sub(self.max_len.saturating_sub(1));
            let lowest_start = start.saturating_sub(3);
            while start > lowest_start && start < filled && is_continuation_byte(window[start]) {
                start -= 1;
            }
            buffer.copy_within(start..filled, 0);
            carried = filled - start;
        }
    }

    /// Searches a buffer and returns whether a form was found and how many
    /// leading bytes were searched: a UTF-8 sequence cut at the end is left
    /// for the next buffer.
    fn search(&self, window: &[u8]) -> (bool, usize) {
        match std::str::from_utf8(window) {
            Ok(text) => (self.found_in_text(text), window.len()),
            Err(error) if error.error_len().is_none() => {
                let valid = error.valid_up_to();
                let text = std::str::from_utf8(&window[..valid]).unwrap_or_default();
                (self.found_in_text(text), valid)
            }
            // Not UTF-8: no valid archive has such bytes, but the check must
            // not miss a match in one, so it compares bytes instead.
            Err(_) => {
                let found = self
                    .forms
                    .iter()
                    .any(|form| contains_bytes(window, form.as_bytes()));
                (found, window.len())
            }
        }
    }

    fn found_in_text(&self, text: &str) -> bool {
        self.forms.iter().any(|form| {
            if form.len() <= PREFIX_BYTES {
                return text.contains(form.as_str());
            }
            let mut end = PREFIX_BYTES;
            while !form.is_char_boundary(end) {
                end -= 1;
            }
            text.contains(&form[..end]) && text.contains(form.as_str())
        })
    }
}

fn is_continuation_byte(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// Finds `needle` in bytes that are not UTF-8, by its first byte.
fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut start = 0;
    while let Some(offset) = haystack[start..].iter().position(|&b| b == first) {
        let at = start + offset;
        if haystack[at + 1..].starts_with(rest) {
            return true;
        }
        start = at + 1;
    }
    false
}

/// Encodes `text` as the content of a JSON string the way Python's
/// `json.dumps` does: `"`, `\` and control characters escaped, `\n`, `\r`,
/// `\t`, `\b` and `\f` by their short forms and the rest as lowercase
/// `\u00XX`. With `ensure_ascii`, every character outside printable ASCII is
/// escaped too, above U+FFFF as a surrogate pair.
pub fn json_escape(text: &str, ensure_ascii: bool) -> String {
    use std::fmt::Write as _;
    let mut encoded = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => encoded.push_str("\\\""),
            '\\' => encoded.push_str("\\\\"),
            '\n' => encoded.push_str("\\n"),
            '\r' => encoded.push_str("\\r"),
            '\t' => encoded.push_str("\\t"),
            '\u{08}' => encoded.push_str("\\b"),
            '\u{0C}' => encoded.push_str("\\f"),
            '\u{00}'..='\u{1F}' => {
                let _ = write!(encoded, "\\u{:04x}", u32::from(c));
            }
            ' '..='~' => encoded.push(c),
            _ if !ensure_ascii => encoded.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(encoded, "\\u{unit:04x}");
                }
            }
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_python() {
        // Expected values from Python 3: json.dumps(text)[1:-1] and
        // json.dumps(text, ensure_ascii=False)[1:-1].
        assert_eq!(json_escape("3000500101", true), "3000500101");
        assert_eq!(json_escape("a\"b\\c/d", true), "a\\\"b\\\\c/d");
        assert_eq!(json_escape("\n\u{1}\u{7f}", false), "\\n\\u0001\u{7f}");
        assert_eq!(json_escape("\u{7f}", true), "\\u007f");
        assert_eq!(json_escape("Crème", true), "Cr\\u00e8me");
        assert_eq!(json_escape("Crème", false), "Crème");
        assert_eq!(json_escape("\u{1F600}", true), "\\ud83d\\ude00");
    }

    #[test]
    fn needles_dedupe_ascii_terms() {
        assert_eq!(Needles::new("3000500101").forms(), ["3000500101"]);
        assert_eq!(Needles::new("Crème").forms(), ["Crème", "Cr\\u00e8me"]);
    }

    /// A reader that returns at most `step` bytes per call, so that needles
    /// straddle buffer boundaries.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            let count = self.step.min(buffer.len()).min(self.bytes.len());
            buffer[..count].copy_from_slice(&self.bytes[..count]);
            self.bytes = &self.bytes[count..];
            Ok(count)
        }
    }

    fn found(term: &str, text: &[u8], step: usize) -> bool {
        let mut reader = Trickle { bytes: text, step };
        Needles::new(term).found_in(&mut reader).unwrap()
    }

    #[test]
    fn finds_across_reads() {
        let uuid = "0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01";
        let mut text = vec![b' '; CHUNK - 10];
        text.extend_from_slice(format!("\"{uuid}\" é").as_bytes());
        for step in [1, 7, CHUNK - 1, CHUNK] {
            assert!(found(uuid, &text, step), "step {step}");
            assert!(found("é", &text, step), "step {step}");
            assert!(!found("0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a02", &text, step));
        }
    }

    #[test]
    fn finds_escaped_and_non_utf8() {
        assert!(found("Crème", b"{\"n\": \"Cr\\u00e8me\"}", 3));
        assert!(found("Crème", "{\"n\": \"Crème\"}".as_bytes(), 3));
        assert!(!found("Crème", b"{\"n\": \"Cr\\u00E8me\"}", 3));
        assert!(found("abc", b"\xff\xfeabc", 100));
        assert!(!found("abd", b"\xff\xfeabc", 100));
    }

    #[test]
    fn finds_after_continuation_bytes() {
        // Not UTF-8: a run of continuation bytes longer than any character.
        let mut text = vec![0x80; 3 * CHUNK];
        text.extend_from_slice(b"3000500101");
        for step in [CHUNK - 5, CHUNK] {
            assert!(found("3000500101", &text, step), "step {step}");
            assert!(!found("3000500102", &text, step), "step {step}");
        }
    }
}
