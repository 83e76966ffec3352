//! The `history show ID` command: one reset in detail, with every session it archived.
//!
//! The reset's time, counts and archive files come from its journal line, or
//! for a legacy archive that no journal line names, from the archive files and
//! their names. The sessions archive is streamed, and only the printed fields
//! of each session are kept.
//!
//! NOTE: memory still grows with the number of sessions, because the report
//! keeps every row and `main` builds the whole output before printing it. On a
//! generated 1 GB archive of 522,741 sessions the peak RSS was 346 MB for the
//! table and 400 MB for `--json` (release build). Printing rows as they are
//! read would need a `Render` that writes to stdout.

pub mod reader;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use chrono::{Local, NaiveDateTime, TimeZone};
use serde::Serialize;

use crate::archive;
use crate::atomic;
use crate::datadir::{DataDir, Source};
use crate::error::{ErrorKind, archive_read_failure, failure};
use crate::output::{Render, count_noun, format_counts, format_size};
use crate::runs::{self, Run};
use crate::scan::{ScanErrorKind, Summary};

use reader::{ReadError, Session};

/// Version of the `history show --json` document.
pub const SHOW_SCHEMA_VERSION: u32 = 1;

/// The result of `history show`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub run_id: String,
    /// RFC 3339 with UTC offset, from the journal line. For a legacy archive
    /// it is the local time from the file name, with the offset that the
    /// local time zone gives it.
    pub reset_at: String,
    /// `journal`, or `archive` for archives that no journal line names.
    pub origin: &'static str,
    /// `null` when the count cannot be known (no readable sessions archive).
    pub total_sessions: Option<u64>,
    pub sessions_by_status: BTreeMap<String, u64>,
    /// `null` when the count cannot be known (no readable takeover archive).
    pub takeover_requests: Option<u64>,
    pub archives: Vec<ArchiveFile>,
    /// Sessions in archive order, or `null` when the sessions archive cannot be
    /// listed (deleted, or archived as not valid JSON by `reset --force`).
    pub sessions: Option<Vec<SessionRow>>,
    /// Reason that `sessions` is `null`, shown in the human output.
    #[serde(skip)]
    pub unlisted_reason: Option<String>,
}

/// An archive file of the reset.
#[derive(Debug, Serialize)]
pub struct ArchiveFile {
    pub file: String,
    /// Size on disk; `null` when the file no longer exists.
    pub bytes: Option<u64>,
}

/// One session as `history show` and `history search` print it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionRow {
    /// The session's key in the archive.
    pub session_id: String,
    pub order_number: Option<String>,
    pub invoice_id: Option<String>,
    pub status: Option<String>,
    /// `user_id`, or `last_modified_by` when `user_id` is missing, `null` or empty.
    pub user: Option<String>,
    pub started_at: Option<String>,
    pub last_modified_at: Option<String>,
}

impl From<Session> for SessionRow {
    fn from(session: Session) -> SessionRow {
        let user = session
            .user_id
            .filter(|user| !user.is_empty())
            .or(session.last_modified_by);
        SessionRow {
            session_id: session.key,
            order_number: session.order_number,
            invoice_id: session.invoice_id,
            status: session.status,
            user,
            started_at: session.started_at,
            last_modified_at: session.last_modified_at,
        }
    }
}

/// Runs `history show`.
pub fn run(dir: &DataDir, id: &str) -> anyhow::Result<Report> {
    let run = runs::find(dir, id)?;
    let listed = match run.archive(Source::Sessions) {
        Some(name) => Some(list_sessions(dir, name)?),
        None => None,
    };
    let mut report = match &run.entry {
        Some(_) => journal_report(dir, &run),
        None => archive_report(dir, &run, listed.as_ref().map(|(_, summary)| summary)),
    };
    match listed {
        Some((rows, _)) => report.sessions = Some(rows),
        None => {
            report.unlisted_reason = unlisted_reason(&run);
            if report.unlisted_reason.is_none() {
                report.sessions = Some(Vec::new());
            }
        }
    }
    Ok(report)
}

/// Builds the report of a journaled reset, without its sessions.
fn journal_report(dir: &DataDir, run: &Run) -> Report {
    let entry = run.entry.as_ref().expect("a journaled run has an entry");
    // A forced reset of an unparseable file archived entries it could not count.
    let counted = |source: Source| {
        !entry
            .archives
            .iter()
            .any(|record| record.source == source && !record.valid && !record.late)
    };
    Report {
        schema_version: SHOW_SCHEMA_VERSION,
        run_id: run.run_id.clone(),
        reset_at: entry.reset_at.clone(),
        origin: "journal",
        total_sessions: counted(Source::Sessions).then_some(entry.total_sessions_reset),
        sessions_by_status: entry.sessions_by_status.clone(),
        takeover_requests: counted(Source::Takeovers).then_some(entry.takeover_requests_reset),
        archives: entry
            .archives
            .iter()
            .map(|record| archive_file(dir, &record.file))
            .collect(),
        sessions: None,
        unlisted_reason: None,
    }
}

/// Builds the report of archives that no journal line names, from the files:
/// the sessions counts come from `sessions_summary`, the scan of the sessions
/// archive.
fn archive_report(dir: &DataDir, run: &Run, sessions_summary: Option<&Summary>) -> Report {
    let takeover_requests = run.takeovers.as_deref().and_then(|name| {
        let summary = atomic::open_regular(&dir.join(name))
            .ok()
            .flatten()
            .and_then(|(mut file, _)| archive::copy_and_scan(&mut file, None).ok())
            .and_then(|copied| copied.scan.ok());
        if summary.is_none() {
            log::warn!("cannot read the counts of archive {name}");
        }
        summary.map(|summary| summary.entries)
    });
    let archives = match dir.archives() {
        Ok(archives) => archives
            .into_iter()
            .filter(|(parsed, _)| parsed.run_id == run.run_id)
            .map(|(_, name)| archive_file(dir, &name))
            .collect(),
        Err(error) => {
            log::warn!("{}", crate::error::one_line(&error));
            Vec::new()
        }
    };
    Report {
        schema_version: SHOW_SCHEMA_VERSION,
        run_id: run.run_id.clone(),
        reset_at: reset_time_from_run_id(&run.run_id),
        origin: "archive",
        total_sessions: sessions_summary.map(|summary| summary.entries),
        sessions_by_status: sessions_summary
            .map(|summary| summary.by_status.clone())
            .unwrap_or_default(),
        takeover_requests,
        archives,
        sessions: None,
        unlisted_reason: None,
    }
}

fn archive_file(dir: &DataDir, name: &str) -> ArchiveFile {
    ArchiveFile {
        file: name.to_string(),
        bytes: std::fs::symlink_metadata(dir.join(name))
            .ok()
            .map(|metadata| metadata.len()),
    }
}

/// Returns why a run without a `.json` sessions archive on disk cannot list
/// its sessions, or `None` when it archived no sessions.
fn unlisted_reason(run: &Run) -> Option<String> {
    let Some(entry) = &run.entry else {
        return Some("no sessions archive of this reset is on disk".to_string());
    };
    let record = entry
        .archives
        .iter()
        .find(|record| record.source == Source::Sessions && !record.late)?;
    if !record.valid {
        return Some(format!(
            "{} was archived as it was because it is not valid JSON",
            record.file
        ));
    }
    Some(format!(
        "{} is missing: it was deleted or moved after the reset",
        record.file
    ))
}

/// Reads the sessions of an archive in file order, keeping the last value of
/// a repeated key at the position of its first, as Python's `json.load` does.
fn list_sessions(dir: &DataDir, name: &str) -> anyhow::Result<(Vec<SessionRow>, Summary)> {
    let path = dir.join(name);
    let read_failure = archive_read_failure(&path);
    let Some((mut file, _)) = atomic::open_regular(&path).map_err(read_failure)? else {
        return Err(failure(
            ErrorKind::NotFound,
            format!(
                "archive {} disappeared while it was read: run the command again",
                path.display()
            ),
        ));
    };
    let mut rows: Vec<SessionRow> = Vec::new();
    let result = reader::read_sessions(&mut file, |session| rows.push(session.into()));
    match result {
        Ok(summary) => {
            // The scanner counts repeated keys, so the common case needs no
            // map of the keys.
            if summary.duplicate_keys > 0 {
                keep_last_of_repeated_keys(&mut rows);
            }
            Ok((rows, summary))
        }
        Err(ReadError::Io(error)) => Err(read_failure(error)),
        Err(ReadError::Invalid(error)) => Err(failure(
            ErrorKind::InvalidData,
            invalid_archive_message(&path.display().to_string(), &error),
        )),
    }
}

/// Removes the rows of repeated keys, keeping the last value at the position
/// of the first, as Python's `json.load` does.
fn keep_last_of_repeated_keys(rows: &mut Vec<SessionRow>) {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        match first_index.entry(row.session_id.as_str()) {
            Entry::Occupied(first) => repeats.push((*first.get(), index)),
            Entry::Vacant(vacant) => {
                vacant.insert(index);
            }
        }
    }
    drop(first_index);
    let mut keep = vec![true; rows.len()];
    // Each swap moves the later value to the first position, so after the
    // last repeat of a key that position contains its last value.
    for (first, later) in repeats {
        rows.swap(first, later);
        keep[later] = false;
    }
    let mut index = 0;
    rows.retain(|_| {
        index += 1;
        keep[index - 1]
    });
}

/// Describes an archive that is not a readable sessions file.
pub fn invalid_archive_message(file: &str, error: &crate::scan::ScanError) -> String {
    match error.kind {
        ScanErrorKind::Empty => format!("archive {file} is empty (0 bytes)"),
        ScanErrorKind::Syntax => format!("archive {file} is not valid JSON: {error}"),
        ScanErrorKind::Shape => {
            format!("archive {file} is not an object of sessions: {error}")
        }
    }
}

/// Returns the reset time that a run id's `YYYYMMDD_HHMMSS` names, in RFC
/// 3339 with the offset the local time zone gives it, or the run id itself
/// when it names no valid local time.
pub fn reset_time_from_run_id(run_id: &str) -> String {
    let naive = run_id
        .get(..15)
        .and_then(|stamp| NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S").ok());
    match naive.and_then(|time| Local.from_local_datetime(&time).earliest()) {
        Some(time) => time.fixed_offset().to_rfc3339(),
        None => run_id.to_string(),
    }
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        use std::fmt::Write as _;
        let sessions = match self.total_sessions {
            Some(count) => format!(
                "{}{}",
                count_noun(count, "session"),
                format_counts(&self.sessions_by_status)
            ),
            None => "sessions not counted".to_string(),
        };
        let takeovers = match self.takeover_requests {
            Some(count) => count_noun(count, "takeover request"),
            None => "takeover requests not counted".to_string(),
        };
        let note = if self.origin == "archive" {
            " [not in the journal]"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "Reset {} at {}{note}\n{sessions}, {takeovers}",
            self.run_id, self.reset_at
        );
        for archive in &self.archives {
            let size = archive.bytes.map_or("missing".to_string(), format_size);
            let _ = writeln!(out, "    {}  {size}", archive.file);
        }
        out.push('\n');
        match &self.sessions {
            Some(rows) if rows.is_empty() => out.push_str("No sessions archived.\n"),
            Some(rows) => out.push_str(&session_table(rows.iter())),
            None => {
                let reason = self.unlisted_reason.as_deref().unwrap_or("unknown reason");
                let _ = writeln!(out, "Sessions cannot be listed: {reason}.");
            }
        }
    }
}

/// Column headers of [`session_table`].
const COLUMNS: [&str; 6] = [
    "SESSION ID",
    "ORDER",
    "STATUS",
    "USER",
    "STARTED",
    "MODIFIED",
];

/// Formats sessions as a table with a header line, columns separated by two
/// spaces. Times are cut to `MM-DD HH:MM` and the invoice id is left out, so
/// that a row with a UUID session id stays within about 100 columns. The
/// `--json` output has every field in full.
///
/// The cells are formatted twice, once to measure the columns and once to
/// write them, so that a table of many sessions is not held twice in memory.
pub fn session_table<'a>(rows: impl Iterator<Item = &'a SessionRow> + Clone) -> String {
    let mut widths = COLUMNS.map(|name| name.chars().count());
    for row in rows.clone() {
        for (width, cell) in widths.iter_mut().zip(cells(row)) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header = COLUMNS.map(str::to_string);
    for row in std::iter::once(header).chain(rows.map(cells)) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[index].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Returns the cells of one row of [`session_table`].
fn cells(row: &SessionRow) -> [String; 6] {
    [
        printable(Some(&row.session_id)),
        printable(row.order_number.as_deref()),
        printable(row.status.as_deref()),
        printable(row.user.as_deref()),
        short_time(row.started_at.as_deref()),
        short_time(row.last_modified_at.as_deref()),
    ]
}

/// Returns a value for a table cell: `-` when missing, and control
/// characters escaped so that a value cannot break the table's lines.
fn printable(value: Option<&str>) -> String {
    let text = match value {
        None | Some("") => return "-".to_string(),
        Some(text) => text,
    };
    let mut cell = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            cell.extend(c.escape_debug());
        } else {
            cell.push(c);
        }
    }
    cell
}

/// Cuts an ISO 8601 time such as `2026-03-02T08:14:03.120311` to
/// `03-02 08:14`; any other text is shown as it is.
fn short_time(value: Option<&str>) -> String {
    let Some(text) = value else {
        return "-".to_string();
    };
    let bytes = text.as_bytes();
    let is_iso = bytes.len() >= 16
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15]
            .iter()
            .all(|&i| bytes[i].is_ascii_digit())
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && (bytes[10] == b'T' || bytes[10] == b' ')
        && bytes[13] == b':';
    if is_iso {
        format!("{} {}", &text[5..10], &text[11..16])
    } else {
        printable(Some(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: Option<&str>, started: Option<&str>) -> SessionRow {
        SessionRow {
            session_id: id.to_string(),
            order_number: Some("3000500101".to_string()),
            invoice_id: Some("2000100101".to_string()),
            status: status.map(str::to_string),
            user: None,
            started_at: started.map(str::to_string),
            last_modified_at: Some("2026-03-02 08:14:03".to_string()),
        }
    }

    #[test]
    fn table_aligns_and_shortens() {
        let rows = [
            row("a", Some("draft"), Some("2026-03-02T08:14:03.120311")),
            row("b\nc", Some("ready_to_check"), Some("yesterday")),
        ];
        assert_eq!(
            session_table(rows.iter()),
            "SESSION ID  ORDER       STATUS          USER  STARTED      MODIFIED\n\
             a           3000500101  draft           -     03-02 08:14  03-02 08:14\n\
             b\\nc        3000500101  ready_to_check  -     yesterday    03-02 08:14\n"
        );
    }

    #[test]
    fn repeated_keys_keep_last_value_at_first_position() {
        let mut rows = vec![
            row("a", Some("1"), None),
            row("b", Some("2"), None),
            row("a", Some("3"), None),
            row("c", Some("4"), None),
            row("a", Some("5"), None),
            row("b", Some("6"), None),
        ];
        keep_last_of_repeated_keys(&mut rows);
        let kept: Vec<(&str, &str)> = rows
            .iter()
            .map(|row| (row.session_id.as_str(), row.status.as_deref().unwrap()))
            .collect();
        assert_eq!(kept, [("a", "5"), ("b", "6"), ("c", "4")]);
    }

    #[test]
    fn user_falls_back_to_last_modified_by() {
        let session = Session {
            key: "k".to_string(),
            user_id: Some(String::new()),
            last_modified_by: Some("admin".to_string()),
            ..Session::default()
        };
        assert_eq!(SessionRow::from(session).user.as_deref(), Some("admin"));
        let session = Session {
            key: "k".to_string(),
            user_id: Some("picker01".to_string()),
            last_modified_by: Some("admin".to_string()),
            ..Session::default()
        };
        assert_eq!(SessionRow::from(session).user.as_deref(), Some("picker01"));
    }

    #[test]
    fn short_time_keeps_other_text() {
        assert_eq!(short_time(None), "-");
        assert_eq!(short_time(Some("2026-03-02T08:14")), "03-02 08:14");
        assert_eq!(short_time(Some("2026-03-02")), "2026-03-02");
        assert_eq!(short_time(Some("2026-03-02T08:14:0é")), "03-02 08:14");
    }
}
