//! Streaming reader of a sessions archive, one session at a time.
//!
//! The archive goes through a fixed buffer. Each chunk is first validated by
//! [`Scanner`], the same check a reset runs, and then walked by [`Walker`],
//! which keeps only the current session's key and the few fields that
//! `history show` and `history search` print. Memory does not grow with the
//! archive or with the size of one session, apart from the captured values,
//! which are capped at [`MAX_VALUE_BYTES`] each.
//!
//! `status` and `reset` also use the walker on the active sessions file and
//! on an archive, to find sessions that a reset archived and that came back
//! (see `resurrection`). They can ask it for the SHA-256 of each session's
//! text.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::scan::{ScanError, Scanner, Summary};

/// Size of the read buffer.
const CHUNK: usize = 1024 * 1024;

/// Maximum number of encoded bytes kept of an entry key or a field value.
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Maximum length of a session member name that can be one of [`FIELD_NAMES`].
const MAX_FIELD_NAME_BYTES: usize = 32;

/// Session members read by the walker, in the order of [`Session`]'s fields.
const FIELD_NAMES: [&[u8]; 8] = [
    b"session_id",
    b"order_number",
    b"invoice_id",
    b"status",
    b"user_id",
    b"last_modified_by",
    b"started_at",
    b"last_modified_at",
];

/// The fields of one session that `history show` and `history search` print.
///
/// Each field is the decoded text of a string member, or the text of a number
/// member as written in the file (an order number stored as a number still
/// matches a search). It is `None` when the member is missing, `null`, another
/// kind of value, or longer than [`MAX_VALUE_BYTES`] encoded bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// The session's key in the archive object, decoded. A key longer than
    /// [`MAX_VALUE_BYTES`] encoded bytes is cut there and ends with `…`.
    pub key: String,
    pub session_id: Option<String>,
    pub order_number: Option<String>,
    pub invoice_id: Option<String>,
    pub status: Option<String>,
    pub user_id: Option<String>,
    pub last_modified_by: Option<String>,
    pub started_at: Option<String>,
    pub last_modified_at: Option<String>,
    /// SHA-256 of the session's JSON text as stored, from its `{` to its
    /// `}`; `None` unless the walker was built with [`Walker::hashing_sessions`].
    pub content_sha256: Option<[u8; 32]>,
}

impl Session {
    fn from_fields(key: String, fields: [Option<String>; 8]) -> Session {
        let [
            session_id,
            order_number,
            invoice_id,
            status,
            user_id,
            last_modified_by,
            started_at,
            last_modified_at,
        ] = fields;
        Session {
            key,
            session_id,
            order_number,
            invoice_id,
            status,
            user_id,
            last_modified_by,
            started_at,
            last_modified_at,
            content_sha256: None,
        }
    }
}

/// Failure to read a sessions archive.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// The archive is not valid JSON, is empty, or is not an object of objects.
    Invalid(ScanError),
}

/// Reads every session of an archive in file order, calling `on_session` for
/// each, and returns the counts of the whole file.
///
/// A session key that appears twice is passed to `on_session` twice, because
/// Python's `json.load` keeps the last value at the position of the first, so
/// only the caller can place it. Sessions passed before a
/// [`ReadError::Invalid`] come from an archive that Python cannot load.
pub fn read_sessions(
    input: &mut impl Read,
    mut on_session: impl FnMut(Session),
) -> Result<Summary, ReadError> {
    let mut buffer = vec![0u8; CHUNK];
    let mut scanner = Scanner::new();
    let mut walker = Walker::new();
    loop {
        let count = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(ReadError::Io(error)),
        };
        let chunk = &buffer[..count];
        scanner.feed(chunk).map_err(ReadError::Invalid)?;
        walker.walk(chunk, &mut on_session);
    }
    scanner.finish().map_err(ReadError::Invalid)
}

/// Destination of the bytes of the string being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Skip,
    EntryKey,
    MemberKey,
    /// The value of the field at this index of [`FIELD_NAMES`].
    Field(usize),
}

/// Walker over JSON text that the scanner has already accepted, which picks
/// out each top-level member and the fields of [`FIELD_NAMES`] in it.
///
/// It relies on the input being valid JSON up to the current chunk, but does
/// not panic on other input (a property test feeds it random bytes). Input
/// that is valid JSON but not an object of objects produces no sessions for
/// the parts in the wrong shape.
pub struct Walker {
    /// Number of open objects and arrays: 1 inside the top-level object, 2
    /// inside a session.
    depth: usize,
    top_is_object: bool,
    /// Whether the container at depth 2 is a session object.
    in_session: bool,
    /// Whether the last token was a `:`, so that the next token starts a value.
    after_colon: bool,
    in_string: bool,
    /// Whether the previous string byte was a backslash that starts an escape.
    escaped: bool,
    target: Target,
    /// Field whose number or literal value is being read.
    scalar_field: Option<usize>,
    /// Encoded bytes of the key or value being read.
    captured: Vec<u8>,
    /// Whether `captured` was cut at its length limit.
    overflow: bool,
    key: String,
    /// Index in [`FIELD_NAMES`] of the current session member's name.
    member_field: Option<usize>,
    fields: [Option<String>; 8],
    /// Whether each session's text is hashed.
    hash_sessions: bool,
    /// Hash of the text of the session being read, while one is open.
    session_hasher: Option<Sha256>,
}

impl Walker {
    pub fn new() -> Walker {
        Walker {
            depth: 0,
            top_is_object: false,
            in_session: false,
            after_colon: false,
            in_string: false,
            escaped: false,
            target: Target::Skip,
            scalar_field: None,
            captured: Vec::new(),
            overflow: false,
            key: String::new(),
            member_field: None,
            fields: Default::default(),
            hash_sessions: false,
            session_hasher: None,
        }
    }

    /// Returns a walker that also sets [`Session::content_sha256`].
    pub fn hashing_sessions() -> Walker {
        Walker {
            hash_sessions: true,
            ..Walker::new()
        }
    }

    /// Walks the next chunk of the file and calls `on_session` for each
    /// session that ends in it.
    pub fn walk(&mut self, chunk: &[u8], on_session: &mut impl FnMut(Session)) {
        // Start in this chunk of the session text not hashed yet. A session
        // that began in an earlier chunk continues at 0.
        let mut hash_from = 0;
        let mut i = 0;
        while i < chunk.len() {
            if self.in_string {
                i = self.walk_string(chunk, i);
                continue;
            }
            if self.scalar_field.is_some() {
                i = self.walk_scalar(chunk, i);
                continue;
            }
            // Below a session's members only strings and brackets matter, and
            // above it whitespace does not.
            let skipped = if self.depth > 2 {
                &SKIPPED_BELOW_SESSION
            } else {
                &SKIPPED_ABOVE_SESSION
            };
            while i < chunk.len() && skipped[usize::from(chunk[i])] {
                i += 1;
            }
            let Some(&b) = chunk.get(i) else {
                break;
            };
            i += 1;
            match b {
                b'"' => self.begin_string(),
                b'{' | b'[' => {
                    self.open(b == b'{');
                    if self.hash_sessions && self.depth == 2 && self.in_session {
                        self.session_hasher = Some(Sha256::new());
                        hash_from = i - 1;
                    }
                }
                b'}' | b']' => {
                    if self.depth == 2
                        && let Some(hasher) = &mut self.session_hasher
                    {
                        hasher.update(&chunk[hash_from..i]);
                    }
                    self.close(on_session);
                }
                b':' => self.after_colon = true,
                b',' | b' ' | b'\n' | b'\r' | b'\t' => {}
                _ => self.begin_scalar(b),
            }
        }
        if let Some(hasher) = &mut self.session_hasher {
            hasher.update(&chunk[hash_from.min(chunk.len())..]);
        }
    }

    /// Advances through string content from `i` and returns the next index.
    fn walk_string(&mut self, chunk: &[u8], i: usize) -> usize {
        if self.escaped {
            self.escaped = false;
            self.capture(&chunk[i..=i]);
            return i + 1;
        }
        let rest = &chunk[i..];
        let Some(end) = find_quote_or_backslash(rest) else {
            self.capture(rest);
            return chunk.len();
        };
        self.capture(&rest[..end]);
        if rest[end] == b'\\' {
            self.capture(b"\\");
            self.escaped = true;
        } else {
            self.end_string();
        }
        i + end + 1
    }

    /// Advances through a number or literal from `i` and returns the index of
    /// the byte that ends it, or the chunk length.
    fn walk_scalar(&mut self, chunk: &[u8], i: usize) -> usize {
        let rest = &chunk[i..];
        let end = rest
            .iter()
            .position(|&b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
            .unwrap_or(rest.len());
        self.capture(&rest[..end]);
        if end < rest.len() {
            self.end_scalar();
        }
        i + end
    }

    fn capture(&mut self, bytes: &[u8]) {
        if self.target == Target::Skip && self.scalar_field.is_none() {
            return;
        }
        let limit = if self.target == Target::MemberKey {
            MAX_FIELD_NAME_BYTES
        } else {
            MAX_VALUE_BYTES
        };
        let room = limit.saturating_sub(self.captured.len());
        if bytes.len() > room {
            self.overflow = true;
        }
        self.captured
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    /// Returns whether a value starting now is a member value of a session.
    fn is_session_member_value(&self) -> bool {
        self.depth == 2 && self.in_session && self.after_colon
    }

    fn begin_string(&mut self) {
        self.target = if self.is_session_member_value() {
            self.member_field.map_or(Target::Skip, Target::Field)
        } else if self.after_colon {
            Target::Skip
        } else if self.depth == 1 && self.top_is_object {
            Target::EntryKey
        } else if self.depth == 2 && self.in_session {
            Target::MemberKey
        } else {
            Target::Skip
        };
        self.after_colon = false;
        self.in_string = true;
        self.captured.clear();
        self.overflow = false;
    }

    fn end_string(&mut self) {
        self.in_string = false;
        match self.target {
            Target::Skip => {}
            Target::EntryKey => {
                self.key = decode_string(&self.captured);
                if self.overflow {
                    self.key.push('…');
                }
            }
            Target::MemberKey => {
                self.member_field = if self.overflow {
                    None
                } else {
                    field_index(&self.captured)
                };
            }
            Target::Field(index) => {
                self.fields[index] = (!self.overflow).then(|| decode_string(&self.captured));
            }
        }
        self.target = Target::Skip;
    }

    /// Starts a number or a literal whose first byte is `first`.
    fn begin_scalar(&mut self, first: u8) {
        // Later bytes of the same number or literal also come here, with
        // `after_colon` already cleared by the first.
        if self.is_session_member_value()
            && let Some(index) = self.member_field
        {
            self.scalar_field = Some(index);
            self.captured.clear();
            self.captured.push(first);
            self.overflow = false;
        }
        self.after_colon = false;
    }

    fn end_scalar(&mut self) {
        let Some(index) = self.scalar_field.take() else {
            return;
        };
        let is_number = match self.captured.as_slice() {
            [b'-', second, ..] => second.is_ascii_digit(),
            [first, ..] => first.is_ascii_digit(),
            [] => false,
        };
        self.fields[index] = (is_number && !self.overflow)
            .then(|| String::from_utf8_lossy(&self.captured).into_owned());
    }

    fn open(&mut self, is_object: bool) {
        if self.is_session_member_value()
            && let Some(index) = self.member_field
        {
            self.fields[index] = None;
        }
        match self.depth {
            0 => self.top_is_object = is_object,
            1 => {
                self.in_session = is_object && self.top_is_object && self.after_colon;
                self.member_field = None;
                self.fields = Default::default();
            }
            _ => {}
        }
        self.after_colon = false;
        self.depth += 1;
    }

    fn close(&mut self, on_session: &mut impl FnMut(Session)) {
        // A number that ends at the closing bracket, as in `{"a": 1}`.
        self.end_scalar();
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 1 && self.in_session {
            self.in_session = false;
            let fields = std::mem::take(&mut self.fields);
            let mut session = Session::from_fields(std::mem::take(&mut self.key), fields);
            session.content_sha256 = self
                .session_hasher
                .take()
                .map(|hasher| hasher.finalize().into());
            on_session(session);
        }
    }
}

/// Bytes that the walker skips inside a value nested in a session: all but
/// the quote and the brackets.
const SKIPPED_BELOW_SESSION: [bool; 256] = {
    let mut table = [true; 256];
    let mut i = 0;
    let tokens = *b"\"{}[]";
    while i < tokens.len() {
        table[tokens[i] as usize] = false;
        i += 1;
    }
    table
};

/// Bytes that the walker skips at the top level and in a session: JSON
/// whitespace.
const SKIPPED_ABOVE_SESSION: [bool; 256] = {
    let mut table = [false; 256];
    table[b' ' as usize] = true;
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    table[b'\t' as usize] = true;
    table
};

/// Returns the index of the first `"` or `\` in `bytes`, testing eight bytes
/// at a time.
fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = bytes[i..].first_chunk::<8>() {
        let word = u64::from_le_bytes(*word);
        let quotes = word ^ (ONES * u64::from(b'"'));
        let backslashes = word ^ (ONES * u64::from(b'\\'));
        // The lowest high bit set marks the first zero byte of either value
        // exactly; higher bits may be false positives, and are not used.
        let zero_bytes =
            (quotes.wrapping_sub(ONES) & !quotes) | (backslashes.wrapping_sub(ONES) & !backslashes);
        let zero_bytes = zero_bytes & HIGH_BITS;
        if zero_bytes != 0 {
            return Some(i + zero_bytes.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|offset| i + offset)
}

/// Returns the index in [`FIELD_NAMES`] of an encoded member name.
fn field_index(encoded: &[u8]) -> Option<usize> {
    let decoded;
    let name = if encoded.contains(&b'\\') {
        decoded = decode_string(encoded);
        decoded.as_bytes()
    } else {
        encoded
    };
    FIELD_NAMES.iter().position(|field| *field == name)
}

/// Decodes the content of a JSON string, between its quotes.
///
/// Escapes are decoded as Python's `json` module decodes them, a surrogate
/// pair into one character. A lone surrogate, which Python keeps but UTF-8
/// cannot encode, becomes U+FFFD, and so do bytes that are not UTF-8, which
/// only a value cut at its length limit can contain.
pub fn decode_string(encoded: &[u8]) -> String {
    if !encoded.contains(&b'\\') {
        return String::from_utf8_lossy(encoded).into_owned();
    }
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let b = encoded[i];
        if b != b'\\' {
            decoded.push(b);
            i += 1;
            continue;
        }
        let Some(&kind) = encoded.get(i + 1) else {
            break;
        };
        i += 2;
        let simple = match kind {
            b'b' => Some(0x08),
            b'f' => Some(0x0C),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            other => Some(other),
        };
        if let Some(byte) = simple {
            decoded.push(byte);
            continue;
        }
        let Some(unit) = hex_unit(encoded, i) else {
            decoded.extend_from_slice("\u{FFFD}".as_bytes());
            i = encoded.len();
            continue;
        };
        i += 4;
        let mut code_point = u32::from(unit);
        if (0xD800..0xDC00).contains(&unit)
            && encoded.get(i..i + 2) == Some(b"\\u")
            && let Some(low) = hex_unit(encoded, i + 2)
            && (0xDC00..0xE000).contains(&low)
        {
            code_point = 0x10000 + ((code_point - 0xD800) << 10) + (u32::from(low) - 0xDC00);
            i += 6;
        }
        let character = char::from_u32(code_point).unwrap_or('\u{FFFD}');
        let mut buffer = [0; 4];
        decoded.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Parses the four hex digits of a `\u` escape at `at`.
fn hex_unit(encoded: &[u8], at: usize) -> Option<u16> {
    let digits = encoded.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u16::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions_of(text: &[u8], chunk: usize) -> Result<Vec<Session>, ReadError> {
        let mut sessions = Vec::new();
        let mut scanner = Scanner::new();
        let mut walker = Walker::new();
        for piece in text.chunks(chunk) {
            scanner.feed(piece).map_err(ReadError::Invalid)?;
            walker.walk(piece, &mut |session| sessions.push(session));
        }
        scanner.finish().map_err(ReadError::Invalid)?;
        Ok(sessions)
    }

    fn text(value: &str) -> Option<String> {
        Some(value.to_string())
    }

    #[test]
    fn fields_in_every_chunk_size() {
        let input = br#"{
  "k\u00e9y": {
    "session_id": "s1",
    "order_number": 3000500101,
    "invoice_id": "inv \"1\" \ud83d\ude00",
    "items_expected": [{"status": "nested", "session_id": "no"}],
    "status": "draft",
    "user_id": null,
    "last_modified_by": "admin",
    "started_at": "2026-03-02T08:14:03.120311",
    "last_modified_at": NaN,
    "audit_logs": {"order_number": "no"}
  },
  "b": {"status": "approved", "status": -Infinity, "invoice_id": -12.5e3}
}"#;
        let expected = vec![
            Session {
                key: "kéy".to_string(),
                session_id: text("s1"),
                order_number: text("3000500101"),
                invoice_id: text("inv \"1\" \u{1F600}"),
                status: text("draft"),
                user_id: None,
                last_modified_by: text("admin"),
                started_at: text("2026-03-02T08:14:03.120311"),
                last_modified_at: None,
                content_sha256: None,
            },
            Session {
                key: "b".to_string(),
                invoice_id: text("-12.5e3"),
                ..Session::default()
            },
        ];
        for chunk in [1, 2, 3, 7, 64, input.len()] {
            let sessions = sessions_of(input, chunk).unwrap();
            assert_eq!(sessions, expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn last_duplicate_member_wins() {
        let input = br#"{"a": {"status": "draft", "status": {"x": 1}, "order_number": "1", "order_number": "2"}}"#;
        let sessions = sessions_of(input, 5).unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].status, None);
        assert_eq!(sessions[0].order_number, text("2"));
    }

    #[test]
    fn wrong_shape_is_an_error() {
        for input in [
            &b"[{\"a\": 1}]"[..],
            b"{\"a\": 1, \"b\": {}}",
            b"{\"a\": [{}]}",
        ] {
            let error = sessions_of(input, 4).unwrap_err();
            assert!(matches!(error, ReadError::Invalid(_)), "{input:?}");
        }
    }

    #[test]
    fn syntax_error_has_a_position() {
        let input = b"{\n  \"a\": {\"status\": \"draft\"},\n  \"b\": {\"status\": }\n}";
        let Err(ReadError::Invalid(error)) = sessions_of(input, 8) else {
            panic!("expected an invalid archive");
        };
        assert_eq!((error.line, error.column), (3, 19));
    }

    #[test]
    fn long_values_are_dropped_and_long_keys_cut() {
        let long = "9".repeat(MAX_VALUE_BYTES + 1);
        let input = format!(r#"{{"{long}": {{"order_number": "{long}", "invoice_id": {long}}}}}"#);
        let sessions = sessions_of(input.as_bytes(), CHUNK).unwrap();
        assert_eq!(sessions[0].order_number, None);
        assert_eq!(sessions[0].invoice_id, None);
        assert_eq!(sessions[0].key.chars().count(), MAX_VALUE_BYTES + 1);
        assert!(sessions[0].key.ends_with('…'));
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(decode_string(br"plain"), "plain");
        assert_eq!(decode_string(br#"a\"b\\c\/d\n"#), "a\"b\\c/d\n");
        assert_eq!(decode_string(br"\u00e9\u00E9"), "éé");
        assert_eq!(decode_string(br"\ud83d\ude00"), "\u{1F600}");
        assert_eq!(decode_string(br"\ud83dx"), "\u{FFFD}x");
        assert_eq!(decode_string(br"\ude00"), "\u{FFFD}");
        assert_eq!(decode_string(br"\u00"), "\u{FFFD}");
    }

    proptest::proptest! {
        #[test]
        fn walker_never_panics(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"{}[]:,\" \n\\0123456789.eE+-tfnuNIs".to_vec()),
                    proptest::prelude::any::<u8>(),
                ],
                0..200,
            ),
            chunk in 1usize..50,
        ) {
            let mut walker = Walker::new();
            for piece in bytes.chunks(chunk) {
                walker.walk(piece, &mut |_| {});
            }
        }
    }

    #[test]
    fn session_hash_covers_exact_text() {
        let first = "{\n    \"status\": \"draft\",\n    \"items\": [{\"sku\": \"}\"}]\n  }";
        let second = "{}";
        let input = format!("{{\n  \"a\": {first},\n  \"b\": {second}\n}}");
        let expected: Vec<[u8; 32]> = [first, second]
            .iter()
            .map(|text| Sha256::digest(text.as_bytes()).into())
            .collect();
        for chunk in [1, 2, 5, 16, input.len()] {
            let mut walker = Walker::hashing_sessions();
            let mut hashes = Vec::new();
            for piece in input.as_bytes().chunks(chunk) {
                walker.walk(piece, &mut |session| hashes.push(session.content_sha256));
            }
            let hashes: Vec<[u8; 32]> = hashes.into_iter().map(Option::unwrap).collect();
            assert_eq!(hashes, expected, "chunk size {chunk}");
        }
    }

    #[test]
    fn plain_walker_hashes_nothing() {
        let sessions = sessions_of(br#"{"a": {"status": "draft"}}"#, 3).unwrap();
        assert_eq!(sessions[0].content_sha256, None);
    }

    #[test]
    fn escaped_member_names_match() {
        let input = br#"{"a": {"st\u0061tus": "draft"}}"#;
        let sessions = sessions_of(input, 3).unwrap();
        assert_eq!(sessions[0].status, text("draft"));
    }
}
