//! The `history verify` command: every archive against the SHA-256 in its
//! journal line, and the journal's hash chain.
//!
//! Three checks, all read-only, none following a symbolic link and none
//! creating a file:
//! - each journal line's `prev` is the SHA-256 of the line before it, so an
//!   edited, inserted or deleted line breaks the chain at the next line;
//! - `order-reset-journal.head` records the line count and the hash of the
//!   last line, which no later line protects;
//! - each archive that a journal line records, unless a later prune line
//!   deleted it, exists as a regular file with the recorded size and hash.
//!
//! NOTE: this makes the journal tamper-evident, not tamper-proof. A user who
//! can write both the journal and the head file can rewrite the whole history
//! consistently, archives included, and verify then finds nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::archive;
use crate::atomic;
use crate::datadir::{ArchiveName, DataDir, JOURNAL_FILE};
use crate::journal::{self, Entry, HEAD_FILE, Head, PRUNE_EVENT, RawLine};
use crate::lock;
use crate::output::{Render, count_noun};

/// Version of the `history verify --json` document.
pub const VERIFY_SCHEMA_VERSION: u32 = 1;

/// Exit code when verify finds a problem: EX_DATAERR, as for invalid data.
pub const PROBLEM_EXIT_CODE: u8 = 65;

/// The result of `history verify`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    /// True when no problem was found.
    pub ok: bool,
    /// Number of journal lines read.
    pub lines: usize,
    /// Number of archive records checked against their files, missing files
    /// included and pruned archives excluded.
    pub archives_checked: usize,
    pub problems: Vec<Problem>,
    /// Archive files that no journal line names, such as those of the
    /// backend's old in-process reset. They are not checked.
    pub unjournaled: Vec<String>,
    /// Archive files that a prune line records as deleted. They are not
    /// checked.
    pub pruned: Vec<String>,
    /// Findings that do not fail the check, such as a journal written before
    /// order-reset kept a head file.
    pub warnings: Vec<String>,
}

/// One mismatch between the journal, its head and the archives.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// The journal line where the problem is, or the line that records the
    /// archive. It is `null` for the journal as a whole and for the head file.
    pub line: Option<usize>,
    /// The journal, its head file, or an archive file name.
    pub file: String,
    pub problem: String,
}

impl Problem {
    /// Formats the problem as one line of the human report.
    fn describe(&self) -> String {
        match (self.file.as_str(), self.line) {
            (JOURNAL_FILE, Some(line)) => format!("line {line}: {}", self.problem),
            (JOURNAL_FILE | HEAD_FILE, None) => self.problem.clone(),
            (file, Some(line)) => format!("archive {file}: {} (journal line {line})", self.problem),
            (file, None) => format!("archive {file}: {}", self.problem),
        }
    }
}

/// Maximum wait for a reset or backend write in progress before verify reads
/// the journal without the lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Runs `history verify`.
pub fn run(dir: &DataDir) -> anyhow::Result<Report> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    // The journal, its head and the list of archives are read under the
    // shared lock, so that a reset in progress does not show as a problem.
    // The archives are hashed after the lock is released, because holding it
    // that long would block backend writes. order-reset never rewrites an
    // archive, but a prune that starts meanwhile can make one show as missing.
    let shared = lock::acquire_shared_if_exists(dir, LOCK_WAIT);
    if let Err(error) = &shared {
        warnings.push(format!(
            "read the journal without the lock ({}), so a reset in progress can show as problems: run verify again",
            crate::error::one_line(error)
        ));
    }
    let raw_lines = journal::read_raw_lines(dir)?;
    let head = journal::read_head(dir);
    let on_disk = dir.archives()?;
    drop(shared);

    let entries = check_chain(&raw_lines, &mut problems);
    check_head(head, &raw_lines, &mut problems, &mut warnings);
    let archives = check_archives(dir, &entries, &mut problems);

    let unjournaled = on_disk
        .into_iter()
        .map(|(_, name)| name)
        .filter(|name| !archives.named.contains(name))
        .collect();
    Ok(Report {
        schema_version: VERIFY_SCHEMA_VERSION,
        ok: problems.is_empty(),
        lines: raw_lines.len(),
        archives_checked: archives.checked,
        problems,
        unjournaled,
        pruned: archives.pruned.into_iter().collect(),
        warnings,
    })
}

/// Checks each line's `prev` against the line before it and returns the
/// lines that parse, with their line numbers.
fn check_chain(raw_lines: &[RawLine], problems: &mut Vec<Problem>) -> Vec<(usize, Entry)> {
    let mut entries = Vec::new();
    for (index, raw) in raw_lines.iter().enumerate() {
        let number = index + 1;
        let parsed = match &raw.bytes {
            Some(bytes) => journal::parse_entry(bytes),
            None => Err(format!("longer than {} bytes", journal::MAX_LINE)),
        };
        let entry = match parsed {
            Ok(entry) => entry,
            Err(error) => {
                // A later line's `prev` still checks this line's bytes.
                problems.push(journal_problem(
                    number,
                    format!("not a valid journal line ({error})"),
                ));
                continue;
            }
        };
        if index == 0 {
            if !entry.prev.is_empty() {
                problems.push(journal_problem(
                    number,
                    "prev is not empty, so lines before it were deleted".to_string(),
                ));
            }
        } else if entry.prev != raw_lines[index - 1].sha256() {
            problems.push(journal_problem(
                number,
                format!(
                    "prev does not match line {} (a line was edited, inserted or deleted)",
                    number - 1
                ),
            ));
        }
        entries.push((number, entry));
    }
    entries
}

fn journal_problem(line: usize, problem: String) -> Problem {
    Problem {
        line: Some(line),
        file: JOURNAL_FILE.to_string(),
        problem,
    }
}

/// Compares the head file with the end of the journal, which no `prev`
/// protects.
fn check_head(
    head: Result<Option<Head>, String>,
    raw_lines: &[RawLine],
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) {
    let head = match head {
        Ok(Some(head)) => head,
        Ok(None) => {
            if !raw_lines.is_empty() {
                warnings.push(format!(
                    "no {HEAD_FILE}, so an edit to the journal's last line or lines deleted from its end cannot be detected. Journals written before order-reset kept a head have none, and the next reset or prune writes it"
                ));
            }
            return;
        }
        Err(message) => {
            problems.push(Problem {
                line: None,
                file: HEAD_FILE.to_string(),
                problem: format!("{HEAD_FILE} cannot be used: {message}"),
            });
            return;
        }
    };
    let count = raw_lines.len();
    if head.lines > count {
        problems.push(Problem {
            line: None,
            file: JOURNAL_FILE.to_string(),
            problem: format!(
                "journal lost lines at the end: {HEAD_FILE} records {}, the journal has {count}",
                count_noun(head.lines as u64, "line")
            ),
        });
        return;
    }
    if head.lines == 0 {
        // order-reset writes a head only after appending a line.
        if !head.sha256.is_empty() {
            problems.push(Problem {
                line: None,
                file: HEAD_FILE.to_string(),
                problem: format!(
                    "{HEAD_FILE} records 0 lines but a SHA-256, which order-reset never writes"
                ),
            });
        }
    } else if !head.is_prefix_of(raw_lines) {
        let problem = if head.lines == count {
            format!("last line edited (its SHA-256 differs from the one in {HEAD_FILE})")
        } else {
            format!(
                "line edited (its SHA-256 differs from the one in {HEAD_FILE}, which records it as the last line)"
            )
        };
        problems.push(journal_problem(head.lines, problem));
    }
    if head.lines < count {
        warnings.push(format!(
            "the journal has {} but {HEAD_FILE} records {}. A run stopped between its append and its head update, or a run left the head unchanged because the journal did not match it",
            count_noun(count as u64, "line"),
            count_noun(head.lines as u64, "line")
        ));
    }
}

/// Result of the archive check, besides its problems.
struct ArchiveCheck {
    /// Number of archive records checked.
    checked: usize,
    /// Every file name that a journal line records or prunes.
    named: HashSet<String>,
    /// File names that prune lines record as deleted.
    pruned: BTreeSet<String>,
}

/// Checks every archive record against its file, skipping archives that a
/// later prune line deleted.
fn check_archives(
    dir: &DataDir,
    entries: &[(usize, Entry)],
    problems: &mut Vec<Problem>,
) -> ArchiveCheck {
    // The last prune line that names each file.
    let mut pruned_on: HashMap<&str, usize> = HashMap::new();
    for (number, entry) in entries {
        if entry.event == PRUNE_EVENT {
            for file in &entry.pruned {
                pruned_on.insert(file, *number);
            }
        }
    }
    let mut result = ArchiveCheck {
        checked: 0,
        named: pruned_on.keys().map(|file| file.to_string()).collect(),
        pruned: pruned_on.keys().map(|file| file.to_string()).collect(),
    };
    // The same file recorded twice is hashed once.
    let mut hashes: HashMap<String, Result<(u64, String), String>> = HashMap::new();
    for (number, entry) in entries {
        for record in &entry.archives {
            result.named.insert(record.file.clone());
            if pruned_on
                .get(record.file.as_str())
                .is_some_and(|pruned| pruned > number)
            {
                continue;
            }
            let problem = |problem: String| Problem {
                line: Some(*number),
                file: record.file.clone(),
                problem,
            };
            // A journal line could name any path; only archive names in the
            // data directory are opened.
            if ArchiveName::parse(&record.file).is_none() {
                problems.push(problem(
                    "not an archive file name, so it was not opened".to_string(),
                ));
                continue;
            }
            result.checked += 1;
            let found = hashes
                .entry(record.file.clone())
                .or_insert_with(|| hash_archive(dir, &record.file));
            match found {
                Err(message) => problems.push(problem(message.clone())),
                Ok((bytes, sha256)) if *bytes != record.bytes || *sha256 != record.sha256 => {
                    problems.push(problem(format!(
                        "content changed (sha256 {sha256}, {bytes} bytes; the journal records sha256 {}, {} bytes)",
                        record.sha256, record.bytes
                    )))
                }
                Ok(_) => {}
            }
        }
    }
    result
}

/// Returns the size and SHA-256 of an archive, or why it cannot be checked.
fn hash_archive(dir: &DataDir, name: &str) -> Result<(u64, String), String> {
    match atomic::open_regular(&dir.join(name)) {
        Ok(None) => Err("missing".to_string()),
        Ok(Some((mut file, _))) => {
            archive::hash_file(&mut file).map_err(|error| format!("cannot be read: {error}"))
        }
        Err(error) => Err(format!("cannot be read: {error}")),
    }
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        use std::fmt::Write as _;
        let found = match self.problems.len() {
            0 => "found no problems".to_string(),
            count => format!("found {}:", count_noun(count as u64, "problem")),
        };
        let _ = writeln!(
            out,
            "Verified {} and {}, {found}",
            count_noun(self.lines as u64, "journal line"),
            count_noun(self.archives_checked as u64, "archive"),
        );
        for problem in &self.problems {
            let _ = writeln!(out, "  {}", problem.describe());
        }
        for (title, names) in [
            ("Pruned, not checked:", &self.pruned),
            ("Not in the journal, not checked:", &self.unjournaled),
        ] {
            if names.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{title}");
            for name in names {
                let _ = writeln!(out, "  {name}");
            }
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
    }

    fn exit_code(&self) -> u8 {
        if self.ok { 0 } else { PROBLEM_EXIT_CODE }
    }
}
