//! Checks a restore makes before it changes anything, and the choice of the
//! run id for the archives of the state it replaces.
//!
//! NOTE: these follow the private helpers of the same names in `reset.rs`
//! (`preflight`, `check_owner_can_be_kept`, `owner_for_new_file`,
//! `choose_run_id`, `check_unchanged`). Once those are `pub(crate)`, this
//! module can call them instead, so that both commands keep one rule each.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::atomic;
use crate::datadir::{DataDir, JOURNAL_FILE, Source};
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

/// Rejects a restore by a user other than root or the owner of `path`,
/// because the file it writes would then belong to that user and the
/// backend could lose write access to it.
pub fn check_owner_can_be_kept(path: &Path, metadata: &Metadata) -> anyhow::Result<()> {
    if atomic::is_root() || metadata.uid() == atomic::effective_uid() {
        return Ok(());
    }
    Err(failure(
        ErrorKind::PermissionDenied,
        format!(
            "{} belongs to uid {}, and a restore by uid {} could not keep that owner; nothing was changed: run the restore as root or as the file's owner",
            path.display(),
            metadata.uid(),
            atomic::effective_uid()
        ),
    ))
}

/// Checks, before anything is created, what would make the restore fail for
/// lack of permission, so that a dry run reports it too.
pub fn preflight(dir: &DataDir, sources: &[Source]) -> anyhow::Result<()> {
    for source in sources {
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
    let journal = dir.join(JOURNAL_FILE);
    let Ok(metadata) = std::fs::symlink_metadata(&journal) else {
        return Ok(());
    };
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
    })
}

/// Rejects the restore when an active file changed since it was opened,
/// which only a writer that ignores the lock can cause.
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
    let same = now.len() == before.len()
        && now.mtime() == before.mtime()
        && now.mtime_nsec() == before.mtime_nsec()
        && now.ctime() == before.ctime()
        && now.ctime_nsec() == before.ctime_nsec();
    if same && bytes_read == now.len() {
        return Ok(());
    }
    Err(changed_error(path))
}

/// Returns the error for an active file or archive that changed while the
/// restore read it.
pub fn changed_error(path: &Path) -> anyhow::Error {
    failure(
        ErrorKind::LockBusy,
        format!(
            "{} changed while the restore read it, so a process writes it without holding order-reset.lock; nothing was changed: try again, and make the backend take the lock",
            path.display()
        ),
    )
}

/// Picks the first run id, `stamp`, `stamp_2`, `stamp_3` and so on, that no
/// archive file and no journal line uses yet.
pub fn choose_run_id(dir: &DataDir, stamp: &str) -> anyhow::Result<String> {
    let journaled = journal::run_ids(dir)?;
    for n in 1..10_000u32 {
        let run_id = if n == 1 {
            stamp.to_string()
        } else {
            format!("{stamp}_{n}")
        };
        let mut in_use = journaled.contains(&run_id);
        for source in Source::ALL {
            for name in [
                source.archive_name(&run_id, true),
                source.archive_name(&run_id, false),
                source.late_archive_name(&run_id),
            ] {
                let path = dir.join(&name);
                match std::fs::symlink_metadata(&path) {
                    Ok(_) => in_use = true,
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
        if !in_use {
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
