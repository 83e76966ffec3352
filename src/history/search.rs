//! The `history search TERM` command: the archives that hold a session with that session id, order number or invoice id.
//!
//! Every sessions archive (`session_history_*.json`) is first read through a
//! substring check for the term as JSON text, which costs about what
//! `grep -F -l` does. Only an archive that contains the term is parsed,
//! streaming one session at a time, and a session matches when its key, its
//! `session_id`, its `order_number` or its `invoice_id` equals the term
//! exactly.

mod prefilter;

use std::collections::HashMap;
use std::io::{Seek, SeekFrom};

use serde::Serialize;

use super::show::reader::{self, ReadError, Session};
use super::show::{SessionRow, invalid_archive_message, reset_time_from_run_id, session_table};
use crate::atomic;
use crate::datadir::{ArchiveName, DataDir, Source};
use crate::error::{ErrorKind, archive_read_failure, failure};
use crate::journal::{self, Entry};
use crate::output::{Render, count_noun, format_size};

use prefilter::Needles;

/// Version of the `history search --json` document.
pub const SEARCH_SCHEMA_VERSION: u32 = 1;

/// Exit code when no session matches, as `grep` exits when it selects no line.
const NO_MATCH_EXIT: u8 = 1;

/// Exit code when an archive that contains the term could not be parsed, so
/// that matches may be missing (`invalid_data`).
const INVALID_ARCHIVE_EXIT: u8 = 65;

/// The result of `history search`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub term: String,
    /// Number of sessions archives read.
    pub archives_searched: usize,
    /// Total size of the archives read.
    pub bytes_searched: u64,
    /// Matching sessions, newest archive first, in archive order within one.
    pub matches: Vec<Match>,
    /// Archives that contain the term but are not valid JSON or not an object
    /// of sessions, so their sessions could not be checked.
    pub invalid_archives: Vec<InvalidArchive>,
}

/// One session that matches the term.
#[derive(Debug, Serialize)]
pub struct Match {
    pub run_id: String,
    pub file: String,
    /// Time of the reset from its journal line, else from the archive name.
    pub reset_at: String,
    /// `journal`, or `archive` for an archive that no journal line names.
    pub origin: &'static str,
    #[serde(flatten)]
    pub session: SessionRow,
    /// Fields equal to the term: `session_id` (the key or the `session_id`
    /// member), `order_number`, `invoice_id`.
    pub matched_fields: Vec<&'static str>,
}

/// An archive that contains the term but cannot be parsed.
#[derive(Debug, Serialize)]
pub struct InvalidArchive {
    pub file: String,
    pub error: String,
}

/// Runs `history search`.
pub fn run(dir: &DataDir, term: &str) -> anyhow::Result<Report> {
    if term.is_empty() {
        return Err(failure(
            ErrorKind::Usage,
            "the search term is empty: give a session id, order number or invoice id",
        ));
    }
    let needles = Needles::new(term);
    let entries = journal_entries(dir)?;
    let mut report = Report {
        schema_version: SEARCH_SCHEMA_VERSION,
        term: term.to_string(),
        archives_searched: 0,
        bytes_searched: 0,
        matches: Vec::new(),
        invalid_archives: Vec::new(),
    };
    for archive in sessions_archives(dir)? {
        search_archive(dir, &archive, term, &needles, &entries, &mut report)?;
    }
    Ok(report)
}

/// Returns the last journal line of each run id. Unparseable lines are
/// skipped, so the archives they name show the time from their names.
fn journal_entries(dir: &DataDir) -> anyhow::Result<HashMap<String, Entry>> {
    let mut entries = HashMap::new();
    for line in journal::read_all(dir)? {
        if let Ok(entry) = line.entry
            && entry.is_reset()
            && let Some(id) = entry.id.clone()
        {
            entries.insert(id, entry);
        }
    }
    Ok(entries)
}

/// Lists the valid sessions archives (`.json`, not `.invalid` or `.late`),
/// newest run id first.
fn sessions_archives(dir: &DataDir) -> anyhow::Result<Vec<ArchiveName>> {
    let mut archives: Vec<ArchiveName> = dir
        .archives()?
        .into_iter()
        .map(|(parsed, _)| parsed)
        .filter(|parsed| parsed.source == Source::Sessions && parsed.valid)
        .collect();
    archives.sort_by(|a, b| run_order(&b.run_id).cmp(&run_order(&a.run_id)));
    Ok(archives)
}

/// Returns a sort key for a run id `YYYYMMDD_HHMMSS[_N]`, so that `_10`
/// sorts after `_9`.
fn run_order(run_id: &str) -> (&str, u32) {
    let stamp = run_id.get(..15).unwrap_or(run_id);
    let number = run_id
        .get(16..)
        .and_then(|suffix| suffix.parse().ok())
        .unwrap_or(1);
    (stamp, number)
}

/// Searches one archive and adds its matches, or the reason it could not be
/// parsed, to `report`.
fn search_archive(
    dir: &DataDir,
    archive: &ArchiveName,
    term: &str,
    needles: &Needles,
    entries: &HashMap<String, Entry>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let name = archive.source.archive_name(&archive.run_id, true);
    let path = dir.join(&name);
    let read_failure = archive_read_failure(&path);
    // An archive deleted since the directory was listed, such as by a
    // concurrent prune, is not searched.
    let Some((mut file, metadata)) = atomic::open_regular(&path).map_err(read_failure)? else {
        log::debug!("archive {name} disappeared before it was searched");
        return Ok(());
    };
    report.archives_searched += 1;
    report.bytes_searched += metadata.len();
    if !needles.found_in(&mut file).map_err(read_failure)? {
        return Ok(());
    }
    log::debug!("archive {name} contains the term; parsing it");
    file.seek(SeekFrom::Start(0)).map_err(read_failure)?;

    let entry = entries.get(&archive.run_id);
    let reset_at = entry.map_or_else(
        || reset_time_from_run_id(&archive.run_id),
        |entry| entry.reset_at.clone(),
    );
    let origin = if entry.is_some() {
        "journal"
    } else {
        "archive"
    };
    let mut matches: Vec<Match> = Vec::new();
    let result = reader::read_sessions(&mut file, |session| {
        // A repeated key keeps only its last value, at the position of the
        // first, as Python's json.load does.
        let earlier = matches
            .iter()
            .position(|found| found.session.session_id == session.key);
        let matched_fields = matched_fields(&session, term);
        if matched_fields.is_empty() {
            if let Some(position) = earlier {
                matches.remove(position);
            }
            return;
        }
        let found = Match {
            run_id: archive.run_id.clone(),
            file: name.clone(),
            reset_at: reset_at.clone(),
            origin,
            session: SessionRow::from(session),
            matched_fields,
        };
        match earlier {
            Some(position) => matches[position] = found,
            None => matches.push(found),
        }
    });
    match result {
        Ok(_) => report.matches.append(&mut matches),
        Err(ReadError::Io(error)) => return Err(read_failure(error)),
        Err(ReadError::Invalid(error)) => {
            let message = invalid_archive_message(&name, &error);
            log::warn!("{message}; its sessions were not searched");
            report.invalid_archives.push(InvalidArchive {
                file: name.clone(),
                error: message,
            });
        }
    }
    Ok(())
}

/// Returns the names of the fields of `session` that equal `term`.
fn matched_fields(session: &Session, term: &str) -> Vec<&'static str> {
    let equals = |value: &Option<String>| value.as_deref() == Some(term);
    let mut fields = Vec::new();
    if session.key == term || equals(&session.session_id) {
        fields.push("session_id");
    }
    if equals(&session.order_number) {
        fields.push("order_number");
    }
    if equals(&session.invoice_id) {
        fields.push("invoice_id");
    }
    fields
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        use std::fmt::Write as _;
        let mut start = 0;
        while start < self.matches.len() {
            let first = &self.matches[start];
            let end = start
                + self.matches[start..]
                    .iter()
                    .take_while(|found| found.file == first.file)
                    .count();
            let note = if first.origin == "archive" {
                " [not in the journal]"
            } else {
                ""
            };
            let _ = writeln!(out, "{}  reset at {}{note}", first.file, first.reset_at);
            let rows = self.matches[start..end].iter().map(|found| &found.session);
            out.push_str(&session_table(rows));
            out.push('\n');
            start = end;
        }
        let searched = format!(
            "{} ({})",
            count_noun(self.archives_searched as u64, "archive"),
            format_size(self.bytes_searched)
        );
        if self.matches.is_empty() {
            let _ = writeln!(out, "No session matches `{}` in {searched}.", self.term);
        } else {
            let archives = {
                let mut files: Vec<&str> = self
                    .matches
                    .iter()
                    .map(|found| found.file.as_str())
                    .collect();
                files.dedup();
                files.len()
            };
            let _ = writeln!(
                out,
                "{} in {archives} of {searched}.",
                count_noun(self.matches.len() as u64, "matching session"),
            );
        }
        for invalid in &self.invalid_archives {
            let _ = writeln!(out, "Not searched: {}.", invalid.error);
        }
    }

    fn exit_code(&self) -> u8 {
        if !self.invalid_archives.is_empty() {
            INVALID_ARCHIVE_EXIT
        } else if self.matches.is_empty() {
            NO_MATCH_EXIT
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_order_sorts_same_second_numerically() {
        let mut ids = vec![
            "20261204_000000_10",
            "20261204_000000",
            "20261204_000000_9",
            "20261203_235959",
        ];
        ids.sort_by(|a, b| run_order(b).cmp(&run_order(a)));
        assert_eq!(
            ids,
            [
                "20261204_000000_10",
                "20261204_000000_9",
                "20261204_000000",
                "20261203_235959"
            ]
        );
    }

    #[test]
    fn matches_only_whole_fields() {
        let session = Session {
            key: "k1".to_string(),
            session_id: Some("s1".to_string()),
            order_number: Some("3000500101".to_string()),
            invoice_id: Some("3000500101".to_string()),
            ..Session::default()
        };
        assert_eq!(matched_fields(&session, "k1"), ["session_id"]);
        assert_eq!(matched_fields(&session, "s1"), ["session_id"]);
        assert_eq!(
            matched_fields(&session, "3000500101"),
            ["order_number", "invoice_id"]
        );
        assert!(matched_fields(&session, "300050010").is_empty());
    }
}
