//! Preparing one active file for a restore: reading and checking it and the
//! archive, and writing its new content and the copy of its current content
//! under temporary names. Nothing visible changes here.

use std::fs::{File, Metadata};
use std::io::{BufWriter, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::archive::{self, Copied};
use crate::atomic::{self, TempFile};
use crate::datadir::{DataDir, Source};
use crate::error::{ErrorKind, archive_read_failure, failure, io_failure};
use crate::journal::ArchiveRecord;
use crate::output::count_noun;
use crate::preconditions;
use crate::restore::merge;
use crate::scan::{ScanErrorKind, Summary};

/// Change a restore makes to one active file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave it as it is: the archive has no entries, or every archived
    /// entry is already in the active file.
    Keep,
    /// Replace the empty or missing active file with the archive's bytes.
    Replace,
    /// Add the archived entries whose keys the active file lacks.
    Merge,
}

/// The archive to restore one active file from.
pub struct ArchiveSource {
    /// File name in the data directory.
    pub name: String,
    /// The journal's record of the archive; `None` for a legacy archive.
    pub recorded: Option<ArchiveRecord>,
}

/// Options of the restore request.
pub struct Options {
    pub dry_run: bool,
    pub merge: bool,
    /// Run id of the reset being restored, for messages.
    pub run_id: String,
}

/// One active file, prepared for the restore.
pub struct Target {
    pub source: Source,
    /// The active file, opened, and its metadata; `None` when it is missing.
    pub active: Option<(File, Metadata)>,
    /// Size, SHA-256 and counts of the active file's content.
    pub active_copied: Option<Copied>,
    /// Synced copy of the active file's content, to be renamed to its
    /// archive; present only in a real run that changes a non-empty file.
    pub pre_archive: Option<TempFile>,
    /// Synced new content of the active file; present only in a real run
    /// that changes the file.
    pub replacement: Option<TempFile>,
    pub action: Action,
    /// Distinct entries put back.
    pub restored: u64,
    /// Keys that both files have; the active version is kept.
    pub conflicts: Vec<String>,
}

impl Target {
    /// Returns the counts of the active file when it is valid.
    pub fn active_summary(&self) -> Option<&Summary> {
        self.active_copied
            .as_ref()
            .and_then(|copied| copied.scan.as_ref().ok())
    }

    /// Returns whether the active file has no entries (or is missing).
    pub fn active_is_empty(&self) -> bool {
        self.active_summary()
            .is_none_or(|summary| summary.entries == 0)
    }

    /// Returns whether the restore archives the current content first.
    pub fn archives_active(&self) -> bool {
        self.action != Action::Keep && !self.active_is_empty()
    }
}

/// Reads and checks the active file of `source` and its archive, and in a
/// real run writes the new content and the copy of the current content
/// under temporary names.
pub fn prepare(
    dir: &DataDir,
    source: Source,
    archive: Option<ArchiveSource>,
    options: &Options,
) -> anyhow::Result<Target> {
    let path = dir.join(source.file_name());
    let mut target = Target {
        source,
        active: None,
        active_copied: None,
        pre_archive: None,
        replacement: None,
        action: Action::Keep,
        restored: 0,
        conflicts: Vec::new(),
    };

    let Some(archive) = archive else {
        log::info!(
            "reset {} archived no {}, so {} is left as it is",
            options.run_id,
            noun(source, 2),
            source.file_name()
        );
        return Ok(target);
    };

    let opened = atomic::open_regular(&path).map_err(|error| open_error(&path, error))?;
    if let Some((mut file, metadata)) = opened {
        let pre_archive = if options.dry_run {
            None
        } else {
            Some(
                TempFile::create(dir, &source.archive_name("pending", true))
                    .map_err(|error| create_error(dir, error))?,
            )
        };
        let copied = archive::copy_and_scan(&mut file, pre_archive.as_ref().map(TempFile::file))
            .map_err(|error| {
                io_failure(
                    ErrorKind::Io,
                    error,
                    format!("cannot copy {} into its archive", path.display()),
                )
            })?;
        if let Err(error) = &copied.scan {
            let problem = match error.kind {
                ScanErrorKind::Empty => "is empty (0 bytes)".to_string(),
                ScanErrorKind::Syntax => format!("is not valid JSON: {error}"),
                ScanErrorKind::Shape => format!("is not in the backend's shape: {error}"),
            };
            return Err(failure(
                ErrorKind::InvalidData,
                format!(
                    "{} {problem}; nothing was changed: a restore neither replaces nor merges into a file it cannot read, so repair it, or run `order-reset reset --force` to archive it as it is and start empty",
                    path.display()
                ),
            ));
        }
        target.active = Some((file, metadata));
        target.active_copied = Some(copied);
        target.pre_archive = pre_archive;
    } else {
        log::debug!("{} is missing, so it counts as empty", path.display());
    }

    if !target.active_is_empty() && !options.merge {
        let entries = target.active_summary().map_or(0, |summary| summary.entries);
        return Err(failure(
            ErrorKind::Other,
            format!(
                "{} has {}, which a restore of reset {} would replace; nothing was changed: add --merge to add only the archived {} whose ids are absent, keeping the active ones",
                path.display(),
                count_noun(entries, noun(source, 1)),
                options.run_id,
                noun(source, 2)
            ),
        ));
    }

    let archive_path = dir.join(&archive.name);
    let opened = atomic::open_regular(&archive_path).map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot open archive {}", archive_path.display()),
        )
    })?;
    let Some((mut archive_file, archive_metadata)) = opened else {
        return Err(failure(
            ErrorKind::NotFound,
            format!(
                "archive {} is missing: `order-reset history` lists the archives",
                archive_path.display()
            ),
        ));
    };

    if target.active_is_empty() {
        replace(
            dir,
            &mut target,
            &archive,
            &mut archive_file,
            &archive_metadata,
            options,
        )?;
    } else {
        merge_into(dir, &mut target, &archive, &mut archive_file, options)?;
    }

    if target.archives_active() {
        if let Some(temp) = &target.pre_archive {
            let (_, metadata) = target.active.as_ref().expect("a non-empty file was opened");
            // The copy gets the source's owner, so that the backend can read
            // its history, and its mode without execute bits, so that it is
            // never more readable than the source.
            let (uid, gid) = preconditions::owner_for_new_file(metadata);
            temp.set_owner_and_mode(uid, gid, metadata.mode() & 0o666)
                .and_then(|()| temp.sync())
                .map_err(|error| {
                    io_failure(
                        ErrorKind::Io,
                        error,
                        format!("cannot finish archive copy {}", temp.name()),
                    )
                })?;
        }
    } else {
        target.pre_archive = None;
    }
    Ok(target)
}

/// Prepares the archive's exact bytes as the new content of an empty or
/// missing active file.
fn replace(
    dir: &DataDir,
    target: &mut Target,
    archive: &ArchiveSource,
    archive_file: &mut File,
    archive_metadata: &Metadata,
    options: &Options,
) -> anyhow::Result<()> {
    let archive_path = dir.join(&archive.name);
    // A missing active file is created with the archive's owner, so the
    // same rule as for an existing file applies to it.
    let owner_source = match &target.active {
        Some((_, metadata)) => metadata,
        None => {
            preconditions::check_owner_can_be_kept(&archive_path, archive_metadata)?;
            archive_metadata
        }
    };

    let replacement = if options.dry_run {
        None
    } else {
        Some(
            TempFile::create(dir, target.source.file_name())
                .map_err(|error| create_error(dir, error))?,
        )
    };
    let copied = archive::copy_and_scan(archive_file, replacement.as_ref().map(TempFile::file))
        .map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!(
                    "cannot copy archive {} into a new {}",
                    archive_path.display(),
                    target.source.file_name()
                ),
            )
        })?;
    let entries = check_archive(&archive_path, archive, &copied)?;

    if entries == 0 {
        log::info!(
            "archive {} has no entries, so {} is left as it is",
            archive_path.display(),
            target.source.file_name()
        );
        return Ok(());
    }

    if let Some(temp) = &replacement {
        finish_replacement(temp, owner_source, target.source)?;
    }
    target.replacement = replacement;
    target.action = Action::Replace;
    target.restored = entries;
    Ok(())
}

/// Prepares the merge of the archive into a non-empty active file.
fn merge_into(
    dir: &DataDir,
    target: &mut Target,
    archive: &ArchiveSource,
    archive_file: &mut File,
    options: &Options,
) -> anyhow::Result<()> {
    let archive_path = dir.join(&archive.name);
    let active_path = dir.join(target.source.file_name());
    let copied =
        archive::copy_and_scan(archive_file, None).map_err(archive_read_failure(&archive_path))?;
    if check_archive(&archive_path, archive, &copied)? == 0 {
        log::info!(
            "archive {} has no entries, so {} is left as it is",
            archive_path.display(),
            target.source.file_name()
        );
        return Ok(());
    }

    let (active_file, active_metadata) =
        target.active.as_ref().expect("a non-empty file was opened");
    let rewind = |mut file: &File, path: &Path| {
        file.seek(SeekFrom::Start(0)).map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot read {}", path.display()),
            )
        })
    };
    rewind(active_file, &active_path)?;
    rewind(archive_file, &archive_path)?;

    let replacement = if options.dry_run {
        None
    } else {
        Some(
            TempFile::create(dir, target.source.file_name())
                .map_err(|error| create_error(dir, error))?,
        )
    };
    let result = match &replacement {
        Some(temp) => merge::merge(active_file, &*archive_file, BufWriter::new(temp.file())),
        None => merge::merge(active_file, &*archive_file, std::io::sink()),
    };
    let merged = result.map_err(|error| {
        let kind = match error.kind() {
            std::io::ErrorKind::InvalidData => ErrorKind::InvalidData,
            _ => ErrorKind::Io,
        };
        io_failure(
            kind,
            error,
            format!(
                "cannot merge archive {} into {}; nothing was changed",
                archive_path.display(),
                active_path.display()
            ),
        )
    })?;
    let active_sha256 = target
        .active_copied
        .as_ref()
        .map(|copied| copied.sha256.as_str());
    if Some(merged.active.1.as_str()) != active_sha256 {
        return Err(preconditions::changed_error(&active_path));
    }
    if merged.archive.1 != copied.sha256 {
        return Err(preconditions::changed_error(&archive_path));
    }

    target.conflicts = merged.conflicts;
    if !target.conflicts.is_empty() {
        log::info!(
            "{} and archive {} both have {}; the active version is kept: {}",
            active_path.display(),
            archive_path.display(),
            count_noun(target.conflicts.len() as u64, noun(target.source, 1)),
            target.conflicts.join(", ")
        );
    }
    if merged.added == 0 {
        log::info!(
            "every {} in archive {} is already in {}, so it is left as it is",
            noun(target.source, 1),
            archive_path.display(),
            active_path.display()
        );
        return Ok(());
    }
    log::debug!(
        "merged document: {} bytes, {} entries, sha256 {}",
        merged.output.0,
        merged.summary.entries,
        merged.output.1
    );
    if let Some(temp) = &replacement {
        finish_replacement(temp, active_metadata, target.source)?;
    }
    target.replacement = replacement;
    target.action = Action::Merge;
    target.restored = merged.added;
    Ok(())
}

/// Checks an archive that was read in full: it must be valid and, when the
/// journal recorded it, have the recorded size and SHA-256. Returns its
/// entry count.
fn check_archive(path: &Path, archive: &ArchiveSource, copied: &Copied) -> anyhow::Result<u64> {
    let summary = copied.scan.as_ref().map_err(|error| {
        failure(
            ErrorKind::InvalidData,
            format!(
                "archive {} is not a valid sessions file ({error}), so it cannot be restored; nothing was changed",
                path.display()
            ),
        )
    })?;
    if let Some(record) = &archive.recorded
        && (record.sha256 != copied.sha256 || record.bytes != copied.bytes)
    {
        return Err(failure(
            ErrorKind::InvalidData,
            format!(
                "archive {} has {} bytes with SHA-256 {}, but the journal recorded {} bytes with SHA-256 {}: it changed after the reset, so it is not restored; nothing was changed",
                path.display(),
                copied.bytes,
                copied.sha256,
                record.bytes,
                record.sha256
            ),
        ));
    }
    if summary.duplicate_keys > 0 {
        log::warn!(
            "archive {} repeats {} of its keys; Python's json.load keeps the last value of each",
            path.display(),
            summary.duplicate_keys
        );
    }
    Ok(summary.entries)
}

/// Gives the new content the owner, group and mode of the file it stands
/// for, and syncs it.
fn finish_replacement(
    temp: &TempFile,
    owner_source: &Metadata,
    source: Source,
) -> anyhow::Result<()> {
    let (uid, gid) = preconditions::owner_for_new_file(owner_source);
    temp.set_owner_and_mode(uid, gid, owner_source.mode())
        .and_then(|()| temp.sync())
        .map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!(
                    "cannot prepare the new content {} of {}",
                    temp.name(),
                    source.file_name()
                ),
            )
        })
}

/// Returns `session` or `sessions` (`takeover request(s)`) for `count`.
pub fn noun(source: Source, count: u64) -> &'static str {
    match (source, count) {
        (Source::Sessions, 1) => "session",
        (Source::Sessions, _) => "sessions",
        (Source::Takeovers, 1) => "takeover request",
        (Source::Takeovers, _) => "takeover requests",
    }
}

fn open_error(path: &Path, error: std::io::Error) -> anyhow::Error {
    // open_regular reports a link, FIFO or directory as `Other`.
    let kind = match error.kind() {
        std::io::ErrorKind::Other => ErrorKind::InvalidData,
        _ => ErrorKind::Io,
    };
    io_failure(kind, error, format!("cannot open {}", path.display()))
}

pub fn create_error(dir: &DataDir, error: std::io::Error) -> anyhow::Error {
    io_failure(
        ErrorKind::CannotCreate,
        error,
        format!("cannot create a temporary file in {}", dir.path().display()),
    )
}
