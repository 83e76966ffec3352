//! The `status` command: the active files, the last reset, the archives, the
//! lock, the reset generation and resurrected sessions, read without changing
//! anything. A file that cannot be read or parsed is reported in the output,
//! not raised as an error.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use chrono::{DateTime, Local, TimeZone};
use serde::Serialize;

use crate::archive;
use crate::atomic;
use crate::cli::StatusArgs;
use crate::clock;
use crate::datadir::{DataDir, Source};
use crate::generation;
use crate::journal;
use crate::lock::{self, LockState};
use crate::output::{Render, count_noun, format_age, format_counts, format_size};
use crate::pending;
use crate::resurrection::{self, Baseline};
use crate::scan::Scanner;

/// Version of the `status --json` document.
pub const STATUS_SCHEMA_VERSION: u32 = 1;

/// The result of `status`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub data_dir: String,
    pub sessions: FileStatus,
    pub takeover_requests: FileStatus,
    /// The newest reset in the journal; `null` when there is none.
    pub last_reset: Option<LastReset>,
    pub archives: ArchiveTotals,
    pub lock: LockState,
    /// Run id of an interrupted reset that the next reset completes.
    pub pending_reset: Option<String>,
    /// The reason `order-reset.pending` could not be used. Resets stop until it
    /// is repaired or removed.
    pub pending_error: Option<String>,
    /// Journal lines that could not be parsed, as `line N: error`.
    pub journal_errors: Vec<String>,
    /// The reset generation in `order-reset.generation`, 0 when the file is
    /// missing; `null` when it cannot be used.
    pub generation: Option<u64>,
    /// The reason `order-reset.generation` cannot be used. Resets and
    /// restores stop until it is fixed.
    pub generation_error: Option<String>,
    /// Sessions that the last reset archived and that are active again.
    pub resurrection: Resurrection,
    /// The monitoring check, present with `--max-age` or `--max-lock-age`,
    /// and whenever it finds a problem that is always checked, such as
    /// resurrected sessions.
    pub check: Option<Check>,
}

/// The comparison of `scan_sessions.json` with the sessions archive of the
/// most recent reset that archived sessions.
#[derive(Debug, Default, Serialize)]
pub struct Resurrection {
    /// Whether the comparison was made.
    pub checked: bool,
    /// Active sessions that the reset archived and that came back unchanged
    /// or older.
    pub count: u64,
    /// The first of their ids in archive order, at most five.
    pub session_ids: Vec<String>,
    /// Run id of the reset compared with.
    pub run_id: Option<String>,
    /// Time of that reset, RFC 3339.
    pub reset_at: Option<String>,
    /// The reason no comparison was made, such as no reset having archived
    /// sessions.
    pub not_checked: Option<String>,
    /// The reason the comparison failed, such as a missing archive.
    pub error: Option<String>,
}

/// A monitoring check in the monitoring-plugin convention (Nagios, Icinga,
/// Sensu): exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
#[derive(Debug, Serialize)]
pub struct Check {
    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub state: &'static str,
    /// The exit code of that state.
    pub exit_code: u8,
    /// One line per problem found, or a summary when there is none.
    pub messages: Vec<String>,
}

const CHECK_STATES: [&str; 4] = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];

/// One active file.
#[derive(Debug, Serialize)]
pub struct FileStatus {
    pub file: String,
    pub exists: bool,
    pub bytes: Option<u64>,
    /// Modification time, RFC 3339 with UTC offset.
    pub modified_at: Option<String>,
    /// Number of entries; `null` when the file is missing or invalid.
    pub entries: Option<u64>,
    pub by_status: BTreeMap<String, u64>,
    /// The reason the file could not be read or parsed.
    pub error: Option<String>,
    /// Entries not modified since the last reset, when the scan compared
    /// them with it (see `Scanner::with_modified_cutoff`).
    #[serde(skip)]
    unmodified_entries: u64,
}

/// The newest reset in the journal.
#[derive(Debug, Serialize)]
pub struct LastReset {
    pub reset_at: String,
    /// Seconds from the reset to now.
    pub age_seconds: Option<i64>,
    pub run_id: Option<String>,
    pub total_sessions_reset: u64,
    pub sessions_by_status: BTreeMap<String, u64>,
    pub takeover_requests_reset: u64,
    pub archives: Vec<String>,
}

/// Archive files present in the data directory, legacy ones included.
#[derive(Debug, Serialize)]
pub struct ArchiveTotals {
    pub count: usize,
    pub total_bytes: u64,
    /// The reason the directory could not be listed. The counts are then 0.
    pub error: Option<String>,
}

/// Builds the status report.
pub fn run(dir: &DataDir, args: &StatusArgs) -> anyhow::Result<Report> {
    let lock_state = lock::probe(dir);
    // A shared lock waits for a write in progress, so that a file is not
    // reported invalid only because it was read half-written. Status still
    // reports when the lock stays busy.
    let shared = lock::acquire_shared_if_exists(dir, Duration::from_secs(2))
        .inspect_err(|error| log::debug!("reading without the lock: {error:#}"))
        .ok()
        .flatten();

    let mut journal_errors = Vec::new();
    let lines = journal::read_all(dir).unwrap_or_else(|error| {
        journal_errors.push(crate::error::one_line(&error));
        Vec::new()
    });
    let baseline = resurrection::find_baseline(&lines);
    let cutoff = baseline.as_ref().ok().map(Baseline::modified_cutoff);
    let sessions = file_status(dir, Source::Sessions, cutoff);
    let takeover_requests = file_status(dir, Source::Takeovers, None);
    let (generation, generation_error) = match generation::read(dir) {
        Ok(value) => (Some(value), None),
        Err(error) => (None, Some(crate::error::one_line(&error))),
    };

    let mut last_reset = None;
    for line in lines {
        match line.entry {
            Ok(entry) if entry.is_reset() => last_reset = Some(entry),
            Ok(_) => {}
            Err(error) => journal_errors.push(format!("line {}: {error}", line.number)),
        }
    }
    let now = clock::now();
    let last_reset = last_reset.map(|entry| LastReset {
        age_seconds: DateTime::parse_from_rfc3339(&entry.reset_at)
            .ok()
            .map(|time| (now - time).num_seconds()),
        reset_at: entry.reset_at,
        run_id: entry.id,
        total_sessions_reset: entry.total_sessions_reset,
        sessions_by_status: entry.sessions_by_status,
        takeover_requests_reset: entry.takeover_requests_reset,
        archives: entry
            .archives
            .into_iter()
            .map(|record| record.file)
            .collect(),
    });

    let mut archives = ArchiveTotals {
        count: 0,
        total_bytes: 0,
        error: None,
    };
    match dir.archives() {
        Ok(names) => {
            for (_, name) in names {
                if let Ok(metadata) = std::fs::symlink_metadata(dir.join(&name)) {
                    archives.count += 1;
                    archives.total_bytes += metadata.len();
                }
            }
        }
        Err(error) => archives.error = Some(crate::error::one_line(&error)),
    }

    let (pending_reset, pending_error) = match pending::read(dir) {
        Ok(record) => (record.and_then(|record| record.entry.id), None),
        Err(error) => (None, Some(crate::error::one_line(&error))),
    };

    // Archives never change, so the archive is read without holding the
    // shared lock, which would make backend writes wait.
    drop(shared);
    let resurrection = compare_with_archive(dir, baseline, &sessions);

    let check = check(args, last_reset.as_ref(), &lock_state, &resurrection);
    let limits_given = args.max_age.is_some() || args.max_lock_age.is_some();
    let check = (limits_given || check.exit_code != 0).then_some(check);

    Ok(Report {
        check,
        schema_version: STATUS_SCHEMA_VERSION,
        data_dir: dir.path().display().to_string(),
        sessions,
        takeover_requests,
        last_reset,
        archives,
        lock: lock_state,
        pending_reset,
        pending_error,
        journal_errors,
        generation,
        generation_error,
        resurrection,
    })
}

/// Looks for resurrected sessions in `scan_sessions.json` and confirms them
/// against the baseline reset's archive. Reads nothing more when the scan
/// found every session modified since that reset.
fn compare_with_archive(
    dir: &DataDir,
    baseline: Result<Baseline, String>,
    sessions: &FileStatus,
) -> Resurrection {
    let baseline = match baseline {
        Ok(baseline) => baseline,
        Err(reason) => {
            return Resurrection {
                not_checked: Some(reason),
                ..Resurrection::default()
            };
        }
    };
    let mut report = Resurrection {
        run_id: Some(baseline.run_id.clone()),
        reset_at: Some(baseline.reset_at.clone()),
        ..Resurrection::default()
    };
    if sessions.error.is_some() {
        report.not_checked = Some(format!(
            "{} is invalid or cannot be read",
            Source::Sessions.file_name()
        ));
        return report;
    }
    if sessions.unmodified_entries == 0 {
        report.checked = true;
        return report;
    }
    let candidates =
        match resurrection::find_candidates(&baseline, &dir.join(Source::Sessions.file_name())) {
            Ok(candidates) => candidates,
            Err(error) => {
                report.error = Some(crate::error::one_line(&error));
                return report;
            }
        };
    log::debug!(
        "{} active sessions were last modified before reset {} ended, or have no readable time",
        candidates.len(),
        baseline.run_id
    );
    match resurrection::confirm(dir, &baseline, candidates) {
        Ok(found) => {
            report.checked = true;
            report.count = found.count;
            report.session_ids = found.session_ids;
        }
        Err(error) => report.error = Some(crate::error::one_line(&error)),
    }
    report
}

/// Checks the age of the last reset and of the lock against the limits, and
/// the active sessions for resurrected ones.
fn check(
    args: &StatusArgs,
    last_reset: Option<&LastReset>,
    lock: &LockState,
    resurrection: &Resurrection,
) -> Check {
    let mut code = 0u8;
    let mut messages = Vec::new();
    if let Some(max_age) = args.max_age {
        let limit = format_age(max_age.as_secs() as i64);
        match last_reset.map(|reset| reset.age_seconds) {
            None => {
                code = code.max(2);
                messages.push("no reset in the journal".to_string());
            }
            Some(None) => {
                code = code.max(3);
                messages.push("the last reset's time cannot be read".to_string());
            }
            Some(Some(age)) if age > max_age.as_secs() as i64 => {
                code = code.max(2);
                messages.push(format!(
                    "last reset {} ago, longer than {limit}",
                    format_age(age)
                ));
            }
            Some(Some(age)) => messages.push(format!("last reset {} ago", format_age(age))),
        }
    }
    if let Some(max_lock_age) = args.max_lock_age
        && let LockState::Held { holder, pid, .. } = lock
    {
        // Only a holder record whose pid the kernel confirms tells how
        // long the lock has been held; a backend writes no record.
        let since = holder
            .as_ref()
            .filter(|holder| Some(holder.pid) == *pid)
            .and_then(|holder| DateTime::parse_from_rfc3339(&holder.started_at).ok());
        match since {
            Some(since) => {
                let held = (clock::now() - since).num_seconds();
                if held > max_lock_age.as_secs() as i64 {
                    code = code.max(1);
                    messages.push(format!(
                        "lock held for {}, longer than {}",
                        format_age(held),
                        format_age(max_lock_age.as_secs() as i64)
                    ));
                }
            }
            None => messages.push("lock held, for an unknown time".to_string()),
        }
    }
    if resurrection.count > 0 {
        code = code.max(2);
        messages.push(format!(
            "{} archived by reset {} active again ({})",
            count_noun(resurrection.count, "session"),
            resurrection.run_id.as_deref().unwrap_or_default(),
            sample_ids(resurrection)
        ));
    }
    if let Some(error) = &resurrection.error {
        code = code.max(3);
        messages.push(format!("cannot check for resurrected sessions: {error}"));
    }
    Check {
        state: CHECK_STATES[code as usize],
        exit_code: code,
        messages,
    }
}

/// Lists the first resurrected ids, with `…` when there are more.
fn sample_ids(resurrection: &Resurrection) -> String {
    let mut text = resurrection.session_ids.join(", ");
    if resurrection.count > resurrection.session_ids.len() as u64 {
        text.push_str(", …");
    }
    text
}

/// Reads one active file. With `modified_cutoff`, the scan also counts the
/// entries not modified after it.
fn file_status(
    dir: &DataDir,
    source: Source,
    modified_cutoff: Option<chrono::NaiveDateTime>,
) -> FileStatus {
    let path = dir.join(source.file_name());
    let mut status = FileStatus {
        file: path.display().to_string(),
        exists: false,
        bytes: None,
        modified_at: None,
        entries: None,
        by_status: BTreeMap::new(),
        error: None,
        unmodified_entries: 0,
    };
    let (mut file, metadata) = match atomic::open_regular(&path) {
        Ok(Some(opened)) => opened,
        Ok(None) => return status,
        Err(error) => {
            status.exists = std::fs::symlink_metadata(&path).is_ok();
            status.error = Some(error.to_string());
            return status;
        }
    };
    status.exists = true;
    status.bytes = Some(metadata.len());
    status.modified_at = Local
        .timestamp_opt(metadata.mtime(), metadata.mtime_nsec() as u32)
        .single()
        .map(|time| {
            time.fixed_offset()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        });
    let scanner = modified_cutoff.map_or_else(Scanner::new, Scanner::with_modified_cutoff);
    match archive::copy_and_scan_with(&mut file, None, scanner, true) {
        Ok(copied) => match copied.scan {
            Ok(summary) => {
                status.entries = Some(summary.entries);
                status.by_status = summary.by_status;
                status.unmodified_entries = summary.unmodified_entries;
            }
            Err(error) => status.error = Some(format!("invalid: {error}")),
        },
        Err(error) => status.error = Some(format!("cannot read: {error}")),
    }
    status
}

impl Resurrection {
    /// Describes the comparison in one line for the human report.
    fn describe(&self) -> String {
        let run_id = self.run_id.as_deref().unwrap_or_default();
        if let Some(error) = &self.error {
            return format!("cannot check: {error}");
        }
        if let Some(reason) = &self.not_checked {
            return format!("not checked: {reason}");
        }
        if self.count == 0 {
            return format!("none since reset {run_id}");
        }
        format!(
            "{} archived by reset {run_id} active again, unchanged or older: {}; a process wrote sessions back without reloading after the reset",
            count_noun(self.count, "session"),
            sample_ids(self)
        )
    }
}

fn render_file(out: &mut String, label: &str, noun: &str, file: &FileStatus) {
    use std::fmt::Write as _;
    let detail = if !file.exists {
        "missing (counts as empty)".to_string()
    } else if let Some(error) = &file.error {
        error.clone()
    } else {
        format!(
            "{}{}, {}, modified {}",
            count_noun(file.entries.unwrap_or(0), noun),
            format_counts(&file.by_status),
            format_size(file.bytes.unwrap_or(0)),
            file.modified_at.as_deref().unwrap_or("unknown")
        )
    };
    let _ = writeln!(out, "{label:<19}{detail}");
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Monitoring plugins read only the first line of the output.
        if let Some(check) = &self.check {
            let _ = writeln!(
                out,
                "ORDER-RESET {} - {}",
                check.state,
                check.messages.join("; ")
            );
        }
        let _ = writeln!(out, "{:<19}{}", "data directory", self.data_dir);
        render_file(out, "sessions", "session", &self.sessions);
        render_file(
            out,
            "takeover requests",
            "takeover request",
            &self.takeover_requests,
        );
        let last = match &self.last_reset {
            None => "none in the journal".to_string(),
            Some(reset) => format!(
                "{} ({} ago): {}{}, {}",
                reset.reset_at,
                reset.age_seconds.map_or("unknown".to_string(), format_age),
                count_noun(reset.total_sessions_reset, "session"),
                format_counts(&reset.sessions_by_status),
                count_noun(reset.takeover_requests_reset, "takeover request"),
            ),
        };
        let _ = writeln!(out, "{:<19}{last}", "last reset");
        let archives = match &self.archives.error {
            Some(error) => error.clone(),
            None => format!(
                "{}, {}",
                count_noun(self.archives.count as u64, "file"),
                format_size(self.archives.total_bytes)
            ),
        };
        let _ = writeln!(out, "{:<19}{archives}", "archives");
        let lock = match &self.lock {
            LockState::Missing => "free (no lock file yet)".to_string(),
            LockState::Free => "free".to_string(),
            LockState::Held { description, .. } => format!("held by {description}"),
            LockState::Unreadable { error } => format!("unknown: {error}"),
        };
        let _ = writeln!(out, "{:<19}{lock}", "lock");
        if let Some(error) = &self.pending_error {
            let _ = writeln!(out, "{:<19}{error}", "pending");
        }
        if let Some(run_id) = &self.pending_reset {
            let _ = writeln!(
                out,
                "{:<19}reset {run_id} was interrupted; the next reset completes it",
                "pending"
            );
        }
        for error in &self.journal_errors {
            let _ = writeln!(out, "{:<19}{error}", "journal");
        }
        let generation = match (&self.generation, &self.generation_error) {
            (_, Some(error)) => error.clone(),
            (Some(0), None) => "0 (no generation file yet)".to_string(),
            (Some(value), None) => value.to_string(),
            (None, None) => "unknown".to_string(),
        };
        let _ = writeln!(out, "{:<19}{generation}", "generation");
        let _ = writeln!(out, "{:<19}{}", "resurrected", self.resurrection.describe());
    }

    fn exit_code(&self) -> u8 {
        self.check.as_ref().map_or(0, |check| check.exit_code)
    }
}
