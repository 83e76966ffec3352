//! The `history` command: past resets, newest first.
//!
//! Resets come from the journal without opening their archives. Archive files
//! that no journal line names (legacy archives written by the backend's old
//! in-process reset, or the archives of a run killed before its journal line)
//! are listed too, grouped by run id, with counts read from the files.

pub mod prune;
pub mod search;
pub mod show;
pub mod verify;

use std::collections::{BTreeMap, HashSet};

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local, NaiveDateTime, TimeZone};
use serde::Serialize;

use crate::archive;
use crate::atomic;
use crate::cli::HistoryArgs;
use crate::datadir::{ArchiveName, DataDir, Source};
use crate::journal;
use crate::output::{Align, Render, format_size, table};

/// Version of the `history --json` document.
pub const HISTORY_SCHEMA_VERSION: u32 = 1;

/// The result of `history`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    /// Number of resets found, before `--limit`.
    pub total: usize,
    /// Resets, newest first.
    pub resets: Vec<Reset>,
    /// Journal lines that could not be parsed, as `line N: error`.
    pub journal_errors: Vec<String>,
}

/// One reset, from the journal or from archive files alone.
#[derive(Debug, Serialize)]
pub struct Reset {
    /// `journal`, or `archive` for archives that no journal line names.
    pub origin: &'static str,
    /// `reset`, or `restore` for a restore, whose archives hold the state it
    /// replaced.
    pub event: String,
    /// For a restore: the run id it put back.
    pub restored_from: Option<String>,
    pub run_id: Option<String>,
    /// RFC 3339 with UTC offset for journal entries; for archives alone, the
    /// local time from the file name, with the offset the local time zone
    /// gives it.
    pub reset_at: String,
    /// `null` when the count cannot be known (an invalid or missing archive).
    pub total_sessions_reset: Option<u64>,
    pub sessions_by_status: BTreeMap<String, u64>,
    pub takeover_requests_reset: Option<u64>,
    pub archives: Vec<ArchiveFile>,
    /// True for a journal line written by a later run for an interrupted reset.
    pub recovered: bool,
    pub user: Option<String>,
    pub host: Option<String>,
    #[serde(skip)]
    sort_key: (i64, u32),
}

/// An archive file of a reset.
#[derive(Debug, Serialize)]
pub struct ArchiveFile {
    pub file: String,
    /// Size in bytes as the journal records it, or the size on disk for an
    /// archive that no journal line names. It is `null` when the file no
    /// longer exists.
    pub bytes: Option<u64>,
    /// True when `history prune` deleted the file.
    pub pruned: bool,
}

/// Builds the history report.
pub fn run(dir: &DataDir, args: &HistoryArgs) -> anyhow::Result<Report> {
    let mut resets = Vec::new();
    let mut journal_errors = Vec::new();
    let mut named: HashSet<String> = HashSet::new();
    // Sizes come from the journal for the archives it records, so a long
    // history costs no stat per archive. Only the other archives are looked up.
    let listed = dir.archives()?;
    let present: HashSet<&str> = listed.iter().map(|(_, name)| name.as_str()).collect();

    let lines = journal::read_all(dir)?;
    let pruned: HashSet<String> = lines
        .iter()
        .filter_map(|line| line.entry.as_ref().ok())
        .flat_map(|entry| entry.pruned.iter().cloned())
        .collect();
    for line in lines {
        let entry = match line.entry {
            Ok(entry) => entry,
            Err(error) => {
                journal_errors.push(format!("line {}: {error}", line.number));
                continue;
            }
        };
        if entry.event == "prune" {
            continue;
        }
        let timestamp = DateTime::parse_from_rfc3339(&entry.reset_at)
            .map(|time| time.timestamp_micros())
            .unwrap_or(i64::MIN);
        let archives = entry
            .archives
            .iter()
            .map(|record| {
                named.insert(record.file.clone());
                ArchiveFile {
                    bytes: present
                        .contains(record.file.as_str())
                        .then_some(record.bytes),
                    pruned: pruned.contains(&record.file),
                    file: record.file.clone(),
                }
            })
            .collect();
        // A forced reset of an unparseable file archived entries it could not count.
        let uncounted = |source: Source| {
            entry
                .archives
                .iter()
                .any(|record| record.source == source && !record.valid && !record.late)
        };
        let total_sessions_reset =
            (!uncounted(Source::Sessions)).then_some(entry.total_sessions_reset);
        let takeover_requests_reset =
            (!uncounted(Source::Takeovers)).then_some(entry.takeover_requests_reset);
        resets.push(Reset {
            origin: "journal",
            event: entry.event.clone(),
            restored_from: entry.restored_from.clone(),
            sort_key: (timestamp, same_second_number(entry.id.as_deref())),
            run_id: entry.id,
            reset_at: entry.reset_at,
            total_sessions_reset,
            sessions_by_status: entry.sessions_by_status,
            takeover_requests_reset,
            archives,
            recovered: entry.recovered,
            user: Some(entry.user),
            host: Some(entry.host),
        });
    }

    let mut unjournaled: BTreeMap<String, Vec<(ArchiveName, String)>> = BTreeMap::new();
    for (parsed, name) in listed.iter().cloned() {
        if named.contains(&name) {
            continue;
        }
        // An archive of a journaled run that its line does not name, such
        // as a `.late` archive of a run completed after an interruption,
        // belongs to that run.
        let owner = resets.iter_mut().find(|reset| {
            reset.origin == "journal" && reset.run_id.as_deref() == Some(parsed.run_id.as_str())
        });
        if let Some(reset) = owner {
            reset.archives.push(ArchiveFile {
                bytes: size_on_disk(dir, &name),
                pruned: false,
                file: name,
            });
            continue;
        }
        unjournaled
            .entry(parsed.run_id.clone())
            .or_default()
            .push((parsed, name));
    }
    for (run_id, files) in unjournaled {
        resets.push(archive_only_reset(dir, &run_id, files));
    }

    let total = resets.len();
    resets.sort_by_key(|reset| std::cmp::Reverse(reset.sort_key));
    if let Some(limit) = args.limit {
        resets.truncate(limit);
    }
    Ok(Report {
        schema_version: HISTORY_SCHEMA_VERSION,
        total,
        resets,
        journal_errors,
    })
}

/// Returns N of a run id `YYYYMMDD_HHMMSS_N` (1 without a suffix), so that
/// `_10` sorts after `_9`.
fn same_second_number(run_id: Option<&str>) -> u32 {
    run_id
        .and_then(|id| id.get(16..))
        .and_then(|suffix| suffix.parse().ok())
        .unwrap_or(1)
}

/// Returns the size of an archive, or `None` when it no longer exists.
fn size_on_disk(dir: &DataDir, name: &str) -> Option<u64> {
    std::fs::symlink_metadata(dir.join(name))
        .ok()
        .map(|metadata| metadata.len())
}

/// Describes archives that no journal line names, reading their counts.
fn archive_only_reset(dir: &DataDir, run_id: &str, files: Vec<(ArchiveName, String)>) -> Reset {
    let naive = NaiveDateTime::parse_from_str(&run_id[..15], "%Y%m%d_%H%M%S").ok();
    let local = naive.and_then(|time| Local.from_local_datetime(&time).earliest());
    let reset_at = match local {
        Some(time) => time.fixed_offset().to_rfc3339(),
        None => run_id.to_string(),
    };
    let mut reset = Reset {
        origin: "archive",
        event: journal::RESET_EVENT.to_string(),
        restored_from: None,
        run_id: Some(run_id.to_string()),
        sort_key: (
            local.map_or(i64::MIN, |time| time.timestamp_micros()),
            same_second_number(Some(run_id)),
        ),
        reset_at,
        total_sessions_reset: None,
        sessions_by_status: BTreeMap::new(),
        takeover_requests_reset: None,
        archives: Vec::new(),
        recovered: false,
        user: None,
        host: None,
    };
    for (parsed, name) in files {
        if parsed.valid {
            let summary = atomic::open_regular(&dir.join(&name))
                .ok()
                .flatten()
                .and_then(|(mut file, _)| archive::copy_and_scan(&mut file, None).ok())
                .and_then(|copied| copied.scan.ok());
            match (parsed.source, summary) {
                (Source::Sessions, Some(summary)) => {
                    reset.total_sessions_reset = Some(summary.entries);
                    reset.sessions_by_status = summary.by_status;
                }
                (Source::Takeovers, Some(summary)) => {
                    reset.takeover_requests_reset = Some(summary.entries);
                }
                (_, None) => log::warn!("cannot read the counts of archive {name}"),
            }
        }
        reset.archives.push(ArchiveFile {
            bytes: size_on_disk(dir, &name),
            pruned: false,
            file: name,
        });
    }
    reset
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.total == 0 {
            let _ = writeln!(out, "No resets yet.");
        }
        if !self.resets.is_empty() {
            // Parsed once: parsing the format for each of thousands of rows
            // cost more than the rest of the row.
            let time_format: Vec<Item> = StrftimeItems::new("%Y-%m-%d %H:%M:%S %:z").collect();
            let rows: Vec<Vec<String>> = self
                .resets
                .iter()
                .map(|reset| row(reset, &time_format))
                .collect();
            out.push_str(&table(
                &[
                    ("RESET AT", Align::Left),
                    ("RUN ID", Align::Left),
                    ("SESSIONS", Align::Right),
                    ("TAKEOVERS", Align::Right),
                    ("ARCHIVED", Align::Right),
                    ("BY STATUS", Align::Left),
                ],
                &rows,
            ));
        }
        for error in &self.journal_errors {
            let _ = writeln!(out, "unreadable journal {error}");
        }
    }
}

/// Formats one reset as a table row. Counts that cannot be known show `?`,
/// and notes follow the status counts in brackets.
fn row(reset: &Reset, time_format: &[Item]) -> Vec<String> {
    let count = |value: Option<u64>| value.map_or("?".to_string(), |count| count.to_string());
    let present: Vec<u64> = reset
        .archives
        .iter()
        .filter_map(|archive| archive.bytes)
        .collect();
    let pruned = reset
        .archives
        .iter()
        .filter(|archive| archive.pruned)
        .count();
    let archived = if reset.archives.is_empty() {
        "-".to_string()
    } else if pruned == reset.archives.len() {
        "pruned".to_string()
    } else if present.len() < reset.archives.len() {
        format!(
            "{} of {} missing",
            reset.archives.len() - present.len(),
            reset.archives.len()
        )
    } else {
        format_size(present.iter().sum())
    };
    let mut by_status: Vec<String> = reset
        .sessions_by_status
        .iter()
        .map(|(status, count)| format!("{status} {count}"))
        .collect();
    if reset.origin == "archive" {
        by_status.push("[not in the journal]".to_string());
    }
    if let Some(run_id) = &reset.restored_from {
        by_status.push(format!("[restore of {run_id}]"));
    }
    if reset.recovered {
        by_status.push("[completed after an interruption]".to_string());
    }
    // A restore line counts what it archived before the restore, not what it
    // put back, so an empty count there means the active files were empty.
    if reset.archives.is_empty() && reset.restored_from.is_some() {
        by_status.push("[active files were empty]".to_string());
    } else if reset.archives.is_empty() {
        by_status.push("[nothing to reset]".to_string());
    }
    let time = DateTime::parse_from_rfc3339(&reset.reset_at)
        .map(|time| time.format_with_items(time_format.iter()).to_string())
        .unwrap_or_else(|_| reset.reset_at.clone());
    vec![
        time,
        reset.run_id.clone().unwrap_or_else(|| "-".to_string()),
        count(reset.total_sessions_reset),
        count(reset.takeover_requests_reset),
        archived,
        by_status.join(", "),
    ]
}
