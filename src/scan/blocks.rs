//! The fast path of the file check: validation of 64 bytes at a time with bit masks.
//!
//! [`BlockScanner`] accepts only files that [`Scanner`] accepts, and counts them the same way,
//! but it works on whole blocks. A classifier (AVX2 where the processor has it, plain code
//! elsewhere) turns each 64-byte block into bit masks of quotes, backslashes, whitespace,
//! punctuation, control bytes and non-ASCII bytes. The quote bits, minus escaped quotes, tell
//! which bytes are inside strings, so only the bytes that start a token or end a string are
//! looked at one by one. Whitespace and string content cost no work per byte, except for
//! escapes and non-ASCII bytes, which are checked where the masks show them.
//!
//! It gives up, without saying why, on anything it does not handle itself. That is every syntax
//! or shape error and empty input. It is also an escape in a string whose text it reads, which
//! is an entry id, a member key, or a status or `last_modified_at` value. Numbers and literals
//! longer than [`MAX_ATOM`] bytes and nesting deeper than [`MAX_DEPTH`] are left to it as well.
//! The caller then runs [`Scanner`] over the same bytes, which either reports the error and
//! where it is, or accepts the file.

use super::{Container, MAX_DEPTH, Scanner, StringRole, Summary, Utf8Check, check_utf8_sequence};

/// Size of the unit that the classifier works on.
const BLOCK: usize = 64;

/// Maximum length of a number or literal. Longer ones are valid JSON, but left to [`Scanner`].
const MAX_ATOM: usize = 4096;

/// Marker that the input is invalid or outside what [`BlockScanner`] handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHandled;

/// Bit `i` of each mask describes byte `i` of a block.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Masks {
    quote: u64,
    backslash: u64,
    /// Space, tab, LF and CR.
    whitespace: u64,
    /// `{`, `}`, `[`, `]`, `:` and `,`.
    punctuation: u64,
    /// Bytes below 0x20, including tab, LF and CR.
    control: u64,
    /// Bytes from 0x80 up.
    non_ascii: u64,
}

/// Kind of token allowed next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value: at the start, after `:`, or after `,` in an array.
    Value,
    /// A value or `]`, after `[`.
    ValueOrClose,
    /// A key or `}`, after `{`.
    KeyOrClose,
    /// A key, after `,` in an object.
    Key,
    Colon,
    /// `,` or the closing bracket of the innermost container, after a value.
    CommaOrClose,
    /// Nothing but whitespace, after the top-level value.
    End,
}

/// Validator and entry counter with [`Scanner`] as its fallback, described in the module
/// documentation.
pub struct BlockScanner {
    /// Entry counts, kept in a [`Scanner`] so that [`Scanner::record_entry`] updates them. Its
    /// state machine is not used.
    tally: Scanner,
    /// Whether the processor has AVX2, checked once.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    avx2: bool,
    /// Bytes of a block that the last chunk did not complete.
    partial: [u8; BLOCK],
    partial_len: usize,
    bytes: u64,
    /// All ones when the last block ended inside a string, else 0.
    in_string: u64,
    /// Whether the first byte of the next block follows a backslash that escapes it.
    escape_next: bool,
    /// Hex digits of a `\u` escape that belong to the next block.
    hex_left: u8,
    /// Start of a UTF-8 sequence that the last block cut off.
    utf8: [u8; 4],
    utf8_len: usize,
    /// 1 when the last byte of the last block belonged to a number or literal, else 0.
    atom_carry: u64,
    /// Number or literal that the last block cut off.
    atom: Vec<u8>,
    expect: Expect,
    stack: Vec<Container>,
    /// Role of the string that the last block ended in.
    open_string: Option<StringRole>,
}

impl BlockScanner {
    /// Creates a block scanner that counts like `scanner`, which must not have been fed yet.
    pub fn like(scanner: &Scanner) -> BlockScanner {
        let tally = Scanner {
            modified_cutoff: scanner.modified_cutoff.clone(),
            ..Scanner::new()
        };
        BlockScanner {
            tally,
            avx2: has_avx2(),
            partial: [0; BLOCK],
            partial_len: 0,
            bytes: 0,
            in_string: 0,
            escape_next: false,
            hex_left: 0,
            utf8: [0; 4],
            utf8_len: 0,
            atom_carry: 0,
            atom: Vec::new(),
            expect: Expect::Value,
            stack: Vec::new(),
            open_string: None,
        }
    }

    /// Returns this scanner with the portable classifier, so tests cover it on any processor.
    #[cfg(test)]
    pub fn without_avx2(mut self) -> BlockScanner {
        self.avx2 = false;
        self
    }

    /// Scans the next chunk of the file. Once this returns an error, the scanner must not be
    /// used again.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), NotHandled> {
        self.bytes += chunk.len() as u64;
        let mut rest = chunk;
        if self.partial_len > 0 {
            let take = (BLOCK - self.partial_len).min(rest.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&rest[..take]);
            self.partial_len += take;
            rest = &rest[take..];
            if self.partial_len < BLOCK {
                return Ok(());
            }
            let block = self.partial;
            self.partial_len = 0;
            self.feed_blocks(&block)?;
        }
        let whole = rest.len() - rest.len() % BLOCK;
        self.feed_blocks(&rest[..whole])?;
        let tail = &rest[whole..];
        self.partial[..tail.len()].copy_from_slice(tail);
        self.partial_len = tail.len();
        Ok(())
    }

    /// Checks that the input ended after a complete document and returns the counts.
    pub fn finish(mut self) -> Result<Summary, NotHandled> {
        if self.bytes == 0 {
            return Err(NotHandled);
        }
        // Spaces after the end change nothing in valid JSON, and they end a number or literal
        // that runs to the last byte.
        let mut block = [b' '; BLOCK];
        block[..self.partial_len].copy_from_slice(&self.partial[..self.partial_len]);
        self.feed_blocks(&block)?;
        let complete = self.expect == Expect::End
            && self.open_string.is_none()
            && !self.escape_next
            && self.hex_left == 0
            && self.utf8_len == 0;
        if !complete {
            return Err(NotHandled);
        }
        self.tally.bytes = self.bytes;
        Ok(self.tally.summary())
    }

    /// Scans `blocks`, whose length is a multiple of [`BLOCK`].
    fn feed_blocks(&mut self, blocks: &[u8]) -> Result<(), NotHandled> {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `avx2` is true only when the processor has AVX2.
            return unsafe { self.feed_blocks_avx2(blocks) };
        }
        self.feed_blocks_with(blocks, classify_portable)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn feed_blocks_avx2(&mut self, blocks: &[u8]) -> Result<(), NotHandled> {
        // The closure has the target features of this function, so it may call the classifier.
        self.feed_blocks_with(blocks, |block| classify_avx2(block))
    }

    #[inline(always)]
    fn feed_blocks_with(
        &mut self,
        blocks: &[u8],
        classify: impl Fn(&[u8; BLOCK]) -> Masks,
    ) -> Result<(), NotHandled> {
        for block in blocks.chunks_exact(BLOCK) {
            let block: &[u8; BLOCK] = block.try_into().expect("chunks_exact yields whole blocks");
            self.scan_block(block, classify(block))?;
        }
        Ok(())
    }

    #[inline(always)]
    fn scan_block(&mut self, block: &[u8; BLOCK], masks: Masks) -> Result<(), NotHandled> {
        let escaped = if masks.backslash != 0 || self.escape_next || self.hex_left != 0 {
            self.check_escapes(block, masks.backslash)?
        } else {
            0
        };
        let quotes = masks.quote & !escaped;
        // Each unescaped quote flips between outside and inside a string, so a prefix XOR marks
        // every byte from an opening quote up to, but not including, its closing quote.
        let in_string = prefix_xor(quotes) ^ self.in_string;
        self.in_string = ((in_string as i64) >> 63) as u64;
        if masks.control & in_string != 0 {
            return Err(NotHandled);
        }
        if masks.non_ascii != 0 || self.utf8_len != 0 {
            self.check_utf8(block, masks.non_ascii)?;
        }
        let outside = !(in_string | quotes);
        // Outside strings, everything but whitespace and punctuation belongs to a number or a
        // literal, or is invalid, which the check of the number or literal finds.
        let atoms = outside & !(masks.whitespace | masks.punctuation);
        let atom_starts = atoms & !(atoms << 1 | self.atom_carry);
        self.atom_carry = atoms >> 63;
        let mut tokens = (masks.punctuation & outside) | quotes | atom_starts;

        if !self.atom.is_empty() {
            let len = (!atoms).trailing_zeros() as usize;
            self.extend_atom(&block[..len])?;
            if len < BLOCK {
                let valid = is_number_or_literal(&self.atom);
                self.atom.clear();
                if !valid {
                    return Err(NotHandled);
                }
                self.end_value();
            }
        }
        if let Some(role) = self.open_string {
            if tokens == 0 {
                return self.read_text(role, block, 0, BLOCK, masks.backslash);
            }
            // Inside a string only its closing quote is a token.
            let end = tokens.trailing_zeros() as usize;
            tokens &= tokens - 1;
            self.read_text(role, block, 0, end, masks.backslash)?;
            self.open_string = None;
            self.end_string(role);
        }
        while tokens != 0 {
            let at = tokens.trailing_zeros() as usize;
            tokens &= tokens - 1;
            match block[at] {
                b'"' => {
                    // Members are mostly strings, so a key, its ':', a string value and the
                    // ',' after it are taken here in turn, where the branches are easy to
                    // predict, without a round through the dispatch for each.
                    let mut quote = at;
                    loop {
                        let role = self.begin_string()?;
                        if tokens == 0 {
                            self.open_string = Some(role);
                            return self.read_text(role, block, quote + 1, BLOCK, masks.backslash);
                        }
                        let end = tokens.trailing_zeros() as usize;
                        tokens &= tokens - 1;
                        self.read_text(role, block, quote + 1, end, masks.backslash)?;
                        self.end_string(role);
                        if tokens == 0 {
                            break;
                        }
                        match block[tokens.trailing_zeros() as usize] {
                            b':' => self.colon()?,
                            b',' => self.comma()?,
                            _ => break,
                        }
                        tokens &= tokens - 1;
                        if tokens == 0 {
                            break;
                        }
                        let next = tokens.trailing_zeros() as usize;
                        if block[next] != b'"' {
                            break;
                        }
                        tokens &= tokens - 1;
                        quote = next;
                    }
                }
                b',' => self.comma()?,
                b':' => self.colon()?,
                b'{' => self.open(Container::Object)?,
                b'[' => self.open(Container::Array)?,
                b'}' => self.close(Container::Object)?,
                b']' => self.close(Container::Array)?,
                _ => {
                    self.begin_value(false, false)?;
                    let len = (!(atoms >> at)).trailing_zeros() as usize;
                    if at + len == BLOCK {
                        self.extend_atom(&block[at..])?;
                    } else {
                        self.end_atom(&block[at..at + len])?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks every escape that starts or continues in `block`, and returns the mask of the
    /// bytes that follow an escaping backslash.
    #[cold]
    fn check_escapes(&mut self, block: &[u8; BLOCK], backslash: u64) -> Result<u64, NotHandled> {
        let mut escaped = 0;
        let mut next = 0;
        if self.hex_left > 0 {
            next = usize::from(self.hex_left);
            self.hex_left = 0;
            if !block[..next].iter().all(u8::is_ascii_hexdigit) {
                return Err(NotHandled);
            }
        } else if self.escape_next {
            self.escape_next = false;
            escaped |= 1;
            next = self.check_escape(block, 0)?;
        }
        let mut backslashes = backslash & bits_from(next);
        while backslashes != 0 {
            let at = backslashes.trailing_zeros() as usize + 1;
            if at == BLOCK {
                self.escape_next = true;
                break;
            }
            escaped |= 1 << at;
            next = self.check_escape(block, at)?;
            backslashes &= bits_from(next);
        }
        Ok(escaped)
    }

    /// Checks the escaped character at `at` and any `\u` digits after it, and returns the
    /// index after them.
    fn check_escape(&mut self, block: &[u8; BLOCK], at: usize) -> Result<usize, NotHandled> {
        match block[at] {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(at + 1),
            b'u' => {
                let end = (at + 5).min(BLOCK);
                if !block[at + 1..end].iter().all(u8::is_ascii_hexdigit) {
                    return Err(NotHandled);
                }
                self.hex_left = (at + 5 - end) as u8;
                Ok(end)
            }
            _ => Err(NotHandled),
        }
    }

    /// Checks the UTF-8 sequences that start or continue in `block`.
    #[cold]
    fn check_utf8(&mut self, block: &[u8; BLOCK], non_ascii: u64) -> Result<(), NotHandled> {
        let mut next = 0;
        if self.utf8_len > 0 {
            let mut joined = [0; 8];
            joined[..self.utf8_len].copy_from_slice(&self.utf8[..self.utf8_len]);
            joined[self.utf8_len..self.utf8_len + 4].copy_from_slice(&block[..4]);
            let Utf8Check::Valid(width) = check_utf8_sequence(&joined[..self.utf8_len + 4]) else {
                return Err(NotHandled);
            };
            next = width - self.utf8_len;
            self.utf8_len = 0;
        }
        let mut starts = non_ascii & bits_from(next);
        while starts != 0 {
            let at = starts.trailing_zeros() as usize;
            match check_utf8_sequence(&block[at..]) {
                Utf8Check::Valid(width) => starts &= bits_from(at + width),
                Utf8Check::Incomplete => {
                    self.utf8_len = BLOCK - at;
                    self.utf8[..self.utf8_len].copy_from_slice(&block[at..]);
                    break;
                }
                Utf8Check::Invalid { .. } => return Err(NotHandled),
            }
        }
        Ok(())
    }

    /// Starts a string at its opening quote and returns its role.
    #[inline(always)]
    fn begin_string(&mut self) -> Result<StringRole, NotHandled> {
        let depth = self.stack.len();
        match self.expect {
            Expect::Key | Expect::KeyOrClose => Ok(match depth {
                1 => {
                    self.tally.key.start();
                    StringRole::EntryKey
                }
                2 => {
                    self.tally.start_member_key();
                    StringRole::MemberKey
                }
                _ => StringRole::Key,
            }),
            Expect::Value | Expect::ValueOrClose => {
                self.begin_value(false, true)?;
                Ok(if depth == 2 && self.tally.member_is_status {
                    StringRole::StatusValue
                } else if depth == 2 && self.tally.member_is_modified {
                    StringRole::ModifiedValue
                } else {
                    StringRole::Value
                })
            }
            _ => Err(NotHandled),
        }
    }

    /// Passes the string content `block[start..end]` to the reader of its role. An escape in
    /// a string whose text is read is left to [`Scanner`].
    #[inline(always)]
    fn read_text(
        &mut self,
        role: StringRole,
        block: &[u8; BLOCK],
        start: usize,
        end: usize,
        backslash: u64,
    ) -> Result<(), NotHandled> {
        if !role.decodes() {
            return Ok(());
        }
        if backslash & bits_from(start) & !bits_from(end) != 0 {
            return Err(NotHandled);
        }
        // The tally's reader of decoded text gets the raw bytes, which are the decoded text
        // because they contain no escape.
        self.tally.role = role;
        self.tally.push_decoded(&block[start..end]);
        Ok(())
    }

    /// Finishes a string at its closing quote.
    #[inline(always)]
    fn end_string(&mut self, role: StringRole) {
        match role {
            StringRole::Value | StringRole::StatusValue | StringRole::ModifiedValue => {
                self.end_value();
            }
            StringRole::Key => self.expect = Expect::Colon,
            StringRole::EntryKey => {
                self.tally.entry_fingerprint = self.tally.key.finish();
                self.expect = Expect::Colon;
            }
            StringRole::MemberKey => {
                self.tally.end_member_key();
                self.expect = Expect::Colon;
            }
        }
    }

    /// Checks that a value may start here and that the document and its entries are objects,
    /// and notes the kind of a status or `last_modified_at` value.
    #[inline(always)]
    fn begin_value(&mut self, is_object: bool, is_string: bool) -> Result<(), NotHandled> {
        if !matches!(self.expect, Expect::Value | Expect::ValueOrClose) {
            return Err(NotHandled);
        }
        match self.stack.len() {
            0 | 1 if !is_object => Err(NotHandled),
            1 => {
                self.tally.status_is_string = false;
                self.tally.modified_is_string = false;
                Ok(())
            }
            2 => {
                if self.tally.member_is_status {
                    self.tally.status_is_string = is_string;
                    self.tally.status.clear();
                }
                if self.tally.member_is_modified {
                    self.tally.modified_is_string = is_string;
                    self.tally.modified.clear();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    #[inline(always)]
    fn open(&mut self, container: Container) -> Result<(), NotHandled> {
        self.begin_value(container == Container::Object, false)?;
        if self.stack.len() == MAX_DEPTH {
            return Err(NotHandled);
        }
        self.stack.push(container);
        self.expect = match container {
            Container::Object => Expect::KeyOrClose,
            Container::Array => Expect::ValueOrClose,
        };
        Ok(())
    }

    #[inline(always)]
    fn close(&mut self, container: Container) -> Result<(), NotHandled> {
        let allowed = match self.expect {
            Expect::KeyOrClose => container == Container::Object,
            Expect::ValueOrClose => container == Container::Array,
            Expect::CommaOrClose => self.stack.last() == Some(&container),
            _ => false,
        };
        if !allowed {
            return Err(NotHandled);
        }
        if self.stack.len() == 2 {
            self.tally.record_entry();
        }
        self.stack.pop();
        self.end_value();
        Ok(())
    }

    #[inline(always)]
    fn colon(&mut self) -> Result<(), NotHandled> {
        if self.expect != Expect::Colon {
            return Err(NotHandled);
        }
        self.expect = Expect::Value;
        Ok(())
    }

    #[inline(always)]
    fn comma(&mut self) -> Result<(), NotHandled> {
        if self.expect != Expect::CommaOrClose {
            return Err(NotHandled);
        }
        self.expect = match self.stack.last() {
            Some(Container::Object) => Expect::Key,
            _ => Expect::Value,
        };
        Ok(())
    }

    fn end_value(&mut self) {
        self.expect = if self.stack.is_empty() {
            Expect::End
        } else {
            Expect::CommaOrClose
        };
    }

    fn extend_atom(&mut self, bytes: &[u8]) -> Result<(), NotHandled> {
        if self.atom.len() + bytes.len() > MAX_ATOM {
            return Err(NotHandled);
        }
        self.atom.extend_from_slice(bytes);
        Ok(())
    }

    /// Checks a whole number or literal, which [`BlockScanner::begin_value`] already allowed.
    fn end_atom(&mut self, atom: &[u8]) -> Result<(), NotHandled> {
        if !is_number_or_literal(atom) {
            return Err(NotHandled);
        }
        self.end_value();
        Ok(())
    }
}

/// Returns whether `text` is a JSON number or one of the literals that Python's `json` module
/// reads, including `NaN`, `Infinity` and `-Infinity`.
fn is_number_or_literal(text: &[u8]) -> bool {
    match text {
        b"true" | b"false" | b"null" | b"NaN" | b"Infinity" | b"-Infinity" => return true,
        _ => {}
    }
    let digits = |i: usize| i + text[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut i = usize::from(text.first() == Some(&b'-'));
    match text.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(i),
        _ => return false,
    }
    if text.get(i) == Some(&b'.') {
        let end = digits(i + 1);
        if end == i + 1 {
            return false;
        }
        i = end;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(i);
        if end == i {
            return false;
        }
        i = end;
    }
    i == text.len()
}

/// Returns a mask of bit `start` and all bits above it, or 0 when `start` is 64 or more.
fn bits_from(start: usize) -> u64 {
    if start >= BLOCK { 0 } else { !0 << start }
}

/// Returns the mask whose bit `i` is the XOR of bits `0..=i` of `x`.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Classifies a block one byte at a time, for processors without AVX2.
fn classify_portable(block: &[u8; BLOCK]) -> Masks {
    let mut masks = Masks::default();
    for (i, &b) in block.iter().enumerate() {
        let bit = 1 << i;
        match b {
            b'"' => masks.quote |= bit,
            b'\\' => masks.backslash |= bit,
            b' ' | b'\t' | b'\n' | b'\r' => masks.whitespace |= bit,
            b'{' | b'}' | b'[' | b']' | b':' | b',' => masks.punctuation |= bit,
            _ => {}
        }
        if b < 0x20 {
            masks.control |= bit;
        }
        if b >= 0x80 {
            masks.non_ascii |= bit;
        }
    }
    masks
}

/// Returns `mask` through an empty `asm!` block, which the compiler cannot look into.
///
/// Without it, LLVM (as of Rust 1.95) merges the ORs and ANDs of several masks into vector
/// code that moves the compare results between registers one byte at a time. That made the
/// block scanner take about twice as long over a 100 MB file (130 ms instead of 68 ms, release
/// build, on the 2-core machine of `BENCHMARKS.md`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn opaque(mut mask: u64) -> u64 {
    // SAFETY: the template is empty, so the block does nothing.
    unsafe {
        std::arch::asm!("/* {0} */", inout(reg) mask, options(pure, nomem, nostack, preserves_flags));
    }
    mask
}

/// Classifies a block with AVX2, 32 bytes per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn classify_avx2(block: &[u8; BLOCK]) -> Masks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_max_epu8, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };

    let pointer = block.as_ptr().cast::<__m256i>();
    // SAFETY: both loads read 32 bytes inside `block`, and unaligned loads have no alignment
    // requirement.
    let halves = unsafe {
        [
            _mm256_loadu_si256(pointer),
            _mm256_loadu_si256(pointer.add(1)),
        ]
    };
    // Joins the movemasks of both halves after `select` picks bytes in each.
    macro_rules! mask {
        (|$v:ident| $select:expr) => {{
            let $v = halves[0];
            let low = _mm256_movemask_epi8($select) as u32;
            let $v = halves[1];
            let high = _mm256_movemask_epi8($select) as u32;
            opaque(u64::from(low) | u64::from(high) << 32)
        }};
    }
    let splat = |b: u8| _mm256_set1_epi8(b as i8);
    let below_space = splat(0x1F);
    Masks {
        quote: mask!(|v| _mm256_cmpeq_epi8(v, splat(b'"'))),
        backslash: mask!(|v| _mm256_cmpeq_epi8(v, splat(b'\\'))),
        whitespace: mask!(|v| _mm256_or_si256(
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, splat(b' ')),
                _mm256_cmpeq_epi8(v, splat(b'\t'))
            ),
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, splat(b'\n')),
                _mm256_cmpeq_epi8(v, splat(b'\r'))
            ),
        )),
        // Setting bit 5 turns '[' into '{' and ']' into '}' and changes no other punctuation.
        punctuation: mask!(|v| _mm256_or_si256(
            _mm256_or_si256(
                _mm256_cmpeq_epi8(_mm256_or_si256(v, splat(0x20)), splat(b'{')),
                _mm256_cmpeq_epi8(_mm256_or_si256(v, splat(0x20)), splat(b'}'))
            ),
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, splat(b':')),
                _mm256_cmpeq_epi8(v, splat(b','))
            ),
        )),
        control: mask!(|v| _mm256_cmpeq_epi8(_mm256_max_epu8(v, below_space), below_space)),
        non_ascii: mask!(|v| v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifiers_agree_on_every_byte() {
        let mut block = [0u8; BLOCK];
        for first in (0..=255u8).step_by(BLOCK) {
            for (i, b) in block.iter_mut().enumerate() {
                *b = first.wrapping_add(i as u8);
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the processor has AVX2.
                let fast = unsafe { classify_avx2(&block) };
                assert_eq!(fast, classify_portable(&block), "bytes from {first:#04x}");
            }
        }
    }

    #[test]
    fn numbers_and_literals() {
        for valid in [
            "0",
            "-0",
            "12",
            "1.5",
            "-0.25e+10",
            "1E5",
            "3e-2",
            "NaN",
            "Infinity",
            "-Infinity",
            "true",
            "false",
            "null",
        ] {
            assert!(is_number_or_literal(valid.as_bytes()), "{valid}");
        }
        for invalid in [
            "", "-", "01", "1.", ".5", "1e", "1e+", "+1", "--1", "nan", "-NaN", "truex", "1.5.",
            "0x10", "1_000",
        ] {
            assert!(!is_number_or_literal(invalid.as_bytes()), "{invalid}");
        }
    }

    #[test]
    fn prefix_xor_marks_string_bytes() {
        assert_eq!(prefix_xor(0b1001), 0b0111);
        assert_eq!(prefix_xor(1 << 63), 1 << 63);
        assert_eq!(prefix_xor(0b11), 0b01);
    }
}
