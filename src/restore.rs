//! The `restore ID` command: put the sessions of an archived reset (and with
//! `--takeovers` its takeover requests) back into the active files, under the
//! exclusive lock. The current content is archived first, as a reset does,
//! so that a restore can itself be undone.
//!
//! Order of a restore, each step finished before the next starts:
//! 1. take the exclusive lock, read the generation, complete an interrupted
//!    reset or restore, remove stale temporary files;
//! 2. find the archives of the reset `ID` names;
//! 3. for each active file, copy it into a temporary archive while validating
//!    it. An empty or missing file gets the archive's exact bytes as its new
//!    content, and a non-empty one, with `--merge`, the merge (see `merge`).
//!    Both temporary files are synced, and nothing visible has changed yet;
//! 4. increase the generation (see `generation`), rename the archives of the
//!    current content into place without replacing anything, sync the
//!    directory, exchange each active file with
//!    its new content, write the pending record, sync the directory, append
//!    the journal line and remove the record (see `commit`).

mod commit;
mod members;
mod merge;
mod target;

use std::time::Instant;

use serde::Serialize;

use crate::atomic;
use crate::cli::RestoreArgs;
use crate::clock;
use crate::datadir::{ArchiveName, DataDir, Source};
use crate::error::{ErrorKind, failure, io_failure};
use crate::failpoint;
use crate::generation::Generation;
use crate::journal::{self, ArchiveRecord, Entry};
use crate::lock;
use crate::output::{Render, count_noun};
use crate::pending;
use crate::preconditions;
use crate::runs;

use target::{Action, ArchiveSource, Options, Target, noun};

/// Version of the `restore --json` document.
pub const RESTORE_SCHEMA_VERSION: u32 = 1;

/// Event name of a restore's journal line.
pub const RESTORE_EVENT: &str = "restore";

/// The result of `restore`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub success: bool,
    /// Run id of the reset whose archives were put back.
    pub restored_from: String,
    /// Distinct sessions put back into `scan_sessions.json`.
    pub sessions_restored: u64,
    /// Distinct takeover requests put back into `takeover_requests.json`.
    pub takeover_requests_restored: u64,
    /// True when archived entries were added to a non-empty active file.
    pub merged: bool,
    /// Session ids present both in `scan_sessions.json` and in the archive;
    /// the active version was kept.
    pub conflicts: Vec<String>,
    /// Takeover request ids present in both files; the active version was kept.
    pub takeover_conflicts: Vec<String>,
    /// Path of the archive of `scan_sessions.json` as it was before the
    /// restore; `null` when it was empty or not changed.
    pub archived_to: Option<String>,
    /// Path of the archive of `takeover_requests.json` as it was before the
    /// restore; `null` when it was empty or not changed.
    pub takeover_archived_to: Option<String>,
    /// Run id of those archives; `null` when nothing was archived.
    pub run_id: Option<String>,
    /// Time of the restore, RFC 3339 with UTC offset.
    pub restored_at: String,
    /// True when nothing was changed because of `--dry-run`.
    pub dry_run: bool,
    pub duration_ms: u64,
    /// Run id of an interrupted reset or restore that this run completed first.
    pub recovered_run_id: Option<String>,
    /// Paths of `.late` archives: what a writer that ignores the lock wrote
    /// into an active file during this restore.
    pub late_archives: Vec<String>,
    /// The reset generation after this run (see `order-reset.generation`);
    /// a dry run reports the current one.
    pub generation: u64,
}

/// Runs `restore` and returns its report.
pub fn run(dir: &DataDir, args: &RestoreArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let now = clock::now();
    log::info!(
        "starting {}restore of {} from {} (pid {})",
        if args.dry_run { "dry-run " } else { "" },
        dir.path().display(),
        args.id,
        std::process::id()
    );
    // A rejected id fails before the lock is taken.
    runs::parse_id(&args.id)?;
    reject_unrestorable_name(&args.id)?;

    let mut sources = vec![Source::Sessions];
    if args.takeovers {
        sources.push(Source::Takeovers);
    }

    let _lock = if args.dry_run {
        lock::acquire_shared_if_exists(dir, args.wait)?
    } else {
        Some(lock::acquire_exclusive(dir, args.wait)?)
    };
    failpoint::check("after-lock")?;
    preconditions::preflight(dir, &sources)?;
    // Read first, so that an invalid generation file stops the run before
    // anything changes.
    let mut generation = Generation::read(dir)?;

    let mut recovered_run_id = None;
    if args.dry_run {
        // A damaged record stops a real restore, so it stops a dry run too.
        if pending::read(dir)?.is_some() {
            log::warn!(
                "an interrupted reset or restore is pending; a real restore completes it before its own"
            );
        }
    } else {
        recovered_run_id = pending::complete(dir, &mut generation)?;
        atomic::remove_stale_temps(dir).map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot remove temporary files in {}", dir.path().display()),
            )
        })?;
    }

    let run = runs::find(dir, &args.id)?;
    let archives = locate_archives(dir, &run, &sources)?;
    let options = Options {
        dry_run: args.dry_run,
        merge: args.merge,
        run_id: run.run_id.clone(),
    };
    let mut targets = Vec::new();
    for (source, archive) in archives {
        targets.push(target::prepare(dir, source, archive, &options)?);
    }
    failpoint::check("after-copy")?;
    for target in &targets {
        if target.action == Action::Keep {
            continue;
        }
        if let (Some((file, metadata)), Some(copied)) = (&target.active, &target.active_copied) {
            preconditions::check_unchanged(
                &dir.join(target.source.file_name()),
                file,
                metadata,
                copied.bytes,
            )?;
        }
    }

    let mut entry = journal_entry(args, &run.run_id, &now);
    let stamp = now.format("%Y%m%d_%H%M%S").to_string();
    if targets.iter().any(Target::archives_active) {
        let run_id = preconditions::choose_run_id(dir, &stamp)?;
        record_archives(&mut entry, &targets, &run_id);
        entry.id = Some(run_id);
    }

    let mut report = report(dir, &entry, &targets, args.dry_run, recovered_run_id);
    report.generation = generation.value();
    let changes = targets.iter().any(|target| target.action != Action::Keep);
    if args.dry_run {
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    // Opened before anything changes, so that a journal that cannot be
    // written stops the restore while nothing is visible yet.
    let mut journal = journal::Writer::open(dir)?;
    if !changes {
        drop(targets);
        entry.duration_ms = started.elapsed().as_millis() as u64;
        journal.append(&mut entry)?;
        report.duration_ms = entry.duration_ms;
        log::info!("nothing to restore from reset {}", run.run_id);
        return Ok(report);
    }

    // Bumped before anything visible changes, so that a backend that reads
    // the new generation reloads even when this run stops later.
    generation.bump(dir)?;
    report.generation = generation.value();
    report.late_archives = commit::commit(dir, &mut entry, targets, &mut journal, &stamp, started)?;
    report.duration_ms = entry.duration_ms;
    report.run_id = entry.id.clone();
    log::info!(
        "restore of reset {} complete: {} and {} put back in {} ms",
        run.run_id,
        count_noun(report.sessions_restored, "session"),
        count_noun(report.takeover_requests_restored, "takeover request"),
        entry.duration_ms
    );
    log::info!(
        "the backend must re-read the restored files now: a process that keeps sessions in memory and writes them back would undo the restore"
    );
    Ok(report)
}

/// Rejects an id that names a `.invalid` or `.late` archive, whose bytes
/// were never checked to be a sessions file.
fn reject_unrestorable_name(id: &str) -> anyhow::Result<()> {
    match ArchiveName::parse(id) {
        Some(name) if !name.valid => Err(failure(
            ErrorKind::InvalidData,
            format!(
                "{id} is a .{} archive, which keeps bytes that were not checked to be valid JSON; only .json archives can be restored: repair a copy by hand if its content is needed",
                if name.late { "late" } else { "invalid" }
            ),
        )),
        _ => Ok(()),
    }
}

/// Returns the `.json` archive of each requested source, or `None` where
/// the reset archived nothing of that file. Fails when an archive the
/// journal records is missing, when only a `.invalid` archive exists, or
/// when nothing requested can be restored.
fn locate_archives(
    dir: &DataDir,
    run: &runs::Run,
    sources: &[Source],
) -> anyhow::Result<Vec<(Source, Option<ArchiveSource>)>> {
    // Any journal line that wrote an archive records its hash, whatever its
    // event; `runs::find` returns only the line of a reset.
    let lines = journal::read_all(dir)?;
    let recorded = |name: &str| -> Option<ArchiveRecord> {
        lines
            .iter()
            .filter_map(|line| line.entry.as_ref().ok())
            .flat_map(|entry| entry.archives.iter())
            .rfind(|record| record.file == name)
            .cloned()
    };

    let mut found = Vec::new();
    for &source in sources {
        if let Some(name) = run.archive(source) {
            found.push((
                source,
                Some(ArchiveSource {
                    name: name.to_string(),
                    recorded: recorded(name),
                }),
            ));
            continue;
        }
        let invalid = source.archive_name(&run.run_id, false);
        if std::fs::symlink_metadata(dir.join(&invalid)).is_ok() {
            return Err(failure(
                ErrorKind::InvalidData,
                format!(
                    "reset {} kept {} as {} because it was not valid JSON; only .json archives can be restored: repair a copy by hand if its content is needed",
                    run.run_id,
                    source.file_name(),
                    dir.join(&invalid).display()
                ),
            ));
        }
        let expected = source.archive_name(&run.run_id, true);
        if recorded(&expected).is_some() {
            return Err(failure(
                ErrorKind::NotFound,
                format!(
                    "archive {} of reset {} is missing; it may have been pruned or moved: `order-reset history` lists the archives",
                    dir.join(&expected).display(),
                    run.run_id
                ),
            ));
        }
        found.push((source, None));
    }
    if found.iter().all(|(_, archive)| archive.is_none()) {
        let hint = if sources.contains(&Source::Takeovers) {
            ""
        } else {
            "; add --takeovers to restore its takeover requests"
        };
        return Err(failure(
            ErrorKind::NotFound,
            format!(
                "reset {} has no archive to restore in {}{hint}",
                run.run_id,
                dir.path().display()
            ),
        ));
    }
    Ok(found)
}

fn journal_entry(
    args: &RestoreArgs,
    restored_from: &str,
    now: &chrono::DateTime<chrono::FixedOffset>,
) -> Entry {
    let mut flags = Vec::new();
    if args.takeovers {
        flags.push("takeovers".to_string());
    }
    if args.merge {
        flags.push("merge".to_string());
    }
    Entry {
        flags,
        restored_from: Some(restored_from.to_string()),
        ..Entry::new(RESTORE_EVENT, *now)
    }
}

/// Adds the records of the archives of the current content, and their
/// counts, to the journal line. The count fields of a restore line count
/// what was archived, as a reset's do, so that they describe the archives.
fn record_archives(entry: &mut Entry, targets: &[Target], run_id: &str) {
    for target in targets.iter().filter(|target| target.archives_active()) {
        let copied = target
            .active_copied
            .as_ref()
            .expect("archived files were read");
        let summary = target.active_summary().expect("archived files are valid");
        entry.archives.push(ArchiveRecord {
            file: target.source.archive_name(run_id, true),
            source: target.source,
            valid: true,
            late: false,
            bytes: copied.bytes,
            sha256: copied.sha256.clone(),
            entries: Some(summary.entries),
        });
        match target.source {
            Source::Sessions => {
                entry.total_sessions_reset = summary.entries;
                entry.sessions_by_status = summary.by_status.clone();
            }
            Source::Takeovers => entry.takeover_requests_reset = summary.entries,
        }
    }
}

fn report(
    dir: &DataDir,
    entry: &Entry,
    targets: &[Target],
    dry_run: bool,
    recovered_run_id: Option<String>,
) -> Report {
    let archive_path = |source: Source| {
        entry
            .archives
            .iter()
            .find(|record| record.source == source && !record.late)
            .map(|record| dir.join(&record.file).display().to_string())
    };
    let target = |source: Source| targets.iter().find(|target| target.source == source);
    let restored = |source: Source| target(source).map_or(0, |target| target.restored);
    let conflicts =
        |source: Source| target(source).map_or_else(Vec::new, |target| target.conflicts.clone());
    Report {
        schema_version: RESTORE_SCHEMA_VERSION,
        success: true,
        restored_from: entry.restored_from.clone().unwrap_or_default(),
        sessions_restored: restored(Source::Sessions),
        takeover_requests_restored: restored(Source::Takeovers),
        merged: targets.iter().any(|target| target.action == Action::Merge),
        conflicts: conflicts(Source::Sessions),
        takeover_conflicts: conflicts(Source::Takeovers),
        archived_to: archive_path(Source::Sessions),
        takeover_archived_to: archive_path(Source::Takeovers),
        run_id: entry.id.clone(),
        restored_at: entry.reset_at.clone(),
        dry_run,
        duration_ms: entry.duration_ms,
        recovered_run_id,
        late_archives: Vec::new(),
        generation: 0,
    }
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        use std::fmt::Write as _;
        if let Some(run_id) = &self.recovered_run_id {
            let _ = writeln!(out, "Completed interrupted run {run_id} first.");
        }

        let mut details = Vec::new();
        let verb = if self.dry_run {
            "would be archived to"
        } else {
            "archived to"
        };
        for (label, path) in [
            ("previous sessions", &self.archived_to),
            ("previous takeover requests", &self.takeover_archived_to),
        ] {
            if let Some(path) = path {
                let heading = format!("{label} {verb}");
                details.push(format!("  {heading:<46}  {path}"));
            }
        }
        for (source, ids) in [
            (Source::Sessions, &self.conflicts),
            (Source::Takeovers, &self.takeover_conflicts),
        ] {
            if !ids.is_empty() {
                details.push(format!(
                    "  kept the active version of {} that the archive also has: {}",
                    count_noun(ids.len() as u64, noun(source, 1)),
                    ids.join(", ")
                ));
            }
        }
        for path in &self.late_archives {
            details.push(format!("  written during the restore, kept in  {path}"));
        }

        let counts = format!(
            "{} and {}",
            count_noun(self.sessions_restored, "session"),
            count_noun(self.takeover_requests_restored, "takeover request")
        );
        let nothing = self.sessions_restored == 0 && self.takeover_requests_restored == 0;
        let from = &self.restored_from;
        let end = if details.is_empty() { "." } else { ":" };
        let _ = match (self.dry_run, nothing) {
            (true, true) => writeln!(out, "Dry run: nothing to restore from reset {from}{end}"),
            (true, false) => writeln!(
                out,
                "Dry run, nothing changed. A restore would put back {counts} from reset {from}{end}"
            ),
            (false, true) => writeln!(out, "Nothing to restore from reset {from}{end}"),
            (false, false) => writeln!(out, "Restored {counts} from reset {from}{end}"),
        };
        for line in details {
            let _ = writeln!(out, "{line}");
        }
        if !self.dry_run && !nothing {
            let _ = writeln!(
                out,
                "The backend must re-read scan_sessions.json and takeover_requests.json before it writes them again."
            );
        }
    }
}
