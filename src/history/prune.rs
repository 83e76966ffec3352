//! The `history prune` command: delete the archives of old resets under the
//! exclusive lock. The journal keeps the lines of those resets, and a new
//! `prune` line records the deleted files, so that `history verify` reports
//! them as pruned instead of missing.
//!
//! A reset is a journal line with archives (a reset or a restore), or the
//! archives of one run id that no journal line names (legacy archives, dated
//! by the local time in their names). A reset is kept when it is among the
//! newest `--keep` resets or younger than `--keep-days` days; the newest reset
//! is always kept.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::time::Instant;

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use serde::Serialize;

use crate::atomic;
use crate::cli::PruneArgs;
use crate::clock;
use crate::datadir::{ArchiveName, DataDir};
use crate::error::{ErrorKind, failure, io_failure};
use crate::journal::{self, Entry, Line, PRUNE_EVENT};
use crate::lock;
use crate::output::{Render, count_noun, format_size};
use crate::pending;
use crate::resurrection;

/// Version of the `history prune --json` document.
pub const PRUNE_SCHEMA_VERSION: u32 = 1;

/// The result of `history prune`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    /// True when nothing was deleted because of `--dry-run`.
    pub dry_run: bool,
    /// Archives deleted, or that a dry run would delete, oldest reset first.
    pub deleted: Vec<Deleted>,
    /// Number of resets kept that still have an archive.
    pub kept_resets: usize,
    /// Total size of `deleted`.
    pub freed_bytes: u64,
}

/// One deleted archive.
#[derive(Debug, Serialize)]
pub struct Deleted {
    pub file: String,
    pub bytes: u64,
}

/// The archives of one reset.
struct Group {
    /// Run id, or the journal line for a reset without one, for messages.
    label: String,
    /// Time of the reset, or `None` when it cannot be read. Such a reset is
    /// always kept.
    time: Option<DateTime<FixedOffset>>,
    /// Orders resets in the same second by the `_N` of their run id.
    same_second: u32,
    files: Vec<String>,
}

/// Runs `history prune`.
/// Maximum number of archives one prune journal line records.
const PRUNE_BATCH: usize = 10_000;

/// Maximum total length of the names one prune journal line records, half
/// the 1 MiB that journal readers keep of a line, which leaves room for the
/// quotes, commas and other fields.
const PRUNE_BATCH_BYTES: usize = 512 * 1024;

/// Returns how many of `candidates`, from the first, go into one journal
/// line: at most [`PRUNE_BATCH`] names of at most [`PRUNE_BATCH_BYTES`], and
/// at least one.
fn batch_len(candidates: &[Deleted]) -> usize {
    let mut bytes = 0;
    let mut count = 0;
    for candidate in candidates.iter().take(PRUNE_BATCH) {
        bytes += candidate.file.len();
        if count > 0 && bytes > PRUNE_BATCH_BYTES {
            break;
        }
        count += 1;
    }
    count
}

pub fn run(dir: &DataDir, args: &PruneArgs) -> anyhow::Result<Report> {
    if args.keep.is_none() && args.keep_days.is_none() {
        return Err(failure(
            ErrorKind::Usage,
            "give --keep-days N, --keep N or both: history prune deletes nothing without a rule for what to keep",
        ));
    }
    let started = Instant::now();
    let now = clock::now();
    let _lock = if args.dry_run {
        lock::acquire_shared_if_exists(dir, args.wait)?
    } else {
        Some(lock::acquire_exclusive(dir, args.wait)?)
    };
    // Opened before anything is deleted, so that a journal that cannot be
    // written stops the prune while nothing has changed.
    let mut writer = if args.dry_run {
        None
    } else {
        Some(journal::Writer::open(dir)?)
    };

    let lines = journal::read_all(dir)?;
    let groups = collect_groups(dir, &lines)?;
    let (kept, pruned) = select(groups, args, now);
    let protected = protected_archives(dir, &lines)?;
    let kept_resets = kept
        .iter()
        .filter(|group| group.files.iter().any(|file| is_regular(dir, file)))
        .count();
    let candidates = candidates(dir, &pruned, &protected);

    let Some(writer) = writer.as_mut() else {
        return Ok(report(true, candidates, kept_resets));
    };
    // Each batch is deleted, then recorded in a journal line of its own, so
    // that no line grows past what the journal readers keep in memory.
    let mut deleted = Vec::new();
    let mut remaining = candidates;
    loop {
        let rest = remaining.split_off(batch_len(&remaining));
        let (batch, delete_error) = delete(dir, remaining, deleted.len());
        let sync_error = if batch.is_empty() {
            None
        } else {
            atomic::sync_dir(dir.path()).err().map(|error| {
                io_failure(
                    ErrorKind::Io,
                    error,
                    format!("cannot sync data directory {}", dir.path().display()),
                )
            })
        };
        // The files are gone from the directory whatever failed after them,
        // so the journal records them in every case.
        let mut entry = Entry {
            pruned: batch.iter().map(|item| item.file.clone()).collect(),
            duration_ms: started.elapsed().as_millis() as u64,
            ..Entry::new(PRUNE_EVENT, now)
        };
        writer.append(&mut entry)?;
        deleted.extend(batch);
        if let Some(error) = delete_error.or(sync_error) {
            return Err(error);
        }
        if rest.is_empty() {
            break;
        }
        remaining = rest;
    }
    log::info!(
        "prune complete: deleted {} ({}), kept {}",
        count_noun(deleted.len() as u64, "archive"),
        format_size(deleted.iter().map(|item| item.bytes).sum()),
        count_noun(kept_resets as u64, "reset")
    );
    Ok(report(false, deleted, kept_resets))
}

fn report(dry_run: bool, deleted: Vec<Deleted>, kept_resets: usize) -> Report {
    Report {
        schema_version: PRUNE_SCHEMA_VERSION,
        dry_run,
        freed_bytes: deleted.iter().map(|item| item.bytes).sum(),
        deleted,
        kept_resets,
    }
}

/// Builds one group per journal line with archives, and one per run id of
/// the archive files that no journal line names.
fn collect_groups(dir: &DataDir, lines: &[Line]) -> anyhow::Result<Vec<Group>> {
    let mut groups = Vec::new();
    let mut named = HashSet::new();
    for line in lines {
        let entry = match &line.entry {
            Ok(entry) => entry,
            Err(error) => {
                log::warn!(
                    "journal line {} cannot be read ({error}); archives that only it names are pruned by the time in their names",
                    line.number
                );
                continue;
            }
        };
        if entry.archives.is_empty() {
            continue;
        }
        let time = DateTime::parse_from_rfc3339(&entry.reset_at).ok();
        let label = entry
            .id
            .clone()
            .unwrap_or_else(|| format!("of journal line {}", line.number));
        if time.is_none() {
            log::warn!(
                "reset {label} has an invalid time `{}` in the journal; keeping its archives",
                entry.reset_at
            );
        }
        let files: Vec<String> = entry
            .archives
            .iter()
            .map(|record| record.file.clone())
            .collect();
        named.extend(files.iter().cloned());
        groups.push(Group {
            same_second: same_second_number(entry.id.as_deref()),
            label,
            time,
            files,
        });
    }

    let mut legacy: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (parsed, name) in dir.archives()? {
        if !named.contains(&name) {
            legacy.entry(parsed.run_id).or_default().push(name);
        }
    }
    for (run_id, files) in legacy {
        let time = time_from_run_id(&run_id);
        if time.is_none() {
            log::warn!("archive run id {run_id} is not a valid local time; keeping its archives");
        }
        groups.push(Group {
            same_second: same_second_number(Some(&run_id)),
            label: run_id,
            time,
            files,
        });
    }
    Ok(groups)
}

/// Returns the local time that a run id `YYYYMMDD_HHMMSS[_N]` names.
fn time_from_run_id(run_id: &str) -> Option<DateTime<FixedOffset>> {
    let naive = NaiveDateTime::parse_from_str(run_id.get(..15)?, "%Y%m%d_%H%M%S").ok()?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|time| time.fixed_offset())
}

/// Returns N of a run id `YYYYMMDD_HHMMSS_N`, 1 without a suffix, so that
/// `_10` sorts after `_9`.
fn same_second_number(run_id: Option<&str>) -> u32 {
    run_id
        .and_then(|id| id.get(16..))
        .and_then(|suffix| suffix.parse().ok())
        .unwrap_or(1)
}

/// Splits the groups into kept and pruned by the rules of `args`.
fn select(
    groups: Vec<Group>,
    args: &PruneArgs,
    now: DateTime<FixedOffset>,
) -> (Vec<Group>, Vec<Group>) {
    let (mut dated, mut kept): (Vec<Group>, Vec<Group>) =
        groups.into_iter().partition(|group| group.time.is_some());
    dated.sort_by_key(|group| {
        std::cmp::Reverse((
            group.time.map(|time| time.timestamp_micros()),
            group.same_second,
        ))
    });
    // With a cutoff before the earliest time chrono represents, every reset
    // is younger than it.
    let cutoff = args.keep_days.map(|days| {
        now.checked_sub_signed(chrono::TimeDelta::days(i64::from(days)))
            .map(|time| time.timestamp_micros())
    });
    let mut pruned = Vec::new();
    for (rank, group) in dated.into_iter().enumerate() {
        let time = group.time.map_or(i64::MIN, |time| time.timestamp_micros());
        let by_count = args.keep.is_some_and(|keep| rank < keep);
        let by_age = match cutoff {
            Some(Some(cutoff)) => time > cutoff,
            Some(None) => true,
            None => false,
        };
        if rank == 0 || by_count || by_age {
            kept.push(group);
        } else {
            log::debug!(
                "pruning reset {} of {}: older than the rules keep",
                group.label,
                group.time.map(|time| time.to_rfc3339()).unwrap_or_default()
            );
            pruned.push(group);
        }
    }
    // Oldest first, for the report.
    pruned.reverse();
    (kept, pruned)
}

/// Returns the archive names that an interrupted reset's pending record
/// names. Its archives are in place but not yet in the journal, so they
/// would look like legacy archives.
/// Returns the archives that prune never deletes: those of an interrupted
/// reset, which the next reset completes, and the sessions archive that the
/// check for resurrected sessions compares the active file with.
fn protected_archives(dir: &DataDir, lines: &[Line]) -> anyhow::Result<HashSet<String>> {
    let mut protected: HashSet<String> = pending::read(dir)?
        .map(|pending| pending.files.into_iter().map(|file| file.archive).collect())
        .unwrap_or_default();
    if let Ok(baseline) = resurrection::find_baseline(lines) {
        protected.insert(baseline.archive);
    }
    Ok(protected)
}

fn is_regular(dir: &DataDir, file: &str) -> bool {
    fs::symlink_metadata(dir.join(file)).is_ok_and(|metadata| metadata.file_type().is_file())
}

/// Lists the files of the pruned groups that exist as regular files under an
/// archive name, with their sizes.
fn candidates(dir: &DataDir, pruned: &[Group], protected: &HashSet<String>) -> Vec<Deleted> {
    let mut found = Vec::new();
    for group in pruned {
        for file in &group.files {
            // A journal line could name any path; only archive names in the
            // data directory are ever deleted.
            if ArchiveName::parse(file).is_none() {
                log::warn!(
                    "journal names `{file}` as an archive of reset {}, which is not an archive file name; not deleting it",
                    group.label
                );
                continue;
            }
            if protected.contains(file) {
                log::info!("keeping {file}: it belongs to an interrupted reset");
                continue;
            }
            let path = dir.join(file);
            match fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.file_type().is_file() => found.push(Deleted {
                    file: file.clone(),
                    bytes: metadata.len(),
                }),
                Ok(_) => log::warn!("{} is not a regular file; not deleting it", path.display()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => log::warn!("cannot check {}: {error}", path.display()),
            }
        }
    }
    found
}

/// Deletes the files and returns those deleted. Stops at the first failure
/// and returns it too, so that the journal still records what was deleted.
/// Deletes the candidates until one cannot be deleted. `earlier` is the
/// number that earlier batches of this prune deleted, for the message.
fn delete(
    dir: &DataDir,
    candidates: Vec<Deleted>,
    earlier: usize,
) -> (Vec<Deleted>, Option<anyhow::Error>) {
    let mut deleted = Vec::new();
    for candidate in candidates {
        let path = dir.join(&candidate.file);
        // remove_file removes a name and never follows a link.
        match fs::remove_file(&path) {
            Ok(()) => {
                log::info!("deleted archive {}", path.display());
                deleted.push(candidate);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                let error = io_failure(
                    ErrorKind::Io,
                    error,
                    format!(
                        "cannot delete archive {}; the journal records the {} deleted before it",
                        path.display(),
                        count_noun((earlier + deleted.len()) as u64, "archive")
                    ),
                );
                return (deleted, Some(error));
            }
        }
    }
    (deleted, None)
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        use std::fmt::Write as _;
        let kept = count_noun(self.kept_resets as u64, "reset");
        let _ = match (self.dry_run, self.deleted.is_empty()) {
            (true, true) => writeln!(out, "Dry run: nothing to prune; keeping {kept}."),
            (true, false) => writeln!(
                out,
                "Dry run, nothing changed. A prune would delete {} ({}) and keep {kept}:",
                count_noun(self.deleted.len() as u64, "archive"),
                format_size(self.freed_bytes)
            ),
            (false, true) => writeln!(out, "Nothing to prune; kept {kept}."),
            (false, false) => writeln!(
                out,
                "Deleted {} ({}) and kept {kept}:",
                count_noun(self.deleted.len() as u64, "archive"),
                format_size(self.freed_bytes)
            ),
        };
        for item in &self.deleted {
            let _ = writeln!(out, "  {}  {}", item.file, format_size(item.bytes));
        }
    }
}
