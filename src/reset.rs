//! The `reset` command: archive both active files and replace them with `{}`.
//!
//! Order of a reset, each step finished before the next starts:
//! 1. take the exclusive lock, read the generation, complete an interrupted
//!    reset;
//! 2. make a temporary archive of each active file (a clone, a hard link
//!    under a read lease, or a copy written in the pass) while validating and
//!    hashing it, sync the archive, and prepare a temporary `{}` with the
//!    active file's owner, group and mode; nothing visible has changed yet;
//! 3. increase the generation (see `generation`), write the pending record,
//!    rename the archives into place without replacing anything, sync the
//!    directory: the archives are now durable;
//! 4. rename the `{}` files over the active files, sync the directory; make a
//!    linked archive a copy if a writer waits to open its file, then release
//!    the leases;
//! 5. append the journal line and remove the pending record.
//!
//! A crash in step 3 or 4 leaves the pending record, and the next reset
//! completes that run before its own (see `pending`).
//!
//! The pass in step 2 also looks for sessions that the previous reset
//! archived and that came back (see `resurrection`). After the lock is
//! released, the previous archive confirms them, and a warning names them.

use std::collections::BTreeMap;
use std::fs::{File, Metadata};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::archive::{self, Copied};
use crate::atomic::{self, TempFile};
use crate::cli::ResetArgs;
use crate::clock;
use crate::datadir::{DataDir, Source};
use crate::error::{ErrorKind, failure, io_failure};
use crate::failpoint;
use crate::generation::Generation;
use crate::journal::{self, ArchiveRecord, Entry};
use crate::lease;
use crate::lock;
use crate::output::{Render, count_noun, format_counts};
use crate::pending::{self, Pending, PendingFile};
use crate::preconditions;
use crate::resurrection::{self, Baseline};
use crate::scan::{ScanErrorKind, Scanner, Summary};
use crate::schedule;
use crate::system;

/// Version of the `reset --json` document.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The content of an active file after a reset, as Python's
/// `json.dump({}, f, indent=2)` writes it.
pub const EMPTY_STATE: &[u8] = b"{}";

/// The result of `reset`. The first five fields keep the names of the
/// backend's own reset result, so that existing scripts keep working.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Version of this document's format.
    pub schema_version: u32,
    pub success: bool,
    pub total_sessions_reset: u64,
    pub sessions_by_status: BTreeMap<String, u64>,
    /// Path of the sessions archive; `null` when nothing was archived.
    pub archived_to: Option<String>,
    /// Time of the reset, RFC 3339 with UTC offset.
    pub reset_at: String,
    pub takeover_requests_reset: u64,
    /// Path of the takeover requests archive; `null` when nothing was archived.
    pub takeover_archived_to: Option<String>,
    /// True when nothing was changed because of `--dry-run`.
    pub dry_run: bool,
    pub duration_ms: u64,
    /// Run id shared by this reset's archives; `null` when nothing was archived.
    pub run_id: Option<String>,
    /// Files that were not valid JSON and were archived as they were because
    /// of `--force`.
    pub invalid_files: Vec<InvalidFile>,
    /// Run id of an interrupted reset that this run completed first.
    pub recovered_run_id: Option<String>,
    /// Paths of `.late` archives: what a writer that ignores the lock wrote
    /// into an active file during this reset.
    pub late_archives: Vec<String>,
    /// With `--daily`: true when a reset had already run after the cutoff,
    /// so this run changed nothing.
    pub skipped: bool,
    /// With `--daily`: the most recent cutoff, RFC 3339.
    pub daily_cutoff: Option<String>,
    /// The reset generation after this run (see `order-reset.generation`);
    /// a dry run reports the current one.
    pub generation: u64,
    /// Sessions in the archived `scan_sessions.json` that the previous reset
    /// had archived and that came back unchanged or older; `null` when they
    /// could not be checked.
    pub resurrected_sessions: Option<u64>,
    /// Run id of the previous reset they were compared with.
    pub resurrected_from: Option<String>,
}

/// A file that `--force` archived although it is not valid JSON.
#[derive(Debug, Serialize)]
pub struct InvalidFile {
    pub file: String,
    pub error: String,
}

/// One active file as the reset found it.
struct Inspected {
    source: Source,
    /// The open file and its metadata when the reset opened it; `None` when missing.
    opened: Option<(File, Metadata)>,
    copied: Option<Copied>,
    /// The archive copy, not yet renamed into place; `None` in a dry run.
    archive: Option<TempFile>,
    /// Whether the archive is a hard link to the active file, guarded by a
    /// read lease on `opened`.
    linked: bool,
}

impl Inspected {
    /// Returns whether this file has something to archive.
    fn needs_archive(&self) -> bool {
        match &self.copied {
            None => false,
            Some(copied) => match &copied.scan {
                Ok(summary) => summary.entries > 0,
                Err(_) => true,
            },
        }
    }

    fn summary(&self) -> Option<&Summary> {
        self.copied
            .as_ref()
            .and_then(|copied| copied.scan.as_ref().ok())
    }
}

/// Runs a reset and returns its report.
pub fn run(dir: &DataDir, args: &ResetArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let now = clock::now();
    log::info!(
        "starting {}reset of {} (pid {})",
        if args.dry_run { "dry-run " } else { "" },
        dir.path().display(),
        std::process::id()
    );

    let lock = if args.dry_run {
        lock::acquire_shared_if_exists(dir, args.wait)?
    } else {
        Some(lock::acquire_exclusive(dir, args.wait)?)
    };
    failpoint::check("after-lock")?;

    preconditions::preflight(dir, &Source::ALL)?;
    // Read first, so that an invalid generation file stops the run before
    // anything changes.
    let mut generation = Generation::read(dir)?;

    let mut recovered_run_id = None;
    if args.dry_run {
        // A damaged record stops a real reset, so it stops a dry run too.
        if pending::read(dir)?.is_some() {
            log::warn!("an interrupted reset is pending; a real reset completes it before its own");
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

    // Read after the completion above, which may have appended a line.
    let lines = journal::read_all(dir)?;
    let mut daily_cutoff = None;
    if args.daily {
        let cutoff = schedule::latest_cutoff(now, args.at);
        daily_cutoff = Some(cutoff.to_rfc3339());
        if let Some(last) = reset_since(&lines, cutoff) {
            log::info!(
                "skipping: the reset at {last} ran after the daily cutoff {}",
                cutoff.to_rfc3339()
            );
            return Ok(Report {
                skipped: true,
                daily_cutoff,
                ..report(
                    dir,
                    &Entry::default(),
                    args.dry_run,
                    Vec::new(),
                    recovered_run_id,
                    generation.value(),
                )
            });
        }
        log::info!(
            "no reset since the daily cutoff {}; resetting",
            cutoff.to_rfc3339()
        );
    }

    let baseline = resurrection::find_baseline(&lines)
        .inspect_err(|reason| log::debug!("not checking for resurrected sessions: {reason}"))
        .ok();
    let mut inspected = Vec::new();
    for source in Source::ALL {
        let cutoff = match source {
            Source::Sessions => baseline.as_ref().map(Baseline::modified_cutoff),
            Source::Takeovers => None,
        };
        inspected.push(inspect(dir, source, args, cutoff)?);
    }
    failpoint::check("after-copy")?;
    check_no_writer_waits(dir, &inspected)?;
    let invalid_files = check_validity(dir, &inspected, args.force)?;
    // Only a file that the scanner accepted is read for resurrected sessions.
    let sessions = inspected
        .iter()
        .find(|item| item.source == Source::Sessions)
        .filter(|item| item.copied.is_none() || item.summary().is_some());
    let resurrection_check =
        baseline
            .filter(|_| sessions.is_some())
            .map(|baseline| ResurrectionCheck {
                baseline,
                unmodified: sessions
                    .and_then(Inspected::summary)
                    .map_or(0, |summary| summary.unmodified_entries),
                sessions_file: dir.join(Source::Sessions.file_name()),
            });

    let mut entry = Entry {
        flags: if args.force {
            vec!["force".to_string()]
        } else {
            Vec::new()
        },
        ..Entry::new(journal::RESET_EVENT, now)
    };
    for item in &inspected {
        let Some(summary) = item.summary() else {
            continue;
        };
        match item.source {
            Source::Sessions => {
                entry.total_sessions_reset = summary.entries;
                entry.sessions_by_status = summary.by_status.clone();
            }
            Source::Takeovers => entry.takeover_requests_reset = summary.entries,
        }
    }

    let to_archive: Vec<&Inspected> = inspected.iter().filter(|i| i.needs_archive()).collect();
    if to_archive.is_empty() {
        log::info!("nothing to reset: both active files are empty or missing");
        drop(inspected);
        entry.duration_ms = started.elapsed().as_millis() as u64;
        if !args.dry_run {
            journal::Writer::open(dir)?.append(&mut entry)?;
        }
        drop(lock);
        return Ok(with_resurrected(
            dir,
            report(
                dir,
                &entry,
                args.dry_run,
                invalid_files,
                recovered_run_id,
                generation.value(),
            ),
            resurrection_check,
        ));
    }

    for item in &to_archive {
        let (file, before) = item.opened.as_ref().expect("archived files were opened");
        let bytes_read = item.copied.as_ref().map_or(0, |copied| copied.bytes);
        preconditions::check_unchanged(
            &dir.join(item.source.file_name()),
            file,
            before,
            bytes_read,
        )?;
    }
    let run_id = preconditions::choose_run_id(dir, &now.format("%Y%m%d_%H%M%S").to_string())?;
    entry.id = Some(run_id.clone());
    for item in &to_archive {
        let copied = item.copied.as_ref().expect("archived files were copied");
        let valid = copied.scan.is_ok();
        entry.archives.push(ArchiveRecord {
            file: item.source.archive_name(&run_id, valid),
            source: item.source,
            valid,
            late: false,
            bytes: copied.bytes,
            sha256: copied.sha256.clone(),
            entries: item.summary().map(|summary| summary.entries),
        });
    }

    if args.dry_run {
        entry.duration_ms = started.elapsed().as_millis() as u64;
        drop(lock);
        return Ok(Report {
            daily_cutoff,
            ..with_resurrected(
                dir,
                report(dir, &entry, true, invalid_files, None, generation.value()),
                resurrection_check,
            )
        });
    }

    let replacements = to_archive
        .iter()
        .map(|item| {
            let (file, metadata) = item.opened.as_ref().expect("archived files were opened");
            prepare_empty_like(dir, item.source, metadata, Some(file))
        })
        .collect::<anyhow::Result<Vec<TempFile>>>()?;
    // Opened before the commit, so that a journal that cannot be written
    // stops the reset while nothing is visible yet.
    let mut journal = journal::Writer::open(dir)?;
    check_no_writer_waits(dir, &inspected)?;

    commit(
        dir,
        &mut entry,
        inspected,
        replacements,
        &mut journal,
        &mut generation,
        started,
    )?;
    // The archives never change, so they are read after the lock is
    // released, where a slow read does not hold up the backend. The sessions
    // that were active are now in this run's archive.
    drop(lock);
    let resurrection_check = resurrection_check.map(|check| ResurrectionCheck {
        sessions_file: entry
            .archives
            .iter()
            .find(|record| record.source == Source::Sessions && !record.late)
            .map_or(check.sessions_file.clone(), |record| dir.join(&record.file)),
        ..check
    });
    Ok(Report {
        daily_cutoff,
        ..with_resurrected(
            dir,
            report(
                dir,
                &entry,
                false,
                invalid_files,
                recovered_run_id,
                generation.value(),
            ),
            resurrection_check,
        )
    })
}

/// Resurrection findings of a reset's scan of `scan_sessions.json`, confirmed
/// once the lock is released.
struct ResurrectionCheck {
    baseline: Baseline,
    /// Sessions that the scanner found not modified since the baseline.
    unmodified: u64,
    /// The file that contains those sessions: the active file, or the archive
    /// this reset moved them to.
    sessions_file: PathBuf,
}

/// Confirms the resurrected sessions of `scan_sessions.json` against the
/// previous reset's archive, logs a warning when there are any, and adds
/// their count to `report`. Reads nothing when the scanner found every
/// session modified since that reset. A failed check is logged and leaves
/// the count `null`.
fn with_resurrected(dir: &DataDir, mut report: Report, check: Option<ResurrectionCheck>) -> Report {
    let Some(ResurrectionCheck {
        baseline,
        unmodified,
        sessions_file,
    }) = check
    else {
        return report;
    };
    report.resurrected_from = Some(baseline.run_id.clone());
    let found = if unmodified == 0 {
        Ok(resurrection::Found::default())
    } else {
        resurrection::find_candidates(&baseline, &sessions_file)
            .and_then(|candidates| resurrection::confirm(dir, &baseline, candidates))
    };
    let found = match found {
        Ok(found) => found,
        Err(error) => {
            log::warn!(
                "cannot check {} for sessions that came back after reset {}: {}",
                Source::Sessions.file_name(),
                baseline.run_id,
                crate::error::one_line(&error)
            );
            return report;
        }
    };
    report.resurrected_sessions = Some(found.count);
    if found.count > 0 {
        let mut ids = found.session_ids.join(", ");
        if found.count > found.session_ids.len() as u64 {
            ids.push_str(", …");
        }
        let again = if report.dry_run {
            "a reset would archive them a second time"
        } else {
            "this reset archived them a second time"
        };
        log::warn!(
            "{} in {} had been archived by reset {} at {} and came back unchanged or older ({ids}): a process wrote sessions from memory back without reloading after that reset, and {again}. Make the backend take order-reset.lock and reload when order-reset.generation changes (README, \"Integrating the backend\")",
            count_noun(found.count, "session"),
            Source::Sessions.file_name(),
            baseline.run_id,
            baseline.reset_at
        );
    }
    report
}

/// Returns the time of a journaled reset at or after `cutoff`, if any.
fn reset_since(
    lines: &[journal::Line],
    cutoff: chrono::DateTime<chrono::FixedOffset>,
) -> Option<String> {
    lines
        .iter()
        .filter_map(|line| line.entry.as_ref().ok())
        .filter(|entry| entry.is_reset())
        .filter(|entry| {
            chrono::DateTime::parse_from_rfc3339(&entry.reset_at).is_ok_and(|time| time >= cutoff)
        })
        .map(|entry| entry.reset_at.clone())
        .next_back()
}

/// Opens an active file and, when it exists, copies it into a temporary
/// archive (or only scans it in a dry run). With `modified_cutoff`, the
/// scanner also counts the entries not modified after it.
fn inspect(
    dir: &DataDir,
    source: Source,
    args: &ResetArgs,
    modified_cutoff: Option<chrono::NaiveDateTime>,
) -> anyhow::Result<Inspected> {
    let path = dir.join(source.file_name());
    let opened = atomic::open_regular(&path).map_err(|error| open_error(&path, error))?;
    let Some((mut file, metadata)) = opened else {
        log::debug!("{} is missing, so it counts as empty", path.display());
        return Ok(Inspected {
            source,
            opened: None,
            copied: None,
            archive: None,
            linked: false,
        });
    };

    // The archive is, in this order of preference, a clone of the file where the filesystem
    // can share extents, a hard link to it guarded by a read lease (see `link_archive`), or a
    // copy written by the pass below. A clone or a link is made now, and the pass then only
    // reads. The clone has the bytes the pass reads because a write after `open` changes the
    // file's metadata, which `check_unchanged` rejects before anything is replaced.
    let mut metadata = metadata;
    let mut cloned = false;
    let mut linked = false;
    let archive = if args.dry_run {
        None
    } else {
        preconditions::check_owner_can_be_kept(&path, &metadata)?;
        let name = source.archive_name("pending", true);
        let temp = TempFile::create(dir, &name).map_err(|error| create_error(dir, error))?;
        cloned = temp.clone_from(&file);
        if cloned {
            log::debug!("cloned {} into its archive copy", path.display());
            Some(temp)
        } else if let Some((link, now)) = (!args.copy)
            .then(|| link_archive(dir, &name, &path, &file, &metadata))
            .flatten()
        {
            linked = true;
            // The link changed the change time. Nothing else can change the file without
            // the lease showing it first.
            metadata = now;
            Some(link)
        } else {
            Some(temp)
        }
    };
    let output = archive
        .as_ref()
        .filter(|_| !cloned && !linked)
        .map(TempFile::file);
    let scanner = modified_cutoff.map_or_else(Scanner::new, Scanner::with_modified_cutoff);
    let copied =
        archive::copy_and_scan_with(&mut file, output, scanner, !args.force).map_err(|error| {
            let message = if output.is_some() {
                format!("cannot copy {} into its archive", path.display())
            } else {
                format!("cannot read {}", path.display())
            };
            io_failure(ErrorKind::Io, error, message)
        })?;
    // A file without entries is not archived, so a writer may have it at once.
    if linked
        && copied
            .scan
            .as_ref()
            .is_ok_and(|summary| summary.entries == 0)
    {
        lease::release(&file);
    }
    if let Some(temp) = archive.as_ref().filter(|_| !linked) {
        // The copy stays 0600 and owned by this process while it is written.
        // It then gets the source's owner, so that the backend can read its
        // history, and the source's mode without execute bits, so that it is
        // never more readable than the source.
        let (uid, gid) = preconditions::owner_for_new_file(&metadata);
        temp.set_owner_and_mode(uid, gid, metadata.mode() & 0o666)
            .and_then(|()| temp.copy_acl_from(&file))
            .map_err(|error| {
                io_failure(
                    ErrorKind::PermissionDenied,
                    error,
                    format!(
                        "cannot set the owner and mode of archive copy {}",
                        temp.name()
                    ),
                )
            })?;
    }
    if let Some(temp) = &archive {
        // A linked archive is the active file, whose writer may not have synced it.
        temp.sync().map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot sync archive copy {}", temp.name()),
            )
        })?;
    }
    if let Ok(summary) = &copied.scan
        && summary.duplicate_keys > 0
    {
        log::warn!(
            "{} repeats {} of its keys; each repeated key is counted once, with its last value, as Python's json.load reads it",
            path.display(),
            summary.duplicate_keys
        );
    }
    log::debug!(
        "read {} bytes of {}, sha256 {}",
        copied.bytes,
        path.display(),
        copied.sha256
    );
    Ok(Inspected {
        source,
        opened: Some((file, metadata)),
        copied: Some(copied),
        linked,
        archive,
    })
}

/// Makes the archive a hard link to the active file, guarded by a read lease
/// on `file`, and returns it with the file's metadata after the link.
///
/// That archives the file without copying it. It is safe because the lease
/// can be taken only while no process has the file open for writing, and a
/// process that opens it for writing afterwards waits until the reset has
/// seen it: before the commit the reset then stops, and after the exchange
/// the archive becomes a copy first (`keep_waiting_writer`).
///
/// Returns `None`, having changed nothing, where the archive must be a copy:
/// the copy would get another owner or mode (execute or special bits), the
/// file has another name, a process has it open for writing, or the lease
/// or the link is not possible here.
fn link_archive(
    dir: &DataDir,
    name: &str,
    path: &Path,
    file: &File,
    metadata: &Metadata,
) -> Option<(TempFile, Metadata)> {
    let owner = preconditions::owner_for_new_file(metadata);
    if metadata.mode() & 0o7111 != 0 || owner != (metadata.uid(), metadata.gid()) {
        log::debug!(
            "copying {}: its archive gets another owner or mode",
            path.display()
        );
        return None;
    }
    // Through another name, a process could write the archive after the reset.
    if metadata.nlink() != 1 {
        log::debug!(
            "copying {}: it has {} names",
            path.display(),
            metadata.nlink()
        );
        return None;
    }
    if let Err(error) = lease::take(file) {
        log::debug!("copying {}: no read lease on it ({error})", path.display());
        return None;
    }
    let linked = TempFile::link(dir, name, file)
        .and_then(|temp| file.metadata().map(|metadata| (temp, metadata)));
    match linked {
        Ok(linked) => {
            log::debug!(
                "linked {} as its archive under a read lease",
                path.display()
            );
            Some(linked)
        }
        Err(error) => {
            lease::release(file);
            log::debug!("copying {}: cannot link it ({error})", path.display());
            None
        }
    }
}

/// Stops the reset, before anything is changed, when a process waits to open
/// a linked active file for writing: what it writes would go into the
/// archive.
fn check_no_writer_waits(dir: &DataDir, inspected: &[Inspected]) -> anyhow::Result<()> {
    for item in inspected
        .iter()
        .filter(|item| item.linked && item.needs_archive())
    {
        let (file, _) = item.opened.as_ref().expect("a linked file was opened");
        if lease::broken(file) {
            return Err(preconditions::opened_error(
                &dir.join(item.source.file_name()),
            ));
        }
    }
    Ok(())
}

fn open_error(path: &Path, error: std::io::Error) -> anyhow::Error {
    let kind = match error.kind() {
        std::io::ErrorKind::Other => ErrorKind::InvalidData,
        _ => ErrorKind::Io,
    };
    io_failure(kind, error, format!("cannot open {}", path.display()))
}

fn create_error(dir: &DataDir, error: std::io::Error) -> anyhow::Error {
    io_failure(
        ErrorKind::CannotCreate,
        error,
        format!("cannot create a temporary file in {}", dir.path().display()),
    )
}

/// Fails with every invalid file unless `force` is set; with `force`, returns
/// the files that will be archived as they are.
fn check_validity(
    dir: &DataDir,
    inspected: &[Inspected],
    force: bool,
) -> anyhow::Result<Vec<InvalidFile>> {
    let mut invalid = Vec::new();
    for item in inspected {
        let Some(Err(error)) = item.copied.as_ref().map(|copied| &copied.scan) else {
            continue;
        };
        let path = dir.join(item.source.file_name());
        // Bytes that a writer changed during the read can look invalid, and
        // the fix for that is the lock, not the file.
        if let Some((file, before)) = &item.opened
            && file
                .metadata()
                .is_ok_and(|now| preconditions::changed_since(before, &now))
        {
            return Err(preconditions::changed_error(&path));
        }
        let problem = match error.kind {
            ScanErrorKind::Empty => format!(
                "{} is empty (0 bytes), which the backend leaves when it stops in the middle of a write",
                path.display()
            ),
            ScanErrorKind::Syntax => format!("{} is not valid JSON: {error}", path.display()),
            ScanErrorKind::Shape => {
                format!("{} is not in the backend's shape: {error}", path.display())
            }
        };
        invalid.push(InvalidFile {
            file: path.display().to_string(),
            error: problem,
        });
    }
    if invalid.is_empty() {
        return Ok(invalid);
    }
    if force {
        for file in &invalid {
            log::warn!("{}; --force archives it as it is", file.error);
        }
        return Ok(invalid);
    }
    let problems: Vec<&str> = invalid.iter().map(|file| file.error.as_str()).collect();
    Err(failure(
        ErrorKind::InvalidData,
        format!(
            "{}; nothing was changed: repair the file, or run `order-reset reset --force` to archive it as it is and start empty",
            problems.join("; ")
        ),
    ))
}

/// Writes `{}` into a temporary file with the owner, group and mode of the
/// active file it will replace, and the POSIX ACL of `active`, the open active
/// file, when given; then syncs it.
pub fn prepare_empty_like(
    dir: &DataDir,
    source: Source,
    metadata: &Metadata,
    active: Option<&File>,
) -> anyhow::Result<TempFile> {
    let temp =
        TempFile::create(dir, source.file_name()).map_err(|error| create_error(dir, error))?;
    let (uid, gid) = preconditions::owner_for_new_file(metadata);
    let result = (|| {
        let mut file = temp.file();
        file.write_all(EMPTY_STATE)?;
        temp.set_owner_and_mode(uid, gid, metadata.mode())?;
        if let Some(active) = active {
            temp.copy_acl_from(active)?;
        }
        temp.sync()
    })();
    result.map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!(
                "cannot prepare the empty replacement {} for {}",
                temp.name(),
                source.file_name()
            ),
        )
    })?;
    Ok(temp)
}

/// Makes the reset visible: pending record, archives, active files, journal.
fn commit(
    dir: &DataDir,
    entry: &mut Entry,
    inspected: Vec<Inspected>,
    replacements: Vec<TempFile>,
    journal: &mut journal::Writer,
    generation: &mut Generation,
    started: Instant,
) -> anyhow::Result<()> {
    // Bumped before anything visible changes, so that a backend that reads
    // the new generation reloads even when this run stops later.
    generation.bump(dir)?;
    let mut archives = Vec::new();
    let mut files = Vec::new();
    let mut old_files = Vec::new();
    // The archive record of each file archived by a hard link.
    let mut links = Vec::new();
    for item in inspected {
        if !item.needs_archive() {
            continue;
        }
        let record = entry
            .archives
            .iter()
            .find(|record| record.source == item.source)
            .expect("every archived file has a record");
        let temp = item
            .archive
            .expect("a reset that changes files has archive copies");
        files.push(PendingFile {
            source: item.source,
            archive: record.file.clone(),
            temp: temp.name().to_string(),
            sha256: record.sha256.clone(),
            bytes: record.bytes,
            replacement: None,
        });
        archives.push((temp, record.file.clone(), record.entries));
        links.push(item.linked.then(|| record.clone()));
        old_files.push(item.opened.expect("archived files were opened"));
    }
    // The replacement's temporary name holds the displaced active file right
    // after the exchange, so recovery must look there before cleaning up.
    for (file, temp) in files.iter_mut().zip(&replacements) {
        file.replacement = Some(temp.name().to_string());
    }

    pending::write(
        dir,
        &Pending {
            entry: entry.clone(),
            files,
        },
    )?;

    // Until the first archive is in place nothing is visible, so a failure
    // removes the pending record and the temporary copies. After that, the
    // record stays and the next reset completes this one.
    let mut persisted = 0;
    let result = persist_archives(dir, archives, &mut persisted);
    if let Err(error) = result {
        if persisted == 0 {
            pending::remove(dir);
            return Err(error);
        }
        return Err(incomplete(entry, error));
    }
    let sources: Vec<Source> = entry.archives.iter().map(|record| record.source).collect();
    if let Some(stop) = writer_at_linked_file(dir, &sources, &old_files, &links) {
        return Err(withdraw_archives(dir, entry, &old_files, &links, stop));
    }
    failpoint::check("after-archives").map_err(|error| incomplete(entry, error.into()))?;

    let run_id = entry.id.clone().unwrap_or_default();
    let replaced = (|| {
        let mut late = Vec::new();
        for (((temp, &source), (old_file, before)), link) in replacements
            .into_iter()
            .zip(&sources)
            .zip(&old_files)
            .zip(&links)
        {
            let target = source.file_name();
            let displaced = temp.exchange_into(dir, target).map_err(|error| {
                io_failure(
                    ErrorKind::Io,
                    error,
                    format!("cannot replace {}", dir.join(target).display()),
                )
            })?;
            failpoint::check("after-exchange")?;
            match link {
                Some(record) => late.extend(finish_linked(
                    dir, source, &run_id, record, displaced, old_file, before,
                )?),
                None => late.extend(keep_late_writes(
                    dir, source, &run_id, displaced, old_file, before,
                )?),
            }
            if source == Source::Sessions {
                failpoint::check("after-replace-sessions")?;
            }
        }
        atomic::sync_dir(dir.path()).map_err(|error| sync_dir_error(dir, error))?;
        failpoint::check("after-replace")?;
        Ok(late)
    })();
    let late = replaced.map_err(|error| incomplete(entry, error))?;
    entry.archives.extend(late);
    let closing = close_in_background(old_files.into_iter().map(|(file, _)| file).collect());

    entry.duration_ms = started.elapsed().as_millis() as u64;
    journal
        .append(entry)
        .map_err(|error| incomplete(entry, error))?;
    failpoint::check("after-journal")?;
    pending::remove(dir);
    if let Some(closing) = closing {
        // Dropping a File ignores errors from close, so the thread has nothing to report.
        let _ = closing.join();
    }
    if let Some(peak) = system::peak_memory_kib() {
        log::debug!("peak resident memory {peak} KiB");
    }
    log::info!(
        "reset complete: {} and {} in {} ms",
        count_noun(entry.total_sessions_reset, "session"),
        count_noun(entry.takeover_requests_reset, "takeover request"),
        entry.duration_ms
    );
    Ok(())
}

/// Closes the replaced files on a thread, or here when no thread can start.
///
/// Closing the last descriptor of a replaced file frees what is left of its page cache. A copy
/// drops the pages it has read, except dirty ones, and a clone drops none. Freeing all of it
/// took about 20 ms per 100 MB (measured with `strace -T` on a 2-core virtual machine). On a
/// thread, that overlaps with the journal write and its fsync.
fn close_in_background(files: Vec<File>) -> Option<std::thread::JoinHandle<()>> {
    // When the thread cannot start, dropping the closure closes the files.
    std::thread::Builder::new()
        .name("order-reset-close".to_string())
        .spawn(move || drop(files))
        .ok()
}

/// Returns the error that stops the reset when a linked active file can still
/// change through a process after the archives are in place and before
/// anything is replaced. That is when a process waits to open it for writing,
/// it was emptied, or it got another name. Otherwise returns `None`.
fn writer_at_linked_file(
    dir: &DataDir,
    sources: &[Source],
    old_files: &[(File, Metadata)],
    links: &[Option<ArchiveRecord>],
) -> Option<anyhow::Error> {
    for ((source, (file, before)), link) in sources.iter().zip(old_files).zip(links) {
        if link.is_none() {
            continue;
        }
        let path = dir.join(source.file_name());
        let stop = |what: &str| {
            Some(failure(
                ErrorKind::LockBusy,
                format!(
                    "{} {what} while order-reset archived it, so a process changes it without holding order-reset.lock; the archives were removed again, and order-reset changed nothing but order-reset.generation: try again, and make the backend take the lock",
                    path.display()
                ),
            ))
        };
        if lease::broken(file) {
            return stop("was opened for writing, or a process tried to,");
        }
        let Ok(now) = file.metadata() else {
            return stop("could not be checked");
        };
        // An open for reading with O_TRUNC empties the file without waiting on the lease. Any
        // other change needs an open for writing; the times alone change with `touch`.
        if now.len() != before.len() {
            return stop("was emptied by an open that does not wait on the read lease");
        }
        // The archive's name, and the active one unless a writer renamed another file over it.
        let active =
            std::fs::symlink_metadata(&path).is_ok_and(|found| atomic::same_file(&found, &now));
        if now.nlink() > 1 + u64::from(active) {
            return stop("got another name");
        }
    }
    None
}

/// Takes back the archives that a reset has just put in place, before it
/// replaced any active file, and returns `error` to stop it with.
///
/// A linked archive is only another name of its active file, so removing the
/// name loses nothing. A copied archive is removed only while its active file
/// is still the file it copied, unchanged. Otherwise it is the only place of
/// the archived bytes and stays, with the pending record, for the next reset
/// to complete. The pending record goes last: a crash before that leaves it
/// for the next reset, whose recovery removes or copies the remaining links.
fn withdraw_archives(
    dir: &DataDir,
    entry: &Entry,
    old_files: &[(File, Metadata)],
    links: &[Option<ArchiveRecord>],
    error: anyhow::Error,
) -> anyhow::Error {
    let mut kept_copies = Vec::new();
    let withdrawn = (|| {
        for ((record, (file, before)), link) in entry.archives.iter().zip(old_files).zip(links) {
            let path = dir.join(&record.file);
            if link.is_none() && !still_active_unchanged(dir, record.source, file, before) {
                kept_copies.push(path);
                continue;
            }
            atomic::remove_named(&path)?;
        }
        atomic::sync_dir(dir.path()).map_err(|error| sync_dir_error(dir, error))
    })();
    match withdrawn {
        Ok(()) if kept_copies.is_empty() => {
            pending::remove(dir);
            error
        }
        Ok(()) => {
            let kept: Vec<String> = kept_copies
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            incomplete(
                entry,
                error.context(format!(
                    "kept {}, whose active file changed since it was copied",
                    kept.join(" and ")
                )),
            )
        }
        Err(failed) => incomplete(entry, failed.context(error.to_string())),
    }
}

/// Returns whether the active file of `source` is still the file open as
/// `file`, with the size and modification time of `before`.
fn still_active_unchanged(dir: &DataDir, source: Source, file: &File, before: &Metadata) -> bool {
    let active = std::fs::symlink_metadata(dir.join(source.file_name()));
    let now = file.metadata();
    match (active, now) {
        (Ok(active), Ok(now)) => atomic::same_file(&active, &now) && same_content(before, &now),
        _ => false,
    }
}

/// Renames the synced archive copies into place without replacing anything,
/// then syncs the directory. Counts the archives renamed in `persisted`.
fn persist_archives(
    dir: &DataDir,
    archives: Vec<(TempFile, String, Option<u64>)>,
    persisted: &mut usize,
) -> anyhow::Result<()> {
    failpoint::check("after-pending")?;
    for (temp, name, entries) in archives {
        temp.persist(dir, &name, false).map_err(|error| {
            io_failure(
                ErrorKind::CannotCreate,
                error,
                format!("cannot create archive {}", dir.join(&name).display()),
            )
        })?;
        *persisted += 1;
        let noun = if name.starts_with("session") {
            "session"
        } else {
            "takeover request"
        };
        match entries {
            Some(count) => log::info!(
                "archived {} to {}",
                count_noun(count, noun),
                dir.join(&name).display()
            ),
            None => log::info!("archived invalid content to {}", dir.join(&name).display()),
        }
    }
    atomic::sync_dir(dir.path()).map_err(|error| sync_dir_error(dir, error))?;
    Ok(())
}

fn sync_dir_error(dir: &DataDir, error: std::io::Error) -> anyhow::Error {
    io_failure(
        ErrorKind::Io,
        error,
        format!("cannot sync data directory {}", dir.path().display()),
    )
}

/// Adds to an error after the first archive is in place that the reset is
/// incomplete and that the next reset completes it.
fn incomplete(entry: &Entry, error: anyhow::Error) -> anyhow::Error {
    error.context(format!(
        "reset {} is incomplete; its archives that were written are kept, and the next reset completes it",
        entry.id.as_deref().unwrap_or("")
    ))
}

/// Keeps what a writer that ignores the lock wrote into an active file
/// after it was archived, so that the reset loses nothing even then.
///
/// `displaced` is the temporary name that holds the file the exchange took
/// out of place. When it is the archived file, unchanged, it is removed;
/// otherwise it is renamed to the `.late` archive. Without an exchange, the
/// old file is checked through the descriptor still open on it and, when it
/// changed, copied. Returns the journal record of a `.late` archive.
///
/// NOTE: the displaced file sits under a temporary name until it is removed
/// or renamed; a crash in that instant lets the next run delete it, losing
/// only what the lock-ignoring writer had written late.
fn keep_late_writes(
    dir: &DataDir,
    source: Source,
    run_id: &str,
    displaced: Option<String>,
    old_file: &File,
    before: &Metadata,
) -> anyhow::Result<Option<ArchiveRecord>> {
    let io_error = |error: std::io::Error, what: &str| {
        io_failure(
            ErrorKind::Io,
            error,
            format!(
                "cannot {what} what was written into {} during the reset",
                source.file_name()
            ),
        )
    };
    match displaced {
        Some(name) => {
            let path = dir.join(&name);
            let found =
                std::fs::symlink_metadata(&path).map_err(|error| io_error(error, "check"))?;
            if atomic::same_file(&found, before) && same_content(before, &found) {
                std::fs::remove_file(&path).map_err(|error| io_error(error, "clean up before"))?;
                return Ok(None);
            }
            keep_as_late(dir, source, run_id, &path).map(Some)
        }
        None => {
            let now = old_file
                .metadata()
                .map_err(|error| io_error(error, "check"))?;
            if same_content(before, &now) {
                return Ok(None);
            }
            copy_as_late(dir, source, run_id, old_file, before).map(Some)
        }
    }
}

/// Copies what a writer that ignores the lock wrote into the replaced file,
/// read through the descriptor still open on it, into the `.late` archive
/// of `run_id`, and returns its journal record.
pub fn copy_as_late(
    dir: &DataDir,
    source: Source,
    run_id: &str,
    old_file: &File,
    before: &Metadata,
) -> anyhow::Result<ArchiveRecord> {
    let late_name = source.late_archive_name(run_id);
    copy_to_temp(dir, &late_name, old_file, before)
        .and_then(|temp| temp.persist(dir, &late_name, false))
        .map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot create {}", dir.join(&late_name).display()),
            )
        })?;
    late_record(dir, source, &late_name)
}

/// Copies all of `file`, through a descriptor open on it, into a new synced
/// temporary file for `target`. The copy gets the owner of `file` as given
/// by `before`, its mode without execute bits and its access control list.
pub fn copy_to_temp(
    dir: &DataDir,
    target: &str,
    file: &File,
    before: &Metadata,
) -> std::io::Result<TempFile> {
    let temp = TempFile::create(dir, target)?;
    let mut reader = file.try_clone()?;
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0))?;
    std::io::copy(&mut reader, &mut temp.file())?;
    let (uid, gid) = preconditions::owner_for_new_file(before);
    temp.set_owner_and_mode(uid, gid, before.mode() & 0o666)?;
    temp.copy_acl_from(file)?;
    temp.sync()?;
    Ok(temp)
}

/// Finishes a linked file after the exchange, which put `{}` in its place,
/// and releases its lease. Returns the journal record of a `.late` archive.
///
/// While the lease was never broken, no process opened the file for writing
/// since the reset took it, so its bytes are the archived ones even if its
/// times changed. The name the exchange moved it to is then removed. A
/// process that waits to open it gets the file apart from the archive first
/// (see `keep_waiting_writer`). A writer that replaced the active file by a
/// rename did not touch this file, and what it wrote goes to `.late` as
/// after a copy.
fn finish_linked(
    dir: &DataDir,
    source: Source,
    run_id: &str,
    record: &ArchiveRecord,
    displaced: Option<String>,
    file: &File,
    before: &Metadata,
) -> anyhow::Result<Vec<ArchiveRecord>> {
    // The name the exchange moved this file to, if it did.
    let displaced_here = displaced.as_ref().is_some_and(|name| {
        std::fs::symlink_metadata(dir.join(name))
            .is_ok_and(|found| atomic::same_file(&found, before))
    });

    // An open for reading with O_TRUNC empties the file without waiting on the lease. The
    // archive then no longer has the archived bytes, and recovery keeps it as `.late`.
    let now = file.metadata().map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot check archive {}", dir.join(&record.file).display()),
        )
    })?;
    if now.len() != before.len() {
        return Err(failure(
            ErrorKind::Io,
            format!(
                "{} changed after order-reset archived it as a link to {}, through an open that did not wait on its lease; the next reset keeps what it holds as a .late archive",
                dir.join(&record.file).display(),
                source.file_name()
            ),
        ));
    }

    // A name given to the file after the last check would stay a name of the archive.
    let expected_names = 1 + u64::from(displaced_here);
    if now.nlink() > expected_names && !lease::broken(file) {
        copy_archive_apart(dir, record, file, before)?;
        log::warn!(
            "{} got another name during the reset; {} is now a copy",
            source.file_name(),
            dir.join(&record.file).display()
        );
    }

    let mut late = Vec::new();
    match displaced {
        Some(name) if displaced_here => {
            let path = dir.join(&name);
            if lease::broken(file) {
                late.push(keep_waiting_writer(
                    dir,
                    source,
                    run_id,
                    record,
                    file,
                    before,
                    Some(path),
                )?);
            } else {
                atomic::remove_named(&path)?;
            }
        }
        displaced => {
            let waited = lease::broken(file);
            if waited {
                late.push(keep_waiting_writer(
                    dir, source, run_id, record, file, before, None,
                )?);
            }
            // Without a displaced file, `keep_late_writes` looks at this file, which is then
            // the waiting writer's `.late` archive already.
            if !(waited && displaced.is_none()) {
                late.extend(keep_late_writes(
                    dir, source, run_id, displaced, file, before,
                )?);
            }
        }
    }
    lease::release(file);
    Ok(late)
}

/// Replaces the linked archive of `record` with a synced copy of `file`,
/// checked against the recorded SHA-256.
fn copy_archive_apart(
    dir: &DataDir,
    record: &ArchiveRecord,
    file: &File,
    before: &Metadata,
) -> anyhow::Result<()> {
    let copied = copy_if_content(dir, &record.file, file, before, &record.sha256).and_then(
        |copy| match copy {
            Some(copy) => copy.persist(dir, &record.file, true),
            None => Err(std::io::Error::other(
                "its content changed although its read lease was held",
            )),
        },
    );
    copied.map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot copy {}", dir.join(&record.file).display()),
        )
    })
}

/// Copies `file` like [`copy_to_temp`] and returns the copy when its SHA-256
/// is `sha256`, checked on the copy itself.
pub fn copy_if_content(
    dir: &DataDir,
    target: &str,
    file: &File,
    before: &Metadata,
    sha256: &str,
) -> std::io::Result<Option<TempFile>> {
    let copy = copy_to_temp(dir, target, file, before)?;
    let mut reader = copy.file().try_clone()?;
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0))?;
    let (_, hash) = archive::hash_file(&mut reader)?;
    Ok((hash == sha256).then_some(copy))
}

/// Keeps a linked archive apart from a writer that waits to open its file: a
/// process that ignores the lock and looked the active file up just before
/// the exchange. Runs while the lease still holds the writer back, so the
/// file still has the archived bytes.
///
/// The archive name gets a synced copy of those bytes. The file itself gets
/// its `.late` name before the writer may go on, so that a crash from then
/// on leaves what it writes under that name. The journal record describes
/// the `.late` archive once the writer has closed it, or after
/// [`WRITER_WAIT`] if it is still open then.
fn keep_waiting_writer(
    dir: &DataDir,
    source: Source,
    run_id: &str,
    record: &ArchiveRecord,
    file: &File,
    before: &Metadata,
    displaced: Option<std::path::PathBuf>,
) -> anyhow::Result<ArchiveRecord> {
    let archive = &record.file;
    // The file keeps a name of its own: the one the exchange gave it, or a new link.
    let late = match displaced {
        Some(path) => path,
        None => TempFile::link(dir, &source.late_archive_name(run_id), file)
            .map_err(|error| create_error(dir, error))?
            .into_path(),
    };
    copy_archive_apart(dir, record, file, before).map_err(|error| {
        error.context(format!(
            "cannot copy {} apart from a process that waits to write it; that process may now write into the archive, and the next reset keeps what it holds as a .late archive",
            dir.join(archive).display()
        ))
    })?;
    let late_name = rename_to_late(dir, source, run_id, &late)?;
    log::error!(
        "a process that does not take order-reset.lock opened {} for writing during the reset; {} is now a copy of the archived bytes",
        source.file_name(),
        dir.join(archive).display()
    );
    lease::release(file);
    if !lease::wait_for_writers(file, WRITER_WAIT) {
        log::warn!(
            "the process still has {} open after {} s; the journal records what it wrote so far",
            source.file_name(),
            WRITER_WAIT.as_secs()
        );
    }
    late_record(dir, source, &late_name)
}

/// How long a reset waits for a writer that it let go on to close the file
/// before it records that file as a `.late` archive.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Renames a file that holds what a writer that ignores the lock wrote
/// during reset `run_id` to that run's `.late` archive, and returns its
/// journal record. When that name is taken, `.late.2`, `.late.3` and so on
/// are tried.
pub fn keep_as_late(
    dir: &DataDir,
    source: Source,
    run_id: &str,
    path: &std::path::Path,
) -> anyhow::Result<ArchiveRecord> {
    let name = rename_to_late(dir, source, run_id, path)?;
    late_record(dir, source, &name)
}

/// Renames `path` to the first free `.late` name of reset `run_id` and
/// returns that name.
fn rename_to_late(
    dir: &DataDir,
    source: Source,
    run_id: &str,
    path: &std::path::Path,
) -> anyhow::Result<String> {
    let late_name = source.late_archive_name(run_id);
    for n in 1..100u32 {
        let name = if n == 1 {
            late_name.clone()
        } else {
            format!("{late_name}.{n}")
        };
        match atomic::rename_no_replace(path, &dir.join(&name)) {
            Ok(()) => return Ok(name),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(io_failure(
                    ErrorKind::Io,
                    error,
                    format!("cannot create {}", dir.join(&name).display()),
                ));
            }
        }
    }
    Err(failure(
        ErrorKind::CannotCreate,
        format!("every name for {late_name} is taken"),
    ))
}

/// Hashes a `.late` archive, logs it and returns its journal record.
pub fn late_record(
    dir: &DataDir,
    source: Source,
    late_name: &str,
) -> anyhow::Result<ArchiveRecord> {
    let late_path = dir.join(late_name);
    let io_error = |error: std::io::Error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot read {}", late_path.display()),
        )
    };
    let (mut file, _) = atomic::open_regular(&late_path)
        .map_err(io_error)?
        .ok_or_else(|| failure(ErrorKind::Io, format!("{} vanished", late_path.display())))?;
    let (bytes, sha256) = archive::hash_file(&mut file).map_err(io_error)?;
    log::error!(
        "{} was written while order-reset replaced it, by a process that does not take order-reset.lock; what it wrote is kept in {}: make the backend take the lock",
        source.file_name(),
        late_path.display()
    );
    Ok(ArchiveRecord {
        file: late_name.to_string(),
        source,
        valid: false,
        late: true,
        bytes,
        sha256,
        entries: None,
    })
}

/// Compares size and modification time, which any write changes. The change
/// time is left out because a rename changes it too.
pub fn same_content(before: &Metadata, after: &Metadata) -> bool {
    after.len() == before.len()
        && after.mtime() == before.mtime()
        && after.mtime_nsec() == before.mtime_nsec()
}

fn report(
    dir: &DataDir,
    entry: &Entry,
    dry_run: bool,
    invalid_files: Vec<InvalidFile>,
    recovered_run_id: Option<String>,
    generation: u64,
) -> Report {
    let archive_path = |source: Source| {
        entry
            .archives
            .iter()
            .find(|record| record.source == source && !record.late)
            .map(|record| dir.join(&record.file).display().to_string())
    };
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        success: true,
        total_sessions_reset: entry.total_sessions_reset,
        sessions_by_status: entry.sessions_by_status.clone(),
        archived_to: archive_path(Source::Sessions),
        reset_at: entry.reset_at.clone(),
        takeover_requests_reset: entry.takeover_requests_reset,
        takeover_archived_to: archive_path(Source::Takeovers),
        dry_run,
        duration_ms: entry.duration_ms,
        run_id: entry.id.clone(),
        invalid_files,
        recovered_run_id,
        late_archives: entry
            .archives
            .iter()
            .filter(|record| record.late)
            .map(|record| dir.join(&record.file).display().to_string())
            .collect(),
        skipped: false,
        daily_cutoff: None,
        generation,
        resurrected_sessions: None,
        resurrected_from: None,
    }
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        use std::fmt::Write as _;
        if let Some(run_id) = &self.recovered_run_id {
            let _ = writeln!(out, "Completed interrupted reset {run_id} first.");
        }
        if self.skipped {
            let _ = writeln!(
                out,
                "Skipped: a reset already ran after the daily cutoff {}.",
                self.daily_cutoff.as_deref().unwrap_or("")
            );
            return;
        }
        let counts = format!(
            "{}{} and {}",
            count_noun(self.total_sessions_reset, "session"),
            format_counts(&self.sessions_by_status),
            count_noun(self.takeover_requests_reset, "takeover request"),
        );
        let nothing = self.archived_to.is_none() && self.takeover_archived_to.is_none();
        let _ = match (self.dry_run, nothing) {
            (true, true) => writeln!(out, "Dry run: nothing to reset ({counts})."),
            (true, false) => writeln!(
                out,
                "Dry run, nothing changed. A reset would archive {counts}:"
            ),
            (false, true) => writeln!(out, "Nothing to reset ({counts})."),
            (false, false) => writeln!(out, "Reset {counts}:"),
        };
        for (label, path) in [
            ("sessions", &self.archived_to),
            ("takeover requests", &self.takeover_archived_to),
        ] {
            let Some(path) = path else {
                continue;
            };
            let what = if path.ends_with(".invalid") {
                format!("unparseable {label} kept in")
            } else {
                format!("{label} archived to")
            };
            let _ = writeln!(out, "  {what:<29}  {path}");
        }
        for file in &self.invalid_files {
            let _ = writeln!(out, "  forced: {}", file.error);
        }
        for path in &self.late_archives {
            let _ = writeln!(out, "  written during the reset, kept in  {path}");
        }
        if let Some(count @ 1..) = self.resurrected_sessions {
            let _ = writeln!(
                out,
                "  warning: {} had come back after reset {}",
                count_noun(count, "session"),
                self.resurrected_from.as_deref().unwrap_or_default()
            );
        }
    }
}
