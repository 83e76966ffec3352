//! Making a prepared restore visible: archives of the current content first,
//! then the active files, then the journal line.
//!
//! Each archive copy was synced before this starts. It is renamed into place
//! without replacing any file, and the directory is synced, before any active
//! file changes. Each active file is then exchanged atomically with its
//! synced new content. Right after the exchanges the pending record is
//! written. It names the archives and the temporary names that now contain
//! the displaced files. Then the displaced files are checked for late writes,
//! the directory is synced, the journal line appended and the record removed.
//!
//! A crash before the exchanges leaves the active files as they were, with
//! at most an archive that duplicates their content and no journal line. A
//! crash after the pending record is written is completed by the next reset
//! or restore. `pending::complete` finds the archives in place and the active
//! files changed, so it leaves the active files alone. It keeps a displaced
//! file that a writer changed as a `.late` archive and writes the journal line
//! marked `recovered`. Either way no entry is lost and no active file is
//! partly written.
//!
//! NOTE: the record cannot be written before the exchanges, because
//! `pending::complete` empties an active file that still has the archived
//! content: a restore interrupted before its exchange would become a reset of
//! the live file. So a crash between the first exchange and the record leaves
//! a restored file without a journal line. The next run then deletes the
//! displaced file, which loses only what a writer that ignores the lock wrote
//! into it during the restore. A restore into empty files archives nothing,
//! so it writes no record at all and has that window until its journal line.

use std::fs::{File, Metadata};
use std::time::Instant;

use crate::atomic;
use crate::datadir::{DataDir, Source};
use crate::error::{ErrorKind, io_failure};
use crate::failpoint;
use crate::journal::{self, ArchiveRecord, Entry};
use crate::pending::{self, Pending, PendingFile};
use crate::preconditions;
use crate::reset::{copy_as_late, keep_as_late, same_content};
use crate::restore::target::{Target, noun};

/// Renames the archive copies into place, replaces the active files and
/// appends the journal line. `entry.archives` names each target's archive.
/// Returns the paths of `.late` archives.
pub fn commit(
    dir: &DataDir,
    entry: &mut Entry,
    mut targets: Vec<Target>,
    journal: &mut journal::Writer,
    stamp: &str,
    started: Instant,
) -> anyhow::Result<Vec<String>> {
    let mut progress = Progress::default();
    let mut pending_files = Vec::new();
    let persisted = (|| {
        for target in &mut targets {
            let Some(temp) = target.pre_archive.take() else {
                continue;
            };
            let record = entry
                .archives
                .iter()
                .find(|record| record.source == target.source)
                .expect("every archive copy has a record");
            let temp_name = temp.name().to_string();
            let path = dir.join(&record.file);
            temp.persist(dir, &record.file, false).map_err(|error| {
                io_failure(
                    ErrorKind::CannotCreate,
                    error,
                    format!("cannot create archive {}", path.display()),
                )
            })?;
            progress.archived.push(path.display().to_string());
            log::info!(
                "archived the current {} to {}",
                target.source.file_name(),
                path.display()
            );
            pending_files.push(PendingFile {
                source: target.source,
                archive: record.file.clone(),
                temp: temp_name,
                sha256: record.sha256.clone(),
                bytes: record.bytes,
                replacement: None,
            });
        }
        atomic::sync_dir(dir.path()).map_err(|error| sync_dir_error(dir, error))?;
        failpoint::check("after-archives")?;
        Ok::<(), anyhow::Error>(())
    })();
    if let Err(error) = persisted {
        if progress.archived.is_empty() {
            return Err(error);
        }
        return Err(progress.incomplete(entry, error));
    }

    let mut late_run_id = entry.id.clone();
    let replaced = (|| {
        let mut displaced_files = Vec::new();
        for target in &mut targets {
            let Some(temp) = target.replacement.take() else {
                continue;
            };
            let name = target.source.file_name();
            let displaced = temp.exchange_into(dir, name).map_err(|error| {
                io_failure(
                    ErrorKind::Io,
                    error,
                    format!("cannot replace {}", dir.join(name).display()),
                )
            })?;
            progress.restored.push(name);
            log::info!(
                "restored {} {} into {}",
                target.restored,
                noun(target.source, target.restored),
                dir.join(name).display()
            );
            if let Some(file) = pending_files
                .iter_mut()
                .find(|file| file.source == target.source)
            {
                file.replacement = displaced.clone();
            }
            displaced_files.push((target.source, displaced));
            failpoint::check("after-exchange")?;
        }

        if !pending_files.is_empty() {
            pending::write(
                dir,
                &Pending {
                    entry: entry.clone(),
                    files: std::mem::take(&mut pending_files),
                },
            )?;
            atomic::sync_dir(dir.path()).map_err(|error| sync_dir_error(dir, error))?;
            progress.pending_written = true;
            failpoint::check("after-pending")?;
        }

        let mut late = Vec::new();
        for (source, displaced) in displaced_files {
            let before = targets
                .iter()
                .find(|target| target.source == source)
                .and_then(|target| target.active.as_ref());
            if let Some(record) =
                keep_late_writes(dir, source, displaced, before, &mut late_run_id, stamp)?
            {
                late.push(record);
            }
        }
        atomic::sync_dir(dir.path()).map_err(|error| sync_dir_error(dir, error))?;
        failpoint::check("after-replace")?;
        Ok::<_, anyhow::Error>(late)
    })();
    let late = replaced.map_err(|error| progress.incomplete(entry, error))?;
    let late_paths = late
        .iter()
        .map(|record| dir.join(&record.file).display().to_string())
        .collect();
    if entry.id.is_none() && !late.is_empty() {
        entry.id = late_run_id;
    }
    entry.archives.extend(late);

    entry.duration_ms = started.elapsed().as_millis() as u64;
    journal
        .append(entry)
        .map_err(|error| progress.incomplete(entry, error))?;
    failpoint::check("after-journal")?;
    if progress.pending_written {
        pending::remove(dir);
    }
    Ok(late_paths)
}

/// Changes a commit has made visible so far, for the message of a failure.
#[derive(Default)]
struct Progress {
    /// Paths of the archives in place.
    archived: Vec<String>,
    /// Active files replaced.
    restored: Vec<&'static str>,
    pending_written: bool,
}

impl Progress {
    /// Adds to an error after the first archive is in place what the restore
    /// left behind and what to do.
    fn incomplete(&self, entry: &Entry, error: anyhow::Error) -> anyhow::Error {
        let run_id = entry.restored_from.as_deref().unwrap_or_default();
        let kept_in = if self.archived.is_empty() {
            String::new()
        } else {
            format!(
                "; the previous content is kept in {}",
                self.archived.join(" and ")
            )
        };
        let message = if self.restored.is_empty() {
            format!(
                "the restore of reset {run_id} changed no active file{kept_in}: run it again once the error is fixed"
            )
        } else if self.pending_written {
            format!(
                "the restore of reset {run_id} replaced {}{kept_in}, and the next reset or restore writes its journal line",
                self.restored.join(" and ")
            )
        } else {
            format!(
                "the restore of reset {run_id} replaced {}{kept_in}, but its journal line is missing: check the active files with `order-reset status` before running it again",
                self.restored.join(" and ")
            )
        };
        error.context(message)
    }
}

fn sync_dir_error(dir: &DataDir, error: std::io::Error) -> anyhow::Error {
    io_failure(
        ErrorKind::Io,
        error,
        format!("cannot sync data directory {}", dir.path().display()),
    )
}

/// Keeps what a writer that ignores the lock wrote into an active file after
/// the restore read it, as a reset does, and returns the `.late` archive's
/// journal record.
///
/// `displaced` is the temporary name that now contains the file the exchange
/// took out of place. When it is the file the restore read, unchanged, it is
/// removed; otherwise it is renamed to the `.late` archive. Without an
/// exchange, the old file is checked through the descriptor still open on
/// it and, when it changed, copied.
fn keep_late_writes(
    dir: &DataDir,
    source: Source,
    displaced: Option<String>,
    before: Option<&(File, Metadata)>,
    late_run_id: &mut Option<String>,
    stamp: &str,
) -> anyhow::Result<Option<ArchiveRecord>> {
    let io_error = |error: std::io::Error, what: &str| {
        io_failure(
            ErrorKind::Io,
            error,
            format!(
                "cannot {what} what was written into {} during the restore",
                source.file_name()
            ),
        )
    };
    // The run id of the archives names the `.late` archive too; a restore
    // into an empty file has none, so one is chosen when needed.
    let mut run_id = || -> anyhow::Result<String> {
        if late_run_id.is_none() {
            *late_run_id = Some(preconditions::choose_run_id(dir, stamp)?);
        }
        Ok(late_run_id.clone().unwrap_or_default())
    };

    match (displaced, before) {
        (Some(name), before) => {
            let path = dir.join(&name);
            let found =
                std::fs::symlink_metadata(&path).map_err(|error| io_error(error, "check"))?;
            let unchanged = before.is_some_and(|(_, before)| {
                atomic::same_file(&found, before) && same_content(before, &found)
            });
            if unchanged {
                std::fs::remove_file(&path).map_err(|error| io_error(error, "clean up"))?;
                return Ok(None);
            }
            keep_as_late(dir, source, &run_id()?, &path).map(Some)
        }
        (None, None) => Ok(None),
        (None, Some((old_file, before))) => {
            let now = old_file
                .metadata()
                .map_err(|error| io_error(error, "check"))?;
            if same_content(before, &now) {
                return Ok(None);
            }
            copy_as_late(dir, source, &run_id()?, old_file, before).map(Some)
        }
    }
}
