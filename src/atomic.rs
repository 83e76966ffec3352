//! File operations that keep the data directory consistent after a crash and
//! safe against links planted in it.
//!
//! Rules kept here: no file in the data directory is opened through a symbolic
//! link; every new file is first written under a temporary name created with
//! `O_EXCL`, synced, then renamed into place, and the directory is synced after
//! the rename; archives are renamed with `RENAME_NOREPLACE`, so an existing
//! file is never overwritten.

use std::ffi::CString;
use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::datadir::{DataDir, TEMP_SUFFIX};

/// Opens an existing regular file for reading without following a symbolic
/// link. Returns `Ok(None)` when the file does not exist.
///
/// `O_NONBLOCK` keeps a FIFO planted at the name from blocking the open, and
/// the type check then rejects it.
pub fn open_regular(path: &Path) -> io::Result<Option<(File, Metadata)>> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::other(format!(
                "{} is a symbolic link, and order-reset does not follow links in the data directory",
                path.display()
            )));
        }
        Err(error) => return Err(error),
    };
    let metadata = file.metadata()?;
    check_regular(path, &metadata)?;
    Ok(Some((file, metadata)))
}

/// Rejects anything but a regular file, naming what was found.
pub fn check_regular(path: &Path, metadata: &Metadata) -> io::Result<()> {
    if metadata.file_type().is_file() {
        return Ok(());
    }
    let what = describe_type(metadata);
    Err(io::Error::other(format!(
        "{} is {what}, expected a regular file",
        path.display()
    )))
}

fn describe_type(metadata: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Opens or creates a file that order-reset keeps in the data directory (the
/// lock file or the journal), never through a symbolic link.
///
/// A new file gets `mode` and, when root creates it, the data directory's
/// owner and group, so that the backend's user can open it too. Returns the
/// file and whether it was created.
pub fn open_or_create_owned(
    dir: &DataDir,
    name: &str,
    mode: u32,
    append: bool,
) -> io::Result<(File, bool)> {
    let path = dir.join(name);
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(flags).mode(mode);
    if append {
        options.append(true);
    } else {
        options.write(true);
    }
    let (file, created) = match options.clone().create_new(true).open(&path) {
        Ok(file) => (file, true),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let file = options.open(&path).map_err(|error| {
                if error.raw_os_error() == Some(libc::ELOOP) {
                    io::Error::other(format!(
                        "{} is a symbolic link, and order-reset does not follow links in the data directory: remove it",
                        path.display()
                    ))
                } else {
                    error
                }
            })?;
            (file, false)
        }
        Err(error) => return Err(error),
    };
    let metadata = file.metadata()?;
    check_regular(&path, &metadata)?;
    // A hard link planted at the name would make every write here change a
    // file elsewhere, and O_NOFOLLOW does not stop hard links.
    if metadata.nlink() > 1 {
        return Err(io::Error::other(format!(
            "{} has {} hard links, so writing it would change another file too: remove it and let order-reset create it",
            path.display(),
            metadata.nlink()
        )));
    }
    if created {
        // The umask may have cut the mode; set it exactly.
        file.set_permissions(Permissions::from_mode(mode))?;
        if is_root() {
            let (uid, gid) = dir.owner();
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
    }
    Ok((file, created))
}

/// Returns whether the process runs with root's effective user id.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns the effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks that this process may write `path`, by its effective user id.
pub fn check_writable(path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: the path is a valid NUL-terminated string for the whole call.
    let result =
        unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Syncs a directory so that the renames and links in it survive a crash.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    dir.sync_all()
}

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A file being written under a temporary name in the data directory.
///
/// Dropping it before [`TempFile::persist`] removes it, so an error path leaves
/// nothing behind. A process killed while it exists leaves the file, and the
/// next reset removes it with [`remove_stale_temps`].
pub struct TempFile {
    path: PathBuf,
    name: String,
    file: File,
    persisted: bool,
}

impl TempFile {
    /// Creates `.<target>.<pid>.<n>.order-reset-tmp` with mode 0600.
    ///
    /// `O_EXCL` makes the create fail on any existing name, a planted symbolic
    /// link included; the next counter value is tried then.
    pub fn create(dir: &DataDir, target: &str) -> io::Result<TempFile> {
        Self::with_free_name(dir, target, |path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
        })
    }

    /// Gives `source` a second name, `.<target>.<pid>.<n>.order-reset-tmp`,
    /// with a hard link. The temporary file is then `source` itself: the same
    /// bytes, owner, mode and times, and it shares `source`'s open file.
    ///
    /// The link is made from `/proc/self/fd`, so it names the open file even
    /// if its own name was replaced since it was opened.
    pub fn link(dir: &DataDir, target: &str, source: &File) -> io::Result<TempFile> {
        use std::os::fd::AsRawFd;
        let proc_path = CString::new(format!("/proc/self/fd/{}", source.as_raw_fd()))?;
        Self::with_free_name(dir, target, |path| {
            let path_c = CString::new(path.as_os_str().as_bytes())?;
            let file = source.try_clone()?;
            // SAFETY: both paths are valid NUL-terminated strings that
            // outlive the call.
            let result = unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    proc_path.as_ptr(),
                    libc::AT_FDCWD,
                    path_c.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            };
            if result != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(file)
        })
    }

    /// Tries temporary names for `target` until `make` does not find one
    /// taken, and returns the file `make` made at the free name.
    fn with_free_name(
        dir: &DataDir,
        target: &str,
        mut make: impl FnMut(&Path) -> io::Result<File>,
    ) -> io::Result<TempFile> {
        let pid = std::process::id();
        let mut last_error = None;
        for _ in 0..100 {
            let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(".{target}.{pid}.{counter}{TEMP_SUFFIX}");
            let path = dir.join(&name);
            match make(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        name,
                        file,
                        persisted: false,
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    log::warn!(
                        "{} already exists; trying another temporary name",
                        path.display()
                    );
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary name")))
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Gives the file an owner, group and permission bits before it is
    /// renamed into place. The owner is changed first because `fchown` clears
    /// the set-user-id and set-group-id bits.
    pub fn set_owner_and_mode(&self, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
        let metadata = self.file.metadata()?;
        if metadata.uid() != uid || metadata.gid() != gid {
            let uid = (metadata.uid() != uid).then_some(uid);
            std::os::unix::fs::fchown(&self.file, uid, Some(gid))?;
        }
        self.file
            .set_permissions(Permissions::from_mode(mode & 0o7777))
    }

    /// Copies the POSIX access ACL of `source`, if it has one, so that the
    /// file grants exactly the access the source grants. Without this, the
    /// mode's group bits, which hold the ACL mask, would go to the owning
    /// group. Call it after [`TempFile::set_owner_and_mode`].
    pub fn copy_acl_from(&self, source: &File) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        const NAME: &[u8] = b"system.posix_acl_access\0";
        let mut buffer = vec![0u8; 64 * 1024];
        // SAFETY: the name is NUL-terminated and the buffer is valid for its
        // whole length; fgetxattr writes at most that many bytes.
        let length = unsafe {
            libc::fgetxattr(
                source.as_raw_fd(),
                NAME.as_ptr().cast(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        };
        if length < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                // No ACL, or a filesystem without ACLs: nothing to copy.
                Some(libc::ENODATA | libc::ENOTSUP) => Ok(()),
                _ => Err(error),
            };
        }
        // SAFETY: as above; the value is the `length` bytes just read.
        let result = unsafe {
            libc::fsetxattr(
                self.file.as_raw_fd(),
                NAME.as_ptr().cast(),
                buffer.as_ptr().cast(),
                length as usize,
                0,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Makes the empty file a copy-on-write clone of `source` (`FICLONE`, as
    /// `cp --reflink` does), which copies no bytes. Returns false, having
    /// changed nothing, where the filesystem cannot share extents, as ext4
    /// and tmpfs cannot.
    pub fn clone_from(&self, source: &File) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: FICLONE takes the source descriptor as its argument and
        // both descriptors stay open for the duration of the call.
        let result =
            unsafe { libc::ioctl(self.file.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) };
        if result == 0 {
            return true;
        }
        log::debug!(
            "cannot clone into {} ({}); copying instead",
            self.name,
            io::Error::last_os_error()
        );
        false
    }

    /// Leaves the file at its temporary name and returns that path, for a
    /// caller that renames it itself.
    pub fn into_path(mut self) -> PathBuf {
        self.persisted = true;
        self.path.clone()
    }

    /// Syncs the data and metadata of the file.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Renames the file to `target` in the same directory. With `replace`
    /// false the rename fails with `AlreadyExists` rather than overwrite. The
    /// caller syncs the directory afterwards.
    pub fn persist(mut self, dir: &DataDir, target: &str, replace: bool) -> io::Result<()> {
        let target_path = dir.join(target);
        if replace {
            fs::rename(&self.path, &target_path)?;
        } else {
            rename_no_replace(&self.path, &target_path)?;
        }
        self.persisted = true;

        // A process that can write the directory could swap names between
        // the rename and now; make sure the name points at the file written.
        let written = self.file.metadata()?;
        let found = fs::symlink_metadata(&target_path)?;
        if !same_file(&found, &written) {
            return Err(io::Error::other(format!(
                "{} was replaced by another process right after order-reset wrote it",
                target_path.display()
            )));
        }
        Ok(())
    }
}

impl TempFile {
    /// Puts the file in place of `target` by exchanging the two names
    /// atomically, and returns the temporary name that now holds the file it
    /// displaced. Where the filesystem cannot exchange names, or `target` no
    /// longer exists, the file is renamed over `target` and `None` returned.
    pub fn exchange_into(mut self, dir: &DataDir, target: &str) -> io::Result<Option<String>> {
        let target_path = dir.join(target);
        let exchanged = if exchange_disabled_for_tests() {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        } else {
            rename_exchange(&self.path, &target_path)
        };
        match exchanged {
            Ok(()) => {
                // The temporary name now holds the displaced file, which the
                // caller keeps or removes; dropping `self` must not remove it.
                self.persisted = true;
                let written = self.file.metadata()?;
                let found = fs::symlink_metadata(&target_path)?;
                if !same_file(&found, &written) {
                    return Err(io::Error::other(format!(
                        "{} was replaced by another process right after order-reset wrote it",
                        target_path.display()
                    )));
                }
                Ok(Some(self.name.clone()))
            }
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                self.persist(dir, target, true)?;
                Ok(None)
            }
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                ) =>
            {
                // The filesystem cannot exchange names (NFS, CIFS, many FUSE
                // filesystems): move the active file aside first, then rename
                // this file into place. In between the name is briefly
                // missing, which the backend reads as an empty file.
                let aside = free_temp_name(dir, target)?;
                match rename_no_replace(&target_path, &dir.join(&aside)) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {
                        self.persist(dir, target, true)?;
                        return Ok(None);
                    }
                    Err(error) => return Err(error),
                }
                if let Err(error) = rename_no_replace(&self.path, &target_path) {
                    if error.kind() != io::ErrorKind::AlreadyExists {
                        return Err(error);
                    }
                    // A writer created the file in that instant; its content
                    // is newer than this empty file, so it stays.
                    log::warn!(
                        "{} was created again while it was being replaced; keeping it",
                        target_path.display()
                    );
                    return Ok(Some(aside));
                }
                self.persisted = true;
                Ok(Some(aside))
            }
            Err(error) => Err(error),
        }
    }
}

/// Returns whether a debug build was asked, by `ORDER_RESET_NO_EXCHANGE`, to
/// behave as on a filesystem without `RENAME_EXCHANGE`, for tests.
fn exchange_disabled_for_tests() -> bool {
    cfg!(debug_assertions) && std::env::var_os("ORDER_RESET_NO_EXCHANGE").is_some()
}

/// Returns a temporary name for `target` that no file has now.
fn free_temp_name(dir: &DataDir, target: &str) -> io::Result<String> {
    let pid = std::process::id();
    for _ in 0..100 {
        let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(".{target}.{pid}.{counter}{TEMP_SUFFIX}");
        if fs::symlink_metadata(dir.join(&name)).is_err() {
            return Ok(name);
        }
    }
    Err(io::Error::other("no free temporary name"))
}

fn rename_exchange(from: &Path, to: &Path) -> io::Result<()> {
    let from_c = CString::new(from.as_os_str().as_bytes())?;
    let to_c = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let result = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted
            && let Err(error) = fs::remove_file(&self.path)
        {
            log::warn!(
                "cannot remove temporary file {}: {error}",
                self.path.display()
            );
        }
    }
}

/// Returns whether two `stat` results describe the same file: the same
/// inode on the same device.
pub fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.ino() == b.ino() && a.dev() == b.dev()
}

/// Removes `path`, with an error that names it.
pub fn remove_named(path: &Path) -> anyhow::Result<()> {
    fs::remove_file(path).map_err(|error| {
        crate::error::io_failure(
            crate::error::ErrorKind::Io,
            error,
            format!("cannot remove {}", path.display()),
        )
    })
}

/// Renames `from` to `to` unless `to` exists, atomically.
///
/// Uses `renameat2(RENAME_NOREPLACE)`. Where the filesystem does not support
/// it, falls back to `link` plus `unlink`, which also never replaces `to`.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let from_c = CString::new(from.as_os_str().as_bytes())?;
    let to_c = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let result = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        _ => Err(error),
    }
}

/// Removes temporary files that an earlier, killed run left behind.
///
/// Called only under the exclusive lock, when no other order-reset can be
/// writing one. Removing a name never follows a link. Returns the count.
pub fn remove_stale_temps(dir: &DataDir) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir.path())? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => {
                log::info!("removed temporary file {name} left by an interrupted run");
                removed += 1;
            }
            Err(error) => log::warn!("cannot remove temporary file {name}: {error}"),
        }
    }
    Ok(removed)
}
