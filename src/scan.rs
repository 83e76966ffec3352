//! Streaming validation of the backend's JSON data files.
//!
//! [`Scanner`] owns the check that runs while the archive step copies `scan_sessions.json` or
//! `takeover_requests.json`, and is fed the same chunks that are written out. It validates them
//! as JSON the way Python 3.11's `json.load` reads it, including `NaN`, `Infinity` and
//! `-Infinity`. It also checks that the document is an object of entry objects keyed by id, and
//! counts the entries by their `"status"` member.
//!
//! The scanner is an explicit state machine and never buffers the document. Its memory is the
//! nesting stack (at most [`MAX_DEPTH`] bytes), up to 256 status names of up to 256 bytes each,
//! and one hash-table slot per distinct entry id. A slot contains a 128-bit fingerprint of the id
//! and a status index in 20 bytes, plus a control byte. The table is kept between 7/16 and 7/8
//! full, so an entry takes 24 to 48 bytes.

mod blocks;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash, Hasher, RandomState};

pub use blocks::{BlockScanner, NotHandled};

/// Maximum nesting depth of objects and arrays, counting the top-level object as level 1.
const MAX_DEPTH: usize = 10_000;

/// Maximum number of distinct status names counted separately. Later names count as
/// [`OTHER_STATUS`].
const MAX_STATUS_NAMES: usize = 256;

/// Maximum length of a status name in bytes of UTF-8. Longer names are cut at the last
/// character boundary that fits.
const MAX_STATUS_BYTES: usize = 256;

/// Number of characters of an entry id quoted in a shape error.
const KEY_DISPLAY_CHARS: usize = 80;

/// Status of entries whose `"status"` member is missing or not a string.
const UNKNOWN_STATUS: &str = "unknown";

/// Status of entries whose status name arrived after [`MAX_STATUS_NAMES`] others.
const OTHER_STATUS: &str = "(other)";

const UNKNOWN_INDEX: u16 = 0;
const OTHER_INDEX: u16 = 1;
const FIRST_NAME_INDEX: u16 = 2;

/// Entry member whose value [`Scanner::with_modified_cutoff`] compares with its cutoff.
const MODIFIED_KEY: &[u8] = b"last_modified_at";

/// Maximum length of a `last_modified_at` value kept for the comparison. Longer values are not
/// in the backend's form, so the first bytes are enough to tell that.
const MAX_MODIFIED_BYTES: usize = 40;

/// Sentinel of `member_key_matched` once the key being read can no longer be `"status"`.
const NO_MATCH: u8 = u8::MAX;

/// Counts of a scanned file's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Distinct top-level keys. A key that appears twice counts once.
    pub entries: u64,
    /// Number of entries per status, after duplicate keys are resolved so that the last
    /// member with a given key wins, as it does in Python's `json.load`. Entries with a missing
    /// or non-string status count as `"unknown"`, and entries whose status would be the 257th
    /// distinct name count as `"(other)"`.
    pub by_status: BTreeMap<String, u64>,
    /// Number of top-level members whose key had already appeared earlier in the file.
    pub duplicate_keys: u64,
    /// With [`Scanner::with_modified_cutoff`]: entries whose `last_modified_at` is missing, not
    /// a string of the form `YYYY-MM-DDTHH:MM:SS[.ffffff]`, or not after the cutoff. An entry
    /// whose key repeats counts once for each time it appears. Always 0 without a cutoff.
    pub unmodified_entries: u64,
    /// Total number of bytes fed.
    pub bytes: u64,
}

/// Class of a [`ScanError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanErrorKind {
    /// The input is not valid JSON as Python's `json` module reads it.
    Syntax,
    /// The input is valid JSON, but not an object whose member values are all objects.
    Shape,
    /// The input has zero bytes.
    Empty,
}

/// Reason and position of the first problem found in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// Line number, starting at 1. Only LF starts a new line, as in Python's error positions.
    pub line: u64,
    /// Column, starting at 1, counted in characters from the start of the line.
    pub column: u64,
    /// Byte offset of the offending byte, starting at 0, or the input length when the input
    /// ended too early.
    pub offset: u64,
    /// Description of the problem, starting lowercase and without a final period.
    pub message: String,
    pub kind: ScanErrorKind,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ScanError {}

/// Incremental validator and entry counter, fed one chunk of the file at a time.
///
/// Chunks can split the input anywhere, even inside a string, an escape, a UTF-8 sequence, a
/// number or a literal. Syntax errors are returned by the first [`Scanner::feed`] call that
/// reaches them and by every call after it. A shape error does not stop the scan, because a
/// syntax error later in the file takes precedence: [`Scanner::finish`] returns it once the
/// whole input is known to be valid JSON.
pub struct Scanner {
    state: State,
    stack: Vec<Container>,
    /// Use of the string being read.
    role: StringRole,
    /// Whether entries are still counted: false once the document has the wrong shape.
    tracking: bool,
    /// Whether the top-level value is an object, for the wording of the extra data error.
    top_level_object: bool,
    error: Option<ScanError>,
    shape_error: Option<ScanError>,
    /// Bytes fed before the current chunk.
    bytes: u64,
    /// Number of LF bytes scanned so far, plus 1. Outside strings an LF can only be
    /// whitespace and inside them it is an error, so the whitespace skipper counts them all.
    line: u64,
    /// Offset of the first byte after the last LF.
    line_start: u64,
    /// Number of UTF-8 continuation bytes scanned so far, counted by the UTF-8 checks in
    /// strings because they appear nowhere else in valid input. Columns count characters, so
    /// they leave these bytes out.
    continuation_bytes: u64,
    /// Value of `continuation_bytes` at `line_start`.
    line_start_continuation_bytes: u64,
    /// High surrogate from a `\u` escape, waiting for a low surrogate, or 0.
    pending_high_surrogate: u16,
    key: KeyReader,
    /// Fingerprint of the current entry's key.
    entry_fingerprint: Fingerprint,
    /// Number of leading bytes of `"status"` matched by the entry member key being read.
    member_key_matched: u8,
    /// Whether the last member key of the current entry was `"status"`.
    member_is_status: bool,
    /// Whether the current entry's last `"status"` member is a string, stored in `status`.
    status_is_string: bool,
    /// `YYYY-MM-DDTHH:MM:SS.ffffff` of the cutoff given to [`Scanner::with_modified_cutoff`].
    modified_cutoff: Option<String>,
    /// Number of leading bytes of `"last_modified_at"` matched by the entry member key being
    /// read, or [`NO_MATCH`]. Only kept with a cutoff.
    modified_key_matched: u8,
    /// Whether the last member key of the current entry was `"last_modified_at"`.
    member_is_modified: bool,
    /// Whether the current entry's last `"last_modified_at"` member is a string, stored in
    /// `modified`.
    modified_is_string: bool,
    /// Decoded `last_modified_at` of the current entry, up to [`MAX_MODIFIED_BYTES`] bytes.
    modified: Vec<u8>,
    unmodified_entries: u64,
    /// Decoded status of the current entry, kept up to a few bytes past the length limit so it
    /// can be cut at a character boundary.
    status: Vec<u8>,
    /// Status index of each distinct entry, keyed by the fingerprint of its key.
    entries: HashMap<Fingerprint, u16, BuildHasherDefault<FingerprintHasher>>,
    duplicate_keys: u64,
    /// Entry count per status index: [`UNKNOWN_INDEX`], [`OTHER_INDEX`], then `status_names`.
    status_counts: Vec<u64>,
    status_names: Vec<String>,
    status_indexes: HashMap<Vec<u8>, u16>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner {
            state: State::BeforeTop,
            stack: Vec::new(),
            role: StringRole::Value,
            tracking: true,
            top_level_object: false,
            error: None,
            shape_error: None,
            bytes: 0,
            line: 1,
            line_start: 0,
            continuation_bytes: 0,
            line_start_continuation_bytes: 0,
            pending_high_surrogate: 0,
            key: KeyReader::new(),
            entry_fingerprint: Fingerprint([0; 4]),
            member_key_matched: NO_MATCH,
            member_is_status: false,
            status_is_string: false,
            modified_cutoff: None,
            modified_key_matched: NO_MATCH,
            member_is_modified: false,
            modified_is_string: false,
            modified: Vec::with_capacity(MAX_MODIFIED_BYTES),
            unmodified_entries: 0,
            status: Vec::with_capacity(MAX_STATUS_BYTES + 4),
            entries: HashMap::default(),
            duplicate_keys: 0,
            status_counts: vec![0, 0],
            status_names: Vec::new(),
            status_indexes: HashMap::new(),
        }
    }

    /// Creates a scanner that also counts the entries that were not modified after `cutoff`,
    /// a local time, in [`Summary::unmodified_entries`].
    ///
    /// The backend writes `last_modified_at` as Python's `isoformat()` of a local time, such as
    /// `2025-12-04T12:35:14.126823`. In that form, with zero to six fraction digits, comparing
    /// the text with the cutoff's text compares the times, so no date is parsed per entry.
    pub fn with_modified_cutoff(cutoff: chrono::NaiveDateTime) -> Scanner {
        Scanner {
            modified_cutoff: Some(cutoff.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
            ..Scanner::new()
        }
    }

    /// Scans the next chunk of the file.
    ///
    /// After the first syntax error, every later call returns that error again without looking
    /// at the chunk.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ScanError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if let Err(error) = self.scan(chunk) {
            self.error = Some(error.clone());
            return Err(error);
        }
        self.bytes += chunk.len() as u64;
        Ok(())
    }

    /// Checks that the input ended after a complete document and returns the counts.
    ///
    /// Returns the first syntax error if there was one, then an error for input that ended too
    /// early, then the first shape error.
    pub fn finish(mut self) -> Result<Summary, ScanError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if self.bytes == 0 {
            return Err(ScanError {
                line: 1,
                column: 1,
                offset: 0,
                message: "file is empty (0 bytes)".to_string(),
                kind: ScanErrorKind::Empty,
            });
        }
        if let State::ByteOrderMark { .. } = self.state {
            return Err(ScanError {
                line: 1,
                column: 1,
                offset: 0,
                message: unexpected("a JSON object", 0xEF),
                kind: ScanErrorKind::Syntax,
            });
        }
        if let Some(message) = self.end_of_input_message() {
            return Err(ScanError {
                line: self.line,
                column: self.column(self.bytes, 0),
                offset: self.bytes,
                message,
                kind: ScanErrorKind::Syntax,
            });
        }
        if let Some(error) = self.shape_error.take() {
            return Err(error);
        }
        Ok(self.summary())
    }

    /// Returns why the input cannot end in the current state, or `None` when it can.
    fn end_of_input_message(&self) -> Option<String> {
        let inside = match self.state {
            State::Trailing => return None,
            State::BeforeTop => {
                return Some("expected a JSON object, found only whitespace".into());
            }
            State::Str | State::Escape | State::UnicodeEscape { .. } | State::Utf8 { .. } => {
                "a string"
            }
            State::Literal { literal, .. } => {
                let text = String::from_utf8_lossy(literal.text());
                return Some(format!(
                    "unexpected end of file inside the literal '{text}'"
                ));
            }
            State::Number(phase) if !phase.is_complete() => "a number",
            _ => match self.stack.last() {
                // A complete number at the top level.
                None => return None,
                Some(Container::Object) => "an object",
                Some(Container::Array) => "an array",
            },
        };
        Some(format!("unexpected end of file inside {inside}"))
    }

    fn summary(&self) -> Summary {
        let mut by_status = BTreeMap::new();
        for (index, &count) in self.status_counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let name = match index {
                0 => UNKNOWN_STATUS.to_string(),
                1 => OTHER_STATUS.to_string(),
                _ => self.status_names[index - usize::from(FIRST_NAME_INDEX)].clone(),
            };
            *by_status.entry(name).or_insert(0) += count;
        }
        Summary {
            entries: self.entries.len() as u64,
            by_status,
            duplicate_keys: self.duplicate_keys,
            unmodified_entries: self.unmodified_entries,
            bytes: self.bytes,
        }
    }

    /// Runs the state machine over one chunk.
    ///
    /// The `scan_*` helpers each advance `i` through one step, returning the next state. They
    /// take the common follow-up steps themselves (such as the `:` and the start of the value
    /// after a key), which saves a round through this loop.
    fn scan(&mut self, input: &[u8]) -> Result<(), ScanError> {
        let len = input.len();
        let mut i = 0;
        let mut state = self.state;
        while i < len {
            state = match state {
                State::Str => self.scan_string(input, &mut i)?,
                State::AfterMember => self.scan_after_member(input, &mut i)?,
                State::Key | State::FirstKeyOrClose => self.scan_key_start(input, &mut i, state)?,
                State::Colon => self.scan_colon(input, &mut i)?,
                State::MemberValue
                | State::ElementValue
                | State::FirstElementOrClose
                | State::BeforeTop => {
                    i = self.skip_whitespace(input, i);
                    let Some(&b) = input.get(i) else { break };
                    if b == b']' && matches!(state, State::FirstElementOrClose) {
                        i += 1;
                        self.close_container()
                    } else if b == 0xEF
                        && matches!(state, State::BeforeTop)
                        && self.bytes + i as u64 == 0
                    {
                        i += 1;
                        State::ByteOrderMark { matched: 1 }
                    } else {
                        let expected = match state {
                            State::MemberValue => "a value after ':'",
                            State::ElementValue => "a value after ',' in an array",
                            State::FirstElementOrClose => "a value or ']' after '['",
                            _ => "a JSON object",
                        };
                        self.begin_value(input, &mut i, expected)?
                    }
                }
                State::AfterElement => {
                    i = self.skip_whitespace(input, i);
                    let Some(&b) = input.get(i) else { break };
                    i += 1;
                    match b {
                        b',' => State::ElementValue,
                        b']' => self.close_container(),
                        _ => {
                            let message = unexpected("',' or ']' after an array element", b);
                            return Err(self.syntax_error(i - 1, message));
                        }
                    }
                }
                State::Number(phase) => self.scan_number(input, &mut i, phase)?,
                State::Literal { literal, matched } => {
                    self.scan_literal(input, &mut i, literal, matched)?
                }
                State::Escape => self.scan_escape(input, &mut i)?,
                State::UnicodeEscape { digits, unit } => {
                    let b = input[i];
                    let Some(digit) = hex_digit_value(b) else {
                        let message = unexpected("a hex digit in a \\u escape", b);
                        return Err(self.syntax_error(i, message));
                    };
                    i += 1;
                    let unit = unit << 4 | digit;
                    if digits < 3 {
                        State::UnicodeEscape {
                            digits: digits + 1,
                            unit,
                        }
                    } else {
                        if self.role.decodes() {
                            self.push_utf16_unit(unit);
                        }
                        State::Str
                    }
                }
                State::Utf8 {
                    remaining,
                    low,
                    high,
                    lead,
                } => {
                    let b = input[i];
                    if b < low || b > high {
                        return Err(self.syntax_error(i, invalid_continuation(lead, b)));
                    }
                    i += 1;
                    if self.role.decodes() {
                        self.push_text(&[b]);
                    }
                    self.continuation_bytes += 1;
                    if remaining == 1 {
                        State::Str
                    } else {
                        State::Utf8 {
                            remaining: remaining - 1,
                            low: 0x80,
                            high: 0xBF,
                            lead,
                        }
                    }
                }
                State::Trailing => {
                    i = self.skip_whitespace(input, i);
                    let Some(&b) = input.get(i) else { break };
                    let top_level = if self.top_level_object {
                        "object"
                    } else {
                        "value"
                    };
                    let message = format!(
                        "extra data after the top-level {top_level}, found {}",
                        describe_byte(b)
                    );
                    return Err(self.syntax_error(i, message));
                }
                State::ByteOrderMark { matched } => {
                    const BYTE_ORDER_MARK: [u8; 3] = [0xEF, 0xBB, 0xBF];
                    let message = if input[i] != BYTE_ORDER_MARK[usize::from(matched)] {
                        unexpected("a JSON object", 0xEF)
                    } else if matched == 2 {
                        "file starts with a UTF-8 byte order mark, which Python's json.load \
                         also rejects"
                            .to_string()
                    } else {
                        i += 1;
                        state = State::ByteOrderMark {
                            matched: matched + 1,
                        };
                        continue;
                    };
                    return Err(ScanError {
                        line: 1,
                        column: 1,
                        offset: 0,
                        message,
                        kind: ScanErrorKind::Syntax,
                    });
                }
            };
        }
        self.state = state;
        Ok(())
    }

    /// Advances through string content up to the end of the string or of the chunk.
    #[inline(always)]
    fn scan_string(&mut self, input: &[u8], i: &mut usize) -> Step {
        let start = *i;
        let mut j = *i;
        loop {
            j = skip_plain_string_bytes(input, j);
            if j < input.len() && input[j] >= 0x80 {
                match check_utf8_sequence(&input[j..]) {
                    Utf8Check::Valid(width) => {
                        j += width;
                        self.continuation_bytes += width as u64 - 1;
                        continue;
                    }
                    Utf8Check::Incomplete => {}
                    Utf8Check::Invalid { at, message } => {
                        let skipped = at.saturating_sub(1) as u64;
                        return Err(self.syntax_error_in_sequence(j + at, skipped, message));
                    }
                }
            }
            break;
        }
        if self.role.decodes() && j > start {
            self.push_text(&input[start..j]);
        }
        *i = j;
        let Some(&b) = input.get(j) else {
            return Ok(State::Str);
        };
        *i += 1;
        match b {
            b'"' => match self.end_string() {
                State::Colon => self.scan_colon(input, i),
                State::AfterMember => self.scan_after_member(input, i),
                next => Ok(next),
            },
            b'\\' => self.scan_escape(input, i),
            0x80..=0xFF => {
                // A valid but incomplete UTF-8 sequence at the end of the chunk.
                if self.role.decodes() {
                    self.push_text(&[b]);
                }
                Ok(utf8_state(b))
            }
            _ => {
                let message = format!(
                    "unescaped control character 0x{b:02X} in a string, expected the escape \
                     \\u{b:04X}"
                );
                Err(self.syntax_error(j, message))
            }
        }
    }

    /// Reads the character after a backslash in a string, if the chunk has it.
    fn scan_escape(&mut self, input: &[u8], i: &mut usize) -> Step {
        let Some(&b) = input.get(*i) else {
            return Ok(State::Escape);
        };
        let decoded = match b {
            b'"' | b'\\' | b'/' => b,
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                *i += 1;
                return Ok(State::UnicodeEscape { digits: 0, unit: 0 });
            }
            _ => {
                let message = unexpected(
                    "one of '\"', '\\', '/', 'b', 'f', 'n', 'r', 't', 'u' after '\\' in a string",
                    b,
                );
                return Err(self.syntax_error(*i, message));
            }
        };
        *i += 1;
        if self.role.decodes() {
            self.push_text(&[decoded]);
        }
        Ok(State::Str)
    }

    /// Reads the `,` or `}` after an object member, any `}` that follow, and after a `,` the
    /// start of the next key.
    #[inline(always)]
    fn scan_after_member(&mut self, input: &[u8], i: &mut usize) -> Step {
        loop {
            *i = self.skip_whitespace(input, *i);
            let Some(&b) = input.get(*i) else {
                return Ok(State::AfterMember);
            };
            *i += 1;
            if b == b',' {
                return self.scan_key_start(input, i, State::Key);
            }
            if b != b'}' {
                let message = unexpected("',' or '}' after an object member", b);
                return Err(self.syntax_error(*i - 1, message));
            }
            let next = self.close_container();
            if !matches!(next, State::AfterMember) {
                return Ok(next);
            }
        }
    }

    /// Skips to the next object key after the `,` or `{` that `state` names, and starts it.
    #[inline(always)]
    fn scan_key_start(&mut self, input: &[u8], i: &mut usize, state: State) -> Step {
        *i = self.skip_whitespace(input, *i);
        let Some(&b) = input.get(*i) else {
            return Ok(state);
        };
        match b {
            b'"' => {
                *i += 1;
                self.begin_key();
                Ok(State::Str)
            }
            b'}' if matches!(state, State::FirstKeyOrClose) => {
                *i += 1;
                Ok(self.close_container())
            }
            _ => {
                let expected = if matches!(state, State::Key) {
                    "a key string after ',' in an object"
                } else {
                    "a key string or '}' after '{'"
                };
                Err(self.syntax_error(*i, unexpected(expected, b)))
            }
        }
    }

    /// Skips the `:` after an object key and starts the member value.
    #[inline(always)]
    fn scan_colon(&mut self, input: &[u8], i: &mut usize) -> Step {
        *i = self.skip_whitespace(input, *i);
        let Some(&b) = input.get(*i) else {
            return Ok(State::Colon);
        };
        if b != b':' {
            let message = unexpected("':' after an object key", b);
            return Err(self.syntax_error(*i, message));
        }
        *i = self.skip_whitespace(input, *i + 1);
        if *i == input.len() {
            return Ok(State::MemberValue);
        }
        match self.begin_value(input, i, "a value after ':'")? {
            State::AfterMember => self.scan_after_member(input, i),
            next => Ok(next),
        }
    }

    /// Advances through a number. A byte that ends the number is left for the state after the
    /// value.
    ///
    /// The parts of a number come in a fixed order, so each block below reads one part and moves
    /// `phase` on, and a number resumed in a later chunk skips the blocks before its phase.
    fn scan_number(&mut self, input: &[u8], i: &mut usize, mut phase: NumberPhase) -> Step {
        if phase == NumberPhase::Minus {
            let Some(&b) = input.get(*i) else {
                return Ok(State::Number(phase));
            };
            phase = match b {
                b'0' => NumberPhase::Zero,
                b'1'..=b'9' => NumberPhase::Integer,
                b'I' => {
                    *i += 1;
                    return self.scan_literal(input, i, Literal::NegativeInfinity, 2);
                }
                _ => {
                    let message = unexpected("a digit or 'Infinity' after '-'", b);
                    return Err(self.syntax_error(*i, message));
                }
            };
            *i += 1;
        }
        if phase == NumberPhase::Integer {
            *i = skip_digits(input, *i);
        }
        if phase == NumberPhase::Zero || phase == NumberPhase::Integer {
            let Some(&b) = input.get(*i) else {
                return Ok(State::Number(phase));
            };
            if b == b'.' {
                phase = NumberPhase::Dot;
            } else if b == b'e' || b == b'E' {
                phase = NumberPhase::Exponent;
            } else if b.is_ascii_digit() {
                // Only after a leading 0, because an integer part took all its digits.
                let message = unexpected("'.', 'e' or the end of the number after a leading 0", b);
                return Err(self.syntax_error(*i, message));
            } else {
                return Ok(self.after_value());
            }
            *i += 1;
        }
        if phase == NumberPhase::Dot {
            let Some(&b) = input.get(*i) else {
                return Ok(State::Number(phase));
            };
            if !b.is_ascii_digit() {
                let message = unexpected("a digit after '.' in a number", b);
                return Err(self.syntax_error(*i, message));
            }
            phase = NumberPhase::Fraction;
            *i += 1;
        }
        if phase == NumberPhase::Fraction {
            *i = skip_digits(input, *i);
            let Some(&b) = input.get(*i) else {
                return Ok(State::Number(phase));
            };
            if b != b'e' && b != b'E' {
                return Ok(self.after_value());
            }
            phase = NumberPhase::Exponent;
            *i += 1;
        }
        if phase == NumberPhase::Exponent {
            let Some(&b) = input.get(*i) else {
                return Ok(State::Number(phase));
            };
            phase = match b {
                b'+' | b'-' => NumberPhase::ExponentSign,
                b'0'..=b'9' => NumberPhase::ExponentDigits,
                _ => {
                    let message = unexpected("a digit, '+' or '-' after 'e' in a number", b);
                    return Err(self.syntax_error(*i, message));
                }
            };
            *i += 1;
        }
        if phase == NumberPhase::ExponentSign {
            let Some(&b) = input.get(*i) else {
                return Ok(State::Number(phase));
            };
            if !b.is_ascii_digit() {
                let message = unexpected("a digit in the exponent of a number", b);
                return Err(self.syntax_error(*i, message));
            }
            phase = NumberPhase::ExponentDigits;
            *i += 1;
        }
        *i = skip_digits(input, *i);
        if *i == input.len() {
            return Ok(State::Number(phase));
        }
        Ok(self.after_value())
    }

    /// Compares the input with the rest of a literal, of which `matched` bytes were read.
    fn scan_literal(&mut self, input: &[u8], i: &mut usize, literal: Literal, matched: u8) -> Step {
        let text = literal.text();
        let rest = &text[usize::from(matched)..];
        let available = rest.len().min(input.len() - *i);
        for (k, &expected) in rest[..available].iter().enumerate() {
            let b = input[*i + k];
            if b != expected {
                let literal = String::from_utf8_lossy(text);
                let message = unexpected(&format!("the literal '{literal}'"), b);
                return Err(self.syntax_error(*i + k, message));
            }
        }
        *i += available;
        if available == rest.len() {
            Ok(self.after_value())
        } else {
            Ok(State::Literal {
                literal,
                matched: matched + available as u8,
            })
        }
    }

    /// Starts the value whose first byte is `input[*i]`, and reads it to the end if it is a
    /// number or a literal.
    #[inline(always)]
    fn begin_value(&mut self, input: &[u8], i: &mut usize, expected: &str) -> Step {
        let b = input[*i];
        let depth = self.stack.len();
        let check_shape = self.tracking && depth <= 2;
        // Strings and numbers are the most common values, so they are tested first.
        if b == b'"' {
            if check_shape {
                self.check_value_shape(*i, depth, ValueKind::String);
            }
            self.role = if self.tracking && depth == 2 && self.member_is_status {
                StringRole::StatusValue
            } else if self.tracking && depth == 2 && self.member_is_modified {
                StringRole::ModifiedValue
            } else {
                StringRole::Value
            };
            *i += 1;
            return Ok(State::Str);
        }
        if b.is_ascii_digit() || b == b'-' {
            if check_shape {
                self.check_value_shape(*i, depth, ValueKind::Number);
            }
            let phase = match b {
                b'-' => NumberPhase::Minus,
                b'0' => NumberPhase::Zero,
                _ => NumberPhase::Integer,
            };
            *i += 1;
            return self.scan_number(input, i, phase);
        }
        if b == b'{' || b == b'[' {
            let (kind, container, next) = if b == b'{' {
                (ValueKind::Object, Container::Object, State::FirstKeyOrClose)
            } else {
                (
                    ValueKind::Array,
                    Container::Array,
                    State::FirstElementOrClose,
                )
            };
            if check_shape {
                self.check_value_shape(*i, depth, kind);
            }
            if depth == MAX_DEPTH {
                let message = format!("nesting deeper than {MAX_DEPTH} levels");
                return Err(self.syntax_error(*i, message));
            }
            if self.stack.len() == self.stack.capacity() {
                // Grow by doubling, but never past the depth limit.
                let additional = depth.max(16).min(MAX_DEPTH - depth);
                self.stack.reserve_exact(additional);
            }
            self.stack.push(container);
            *i += 1;
            return Ok(next);
        }
        let (kind, literal) = match b {
            b't' => (ValueKind::Boolean, Literal::True),
            b'f' => (ValueKind::Boolean, Literal::False),
            b'n' => (ValueKind::Null, Literal::Null),
            b'N' => (ValueKind::Number, Literal::NaN),
            b'I' => (ValueKind::Number, Literal::Infinity),
            _ => return Err(self.syntax_error(*i, unexpected(expected, b))),
        };
        if check_shape {
            self.check_value_shape(*i, depth, kind);
        }
        *i += 1;
        self.scan_literal(input, i, literal, 1)
    }

    /// Checks a value at `depth` 0 (the document), 1 (an entry) or 2 (an entry member).
    fn check_value_shape(&mut self, i: usize, depth: usize, kind: ValueKind) {
        match depth {
            0 => {
                self.top_level_object = kind == ValueKind::Object;
                if kind != ValueKind::Object {
                    let message = format!(
                        "top-level value is {}, expected an object of entries keyed by id",
                        kind.description()
                    );
                    self.set_shape_error(i, message);
                }
            }
            1 => {
                if kind == ValueKind::Object {
                    self.status_is_string = false;
                    self.modified_is_string = false;
                } else {
                    let message = format!(
                        "entry {} is {}, expected an object",
                        self.key.display(),
                        kind.description()
                    );
                    self.set_shape_error(i, message);
                }
            }
            _ => {
                if self.member_is_status {
                    self.status_is_string = kind == ValueKind::String;
                    self.status.clear();
                }
                if self.member_is_modified {
                    self.modified_is_string = kind == ValueKind::String;
                    self.modified.clear();
                }
            }
        }
    }

    fn set_shape_error(&mut self, i: usize, message: String) {
        let mut error = self.syntax_error(i, message);
        error.kind = ScanErrorKind::Shape;
        self.shape_error = Some(error);
        self.tracking = false;
    }

    fn begin_key(&mut self) {
        let depth = self.stack.len();
        self.role = if !self.tracking || depth > 2 {
            StringRole::Key
        } else if depth == 1 {
            self.key.start();
            StringRole::EntryKey
        } else {
            self.start_member_key();
            StringRole::MemberKey
        };
    }

    /// Starts matching an entry member key with the keys whose values are read.
    fn start_member_key(&mut self) {
        self.member_key_matched = 0;
        self.modified_key_matched = 0;
    }

    /// Notes whether the entry member key that just ended is `"status"` or `"last_modified_at"`.
    fn end_member_key(&mut self) {
        self.member_is_status = usize::from(self.member_key_matched) == b"status".len();
        self.member_is_modified = usize::from(self.modified_key_matched) == MODIFIED_KEY.len();
    }

    /// Finishes the string being read at its closing quote, returning the next state.
    fn end_string(&mut self) -> State {
        // An if chain rather than a match: the match compiled to a jump table that cachegrind's
        // branch simulation, run on a generated sessions file, showed mispredicted for nearly
        // half of the strings.
        let role = self.role;
        if role == StringRole::Value {
            return self.after_value();
        }
        if role == StringRole::Key {
            return State::Colon;
        }
        self.flush_high_surrogate();
        if role == StringRole::MemberKey {
            self.end_member_key();
            return State::Colon;
        }
        if role == StringRole::EntryKey {
            self.entry_fingerprint = self.key.finish();
            return State::Colon;
        }
        self.after_value()
    }

    /// Pops the innermost container at its closing bracket, returning the next state.
    fn close_container(&mut self) -> State {
        let depth = self.stack.len();
        self.stack.pop();
        if depth == 2 && self.tracking {
            self.record_entry();
        }
        self.after_value()
    }

    fn after_value(&self) -> State {
        match self.stack.last() {
            None => State::Trailing,
            Some(Container::Object) => State::AfterMember,
            Some(Container::Array) => State::AfterElement,
        }
    }

    /// Counts the entry that just closed, replacing an earlier entry with the same key.
    fn record_entry(&mut self) {
        let index = self.status_index();
        if let Some(previous) = self.entries.insert(self.entry_fingerprint, index) {
            self.duplicate_keys += 1;
            self.status_counts[usize::from(previous)] -= 1;
        }
        self.status_counts[usize::from(index)] += 1;
        if let Some(cutoff) = &self.modified_cutoff {
            let modified_after = self.modified_is_string
                && is_isoformat_time(&self.modified)
                && self.modified.as_slice() > cutoff.as_bytes();
            if !modified_after {
                self.unmodified_entries += 1;
            }
        }
    }

    /// Returns the index of the current entry's status, adding the name if it is new.
    fn status_index(&mut self) -> u16 {
        if !self.status_is_string {
            return UNKNOWN_INDEX;
        }
        let name = truncate_utf8(&self.status, MAX_STATUS_BYTES);
        if name == UNKNOWN_STATUS.as_bytes() {
            return UNKNOWN_INDEX;
        }
        if let Some(&index) = self.status_indexes.get(name) {
            return index;
        }
        if self.status_names.len() == MAX_STATUS_NAMES {
            return OTHER_INDEX;
        }
        let index = FIRST_NAME_INDEX + self.status_names.len() as u16;
        self.status_names
            .push(String::from_utf8_lossy(name).into_owned());
        self.status_indexes.insert(name.to_vec(), index);
        self.status_counts.push(0);
        index
    }

    /// Passes decoded string text to the reader of the current key or status.
    fn push_text(&mut self, text: &[u8]) {
        self.flush_high_surrogate();
        self.push_decoded(text);
    }

    fn push_decoded(&mut self, text: &[u8]) {
        match self.role {
            StringRole::EntryKey => self.key.push(text),
            StringRole::MemberKey => self.match_member_key(text),
            StringRole::StatusValue => {
                let room = (MAX_STATUS_BYTES + 4).saturating_sub(self.status.len());
                self.status.extend_from_slice(&text[..room.min(text.len())]);
            }
            StringRole::ModifiedValue => {
                let room = MAX_MODIFIED_BYTES.saturating_sub(self.modified.len());
                self.modified
                    .extend_from_slice(&text[..room.min(text.len())]);
            }
            StringRole::Value | StringRole::Key => {}
        }
    }

    /// Decodes one `\uXXXX` escape, joining a high and a low surrogate into one character the
    /// way Python's `json` module does.
    fn push_utf16_unit(&mut self, unit: u16) {
        let pending = std::mem::take(&mut self.pending_high_surrogate);
        if pending != 0 {
            if is_low_surrogate(unit) {
                let code_point =
                    0x10000 + ((u32::from(pending) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                self.push_code_point(code_point);
                return;
            }
            self.push_lone_surrogate(pending);
        }
        if is_high_surrogate(unit) {
            self.pending_high_surrogate = unit;
        } else if is_low_surrogate(unit) {
            self.push_lone_surrogate(unit);
        } else {
            self.push_code_point(u32::from(unit));
        }
    }

    fn push_code_point(&mut self, code_point: u32) {
        if let Some(c) = char::from_u32(code_point) {
            let mut buffer = [0; 4];
            self.push_decoded(c.encode_utf8(&mut buffer).as_bytes());
        }
    }

    fn flush_high_surrogate(&mut self) {
        let pending = std::mem::take(&mut self.pending_high_surrogate);
        if pending != 0 {
            self.push_lone_surrogate(pending);
        }
    }

    /// Passes on a surrogate that is not part of a pair. Python keeps it in the string, so the
    /// key fingerprint keeps it too (in the generalized UTF-8 form), while the key shown in
    /// messages and the status name get U+FFFD in its place.
    fn push_lone_surrogate(&mut self, unit: u16) {
        const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
        match self.role {
            StringRole::EntryKey => {
                let encoded = [
                    0xE0 | (unit >> 12) as u8,
                    0x80 | ((unit >> 6) & 0x3F) as u8,
                    0x80 | (unit & 0x3F) as u8,
                ];
                self.key.push_fingerprint(&encoded);
                self.key.push_display(REPLACEMENT);
            }
            StringRole::MemberKey => {
                self.member_key_matched = NO_MATCH;
                self.modified_key_matched = NO_MATCH;
            }
            StringRole::StatusValue | StringRole::ModifiedValue => self.push_decoded(REPLACEMENT),
            StringRole::Value | StringRole::Key => {}
        }
    }

    fn match_member_key(&mut self, text: &[u8]) {
        self.member_key_matched = match_more(b"status", self.member_key_matched, text);
        if self.modified_cutoff.is_some() {
            self.modified_key_matched = match_more(MODIFIED_KEY, self.modified_key_matched, text);
        }
    }

    /// Builds a syntax error at index `at` of the chunk being scanned.
    fn syntax_error(&self, at: usize, message: String) -> ScanError {
        self.syntax_error_in_sequence(at, 0, message)
    }

    /// Builds a syntax error at index `at` of the chunk being scanned, which follows
    /// `continuation_bytes` continuation bytes not counted yet.
    fn syntax_error_in_sequence(
        &self,
        at: usize,
        continuation_bytes: u64,
        message: String,
    ) -> ScanError {
        let offset = self.bytes + at as u64;
        ScanError {
            line: self.line,
            column: self.column(offset, continuation_bytes),
            offset,
            message,
            kind: ScanErrorKind::Syntax,
        }
    }

    /// Returns the column of `offset`, which is on the current line and follows
    /// `continuation_bytes` continuation bytes not counted yet.
    fn column(&self, offset: u64, continuation_bytes: u64) -> u64 {
        let line_continuation_bytes =
            self.continuation_bytes + continuation_bytes - self.line_start_continuation_bytes;
        offset - self.line_start - line_continuation_bytes + 1
    }

    /// Returns the index in `input` of the first byte at or after `i` that is not JSON
    /// whitespace, or `input.len()`, counting the lines it passes.
    #[inline(always)]
    fn skip_whitespace(&mut self, input: &[u8], mut i: usize) -> usize {
        const SPACES: u64 = ONES * 0x20;
        loop {
            // Pretty-printed files indent with runs of spaces, so skip those a word at a time.
            while let Some(bytes) = input[i..].first_chunk::<8>() {
                let other = u64::from_le_bytes(*bytes) ^ SPACES;
                if other != 0 {
                    i += other.trailing_zeros() as usize / 8;
                    break;
                }
                i += 8;
            }
            let Some(&b) = input.get(i) else {
                return i;
            };
            if b > b' ' {
                return i;
            }
            if b == b'\n' {
                i += 1;
                self.line += 1;
                self.line_start = self.bytes + i as u64;
                self.line_start_continuation_bytes = self.continuation_bytes;
            } else if (1u64 << b) & (1 << b' ' | 1 << b'\r' | 1 << b'\t') != 0 {
                i += 1;
            } else {
                return i;
            }
        }
    }
}

/// Result of one step of the scan.
type Step = Result<State, ScanError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level value.
    BeforeTop,
    /// After the first bytes of a UTF-8 byte order mark at the start of the file.
    ByteOrderMark {
        matched: u8,
    },
    /// After `:` in an object.
    MemberValue,
    /// After `,` in an array.
    ElementValue,
    /// After `[`.
    FirstElementOrClose,
    /// After `{`.
    FirstKeyOrClose,
    /// After `,` in an object.
    Key,
    /// After an object key.
    Colon,
    /// After a member value in an object.
    AfterMember,
    /// After an element in an array.
    AfterElement,
    /// After the top-level value.
    Trailing,
    /// Inside a string, outside any escape or multi-byte character.
    Str,
    /// After a backslash in a string.
    Escape,
    /// Inside a `\uXXXX` escape, after `digits` hex digits.
    UnicodeEscape {
        digits: u8,
        unit: u16,
    },
    /// Inside a multi-byte UTF-8 character in a string, with `remaining` bytes to go and the
    /// next byte required to be in `low..=high`.
    Utf8 {
        remaining: u8,
        low: u8,
        high: u8,
        lead: u8,
    },
    Number(NumberPhase),
    /// Inside `true`, `false`, `null`, `NaN`, `Infinity` or `-Infinity`.
    Literal {
        literal: Literal,
        matched: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Literal {
    True,
    False,
    Null,
    NaN,
    Infinity,
    NegativeInfinity,
}

impl Literal {
    fn text(self) -> &'static [u8] {
        match self {
            Literal::True => b"true",
            Literal::False => b"false",
            Literal::Null => b"null",
            Literal::NaN => b"NaN",
            Literal::Infinity => b"Infinity",
            Literal::NegativeInfinity => b"-Infinity",
        }
    }
}

/// Position inside a number, named after the last part read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberPhase {
    Minus,
    /// A leading `0`, which no digit may follow.
    Zero,
    Integer,
    Dot,
    Fraction,
    /// After `e` or `E`.
    Exponent,
    ExponentSign,
    ExponentDigits,
}

impl NumberPhase {
    fn is_complete(self) -> bool {
        matches!(
            self,
            NumberPhase::Zero
                | NumberPhase::Integer
                | NumberPhase::Fraction
                | NumberPhase::ExponentDigits
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Object,
    Array,
    String,
    Number,
    Boolean,
    Null,
}

impl ValueKind {
    fn description(self) -> &'static str {
        match self {
            ValueKind::Object => "an object",
            ValueKind::Array => "an array",
            ValueKind::String => "a string",
            ValueKind::Number => "a number",
            ValueKind::Boolean => "a boolean",
            ValueKind::Null => "null",
        }
    }
}

/// Use of the string being read, which decides whether its text is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringRole {
    /// A value that is only validated.
    Value,
    /// A key that is only validated.
    Key,
    /// A top-level key, which is fingerprinted and kept for messages.
    EntryKey,
    /// A key of an entry member, compared with `"status"`.
    MemberKey,
    /// The value of an entry's `"status"` member.
    StatusValue,
    /// The value of an entry's `"last_modified_at"` member, read with a cutoff.
    ModifiedValue,
}

impl StringRole {
    fn decodes(self) -> bool {
        !matches!(self, StringRole::Value | StringRole::Key)
    }
}

/// 128-bit fingerprint of a decoded top-level key, stored as 32-bit words so that a hash-table
/// slot with a `u16` status index takes 20 bytes instead of 24.
///
/// NOTE: two distinct keys whose fingerprints collide are counted as one entry. The fingerprint
/// comes from two SipHash hashers with random keys, so for keys that are not crafted against
/// those hashers the chance is about 2^-128 per pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint([u32; 4]);

impl Fingerprint {
    fn new(first: u64, second: u64) -> Fingerprint {
        Fingerprint([
            first as u32,
            (first >> 32) as u32,
            second as u32,
            (second >> 32) as u32,
        ])
    }
}

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The fingerprint is already uniformly distributed, so its first half is the hash.
        state.write_u64(u64::from(self.0[0]) | u64::from(self.0[1]) << 32);
    }
}

/// Hasher for [`Fingerprint`] keys, which passes the written value through.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Reader of a top-level key: it fingerprints the decoded key without storing it, and keeps
/// its first characters for error messages.
struct KeyReader {
    /// Hashers with the scanner's two random keys and nothing written yet.
    initial_hashers: [DefaultHasher; 2],
    hashers: [DefaultHasher; 2],
    /// Bytes not yet passed to the hashers. `Hasher` does not promise that two `write` calls
    /// hash like one call on the joined bytes, so the hashers only get whole blocks, which
    /// keeps the fingerprint independent of how the input was split into chunks.
    block: [u8; 64],
    block_len: usize,
    total_len: u64,
    display: Vec<u8>,
    display_chars: usize,
    display_truncated: bool,
}

impl KeyReader {
    fn new() -> KeyReader {
        let initial_hashers = [
            RandomState::new().build_hasher(),
            RandomState::new().build_hasher(),
        ];
        KeyReader {
            hashers: initial_hashers.clone(),
            initial_hashers,
            block: [0; 64],
            block_len: 0,
            total_len: 0,
            display: Vec::new(),
            display_chars: 0,
            display_truncated: false,
        }
    }

    fn start(&mut self) {
        self.hashers = self.initial_hashers.clone();
        self.block_len = 0;
        self.total_len = 0;
        self.display.clear();
        self.display_chars = 0;
        self.display_truncated = false;
    }

    fn push(&mut self, text: &[u8]) {
        self.push_fingerprint(text);
        self.push_display(text);
    }

    fn push_fingerprint(&mut self, mut text: &[u8]) {
        self.total_len += text.len() as u64;
        while !text.is_empty() {
            let take = (self.block.len() - self.block_len).min(text.len());
            self.block[self.block_len..self.block_len + take].copy_from_slice(&text[..take]);
            self.block_len += take;
            text = &text[take..];
            if self.block_len == self.block.len() {
                for hasher in &mut self.hashers {
                    hasher.write(&self.block);
                }
                self.block_len = 0;
            }
        }
    }

    fn push_display(&mut self, text: &[u8]) {
        if self.display_truncated {
            return;
        }
        for &b in text {
            if is_continuation_byte(b) {
                self.display.push(b);
            } else if self.display_chars == KEY_DISPLAY_CHARS {
                self.display_truncated = true;
                return;
            } else {
                self.display_chars += 1;
                self.display.push(b);
            }
        }
    }

    fn finish(&mut self) -> Fingerprint {
        let tail = &self.block[..self.block_len];
        for hasher in &mut self.hashers {
            hasher.write(tail);
            hasher.write_u64(self.total_len);
        }
        Fingerprint::new(self.hashers[0].finish(), self.hashers[1].finish())
    }

    /// Returns the key quoted for a message, cut to its first 80 characters.
    fn display(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.display).into_owned();
        if self.display_truncated {
            text.push_str("...");
        }
        format!("{text:?}")
    }
}

fn is_continuation_byte(b: u8) -> bool {
    (b as i8) < -0x40
}

fn is_high_surrogate(unit: u16) -> bool {
    (0xD800..0xDC00).contains(&unit)
}

fn is_low_surrogate(unit: u16) -> bool {
    (0xDC00..0xE000).contains(&unit)
}

/// Returns the longest prefix of the valid UTF-8 `text` that has at most `max` bytes and ends
/// at a character boundary.
fn truncate_utf8(text: &[u8], max: usize) -> &[u8] {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && is_continuation_byte(text[end]) {
        end -= 1;
    }
    &text[..end]
}

fn hex_digit_value(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some(u16::from(b - b'0')),
        b'a'..=b'f' => Some(u16::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u16::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Returns `expected X, found Y` for the unexpected byte `b`.
fn unexpected(expected: &str, b: u8) -> String {
    format!("expected {expected}, found {}", describe_byte(b))
}

/// Shows a byte as a quoted character when it is printable ASCII, and in hex otherwise.
fn describe_byte(b: u8) -> String {
    match b {
        0x20..=0x7E => format!("'{}'", b as char),
        0x80..=0xC1 | 0xF5..=0xFF => format!("byte 0x{b:02X}, which is invalid UTF-8"),
        0xC2..=0xF4 => format!("non-ASCII byte 0x{b:02X}"),
        _ => format!("byte 0x{b:02X}"),
    }
}

/// Returns the number of bytes after `lead` in its UTF-8 sequence and the range allowed for
/// the next byte, or `None` if `lead` cannot start a well-formed sequence.
fn utf8_lead(lead: u8) -> Option<(u8, u8, u8)> {
    match lead {
        0xC2..=0xDF => Some((1, 0x80, 0xBF)),
        0xE0 => Some((2, 0xA0, 0xBF)),
        0xE1..=0xEC | 0xEE..=0xEF => Some((2, 0x80, 0xBF)),
        // Excludes the surrogates U+D800..U+DFFF.
        0xED => Some((2, 0x80, 0x9F)),
        0xF0 => Some((3, 0x90, 0xBF)),
        0xF1..=0xF3 => Some((3, 0x80, 0xBF)),
        // Excludes code points above U+10FFFF.
        0xF4 => Some((3, 0x80, 0x8F)),
        _ => None,
    }
}

fn utf8_state(lead: u8) -> State {
    let (remaining, low, high) = utf8_lead(lead).unwrap_or((1, 0x80, 0xBF));
    State::Utf8 {
        remaining,
        low,
        high,
        lead,
    }
}

enum Utf8Check {
    /// A whole character of this many bytes.
    Valid(usize),
    /// A valid start of a character that the input cuts off.
    Incomplete,
    /// An invalid byte at index `at`.
    Invalid { at: usize, message: String },
}

/// Checks the UTF-8 sequence at the start of `bytes`, whose first byte is not ASCII.
fn check_utf8_sequence(bytes: &[u8]) -> Utf8Check {
    let lead = bytes[0];
    let Some((remaining, low, high)) = utf8_lead(lead) else {
        return Utf8Check::Invalid {
            at: 0,
            message: format!("invalid UTF-8 byte 0x{lead:02X} in a string"),
        };
    };
    let width = usize::from(remaining) + 1;
    for k in 1..width {
        let Some(&b) = bytes.get(k) else {
            return Utf8Check::Incomplete;
        };
        let (low, high) = if k == 1 { (low, high) } else { (0x80, 0xBF) };
        if b < low || b > high {
            return Utf8Check::Invalid {
                at: k,
                message: invalid_continuation(lead, b),
            };
        }
    }
    Utf8Check::Valid(width)
}

fn invalid_continuation(lead: u8, b: u8) -> String {
    if is_continuation_byte(b) {
        // A continuation byte, but outside the range allowed after this lead byte.
        let reason = match lead {
            0xE0 | 0xF0 => "an overlong encoding",
            0xED => "a surrogate code point",
            _ => "a code point above U+10FFFF",
        };
        format!("invalid UTF-8 sequence in a string: 0x{lead:02X} 0x{b:02X} starts {reason}")
    } else {
        format!(
            "invalid UTF-8 sequence in a string: expected a continuation byte after 0x{lead:02X}, \
             found {}",
            describe_byte(b)
        )
    }
}

/// Marks the bytes that end a run of plain string content: `"`, `\`, control characters and
/// non-ASCII bytes.
static STRING_SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b >= 0x80;
        b += 1;
    }
    table
};

/// Each byte of a word set to 0x01.
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// Each byte of a word set to 0x80.
const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Returns a word whose high bit is set in the first byte of `word` (in memory order) that is
/// equal to `b`, and possibly in later bytes.
#[inline(always)]
fn flag_equal_bytes(word: u64, b: u8) -> u64 {
    let diff = word ^ (ONES * u64::from(b));
    diff.wrapping_sub(ONES) & !diff & HIGH_BITS
}

/// Returns the index in `input` of the first byte at or after `i` that ends a run of plain
/// string content, or `input.len()`.
#[inline(always)]
fn skip_plain_string_bytes(input: &[u8], mut i: usize) -> usize {
    while let Some(bytes) = input[i..].first_chunk::<8>() {
        let word = u64::from_le_bytes(*bytes);
        let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
        let special = flag_equal_bytes(word, b'"')
            | flag_equal_bytes(word, b'\\')
            | below_space
            | (word & HIGH_BITS);
        if special != 0 {
            return i + special.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    while i < input.len() && !STRING_SPECIAL[usize::from(input[i])] {
        i += 1;
    }
    i
}

/// Returns how many leading bytes of `key` are matched once `text` follows the `matched` bytes
/// matched so far, or [`NO_MATCH`] when `text` does not continue `key`.
fn match_more(key: &[u8], matched: u8, text: &[u8]) -> u8 {
    let matched = usize::from(matched);
    if matched <= key.len() && key.len() - matched >= text.len() && key[matched..].starts_with(text)
    {
        (matched + text.len()) as u8
    } else {
        NO_MATCH
    }
}

/// Returns whether `text` is `YYYY-MM-DDTHH:MM:SS` with an optional `.` and one to six digits,
/// the form in which comparing two times as text compares them as times.
fn is_isoformat_time(text: &[u8]) -> bool {
    const PATTERN: &[u8] = b"0000-00-00T00:00:00";
    if text.len() < PATTERN.len() {
        return false;
    }
    let (time, fraction) = text.split_at(PATTERN.len());
    let time_matches = time.iter().zip(PATTERN).all(|(&b, &p)| {
        if p == b'0' {
            b.is_ascii_digit()
        } else {
            b == p
        }
    });
    let fraction_matches = match fraction.split_first() {
        None => true,
        Some((b'.', digits)) => {
            (1..=6).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        Some(_) => false,
    };
    time_matches && fraction_matches
}

fn skip_digits(input: &[u8], mut i: usize) -> usize {
    while i < input.len() && input[i].is_ascii_digit() {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use std::path::Path;

    /// Scans `input` fed in one chunk.
    fn scan(input: &[u8]) -> Result<Summary, ScanError> {
        scan_split(input, &[])
    }

    /// Scans `input` fed in pieces cut at the sorted offsets `cuts`.
    fn scan_split(input: &[u8], cuts: &[usize]) -> Result<Summary, ScanError> {
        let mut scanner = Scanner::new();
        let mut start = 0;
        for &cut in cuts.iter().chain([&input.len()]) {
            let cut = cut.clamp(start, input.len());
            // Errors are also returned by `finish`, which is what the callers compare.
            let _ = scanner.feed(&input[start..cut]);
            start = cut;
        }
        let result = scanner.finish();
        assert_blocks_agree(&Scanner::new(), input, cuts, &result);
        result
    }

    /// Runs the block scanner, counting like `like`, over `input` cut at `cuts`, with each
    /// classifier, and checks that whatever it accepts `Scanner` accepted with the same counts.
    fn assert_blocks_agree(
        like: &Scanner,
        input: &[u8],
        cuts: &[usize],
        exact: &Result<Summary, ScanError>,
    ) {
        for portable in [false, true] {
            let mut blocks = BlockScanner::like(like);
            if portable {
                blocks = blocks.without_avx2();
            }
            let mut start = 0;
            let mut fed = Ok(());
            for &cut in cuts.iter().chain([&input.len()]) {
                let cut = cut.clamp(start, input.len());
                fed = fed.and_then(|()| blocks.feed(&input[start..cut]));
                start = cut;
            }
            let Ok(summary) = fed.and_then(|()| blocks.finish()) else {
                // Without backslashes, only over-long numbers stop it on valid input.
                assert!(
                    exact.is_err() || input.contains(&b'\\') || input.len() > 4096,
                    "block scanner (portable: {portable}) gave up on valid {:?}",
                    String::from_utf8_lossy(input)
                );
                continue;
            };
            match exact {
                Ok(expected) => assert_eq!(
                    &summary,
                    expected,
                    "block scanner (portable: {portable}) counts differ on {:?}",
                    String::from_utf8_lossy(input)
                ),
                Err(error) => panic!(
                    "block scanner (portable: {portable}) accepted {:?}, which Scanner rejects: \
                     {error}",
                    String::from_utf8_lossy(input)
                ),
            }
        }
    }

    fn statuses(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs
            .iter()
            .map(|&(name, count)| (name.to_string(), count))
            .collect()
    }

    fn summary(input: &str) -> Summary {
        match scan(input.as_bytes()) {
            Ok(summary) => summary,
            Err(error) => panic!("scan of {input:?} failed: {error}"),
        }
    }

    /// Counts the unmodified entries of `input` fed in pieces of `piece` bytes, with the cutoff
    /// 2026-12-04T00:00:01.5.
    fn unmodified(input: &str, piece: usize) -> u64 {
        let cutoff = chrono::NaiveDateTime::parse_from_str(
            "2026-12-04T00:00:01.500000",
            "%Y-%m-%dT%H:%M:%S%.f",
        )
        .unwrap();
        let mut scanner = Scanner::with_modified_cutoff(cutoff);
        for chunk in input.as_bytes().chunks(piece) {
            scanner.feed(chunk).unwrap();
        }
        let result = scanner.finish();
        let cuts: Vec<usize> = (piece..input.len()).step_by(piece).collect();
        assert_blocks_agree(
            &Scanner::with_modified_cutoff(cutoff),
            input.as_bytes(),
            &cuts,
            &result,
        );
        result.unwrap().unmodified_entries
    }

    #[test]
    fn modified_cutoff_counts_entries_not_after_it() {
        let cases = [
            (
                r#"{"a": {"last_modified_at": "2026-12-04T00:00:01.500001"}}"#,
                0,
            ),
            (r#"{"a": {"last_modified_at": "2026-12-04T00:00:01.6"}}"#, 0),
            (r#"{"a": {"last_modified_at": "2026-12-04T00:00:02"}}"#, 0),
            (r#"{"a": {"last_modified_at": "2026-12-04T00:00:01.5"}}"#, 1),
            (
                r#"{"a": {"last_modified_at": "2026-12-04T00:00:01.500000"}}"#,
                1,
            ),
            (r#"{"a": {"last_modified_at": "2026-12-04T00:00:01"}}"#, 1),
            (
                r#"{"a": {"last_modified_at": "2025-12-31T23:59:59.999999"}}"#,
                1,
            ),
            (r#"{"a": {"status": "draft"}}"#, 1),
            (r#"{"a": {"last_modified_at": null}}"#, 1),
            (r#"{"a": {"last_modified_at": "2026-12-04 00:00:02"}}"#, 1),
            (
                r#"{"a": {"last_modified_at": "2026-12-04T00:00:02+00:00"}}"#,
                1,
            ),
            (
                r#"{"a": {"last_modified_at": "2026-12-04T00:00:02.1234567"}}"#,
                1,
            ),
            (r#"{"a": {"last_modified_at": "2026-12-04T00:00:02."}}"#, 1),
            (
                r#"{"a": {"last_modified_at": "\u0032026-12-04T00:00:02"}}"#,
                0,
            ),
            (
                r#"{"a": {"x": {"last_modified_at": "2026-12-04T00:00:02"}}}"#,
                1,
            ),
            (
                r#"{"a": {"last_modified_at": "2026-12-04T00:00:02", "last_modified_at": "2020-01-01T00:00:00"}}"#,
                1,
            ),
            (
                r#"{"a": {"last_modified_at": "2020-01-01T00:00:00"}, "b": {"last_modified_at": "2027-01-01T00:00:00"}, "c": {}}"#,
                2,
            ),
        ];
        for (input, expected) in cases {
            for piece in [1, 3, input.len()] {
                assert_eq!(
                    unmodified(input, piece),
                    expected,
                    "{input} in pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn unmodified_entries_need_a_cutoff() {
        let summary =
            scan(br#"{"a": {"last_modified_at": "2020-01-01T00:00:00"}, "b": {}}"#).unwrap();
        assert_eq!(summary.unmodified_entries, 0);
    }

    fn scan_error(input: impl AsRef<[u8]>) -> ScanError {
        let input = input.as_ref();
        match scan(input) {
            Ok(summary) => panic!("scan of {input:?} succeeded: {summary:?}"),
            Err(error) => error,
        }
    }

    /// Asserts the error for `input`, with the position as (line, column, offset).
    #[track_caller]
    fn assert_error(
        input: impl AsRef<[u8]>,
        kind: ScanErrorKind,
        position: (u64, u64, u64),
        message: &str,
    ) {
        let error = scan_error(input);
        assert_eq!(error.message, message);
        assert_eq!(error.kind, kind, "kind of {message:?}");
        assert_eq!(
            (error.line, error.column, error.offset),
            position,
            "position of {message:?}"
        );
    }

    #[track_caller]
    fn assert_syntax_error(input: impl AsRef<[u8]>, position: (u64, u64, u64), message: &str) {
        assert_error(input, ScanErrorKind::Syntax, position, message);
    }

    // Summaries of valid input.

    #[test]
    fn summary_counts_statuses() {
        let summary = summary(
            r#"{"a": {"status": "draft"}, "b": {"status": "approved", "n": 1},
                "c": {"x": [1, 2], "status": "draft"}}"#,
        );
        assert_eq!(summary.entries, 3);
        assert_eq!(summary.duplicate_keys, 0);
        assert_eq!(
            summary.by_status,
            statuses(&[("approved", 1), ("draft", 2)])
        );
    }

    #[test]
    fn summary_of_empty_object() {
        let summary = summary(" {} \n");
        assert_eq!(summary.entries, 0);
        assert!(summary.by_status.is_empty());
        assert_eq!(summary.bytes, 5);
    }

    #[test]
    fn missing_or_non_string_status_is_unknown() {
        let summary = summary(
            r#"{"a": {}, "b": {"status": null}, "c": {"status": 3}, "d": {"status": {"s": 1}},
                "e": {"status": ["x"]}, "f": {"status": true}, "g": {"status": "unknown"},
                "h": {"state": "draft"}}"#,
        );
        assert_eq!(summary.entries, 8);
        assert_eq!(summary.by_status, statuses(&[("unknown", 8)]));
    }

    #[test]
    fn last_status_member_wins() {
        let summary = summary(
            r#"{"a": {"status": "draft", "status": 5}, "b": {"status": 5, "status": "done"},
                "c": {"status": "draft", "status": "done"}}"#,
        );
        assert_eq!(summary.by_status, statuses(&[("done", 2), ("unknown", 1)]));
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let summary = summary(
            r#"{"a": {"status": "draft"}, "b": {"status": "draft"}, "a": {"status": "approved"},
                "a": {}, "b": {"status": "draft"}}"#,
        );
        assert_eq!(summary.entries, 2);
        assert_eq!(summary.duplicate_keys, 3);
        assert_eq!(summary.by_status, statuses(&[("draft", 1), ("unknown", 1)]));
    }

    #[test]
    fn escaped_keys_are_decoded() {
        // EMOJI stands for U+1F600, kept out of the source as a literal.
        let input =
            r#"{"a": {}, "\u0061": {}, "\/\"": {}, "/\u0022": {}, "EMOJI": {}, "\ud83d\ude00": {},
                "\uD83D\uDE00": {}, "\ud800": {}, "\ufffd": {}, "\udc00\ud800": {}}"#
                .replace("EMOJI", "\u{1F600}");
        let summary = summary(&input);
        // Distinct: "a", "/\"", U+1F600, a lone high surrogate, U+FFFD and the reversed pair.
        assert_eq!(summary.entries, 6);
        assert_eq!(summary.duplicate_keys, 4);
    }

    #[test]
    fn escaped_status_is_decoded() {
        let summary = summary(
            r#"{"a": {"st\u0061tus": "\u0061pproved"}, "b": {"status": "caf\u00e9 \ud83d\ude00"},
                "c": {"status": "x\ud800y"}, "d": {"status": "tab\there"},
                "e": {"statu\u0073": "approved"}, "f": {"stat": "draft"}, "g": {"statuss": "x"}}"#,
        );
        assert_eq!(
            summary.by_status,
            statuses(&[
                ("approved", 2),
                ("café \u{1F600}", 1),
                ("tab\there", 1),
                ("unknown", 2),
                ("x\u{FFFD}y", 1),
            ])
        );
    }

    #[test]
    fn nested_status_members_are_ignored() {
        let summary = summary(
            r#"{"a": {"meta": {"status": "x"}, "items": [{"status": "y"}, "status"]},
                "b": {"audit": [{"status": "z"}], "status": "draft"}}"#,
        );
        assert_eq!(summary.by_status, statuses(&[("draft", 1), ("unknown", 1)]));
    }

    #[test]
    fn nan_and_infinity_are_accepted() {
        let summary = summary(
            r#"{"a": {"x": NaN, "y": Infinity, "z": -Infinity, "w": [NaN, -Infinity, 1e5, -0.5E-3],
                "status": "ok"}}"#,
        );
        assert_eq!(summary.by_status, statuses(&[("ok", 1)]));
    }

    #[test]
    fn long_status_is_cut_at_a_char_boundary() {
        let accented = "é".repeat(200);
        let ascii_then_accent = format!("{}é", "a".repeat(255));
        let input = format!(
            r#"{{"a": {{"status": "{accented}"}}, "b": {{"status": "{ascii_then_accent}"}}}}"#
        );
        let summary = summary(&input);
        let expected = statuses(&[(&"é".repeat(128), 1), (&"a".repeat(255), 1)]);
        assert_eq!(summary.by_status, expected);
    }

    #[test]
    fn status_names_past_limit_are_other() {
        let entries: Vec<String> = (0..300)
            .map(|n| format!(r#""k{n}": {{"status": "s{n}"}}"#))
            .collect();
        let input = format!(
            "{{{}, \"again\": {{\"status\": \"s0\"}}}}",
            entries.join(", ")
        );
        let summary = summary(&input);
        assert_eq!(summary.entries, 301);
        assert_eq!(summary.by_status.len(), 257);
        assert_eq!(summary.by_status["(other)"], 44);
        assert_eq!(summary.by_status["s0"], 2);
        assert_eq!(summary.by_status["s255"], 1);
        assert!(!summary.by_status.contains_key("s256"));
    }

    #[test]
    fn summary_counts_bytes() {
        let input = "{\"a\": {}}\n";
        let mut scanner = Scanner::new();
        for chunk in input.as_bytes().chunks(3) {
            scanner.feed(chunk).unwrap();
        }
        scanner.feed(b"").unwrap();
        assert_eq!(scanner.finish().unwrap().bytes, 10);
    }

    #[test]
    fn entry_slot_takes_twenty_bytes() {
        assert_eq!(std::mem::size_of::<(Fingerprint, u16)>(), 20);
    }

    #[test]
    fn deepest_allowed_nesting_is_accepted() {
        // The top-level object and the entry are levels 1 and 2.
        let arrays = MAX_DEPTH - 2;
        let input = format!(
            r#"{{"a": {{"b": {}{}}}}}"#,
            "[".repeat(arrays),
            "]".repeat(arrays)
        );
        assert_eq!(summary(&input).entries, 1);
    }

    // Errors.

    #[test]
    fn empty_input_is_empty_error() {
        assert_error(
            b"",
            ScanErrorKind::Empty,
            (1, 1, 0),
            "file is empty (0 bytes)",
        );
        let mut scanner = Scanner::new();
        scanner.feed(b"").unwrap();
        assert_eq!(scanner.finish().unwrap_err().kind, ScanErrorKind::Empty);
    }

    #[test]
    fn whitespace_only_is_syntax_error() {
        assert_syntax_error(
            " \n\t\r ",
            (2, 4, 5),
            "expected a JSON object, found only whitespace",
        );
    }

    #[test]
    fn byte_order_mark_is_rejected() {
        assert_syntax_error(
            b"\xEF\xBB\xBF{}",
            (1, 1, 0),
            "file starts with a UTF-8 byte order mark, which Python's json.load also rejects",
        );
        assert_syntax_error(
            b"\xEF\xBB",
            (1, 1, 0),
            "expected a JSON object, found non-ASCII byte 0xEF",
        );
        assert_syntax_error(
            b"\xEF\xBBx",
            (1, 1, 0),
            "expected a JSON object, found non-ASCII byte 0xEF",
        );
        assert_syntax_error(
            b" \xEF\xBB\xBF{}",
            (1, 2, 1),
            "expected a JSON object, found non-ASCII byte 0xEF",
        );
    }

    #[test]
    fn error_display_shows_position() {
        let error = scan_error(b"{\n  \"a\": {\n  \"ab\"x");
        assert_eq!(
            error.to_string(),
            "line 3, column 7: expected ':' after an object key, found 'x'"
        );
    }

    #[test]
    fn structural_errors() {
        assert_syntax_error("x", (1, 1, 0), "expected a JSON object, found 'x'");

        // Objects.
        assert_syntax_error(
            "{\"a\" 1}",
            (1, 6, 5),
            "expected ':' after an object key, found '1'",
        );
        assert_syntax_error(
            "{\"a\": {},}",
            (1, 10, 9),
            "expected a key string after ',' in an object, found '}'",
        );
        assert_syntax_error(
            "{\"a\": {}\n \"b\": {}}",
            (2, 2, 10),
            "expected ',' or '}' after an object member, found '\"'",
        );
        assert_syntax_error(
            "{1: {}}",
            (1, 2, 1),
            "expected a key string or '}' after '{', found '1'",
        );

        // Arrays.
        assert_syntax_error(
            "{\"a\": {\"b\": [1,]}}",
            (1, 16, 15),
            "expected a value after ',' in an array, found ']'",
        );
        assert_syntax_error(
            "{\"a\": {\"b\": [1 2]}}",
            (1, 16, 15),
            "expected ',' or ']' after an array element, found '2'",
        );
        assert_syntax_error(
            "{\"a\": {\"b\": [}]}}",
            (1, 14, 13),
            "expected a value or ']' after '[', found '}'",
        );
        assert_syntax_error(
            "{\"a\": {\"b\": ]}}",
            (1, 13, 12),
            "expected a value after ':', found ']'",
        );

        // Unexpected bytes are shown as characters when printable and in hex otherwise.
        assert_syntax_error(
            "{\"a\": {\"b\": 'x'}}",
            (1, 13, 12),
            "expected a value after ':', found '''",
        );
        assert_syntax_error(
            "{\"a\": {\"b\": \x0B}}",
            (1, 13, 12),
            "expected a value after ':', found byte 0x0B",
        );
        assert_syntax_error(
            "{\"a\": {\"b\": \u{00e9}}}",
            (1, 13, 12),
            "expected a value after ':', found non-ASCII byte 0xC3",
        );
        assert_syntax_error(
            b"{\"a\": {\"b\": \xFF}}",
            (1, 13, 12),
            "expected a value after ':', found byte 0xFF, which is invalid UTF-8",
        );
    }

    #[test]
    fn extra_data_after_top_level_value() {
        assert_syntax_error(
            "{} \n {}",
            (2, 2, 5),
            "extra data after the top-level object, found '{'",
        );
        assert_syntax_error(
            "1 2",
            (1, 3, 2),
            "extra data after the top-level value, found '2'",
        );
        assert_syntax_error(
            "nullx",
            (1, 5, 4),
            "extra data after the top-level value, found 'x'",
        );
        assert_syntax_error(
            b"{}\0",
            (1, 3, 2),
            "extra data after the top-level object, found byte 0x00",
        );
    }

    #[test]
    fn number_errors() {
        let cases = [
            (
                "-x",
                "expected a digit or 'Infinity' after '-', found 'x'",
                1,
            ),
            ("+1", "expected a value after ':', found '+'", 0),
            (
                "01",
                "expected '.', 'e' or the end of the number after a leading 0, found '1'",
                1,
            ),
            (
                "-01",
                "expected '.', 'e' or the end of the number after a leading 0, found '1'",
                2,
            ),
            ("1.", "expected a digit after '.' in a number, found '}'", 2),
            (".5", "expected a value after ':', found '.'", 0),
            (
                "1.e5",
                "expected a digit after '.' in a number, found 'e'",
                2,
            ),
            (
                "1e",
                "expected a digit, '+' or '-' after 'e' in a number, found '}'",
                2,
            ),
            (
                "1E+",
                "expected a digit in the exponent of a number, found '}'",
                3,
            ),
            (
                "1e-x",
                "expected a digit in the exponent of a number, found 'x'",
                3,
            ),
            (
                "1x",
                "expected ',' or '}' after an object member, found 'x'",
                1,
            ),
            (
                "0x1",
                "expected ',' or '}' after an object member, found 'x'",
                1,
            ),
            (
                "1.5.2",
                "expected ',' or '}' after an object member, found '.'",
                3,
            ),
            ("Inf", "expected the literal 'Infinity', found '}'", 3),
            ("-Inf", "expected the literal '-Infinity', found '}'", 4),
            (
                "-NaN",
                "expected a digit or 'Infinity' after '-', found 'N'",
                1,
            ),
            ("nan", "expected the literal 'null', found 'a'", 1),
            ("tru", "expected the literal 'true', found '}'", 3),
            ("True", "expected a value after ':', found 'T'", 0),
        ];
        for (number, message, at) in cases {
            let input = format!("{{\"a\": {{\"n\": {number}}}}}");
            let error = scan_error(&input);
            assert_eq!(error.message, message, "{number}");
            assert_eq!(error.offset, 12 + at, "{number}");
            assert_eq!(error.kind, ScanErrorKind::Syntax, "{number}");
        }
        assert_syntax_error("-", (1, 2, 1), "unexpected end of file inside a number");
        assert_syntax_error("1.", (1, 3, 2), "unexpected end of file inside a number");
        assert_syntax_error("1e+", (1, 4, 3), "unexpected end of file inside a number");
    }

    #[test]
    fn string_errors() {
        assert_syntax_error(
            "{\"a\nb\": {}}",
            (1, 4, 3),
            "unescaped control character 0x0A in a string, expected the escape \\u000A",
        );
        assert_syntax_error(
            "{\"a\": {\"b\": \"x\ty\"}}",
            (1, 15, 14),
            "unescaped control character 0x09 in a string, expected the escape \\u0009",
        );
        assert_syntax_error(
            "{\"a\\x\": {}}",
            (1, 5, 4),
            "expected one of '\"', '\\', '/', 'b', 'f', 'n', 'r', 't', 'u' after '\\' in a string, \
             found 'x'",
        );
        assert_syntax_error(
            "{\"a\\u12g4\": {}}",
            (1, 8, 7),
            "expected a hex digit in a \\u escape, found 'g'",
        );
        assert_syntax_error(
            "{\"a\\U1234\": {}}",
            (1, 5, 4),
            "expected one of '\"', '\\', '/', 'b', 'f', 'n', 'r', 't', 'u' after '\\' in a string, \
             found 'U'",
        );
        // A DEL character and escaped control characters are fine.
        assert_eq!(summary("{\"a\x7F\\u0000\\n\": {}}").entries, 1);
    }

    #[test]
    fn invalid_utf8_errors() {
        // "é€" plus U+1F600 is 3 characters in 9 bytes, so columns and offsets differ after it.
        assert_syntax_error(
            b"{\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xFF\": {}}",
            (1, 6, 11),
            "invalid UTF-8 byte 0xFF in a string",
        );

        // Bytes that cannot start a character.
        assert_syntax_error(
            b"{\"\x80\": {}}",
            (1, 3, 2),
            "invalid UTF-8 byte 0x80 in a string",
        );
        assert_syntax_error(
            b"{\"\xC0\xAF\": {}}",
            (1, 3, 2),
            "invalid UTF-8 byte 0xC0 in a string",
        );
        assert_syntax_error(
            b"{\"\xF5\x80\": {}}",
            (1, 3, 2),
            "invalid UTF-8 byte 0xF5 in a string",
        );

        // Sequences cut short, overlong, encoding a surrogate or past U+10FFFF.
        assert_syntax_error(
            b"{\"\xC3A\": {}}",
            (1, 4, 3),
            "invalid UTF-8 sequence in a string: expected a continuation byte after 0xC3, \
             found 'A'",
        );
        assert_syntax_error(
            b"{\"\xE2\x82\": {}}",
            (1, 4, 4),
            "invalid UTF-8 sequence in a string: expected a continuation byte after 0xE2, \
             found '\"'",
        );
        assert_syntax_error(
            b"{\"\xE0\x80\x80\": {}}",
            (1, 4, 3),
            "invalid UTF-8 sequence in a string: 0xE0 0x80 starts an overlong encoding",
        );
        assert_syntax_error(
            b"{\"\xED\xA0\x80\": {}}",
            (1, 4, 3),
            "invalid UTF-8 sequence in a string: 0xED 0xA0 starts a surrogate code point",
        );
        assert_syntax_error(
            b"{\"\xF4\x90\x80\x80\": {}}",
            (1, 4, 3),
            "invalid UTF-8 sequence in a string: 0xF4 0x90 starts a code point above U+10FFFF",
        );
        assert_syntax_error(
            b"{\"\xF0\x8F\x80\x80\": {}}",
            (1, 4, 3),
            "invalid UTF-8 sequence in a string: 0xF0 0x8F starts an overlong encoding",
        );
        assert_syntax_error(
            b"{\"a\": {}, \"b\xF0\x9F\x98\": {}}",
            (1, 14, 15),
            "invalid UTF-8 sequence in a string: expected a continuation byte after 0xF0, \
             found '\"'",
        );
    }

    #[test]
    fn end_of_file_errors() {
        assert_syntax_error("{", (1, 2, 1), "unexpected end of file inside an object");
        assert_syntax_error(
            "{\"a\": {\"b\": [1, ",
            (1, 17, 16),
            "unexpected end of file inside an array",
        );
        assert_syntax_error(
            "{\"a\": {\"b\": 1",
            (1, 14, 13),
            "unexpected end of file inside an object",
        );
        assert_syntax_error(
            "{\"a\": {\"b\"",
            (1, 11, 10),
            "unexpected end of file inside an object",
        );
        assert_syntax_error("{\"a", (1, 4, 3), "unexpected end of file inside a string");
        assert_syntax_error(
            "{\"a\\",
            (1, 5, 4),
            "unexpected end of file inside a string",
        );
        assert_syntax_error(
            "{\"a\\u00",
            (1, 8, 7),
            "unexpected end of file inside a string",
        );
        assert_syntax_error(
            b"{\"\xC3",
            (1, 4, 3),
            "unexpected end of file inside a string",
        );
        assert_syntax_error(
            "{\"a\": {\"b\": fals",
            (1, 17, 16),
            "unexpected end of file inside the literal 'false'",
        );
        assert_syntax_error(
            "{\"a\": {\"b\": -Infin",
            (1, 19, 18),
            "unexpected end of file inside the literal '-Infinity'",
        );
        assert_syntax_error(
            "{\n\"a\": {\n",
            (3, 1, 9),
            "unexpected end of file inside an object",
        );
    }

    #[test]
    fn nesting_deeper_than_limit_is_rejected() {
        let arrays = MAX_DEPTH - 1;
        let input = format!(
            r#"{{"a": {{"b": {}{}}}}}"#,
            "[".repeat(arrays),
            "]".repeat(arrays)
        );
        let offset = 12 + arrays as u64 - 1;
        assert_syntax_error(
            &input,
            (1, offset + 1, offset),
            "nesting deeper than 10000 levels",
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut scanner = Scanner::new();
        let error = scanner.feed(&vec![b'['; 100_000]).unwrap_err();
        assert_eq!(error.message, "nesting deeper than 10000 levels");
        assert_eq!(error.offset, 10_000);
        assert!(scanner.stack.capacity() <= MAX_DEPTH);
        assert_eq!(scanner.finish().unwrap_err(), error);
        let objects = "{\"a\":".repeat(100_000);
        assert_eq!(scan_error(&objects).offset, 5 * 10_000);
    }

    #[test]
    fn feed_after_error_returns_same_error() {
        let mut scanner = Scanner::new();
        scanner.feed(b"{\"a\": ").unwrap();
        let first = scanner.feed(b"x, ").unwrap_err();
        assert_eq!(first.offset, 6);
        assert_eq!(scanner.feed(b"{}").unwrap_err(), first);
        assert_eq!(scanner.feed(b"").unwrap_err(), first);
        assert_eq!(scanner.finish().unwrap_err(), first);
    }

    // Shape errors.

    #[test]
    fn top_level_value_must_be_object() {
        let cases = [
            ("[]", "an array"),
            (" [{\"status\": 1}]", "an array"),
            ("\"x\"", "a string"),
            ("12.5", "a number"),
            ("-Infinity", "a number"),
            ("NaN ", "a number"),
            ("0", "a number"),
            ("true", "a boolean"),
            ("null", "null"),
        ];
        for (input, description) in cases {
            let error = scan_error(input);
            let message = format!(
                "top-level value is {description}, expected an object of entries keyed by id"
            );
            assert_eq!(error.message, message, "{input}");
            assert_eq!(error.kind, ScanErrorKind::Shape, "{input}");
            let offset = input.len() - input.trim_start().len();
            assert_eq!(error.offset, offset as u64, "{input}");
        }
    }

    #[test]
    fn entries_must_be_objects() {
        assert_error(
            "{\"a\": {}, \n \"b\\\"c\": \"x\", \"d\": 1}",
            ScanErrorKind::Shape,
            (2, 10, 20),
            "entry \"b\\\"c\" is a string, expected an object",
        );
        assert_error(
            "{\"a\": []}",
            ScanErrorKind::Shape,
            (1, 7, 6),
            "entry \"a\" is an array, expected an object",
        );
        assert_error(
            "{\"a\": null}",
            ScanErrorKind::Shape,
            (1, 7, 6),
            "entry \"a\" is null, expected an object",
        );
        assert_error(
            "{\"\\ud800x\": false}",
            ScanErrorKind::Shape,
            (1, 13, 12),
            "entry \"\u{FFFD}x\" is a boolean, expected an object",
        );
        let long_key = "ü".repeat(100);
        let input = format!("{{\"{long_key}\": 5}}");
        let expected = format!(
            "entry \"{}...\" is a number, expected an object",
            "ü".repeat(80)
        );
        assert_eq!(scan_error(input).message, expected);
    }

    #[test]
    fn syntax_error_after_shape_error_wins() {
        let error = scan_error(b"[1, 2, x]");
        assert_eq!(error.kind, ScanErrorKind::Syntax);
        assert_eq!(error.offset, 7);
        let error = scan_error("{\"a\": 1, \"b\": {} x");
        assert_eq!(error.kind, ScanErrorKind::Syntax);
        let error = scan_error("{\"a\": 1, \"b\": {}");
        assert_eq!(error.message, "unexpected end of file inside an object");
        let error = scan_error("{\"a\": 1, \"b\": []}");
        assert_eq!(error.kind, ScanErrorKind::Shape);
        assert_eq!(error.offset, 6);
    }

    // Chunking.

    /// Inputs covering every state, valid and invalid.
    fn chunking_samples() -> Vec<Vec<u8>> {
        let mut samples: Vec<Vec<u8>> = [
            "{\"a\": {\"status\": \"draft\", \"n\": [1, -2.5e+3, 0, 0.25E-2, true, false, null]},\n \
             \"\\u0062\": {\"st\\u0061tus\": \"caf\\u00e9 \\ud83d\\ude00 \\ud800\"}, \"a\": {}}",
            "{\"é€\u{1F600}\": {\"status\": \"é€\u{1F600}\", \"x\": \"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}}",
            "{\"a\": {\"x\": NaN, \"y\": -Infinity, \"z\": Infinity, \"status\": {\"status\": 1}}}",
            "{\"a\": {\"status\": \"x\"}, \"b\": \"oops\", \"c\": {}}",
            "[{\"a\": 1}]",
            "  {} ",
            "{\"a\": {\"b\": [1, 2,]}}",
            "{\"a\": {\"b\": 1e}}",
            "{\"a\": {\"b\": \"x\ny\"}}",
            "{\"a\": {\"b\": tru}}",
            "{\"a\": {\"b\" 1}}",
            "{\"a\": {}} x",
            "{\"a\": {\"b\": \"\\u12x4\"}}",
            "{\"a\": {\"b\": [[[",
        ]
        .iter()
        .map(|sample| sample.as_bytes().to_vec())
        .collect();
        samples.push(b"\xEF\xBB\xBF{}".to_vec());
        samples.push(b"{\"a\": {\"b\": \"\xE2\x82x\"}}".to_vec());
        samples.push(b"{\"a\": {\"b\": \"\xF0\x9F\x98\x80\xED\xA0\x80\"}}".to_vec());
        samples
    }

    #[test]
    fn every_single_split_gives_same_result() {
        for sample in chunking_samples() {
            let whole = scan(&sample);
            for cut in 0..=sample.len() {
                assert_eq!(
                    scan_split(&sample, &[cut]),
                    whole,
                    "{sample:?} cut at {cut}"
                );
            }
            let every_byte: Vec<usize> = (0..sample.len()).collect();
            assert_eq!(
                scan_split(&sample, &every_byte),
                whole,
                "{sample:?} byte by byte"
            );
        }
    }

    #[test]
    fn long_key_splits_keep_fingerprint() {
        // Keys longer than the 64-byte hashing block, split at every position.
        let key = "k".repeat(70) + "é" + &"\\u00e9".repeat(3) + &"x".repeat(60);
        let input = format!(r#"{{"{key}": {{}}, "{key}": {{"status": "s"}}}}"#);
        let whole = scan(input.as_bytes()).unwrap();
        assert_eq!(whole.entries, 1);
        assert_eq!(whole.duplicate_keys, 1);
        let second = input.rfind(&key).unwrap();
        for cut in 0..input.len() {
            let split = scan_split(input.as_bytes(), &[cut.min(second), cut]);
            assert_eq!(split.as_ref(), Ok(&whole), "cut at {cut}");
        }
    }

    // Generated documents, checked against serde_json.

    fn status_value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            3 => prop::sample::select(vec!["draft", "approved", "completed", "cancelled"])
                .prop_map(|status| Some(Value::from(status))),
            2 => "\\PC{0,6}|[\"\\\\\\n\\t\u{0}-\u{1f}]{0,3}".prop_map(|status| Some(Value::from(status))),
            1 => "\\PC{100,140}".prop_map(|status| Some(Value::from(status))),
            1 => Just(None),
            1 => Just(Some(Value::Null)),
            1 => any::<i32>().prop_map(|number| Some(Value::from(number))),
            1 => any::<bool>().prop_map(|flag| Some(Value::from(flag))),
            1 => Just(Some(json!({"status": "nested"}))),
            1 => Just(Some(json!(["status"]))),
        ]
    }

    fn other_member() -> impl Strategy<Value = (String, Value)> {
        let value = prop_oneof![
            any::<f64>()
                .prop_filter("finite", |number| number.is_finite())
                .prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
            Just(json!([{"status": "deep"}, [], {}, null])),
            Just(json!({"status": "nested", "items": [1.5, "x"]})),
        ];
        ("[a-z_]{1,8}|stat|statuses|Status", value)
    }

    fn entry() -> impl Strategy<Value = Value> {
        (
            status_value(),
            prop::collection::vec(other_member(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(status, others, status_first)| {
                let mut entry = serde_json::Map::new();
                let mut members = others;
                if let Some(status) = status {
                    let member = ("status".to_string(), status);
                    if status_first {
                        members.insert(0, member);
                    } else {
                        members.push(member);
                    }
                }
                for (key, value) in members {
                    entry.insert(key, value);
                }
                Value::Object(entry)
            })
    }

    /// Members of a generated document, whose keys often repeat.
    fn members() -> impl Strategy<Value = Vec<(String, Value)>> {
        let key = prop_oneof![
            prop::sample::select(vec!["a", "b", "\u{e9}", "\"q\"", "\u{1F600}"])
                .prop_map(str::to_string),
            "\\PC{0,12}",
            "[0-9a-f]{8}-[0-9a-f]{4}",
        ];
        prop::collection::vec((key, entry()), 0..12)
    }

    #[derive(Debug, Clone, Copy)]
    enum Layout {
        Compact,
        Pretty,
        /// Pretty, with non-ASCII characters escaped as Python's `ensure_ascii` does.
        PrettyAscii,
    }

    fn render(members: &[(String, Value)], layout: Layout) -> String {
        let rendered: Vec<String> = members
            .iter()
            .map(|(key, value)| {
                let key = serde_json::to_string(key).unwrap();
                match layout {
                    Layout::Compact => format!("{key}:{}", serde_json::to_string(value).unwrap()),
                    Layout::Pretty | Layout::PrettyAscii => {
                        let value = serde_json::to_string_pretty(value).unwrap();
                        format!("  {key}: {}", value.replace('\n', "\n  "))
                    }
                }
            })
            .collect();
        match layout {
            Layout::Compact => format!("{{{}}}", rendered.join(",")),
            Layout::Pretty => format!("{{\n{}\n}}", rendered.join(",\n")),
            Layout::PrettyAscii => escape_non_ascii(&format!("{{\n{}\n}}", rendered.join(",\n"))),
        }
    }

    /// Escapes every non-ASCII character, which in JSON text can only be inside strings.
    fn escape_non_ascii(text: &str) -> String {
        let mut escaped = String::new();
        for c in text.chars() {
            if c.is_ascii() {
                escaped.push(c);
            } else {
                let mut units = [0; 2];
                for unit in c.encode_utf16(&mut units) {
                    escaped.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        escaped
    }

    /// Computes the expected summary of `document` with serde_json, whose maps also keep the
    /// last of duplicate keys.
    fn expected_summary(document: &str, members: usize) -> Summary {
        let value: Value = serde_json::from_str(document).unwrap();
        let entries = value.as_object().unwrap();
        let mut by_status = BTreeMap::new();
        for entry in entries.values() {
            let status = match entry.get("status") {
                Some(Value::String(status)) => {
                    let mut end = status.len().min(MAX_STATUS_BYTES);
                    while !status.is_char_boundary(end) {
                        end -= 1;
                    }
                    status[..end].to_string()
                }
                _ => "unknown".to_string(),
            };
            *by_status.entry(status).or_insert(0) += 1;
        }
        Summary {
            entries: entries.len() as u64,
            by_status,
            duplicate_keys: (members - entries.len()) as u64,
            unmodified_entries: 0,
            bytes: document.len() as u64,
        }
    }

    fn layout() -> impl Strategy<Value = Layout> {
        prop_oneof![
            Just(Layout::Compact),
            Just(Layout::Pretty),
            Just(Layout::PrettyAscii)
        ]
    }

    /// Cut points for splitting a document of up to `len` bytes.
    fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(0..len.max(1), 0..8).prop_map(|mut cuts| {
            cuts.sort_unstable();
            cuts
        })
    }

    /// Checks whether `bytes` may contain input that Python and serde_json read differently:
    /// `NaN`, `Infinity`, a `\u` escape of a surrogate, a byte order mark or a number that is
    /// too large for serde_json.
    fn readers_may_differ(bytes: &[u8], serde_error: Option<&serde_json::Error>) -> bool {
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
        let lowercase = bytes.to_ascii_lowercase();
        let surrogate_escape = lowercase.windows(3).any(|window| window == b"\\ud");
        contains(b"NaN")
            || contains(b"Infinity")
            || surrogate_escape
            || bytes.starts_with(b"\xEF")
            || serde_error.is_some_and(|error| error.to_string().contains("out of range"))
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Truncate(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let byte = prop_oneof![
            prop::sample::select(b"{}[]:,\" \n\\0123456789.eE+-tfnuNI\xC3\xA9\xFF\x00".to_vec()),
            any::<u8>(),
        ];
        prop_oneof![
            (any::<usize>(), byte.clone()).prop_map(|(at, b)| Mutation::Replace(at, b)),
            (any::<usize>(), byte).prop_map(|(at, b)| Mutation::Insert(at, b)),
            any::<usize>().prop_map(Mutation::Delete),
            any::<usize>().prop_map(Mutation::Truncate),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
        let len = bytes.len();
        match *mutation {
            Mutation::Replace(at, b) if len > 0 => bytes[at % len] = b,
            Mutation::Insert(at, b) => bytes.insert(at % (len + 1), b),
            Mutation::Delete(at) if len > 0 => {
                bytes.remove(at % len);
            }
            Mutation::Truncate(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn generated_documents_match_serde_json(
            members in members(),
            layout in layout(),
            cut_fractions in prop::collection::vec(0.0..1.0f64, 0..6),
        ) {
            let document = render(&members, layout);
            let expected = expected_summary(&document, members.len());
            let mut cuts: Vec<usize> = cut_fractions
                .iter()
                .map(|fraction| (fraction * document.len() as f64) as usize)
                .collect();
            cuts.sort_unstable();
            prop_assert_eq!(scan(document.as_bytes()), Ok(expected.clone()));
            prop_assert_eq!(scan_split(document.as_bytes(), &cuts), Ok(expected));
        }

        #[test]
        fn mutated_documents_agree_with_serde_json(
            members in members(),
            layout in layout(),
            mutations in prop::collection::vec(mutation(), 1..4),
            cuts in cuts(4096),
        ) {
            let mut bytes = render(&members, layout).into_bytes();
            for mutation in &mutations {
                apply(&mut bytes, mutation);
            }
            let whole = scan(&bytes);
            prop_assert_eq!(scan_split(&bytes, &cuts), whole.clone());
            let serde_result = serde_json::from_slice::<Value>(&bytes);
            if !readers_may_differ(&bytes, serde_result.as_ref().err()) {
                let scanner_accepts_syntax = match &whole {
                    Ok(_) => true,
                    Err(error) => error.kind == ScanErrorKind::Shape,
                };
                prop_assert_eq!(
                    scanner_accepts_syntax,
                    serde_result.is_ok(),
                    "scanner: {:?}, serde_json: {:?}, input: {:?}",
                    whole,
                    serde_result,
                    String::from_utf8_lossy(&bytes)
                );
            }
        }

        #[test]
        fn random_bytes_never_panic(
            bytes in prop::collection::vec(
                prop_oneof![
                    prop::sample::select(b"{}[]:,\" \n\\0123456789.eE+-tfnuNI".to_vec()),
                    any::<u8>(),
                ],
                0..200,
            ),
            cuts in cuts(200),
        ) {
            let whole = scan(&bytes);
            prop_assert_eq!(scan_split(&bytes, &cuts), whole);
        }
    }

    // Real files written by the backend.

    #[test]
    fn real_fixtures() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real");
        if !directory.is_dir() {
            println!("skipped: {} not found", directory.display());
            return;
        }
        let cases = [
            (
                "scan_sessions.approved-draft.json",
                4,
                &[("approved", 2), ("draft", 2)][..],
            ),
            (
                "scan_sessions.approved-draft-2.json",
                4,
                &[("approved", 2), ("draft", 2)],
            ),
            (
                "scan_sessions.cancelled-draft.json",
                3,
                &[("cancelled", 2), ("draft", 1)],
            ),
            (
                "session_history_20251205_120337.json",
                4,
                &[("approved", 2), ("draft", 2)],
            ),
            (
                "session_history_20251205_120402.json",
                1,
                &[("approved", 1)],
            ),
        ];
        for (name, entries, expected) in cases {
            let bytes = std::fs::read(directory.join(name)).unwrap();
            let summary = scan(&bytes).unwrap();
            assert_eq!(summary.entries, entries, "{name}");
            assert_eq!(summary.by_status, statuses(expected), "{name}");
            assert_eq!(summary.duplicate_keys, 0, "{name}");
            assert_eq!(summary.bytes, bytes.len() as u64, "{name}");
            let every_7: Vec<usize> = (0..bytes.len()).step_by(7).collect();
            assert_eq!(
                scan_split(&bytes, &every_7),
                Ok(summary),
                "{name} in 7-byte chunks"
            );
        }
    }
}
