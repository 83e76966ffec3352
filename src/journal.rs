//! The reset journal: `order-reset-journal.jsonl`, one JSON object per line,
//! one line per reset, appended under the lock and synced.
//!
//! `status` and `history` read the journal instead of parsing archives. Each
//! line carries in `prev` the SHA-256 of the line before it (without its
//! newline, empty for the first line), so that an edited or deleted line
//! breaks the chain.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic;
use crate::datadir::{DataDir, JOURNAL_FILE, Source};
use crate::error::{ErrorKind, io_failure};

/// Version of the journal line format.
pub const JOURNAL_SCHEMA_VERSION: u32 = 1;

/// One reset, as recorded in the journal.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Version of this line's format.
    pub schema_version: u32,
    /// `reset` (also for lines written before the field existed), `restore`
    /// or `prune`.
    #[serde(default = "reset_event")]
    pub event: String,
    /// Run id shared by the run's archives; `None` when nothing was archived.
    #[serde(default)]
    pub id: Option<String>,
    /// Local time of the reset with its UTC offset, RFC 3339.
    pub reset_at: String,
    #[serde(default)]
    pub total_sessions_reset: u64,
    #[serde(default)]
    pub sessions_by_status: BTreeMap<String, u64>,
    #[serde(default)]
    pub takeover_requests_reset: u64,
    /// Archives written by this reset, sessions first.
    #[serde(default)]
    pub archives: Vec<ArchiveRecord>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: u32,
    /// Version of order-reset that wrote the line.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub duration_ms: u64,
    /// Command-line flags that changed the reset, such as `force`.
    #[serde(default)]
    pub flags: Vec<String>,
    /// True when a later run wrote this line for a reset that was interrupted
    /// after its archives were written.
    #[serde(default, skip_serializing_if = "is_false")]
    pub recovered: bool,
    /// For a `restore` line: the run id whose archives were put back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
    /// For a `prune` line: the archive files it deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
    /// SHA-256 of the previous journal line, lowercase hex.
    #[serde(default)]
    pub prev: String,
}

/// Event name of a reset line.
pub const RESET_EVENT: &str = "reset";

fn reset_event() -> String {
    RESET_EVENT.to_string()
}

impl Entry {
    /// Starts a journal line for `event` at `now`, recording who runs it.
    pub fn new(event: &str, now: chrono::DateTime<chrono::FixedOffset>) -> Entry {
        Entry {
            schema_version: JOURNAL_SCHEMA_VERSION,
            event: event.to_string(),
            reset_at: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
            user: crate::system::user_name(),
            uid: atomic::effective_uid(),
            host: crate::system::host_name(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Entry::default()
        }
    }

    /// Returns whether this line records a reset (not a restore or prune).
    pub fn is_reset(&self) -> bool {
        self.event == RESET_EVENT
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One archive file written by a reset.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ArchiveRecord {
    /// File name in the data directory.
    pub file: String,
    /// The active file it is a copy of.
    pub source: Source,
    /// False when `--force` archived bytes that are not valid JSON, and for
    /// a `.late` archive, whose content was not checked.
    pub valid: bool,
    /// True for a `.late` archive: what a writer that ignores the lock wrote
    /// into the active file during the reset.
    #[serde(default, skip_serializing_if = "is_false")]
    pub late: bool,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// Number of entries (sessions or takeover requests); `None` when invalid.
    pub entries: Option<u64>,
}

/// A journal line as read back: the parsed entry, or why it could not be parsed.
#[derive(Debug)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    pub entry: Result<Entry, String>,
}

/// The journal opened for appending, before a reset changes anything, so that
/// a journal that cannot be written stops the reset early.
pub struct Writer {
    file: File,
    path: PathBuf,
    dir: DataDir,
}

impl Writer {
    pub fn open(dir: &DataDir) -> anyhow::Result<Writer> {
        let path = dir.join(JOURNAL_FILE);
        let (file, _) =
            atomic::open_or_create_owned(dir, JOURNAL_FILE, 0o640, true).map_err(|error| {
                io_failure(
                    ErrorKind::CannotCreate,
                    error,
                    format!("cannot open journal {} for appending", path.display()),
                )
            })?;
        Ok(Writer {
            file,
            path,
            dir: dir.clone(),
        })
    }

    /// Appends `entry` as one line, with `prev` set from the current last
    /// line, syncs the journal, then updates the head file (see [`HEAD_FILE`]).
    pub fn append(&mut self, entry: &mut Entry) -> anyhow::Result<()> {
        let write = |file: &mut File, entry: &mut Entry| -> io::Result<()> {
            let (previous, ends_with_newline) = last_line_sha256(file)?;
            entry.prev = previous.unwrap_or_default();
            let mut text = String::new();
            if !ends_with_newline {
                // A run killed in the middle of an append left a partial line;
                // end it so that it stays a line of its own.
                text.push('\n');
            }
            text.push_str(&serde_json::to_string(entry).map_err(io::Error::other)?);
            text.push('\n');
            file.write_all(text.as_bytes())?;
            file.sync_data()
        };
        write(&mut self.file, entry).map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot append to journal {}", self.path.display()),
            )
        })?;
        // The line is synced, so the run has happened: a head that cannot be
        // written must not fail it, or a reset would be completed and
        // journaled a second time.
        if let Err(error) = update_head(&self.dir, &mut self.file) {
            log::warn!(
                "cannot update {}: {error}; `order-reset history verify` reports the journal lines after the last one it records",
                self.dir.join(HEAD_FILE).display()
            );
        }
        Ok(())
    }
}

/// Maximum length of a journal line that the readers keep in memory; a line
/// that order-reset writes is about one kilobyte.
pub const MAX_LINE: u64 = 1024 * 1024;

/// Returns the SHA-256 of the last complete or partial line (without its
/// newline) and whether the file ends with a newline. An empty file has no
/// last line.
///
/// The line is found by reading backwards from the end in blocks and hashed
/// as it is read forwards, so a line of any length costs one block of memory.
fn last_line_sha256(file: &mut File) -> io::Result<(Option<String>, bool)> {
    const BLOCK: u64 = 64 * 1024;
    let length = file.metadata()?.len();
    if length == 0 {
        return Ok((None, true));
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(length - 1))?;
    file.read_exact(&mut last)?;
    let ends_with_newline = last[0] == b'\n';
    let body_end = length - u64::from(ends_with_newline);

    let mut block = vec![0u8; BLOCK as usize];
    let mut line_start = 0;
    let mut end = body_end;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let part = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(index) = part.iter().rposition(|&b| b == b'\n') {
            line_start = start + index as u64 + 1;
            break;
        }
        end = start;
    }

    let mut hasher = Sha256::new();
    file.seek(SeekFrom::Start(line_start))?;
    let mut remaining = body_end - line_start;
    while remaining > 0 {
        let part = &mut block[..remaining.min(BLOCK) as usize];
        file.read_exact(part)?;
        hasher.update(&*part);
        remaining -= part.len() as u64;
    }
    Ok((Some(hex(&hasher.finalize())), ends_with_newline))
}

/// Returns the SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Formats bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Reads every line of the journal; a missing journal has no lines.
/// Lines that are not valid entries are returned with their parse error.
pub fn read_all(dir: &DataDir) -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    let mut number = 0;
    for_each_raw_line(dir, |raw| {
        number += 1;
        let entry = match &raw.bytes {
            Some(bytes) if bytes.is_empty() => return,
            Some(bytes) => parse_entry(bytes),
            None => Err(format!("line is longer than {MAX_LINE} bytes")),
        };
        lines.push(Line { number, entry });
    })?;
    Ok(lines)
}

/// Returns the run ids that journal lines record, so that a new reset never
/// reuses one, even after its archives were moved away.
pub fn run_ids(dir: &DataDir) -> anyhow::Result<std::collections::HashSet<String>> {
    Ok(read_all(dir)?
        .into_iter()
        .filter_map(|line| line.entry.ok()?.id)
        .collect())
}

/// Event name of a `history prune` line.
pub const PRUNE_EVENT: &str = "prune";

/// Parses one journal line, without its newline, or returns why it is not an
/// entry.
pub fn parse_entry(raw: &[u8]) -> Result<Entry, String> {
    if raw.first() == Some(&b'{') {
        serde_json::from_slice::<Entry>(raw).map_err(|error| error.to_string())
    } else {
        Err("not a JSON object".to_string())
    }
}

/// One journal line as stored, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The line's bytes, or `None` for a line longer than [`MAX_LINE`], which
    /// is not kept in memory.
    pub bytes: Option<Vec<u8>>,
    /// SHA-256 of a line longer than [`MAX_LINE`], computed while it was read.
    long_sha256: Option<String>,
}

impl RawLine {
    /// Returns the SHA-256 of the line, lowercase hex, as `prev` records it.
    pub fn sha256(&self) -> String {
        match (&self.bytes, &self.long_sha256) {
            (Some(bytes), _) => sha256_hex(bytes),
            (None, Some(hash)) => hash.clone(),
            (None, None) => unreachable!("a long line keeps its hash"),
        }
    }
}

/// Reads the journal's lines as stored, so that each line's hash can be
/// compared with the next line's `prev`. Empty lines are kept, and so is a
/// last line without a newline, which a run killed while appending leaves.
/// A missing journal has no lines.
///
/// Memory use is bounded per line. A line longer than [`MAX_LINE`] is hashed
/// while it is read and only its hash is kept, so a journal that is one huge
/// line, such as a file of zero bytes, costs one buffer and not its size.
pub fn read_raw_lines(dir: &DataDir) -> anyhow::Result<Vec<RawLine>> {
    let mut lines = Vec::new();
    for_each_raw_line(dir, |line| lines.push(line))?;
    Ok(lines)
}

/// Calls `visit` with each line of the journal in order, as
/// [`read_raw_lines`] splits them, without keeping them.
fn for_each_raw_line(dir: &DataDir, visit: impl FnMut(RawLine)) -> anyhow::Result<()> {
    let path = dir.join(JOURNAL_FILE);
    let file = match atomic::open_regular(&path) {
        Ok(Some((file, _))) => file,
        Ok(None) => return Ok(()),
        Err(error) => {
            return Err(io_failure(
                ErrorKind::Io,
                error,
                format!("cannot open journal {}", path.display()),
            ));
        }
    };
    visit_lines(file, visit).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot read journal {}", path.display()),
        )
    })
}

/// Splits the content of `file` from its current position into lines the
/// way [`Writer::append`] counts them for `prev`, and calls `visit` with each:
/// the newline that ends the file does not start another line.
fn visit_lines(file: File, mut visit: impl FnMut(RawLine)) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    while let Some(line) = next_raw_line(&mut reader)? {
        visit(line);
    }
    Ok(())
}

/// Returns the index of the first LF in `bytes`, testing eight bytes at a
/// time.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = bytes[i..].first_chunk::<8>() {
        // Zero bytes of `x` are the LFs. The lowest flag this sets is always
        // a zero byte, and only bytes above a zero byte can be flagged wrongly.
        let x = u64::from_le_bytes(*word) ^ (ONES * u64::from(b'\n'));
        let flags = x.wrapping_sub(ONES) & !x & HIGH_BITS;
        if flags != 0 {
            return Some(i + flags.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|index| i + index)
}

/// Reads one line, or returns `None` at the end of the input.
fn next_raw_line(reader: &mut impl BufRead) -> io::Result<Option<RawLine>> {
    let mut line_bytes = Vec::new();
    let mut long_hasher: Option<Sha256> = None;
    let mut started = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            if !started {
                return Ok(None);
            }
            break;
        }
        started = true;
        let newline = find_newline(buffer);
        let part = &buffer[..newline.unwrap_or(buffer.len())];
        if let Some(hasher) = long_hasher.as_mut() {
            hasher.update(part);
        } else if (line_bytes.len() + part.len()) as u64 > MAX_LINE {
            let mut hasher = Sha256::new();
            hasher.update(&line_bytes);
            hasher.update(part);
            line_bytes = Vec::new();
            long_hasher = Some(hasher);
        } else {
            line_bytes.extend_from_slice(part);
        }
        let used = part.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    Ok(Some(match long_hasher {
        Some(hasher) => RawLine {
            bytes: None,
            long_sha256: Some(hex(&hasher.finalize())),
        },
        None => RawLine {
            bytes: Some(line_bytes),
            long_sha256: None,
        },
    }))
}

/// Record of the journal's line count and last line, replaced atomically
/// after each append.
///
/// Each line's `prev` protects the line before it, but no line protects the
/// last one, so an edit to it, or lines cut from the end, would go unnoticed
/// without this record.
pub const HEAD_FILE: &str = "order-reset-journal.head";

/// The content of [`HEAD_FILE`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head {
    /// Number of journal lines when the head was written.
    pub lines: usize,
    /// SHA-256 of the last of those lines, without its newline, lowercase hex.
    pub sha256: String,
}

impl Head {
    /// Returns whether `lines` start with the lines this head records: there
    /// are at least `self.lines` of them, and line `self.lines` has the
    /// recorded hash.
    pub fn is_prefix_of(&self, lines: &[RawLine]) -> bool {
        if self.lines == 0 {
            return self.sha256.is_empty();
        }
        self.lines <= lines.len() && lines[self.lines - 1].sha256() == self.sha256
    }
}

/// Reads [`HEAD_FILE`] without following a symbolic link. Returns `Ok(None)`
/// when it does not exist, and an error message when it cannot be read or is
/// not a head record.
pub fn read_head(dir: &DataDir) -> Result<Option<Head>, String> {
    let path = dir.join(HEAD_FILE);
    let (file, _) = match atomic::open_regular(&path) {
        Ok(Some(opened)) => opened,
        Ok(None) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let mut text = Vec::new();
    file.take(MAX_LINE)
        .read_to_end(&mut text)
        .map_err(|error| error.to_string())?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|error| format!("not a head record: {error}"))
}

/// Rewrites [`HEAD_FILE`] for the journal as it is after an append.
///
/// A head that does not match the lines before the new one is left as it is,
/// because the journal was edited or cut since the head was written. The old
/// head keeps `history verify` reporting the change, and a new one would
/// hide it.
fn update_head(dir: &DataDir, journal: &mut File) -> io::Result<()> {
    journal.seek(SeekFrom::Start(0))?;
    let mut lines = Vec::new();
    visit_lines(journal.try_clone()?, |line| lines.push(line))?;
    let Some((last, before)) = lines.split_last() else {
        return Ok(());
    };
    let head_path = dir.join(HEAD_FILE);
    match read_head(dir) {
        Ok(None) => {}
        // A head behind the journal is left by a run that stopped between
        // its append and its head update, so it is brought up to date.
        Ok(Some(head)) if head.is_prefix_of(before) => {}
        Ok(Some(head)) => {
            log::warn!(
                "{} records {} journal lines ending with a line of SHA-256 {}, which does not match journal {}: lines were edited or deleted; left the head unchanged so that `order-reset history verify` keeps reporting it. Once the journal is checked, remove the head; the next run writes a new one",
                head_path.display(),
                head.lines,
                head.sha256,
                dir.join(JOURNAL_FILE).display()
            );
            return Ok(());
        }
        Err(message) => {
            log::warn!(
                "cannot use {}: {message}; left it unchanged. Once the journal is checked with `order-reset history verify`, remove the head; the next run writes a new one",
                head_path.display()
            );
            return Ok(());
        }
    }
    let head = Head {
        lines: lines.len(),
        sha256: last.sha256(),
    };
    write_head(dir, journal, &head)
}

/// Writes `head` through a synced temporary file renamed over [`HEAD_FILE`],
/// with the journal's mode, and its owner where this process may give it.
fn write_head(dir: &DataDir, journal: &File, head: &Head) -> io::Result<()> {
    use std::fs::Permissions;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let temp = atomic::TempFile::create(dir, HEAD_FILE)?;
    let mut text = serde_json::to_vec(head).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut file = temp.file();
    file.write_all(&text)?;
    let journal_metadata = journal.metadata()?;
    let mode = journal_metadata.mode() & 0o666;
    if atomic::is_root() || journal_metadata.uid() == atomic::effective_uid() {
        temp.set_owner_and_mode(journal_metadata.uid(), journal_metadata.gid(), mode)?;
    } else {
        file.set_permissions(Permissions::from_mode(mode))?;
    }
    temp.sync()?;
    temp.persist(dir, HEAD_FILE, true)?;
    atomic::sync_dir(dir.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn entry_round_trips_through_json() {
        let mut entry = Entry {
            schema_version: JOURNAL_SCHEMA_VERSION,
            event: RESET_EVENT.to_string(),
            id: Some("20261204_000000".to_string()),
            total_sessions_reset: 2,
            ..Entry::default()
        };
        entry.sessions_by_status.insert("draft".to_string(), 2);
        let text = serde_json::to_string(&entry).unwrap();
        assert!(!text.contains("recovered"));
        let back: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(back, entry);
    }

    /// Splits `bytes` with the journal's line reader, reading through a
    /// buffer of `capacity` bytes.
    fn split(bytes: &[u8], capacity: usize) -> Vec<Option<Vec<u8>>> {
        let mut reader = BufReader::with_capacity(capacity, bytes);
        let mut lines = Vec::new();
        while let Some(line) = next_raw_line(&mut reader).unwrap() {
            lines.push(line.bytes);
        }
        lines
    }

    #[test]
    fn line_reader_matches_append() {
        let some = |text: &[u8]| Some(text.to_vec());
        for capacity in [1, 2, 64 * 1024] {
            assert!(split(b"", capacity).is_empty());
            assert_eq!(split(b"a\nb\n", capacity), vec![some(b"a"), some(b"b")]);
            assert_eq!(split(b"a\nb", capacity), vec![some(b"a"), some(b"b")]);
            assert_eq!(
                split(b"a\n\nb\n", capacity),
                vec![some(b"a"), some(b""), some(b"b")]
            );
            assert_eq!(split(b"\n", capacity), vec![some(b"")]);
        }
    }

    #[test]
    fn newline_search_finds_the_first_lf() {
        for length in 0..40 {
            for at in 0..length {
                let mut bytes = vec![b'a'; length];
                bytes[at] = b'\n';
                if at + 3 < length {
                    bytes[at + 3] = b'\n';
                }
                assert_eq!(find_newline(&bytes), Some(at), "length {length}, at {at}");
            }
            assert_eq!(find_newline(&vec![0x0B; length]), None);
            assert_eq!(find_newline(&vec![0x09; length]), None);
        }
    }

    #[test]
    fn line_reader_hashes_long_lines() {
        let long = vec![b'x'; MAX_LINE as usize + 1];
        let mut input = b"first\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        let mut reader = BufReader::with_capacity(4096, &input[..]);
        let mut lines = Vec::new();
        while let Some(line) = next_raw_line(&mut reader).unwrap() {
            lines.push(line);
        }
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].bytes.as_deref(), Some(&b"first"[..]));
        assert_eq!(lines[1].bytes, None);
        assert_eq!(lines[1].sha256(), sha256_hex(&long));
        assert_eq!(lines[2].bytes.as_deref(), Some(&b"last"[..]));
        let at_limit = vec![b'y'; MAX_LINE as usize];
        let mut reader = BufReader::with_capacity(4096, &at_limit[..]);
        let line = next_raw_line(&mut reader).unwrap().unwrap();
        assert_eq!(line.bytes.map(|bytes| bytes.len()), Some(MAX_LINE as usize));
    }

    #[test]
    fn head_prefix_check() {
        let lines: Vec<RawLine> = [&b"one"[..], b"two", b"three"]
            .iter()
            .map(|text| RawLine {
                bytes: Some(text.to_vec()),
                long_sha256: None,
            })
            .collect();
        let head = |count: usize, line: &[u8]| Head {
            lines: count,
            sha256: sha256_hex(line),
        };
        assert!(head(3, b"three").is_prefix_of(&lines));
        assert!(head(2, b"two").is_prefix_of(&lines));
        assert!(!head(3, b"edited").is_prefix_of(&lines));
        assert!(!head(4, b"four").is_prefix_of(&lines));
        assert!(!head(0, b"").is_prefix_of(&lines));
        let empty = Head {
            lines: 0,
            sha256: String::new(),
        };
        assert!(empty.is_prefix_of(&lines));
    }
}
