//! Preconditions of every command that changes the data directory (`reset`
//! and `restore`), checked before anything visible changes: who may keep the
//! owner of a file, what may be created, whether a file changed while it was
//! read, and a run id that no archive or journal line uses yet.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::atomic;
use crate::datadir::{DataDir, Source};
use crate::error::{ErrorKind, failure, io_failure};
use crate::journal;

/// Returns the owner and group a new file gets from the file it stands for:
/// the same when this process may give them, else this process's user.
pub fn owner_for_new_file(source: &Metadata) -> (u32, u32) {
    if atomic::is_root() || source.uid() == atomic::effective_uid() {
        (source.uid(), source.gid())
    } else {
        (atomic::effective_uid(), source.gid())
    }
}

/// Rejects a reset or restore by a user other than root or the file's
/// owner, because the replaced file would then belong to that user and the
/// backend could lose write access to it.
pub fn check_owner_can_be_kept(path: &Path, metadata: &Metadata) -> anyhow::Result<()> {
    if atomic::is_root() || metadata.uid() == atomic::effective_uid() {
        return Ok(());
    }
    Err(failure(
        ErrorKind::PermissionDenied,
        format!(
            "{} belongs to uid {}, and order-reset running as uid {} could not keep that owner; nothing was changed: run it as root or as the file's owner",
            path.display(),
            metadata.uid(),
            atomic::effective_uid()
        ),
    ))
}

/// Checks, before anything is created, what would make a change to the
/// active files of `sources` fail for lack of permission, so that a dry run
/// reports it too.
pub fn preflight(dir: &DataDir, sources: &[Source]) -> anyhow::Result<()> {
    for &source in sources {
        let path = dir.join(source.file_name());
        if let Ok(metadata) = std::fs::symlink_metadata(&path)
            && metadata.file_type().is_file()
        {
            check_owner_can_be_kept(&path, &metadata)?;
        }
    }
    atomic::check_writable(dir.path()).map_err(|error| {
        io_failure(
            ErrorKind::CannotCreate,
            error,
            format!(
                "cannot create files in data directory {}; nothing was changed",
                dir.path().display()
            ),
        )
    })?;
    let journal = dir.join(crate::datadir::JOURNAL_FILE);
    if let Ok(metadata) = std::fs::symlink_metadata(&journal) {
        if !metadata.file_type().is_file() || metadata.nlink() > 1 {
            let error = atomic::check_regular(&journal, &metadata)
                .err()
                .unwrap_or_else(|| {
                    std::io::Error::other(format!(
                        "{} has {} hard links, so appending to it would change another file too",
                        journal.display(),
                        metadata.nlink()
                    ))
                });
            return Err(io_failure(
                ErrorKind::CannotCreate,
                error,
                "cannot use the journal; nothing was changed: remove it or replace it with a regular file",
            ));
        }
        atomic::check_writable(&journal).map_err(|error| {
            io_failure(
                ErrorKind::CannotCreate,
                error,
                format!(
                    "cannot write journal {}; nothing was changed",
                    journal.display()
                ),
            )
        })?;
    }
    Ok(())
}

/// Rejects the run when a file changed while it was read, which only a
/// writer that ignores the lock can cause. `bytes_read` is how much of it was
/// read.
pub fn check_unchanged(
    path: &Path,
    file: &File,
    before: &Metadata,
    bytes_read: u64,
) -> anyhow::Result<()> {
    let now = file.metadata().map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot stat {}", path.display()),
        )
    })?;
    if !changed_since(before, &now) && bytes_read == now.len() {
        return Ok(());
    }
    Err(changed_error(path))
}

/// Returns whether a write changed the file between two `stat`s: its size,
/// modification time or change time differ.
pub fn changed_since(before: &Metadata, now: &Metadata) -> bool {
    now.len() != before.len()
        || now.mtime() != before.mtime()
        || now.mtime_nsec() != before.mtime_nsec()
        || now.ctime() != before.ctime()
        || now.ctime_nsec() != before.ctime_nsec()
}

/// Returns the error for a file that changed while order-reset read it.
pub fn changed_error(path: &Path) -> anyhow::Error {
    failure(
        ErrorKind::LockBusy,
        format!(
            "{} changed while order-reset read it, so a process writes it without holding order-reset.lock; nothing was changed: try again, and make the backend take the lock",
            path.display()
        ),
    )
}

/// Returns the error for a file that a process opened for writing, or tried
/// to, while order-reset held a read lease on it.
pub fn opened_error(path: &Path) -> anyhow::Error {
    failure(
        ErrorKind::LockBusy,
        format!(
            "{} was opened for writing, or a process tried to, while order-reset archived it, so a process writes it without holding order-reset.lock; nothing was changed: try again, and make the backend take the lock",
            path.display()
        ),
    )
}

/// Picks the first run id, `stamp`, `stamp_2`, `stamp_3` and so on, that no
/// archive file and no journal line uses yet, so that resets in the same
/// second never share a name.
pub fn choose_run_id(dir: &DataDir, stamp: &str) -> anyhow::Result<String> {
    let journaled = journal::run_ids(dir)?;
    // When the local clock went back by up to a few hours (the end of
    // daylight saving time, or a small correction), continue from the newest
    // name, so that names keep sorting in the order of the resets; `reset_at`
    // keeps the true time. A larger step back is taken as a clock that was
    // wrong before, and names follow the clock again.
    let newest = journaled
        .iter()
        .map(String::as_str)
        .chain(
            dir.archives()?
                .iter()
                .map(|(name, _)| name.run_id.as_str())
                .collect::<Vec<_>>(),
        )
        .filter_map(|run_id| run_id.get(..15))
        .max()
        .map(str::to_string);
    let parse = |text: &str| chrono::NaiveDateTime::parse_from_str(text, "%Y%m%d_%H%M%S").ok();
    let behind_by = newest
        .as_deref()
        .and_then(parse)
        .zip(parse(stamp))
        .map(|(newest, now)| newest - now);
    let stamp = match newest {
        Some(newest)
            if behind_by.is_some_and(|behind| {
                behind > chrono::Duration::zero() && behind <= chrono::Duration::hours(3)
            }) =>
        {
            log::info!("the clock is behind the newest archive {newest}; naming after it");
            newest
        }
        _ => stamp.to_string(),
    };
    let stamp = stamp.as_str();
    for n in 1..10_000u32 {
        let run_id = if n == 1 {
            stamp.to_string()
        } else {
            format!("{stamp}_{n}")
        };
        let mut taken = journaled.contains(&run_id);
        for source in Source::ALL {
            let names = [
                source.archive_name(&run_id, true),
                source.archive_name(&run_id, false),
                source.late_archive_name(&run_id),
            ];
            for name in &names {
                let path = dir.join(name);
                match std::fs::symlink_metadata(&path) {
                    Ok(_) => taken = true,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(io_failure(
                            ErrorKind::Io,
                            error,
                            format!("cannot check whether {} exists", path.display()),
                        ));
                    }
                }
            }
        }
        if !taken {
            return Ok(run_id);
        }
    }
    Err(failure(
        ErrorKind::CannotCreate,
        format!(
            "every archive name for {stamp} is taken in {}",
            dir.path().display()
        ),
    ))
}
