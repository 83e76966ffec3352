//! The pending record, `order-reset.pending`: written just before a reset
//! renames its archives into place and removed after its journal line is
//! synced. Finding it means that a reset was interrupted in between.
//!
//! [`complete`] finishes such a reset: it puts each archive in place from its
//! synced temporary copy when the rename did not happen, empties each active
//! file whose content is still the archived content, and writes the journal
//! line marked `recovered`. An active file that changed since is left alone,
//! so that nothing written after the interrupted reset is lost. The
//! generation goes up before the first active file is emptied. An archive
//! that is still a hard link to its active file first becomes a copy, or is
//! removed when the file changed since.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

use crate::archive;
use crate::atomic::{self, TempFile};
use crate::datadir::{ArchiveName, DataDir, PENDING_FILE, Source, TEMP_SUFFIX};
use crate::error::{ErrorKind, failure, io_failure};
use crate::generation::Generation;
use crate::journal::ArchiveRecord;
use crate::journal::{self, Entry};
use crate::reset::{EMPTY_STATE, copy_if_content, keep_as_late, late_record, prepare_empty_like};

/// The record of an interrupted reset, with enough to complete it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    /// The journal line the reset was going to write.
    pub entry: Entry,
    pub files: Vec<PendingFile>,
}

/// One archive of a pending reset.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingFile {
    pub source: Source,
    /// Final archive name.
    pub archive: String,
    /// Temporary name of the synced archive copy.
    pub temp: String,
    /// SHA-256 of the active file's content when it was archived.
    pub sha256: String,
    pub bytes: u64,
    /// Temporary name of the `{}` replacement. After the exchange it holds
    /// the displaced active file until the reset removes it or keeps it as a
    /// `.late` archive.
    #[serde(default)]
    pub replacement: Option<String>,
}

/// Writes the pending record atomically. The caller syncs the directory.
pub fn write(dir: &DataDir, pending: &Pending) -> anyhow::Result<()> {
    let path = dir.join(PENDING_FILE);
    let error = |error: std::io::Error| {
        io_failure(
            ErrorKind::CannotCreate,
            error,
            format!("cannot write {}", path.display()),
        )
    };
    let temp = TempFile::create(dir, PENDING_FILE).map_err(error)?;
    let text = serde_json::to_vec_pretty(pending)?;
    temp.file().write_all(&text).map_err(error)?;
    temp.sync().map_err(error)?;
    temp.persist(dir, PENDING_FILE, true).map_err(error)?;
    Ok(())
}

/// Removes the pending record after the journal line is written. A failure
/// is only logged: the next reset finds the run in the journal and removes
/// the record then.
pub fn remove(dir: &DataDir) {
    if let Err(error) = fs::remove_file(dir.join(PENDING_FILE)) {
        log::warn!(
            "cannot remove {}: {error}; the next reset removes it",
            dir.join(PENDING_FILE).display()
        );
    }
}

/// Reads the pending record, if any.
pub fn read(dir: &DataDir) -> anyhow::Result<Option<Pending>> {
    let path = dir.join(PENDING_FILE);
    let opened = atomic::open_regular(&path).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot open {}", path.display()),
        )
    })?;
    let Some((mut file, metadata)) = opened else {
        return Ok(None);
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot read {}", path.display()),
        )
    })?;
    let damaged = |problem: String| {
        failure(
            ErrorKind::InvalidData,
            format!(
                "{} is damaged ({problem}); it records a reset that was interrupted: compare the archives it names with the journal, then remove it",
                path.display()
            ),
        )
    };
    let pending: Pending =
        serde_json::from_slice(&text).map_err(|error| damaged(error.to_string()))?;
    if let Err(problem) = validate(&pending, &metadata) {
        return Err(damaged(problem));
    }
    Ok(Some(pending))
}

/// Accepts only a record that this user wrote and whose names are a plain
/// archive name and a plain temporary name in the data directory. Anyone who
/// can write the directory can plant a record, and recovery renames the
/// files it names, so a path such as `../x` or `/etc/x` must never pass.
fn validate(pending: &Pending, metadata: &std::fs::Metadata) -> Result<(), String> {
    // Only root or this user can have written a record that this user may
    // act on; a record of root's read by the service user (in `status`) is
    // fine, one planted by the service user for root is not.
    if metadata.uid() != atomic::effective_uid() && metadata.uid() != 0 {
        return Err(format!(
            "it belongs to uid {}, which is neither root nor uid {} running order-reset",
            metadata.uid(),
            atomic::effective_uid()
        ));
    }
    let Some(run_id) = pending.entry.id.as_deref() else {
        return Err("it has no run id".to_string());
    };
    for file in &pending.files {
        match ArchiveName::parse(&file.archive) {
            Some(name) if name.source == file.source && name.run_id == run_id => {}
            _ => return Err(format!("invalid archive name {:?}", file.archive)),
        }
        for temp in std::iter::once(&file.temp).chain(&file.replacement) {
            if !is_plain_temp_name(temp) {
                return Err(format!("invalid temporary name {temp:?}"));
            }
        }
    }
    Ok(())
}

/// Returns whether `name` is the name of a temporary file order-reset makes,
/// in the data directory itself.
fn is_plain_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX) && !name.contains('/')
}

/// Completes an interrupted reset, if there is one, and returns its run id.
/// Runs under the exclusive lock, before temporary files are cleaned up, and
/// bumps `generation` before it empties an active file.
pub fn complete(dir: &DataDir, generation: &mut Generation) -> anyhow::Result<Option<String>> {
    let Some(pending) = read(dir)? else {
        return Ok(None);
    };
    let run_id = pending.entry.id.clone().unwrap_or_default();
    // The run id alone could repeat after its archives were moved away and
    // the clock went back, so the time and pid must match too.
    let journaled = journal::read_all(dir)?.iter().any(|line| {
        line.entry.as_ref().is_ok_and(|entry| {
            entry.id == pending.entry.id
                && entry.reset_at == pending.entry.reset_at
                && entry.pid == pending.entry.pid
        })
    });
    if journaled {
        log::info!(
            "interrupted reset {run_id} is already in the journal; removing its pending record"
        );
        remove(dir);
        return Ok(None);
    }

    log::warn!("completing interrupted reset {run_id}");
    let mut entry = pending.entry;
    let mut in_place = Vec::new();
    let mut late = Vec::new();
    for file in &pending.files {
        // A run killed after it kept `.late` archives, before its journal line.
        for late_name in late_names(dir, file.source, &run_id)? {
            late.push(late_record(dir, file.source, &late_name)?);
        }
        let (kept, archive_removed) = keep_displaced(dir, file, &run_id)?;
        late.extend(kept);
        if archive_removed {
            continue;
        }
        if unlink_archive_from_active(dir, file)? {
            continue;
        }
        if put_archive_in_place(dir, file)? {
            in_place.push(file.archive.clone());
            if let Some(record) = empty_if_unchanged(dir, file, &run_id, generation)? {
                late.push(record);
            }
        }
    }
    atomic::sync_dir(dir.path()).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot sync data directory {}", dir.path().display()),
        )
    })?;

    if in_place.is_empty() && late.is_empty() {
        log::warn!(
            "interrupted reset {run_id} had not put any archive in place; nothing of it took effect"
        );
        remove(dir);
        return Ok(None);
    }
    // A file whose archive is not in place was not reset, so its counts go.
    entry
        .archives
        .retain(|record| in_place.contains(&record.file));
    for source in Source::ALL {
        if entry.archives.iter().any(|record| record.source == source) {
            continue;
        }
        match source {
            Source::Sessions => {
                entry.total_sessions_reset = 0;
                entry.sessions_by_status.clear();
            }
            Source::Takeovers => entry.takeover_requests_reset = 0,
        }
    }
    entry.archives.extend(late);
    entry.recovered = true;
    journal::Writer::open(dir)?.append(&mut entry)?;
    remove(dir);
    Ok(Some(run_id))
}

/// Returns the names of the `.late` archives of `source` from reset `run_id`
/// in the data directory, `.late` before `.late.2` and on.
fn late_names(dir: &DataDir, source: Source, run_id: &str) -> anyhow::Result<Vec<String>> {
    let entries = fs::read_dir(dir.path()).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot list {}", dir.path().display()),
        )
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            ArchiveName::parse(name).is_some_and(|parsed| {
                parsed.late && parsed.source == source && parsed.run_id == run_id
            })
        })
        .collect();
    names.sort_by_key(|name| (name.len(), name.clone()));
    Ok(names)
}

/// Deals with an archive, or its temporary name, that is the active file
/// itself: a hard link that the interrupted reset made and did not get to
/// replace the active file behind. Writers can change the active file, so
/// the link is not an archive to keep. While the file still has the recorded
/// content, the name gets a synced copy of it and the reset completes as
/// usual. Otherwise a writer changed the file since, the active file has
/// everything, and the name is removed: that file counts as not reset and
/// the next reset archives it. Returns whether it removed a name.
fn unlink_archive_from_active(dir: &DataDir, file: &PendingFile) -> anyhow::Result<bool> {
    let path = dir.join(file.source.file_name());
    let io_error = |error: std::io::Error, what: &str, path: &std::path::Path| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot {what} {}", path.display()),
        )
    };
    let Some((active, metadata)) =
        atomic::open_regular(&path).map_err(|error| io_error(error, "open", &path))?
    else {
        return Ok(false);
    };
    let mut removed = false;
    for name in [&file.archive, &file.temp] {
        let link = dir.join(name);
        let Ok(found) = fs::symlink_metadata(&link) else {
            continue;
        };
        if !atomic::same_file(&found, &metadata) {
            continue;
        }
        let copy = copy_if_content(dir, name, &active, &metadata, &file.sha256)
            .map_err(|error| io_error(error, "copy", &link))?;
        match copy {
            Some(copy) => {
                copy.persist(dir, name, true)
                    .map_err(|error| io_error(error, "replace", &link))?;
                log::info!(
                    "replaced {}, a link to {}, with a copy",
                    link.display(),
                    path.display()
                );
            }
            None => {
                atomic::remove_named(&link)?;
                log::warn!(
                    "removed {}, a link to {}, which changed after the interrupted reset read it; {} is not reset by that run",
                    link.display(),
                    path.display(),
                    file.source.file_name()
                );
                removed = true;
            }
        }
    }
    Ok(removed)
}

/// Makes sure the archive is in place with the recorded content, renaming the
/// synced temporary copy when the interrupted run had not. Returns false,
/// after logging why, when neither has the recorded content.
fn put_archive_in_place(dir: &DataDir, file: &PendingFile) -> anyhow::Result<bool> {
    let archive_path = dir.join(&file.archive);
    if let Some(hash) = hash_if_present(dir, &file.archive)? {
        if hash == file.sha256 {
            return Ok(true);
        }
        log::error!(
            "{} does not have the content the interrupted reset recorded (sha256 {}); leaving {} as it is",
            archive_path.display(),
            file.sha256,
            file.source.file_name()
        );
        return Ok(false);
    }
    if hash_if_present(dir, &file.temp)?.as_deref() == Some(file.sha256.as_str()) {
        atomic::rename_no_replace(&dir.join(&file.temp), &archive_path).map_err(|error| {
            io_failure(
                ErrorKind::CannotCreate,
                error,
                format!("cannot create archive {}", archive_path.display()),
            )
        })?;
        log::info!("put archive {} in place", archive_path.display());
        return Ok(true);
    }
    // A reset that took its linked archives back before it replaced anything
    // leaves this state when it is stopped in between.
    if hash_if_present(dir, file.source.file_name())?.as_deref() == Some(file.sha256.as_str()) {
        log::warn!(
            "archive {} of the interrupted reset is not in place, and {} still has the content it archived, so that run did not reset it",
            archive_path.display(),
            file.source.file_name()
        );
        return Ok(false);
    }
    log::error!(
        "archive {} of the interrupted reset is missing and so is its copy {}; leaving {} as it is",
        archive_path.display(),
        file.temp,
        file.source.file_name()
    );
    Ok(false)
}

/// Looks at the replacement's temporary name, which holds the displaced
/// active file when the run was killed right after the exchange. An empty
/// object or the archived content is removed; anything else was written by a
/// writer that ignores the lock and is kept as a `.late` archive. Returns
/// that archive's record, and whether the archive name was removed because
/// it was a hard link to the same file.
fn keep_displaced(
    dir: &DataDir,
    file: &PendingFile,
    run_id: &str,
) -> anyhow::Result<(Option<ArchiveRecord>, bool)> {
    let Some(name) = &file.replacement else {
        return Ok((None, false));
    };
    let Some(hash) = hash_if_present(dir, name)? else {
        return Ok((None, false));
    };
    if hash == file.sha256 || hash == journal::sha256_hex(EMPTY_STATE) {
        return Ok((None, false));
    }
    // Where the archive was a hard link to the displaced file, the writer
    // wrote into the archive too, so that name is no longer an archive.
    let archive = dir.join(&file.archive);
    let mut archive_removed = false;
    if let (Ok(displaced), Ok(found)) = (
        fs::symlink_metadata(dir.join(name)),
        fs::symlink_metadata(&archive),
    ) && atomic::same_file(&displaced, &found)
    {
        atomic::remove_named(&archive)?;
        log::error!(
            "{} was a link to the replaced {}, which a process that does not take order-reset.lock wrote after the interrupted reset; what it holds now is kept as a .late archive",
            archive.display(),
            file.source.file_name()
        );
        archive_removed = true;
    }
    let record = keep_as_late(dir, file.source, run_id, &dir.join(name))?;
    Ok((Some(record), archive_removed))
}

/// Replaces the active file with `{}` when it still has the archived content,
/// by the same exchange as a reset, keeping what a writer that ignores the
/// lock put there in between as a `.late` archive.
fn empty_if_unchanged(
    dir: &DataDir,
    file: &PendingFile,
    run_id: &str,
    generation: &mut Generation,
) -> anyhow::Result<Option<ArchiveRecord>> {
    let path = dir.join(file.source.file_name());
    let opened = atomic::open_regular(&path).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot open {}", path.display()),
        )
    })?;
    let Some((mut active, metadata)) = opened else {
        return Ok(None);
    };
    let (_, hash) = archive::hash_file(&mut active).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot read {}", path.display()),
        )
    })?;
    if hash != file.sha256 {
        log::debug!(
            "{} changed since the interrupted reset archived it; leaving it",
            path.display()
        );
        return Ok(None);
    }
    let temp = prepare_empty_like(dir, file.source, &metadata, Some(&active))?;
    generation.bump(dir)?;
    let displaced = temp
        .exchange_into(dir, file.source.file_name())
        .map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot replace {}", path.display()),
            )
        })?;
    log::info!(
        "emptied {}, which the interrupted reset had archived",
        path.display()
    );
    let Some(displaced) = displaced else {
        return Ok(None);
    };
    if hash_if_present(dir, &displaced)?.as_deref() == Some(file.sha256.as_str()) {
        std::fs::remove_file(dir.join(&displaced)).map_err(|error| {
            io_failure(ErrorKind::Io, error, format!("cannot remove {displaced}"))
        })?;
        return Ok(None);
    }
    keep_as_late(dir, file.source, run_id, &dir.join(&displaced)).map(Some)
}

fn hash_if_present(dir: &DataDir, name: &str) -> anyhow::Result<Option<String>> {
    let path = dir.join(name);
    let opened = atomic::open_regular(&path).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot open {}", path.display()),
        )
    })?;
    let Some((mut file, _)) = opened else {
        return Ok(None);
    };
    let (_, hash) = archive::hash_file(&mut file).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot read {}", path.display()),
        )
    })?;
    Ok(Some(hash))
}
