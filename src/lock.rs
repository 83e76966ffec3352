//! The data directory lock: an advisory `flock` on `order-reset.lock`.
//!
//! The lock file is never replaced or removed, so every process that opens it
//! locks the same inode. A reset holds it exclusively for its whole run, and
//! the backend takes it exclusively around each read-modify-write of the data
//! files. The holder writes its pid, host, command and start time into the
//! file; a waiting process reads them to say who holds the lock, checked
//! against the kernel's own list in `/proc/locks`. So a backend opens the file
//! without truncating it and writes nothing into it.
//!
//! The lock is half of the on-disk protocol with the backend. The other half
//! is `order-reset.generation` (see `generation`), which a command increases
//! under the lock before it replaces an active file. The backend reads it
//! after taking the lock and reloads the files when it changed, instead of
//! writing its memory back over a reset. `examples/backend/order_reset_store.py`
//! implements the backend's side.
//!
//! std's `File` has lock methods with some of fs2's names since Rust 1.89,
//! and inherent methods win over trait methods, so fs2 is always called by
//! its full path here.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::datadir::{DataDir, LOCK_FILE};
use crate::error::{ErrorKind, failure, io_failure};
use crate::system;

/// Interval between two attempts to take a busy lock.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The process that holds, or last held, the lock, as written into the file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub started_at: String,
}

impl Holder {
    fn current() -> Holder {
        Holder {
            pid: std::process::id(),
            host: system::host_name(),
            command: system::command_line(),
            started_at: crate::clock::now().to_rfc3339(),
        }
    }

    /// Formats the holder for a message: `pid 42 on host (command), since T`.
    pub fn describe(&self) -> String {
        format!(
            "pid {} on {} ({}), since {}",
            self.pid, self.host, self.command, self.started_at
        )
    }
}

/// A held lock; dropping it releases the lock.
pub struct DirLock {
    file: File,
    exclusive: bool,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if self.exclusive {
            // Clear the holder record so that it never names a process that
            // has finished. A killed holder leaves it, and `/proc/locks` then
            // shows that nobody holds the lock.
            let _ = self.file.set_len(0);
        }
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

/// The lock as `status` reports it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LockState {
    /// No lock file yet: no reset has run and no backend has locked.
    Missing,
    Free,
    Held {
        pid: Option<u32>,
        holder: Option<Holder>,
        description: String,
    },
    Unreadable {
        error: String,
    },
}

/// Takes the exclusive lock, creating the lock file when missing, and waits
/// up to `wait` for it to become free. Exits with [`ErrorKind::LockBusy`],
/// naming the holder, when it stays busy.
pub fn acquire_exclusive(dir: &DataDir, wait: Duration) -> anyhow::Result<DirLock> {
    let file = open_lock_file(dir)?;
    wait_for(dir, &file, wait, true)?;

    let holder = Holder::current();
    let mut record = serde_json::to_string(&holder)?;
    record.push('\n');
    let write_result = file
        .set_len(0)
        .and_then(|()| (&file).seek(SeekFrom::Start(0)).map(|_| ()))
        .and_then(|()| (&file).write_all(record.as_bytes()));
    if let Err(error) = write_result {
        // The lock is held all the same; only the record of the holder is missing.
        log::warn!(
            "cannot record the lock holder in {}: {error}",
            dir.join(LOCK_FILE).display()
        );
    }
    log::debug!(
        "took the exclusive lock on {}",
        dir.join(LOCK_FILE).display()
    );
    Ok(DirLock {
        file,
        exclusive: true,
    })
}

/// Takes the lock in shared mode when the lock file exists, for commands that
/// only read. A shared lock waits for resets and backend writes to finish but
/// writes nothing. Returns `None` when there is no lock file.
pub fn acquire_shared_if_exists(dir: &DataDir, wait: Duration) -> anyhow::Result<Option<DirLock>> {
    let path = dir.join(LOCK_FILE);
    let file = match atomic::open_regular(&path) {
        Ok(Some((file, metadata))) if metadata.nlink() > 1 => {
            drop(file);
            return Err(failure(
                ErrorKind::CannotCreate,
                format!(
                    "cannot open lock file {}: it has {} hard links, so writing it would change another file too: remove it and let order-reset create it",
                    path.display(),
                    metadata.nlink()
                ),
            ));
        }
        Ok(Some((file, _))) => file,
        Ok(None) => return Ok(None),
        Err(error) => {
            // The same errors as a reset gives for the lock file, so that a
            // dry run predicts the reset's exit code.
            return Err(io_failure(
                ErrorKind::CannotCreate,
                error,
                format!("cannot open lock file {}", path.display()),
            ));
        }
    };
    wait_for(dir, &file, wait, false)?;
    Ok(Some(DirLock {
        file,
        exclusive: false,
    }))
}

fn open_lock_file(dir: &DataDir) -> anyhow::Result<File> {
    let path = dir.join(LOCK_FILE);
    let (file, created) =
        atomic::open_or_create_owned(dir, LOCK_FILE, 0o600, false).map_err(|error| {
            io_failure(
                ErrorKind::CannotCreate,
                error,
                format!("cannot open lock file {}", path.display()),
            )
        })?;
    if created {
        log::info!("created lock file {}", path.display());
        return Ok(file);
    }

    // A lock file that root created before the backend wrote its first file
    // belongs to the directory's owner; once scan_sessions.json exists, root
    // hands the lock file to its owner, so that the backend can take the lock.
    let metadata = file.metadata()?;
    let (uid, gid) = dir.owner();
    if atomic::is_root() && (metadata.uid(), metadata.gid()) != (uid, gid) {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|error| {
            io_failure(
                ErrorKind::PermissionDenied,
                error,
                format!("cannot change the owner of lock file {}", path.display()),
            )
        })?;
        log::info!("gave lock file {} to uid {uid}, gid {gid}", path.display());
    }

    // Anyone who can open the lock file can hold the lock and block every
    // reset, so group and other access is removed where this process may.
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        if atomic::is_root() || metadata.uid() == atomic::effective_uid() {
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(|error| {
                    io_failure(
                        ErrorKind::PermissionDenied,
                        error,
                        format!("cannot restrict the mode of lock file {}", path.display()),
                    )
                })?;
            log::warn!(
                "lock file {} had mode {mode:04o}, which lets other users hold the lock; changed it to 0600",
                path.display()
            );
        } else {
            log::warn!(
                "lock file {} has mode {mode:04o}, which lets other users hold the lock: run `chmod 600` on it as its owner",
                path.display()
            );
        }
    }
    Ok(file)
}

fn wait_for(dir: &DataDir, file: &File, wait: Duration, exclusive: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut logged = false;
    loop {
        let attempt = if exclusive {
            fs2::FileExt::try_lock_exclusive(file)
        } else {
            fs2::FileExt::try_lock_shared(file)
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(error) if is_contended(&error) => {}
            Err(error) => {
                return Err(io_failure(
                    ErrorKind::Io,
                    error,
                    format!("cannot lock {}", dir.join(LOCK_FILE).display()),
                ));
            }
        }
        let elapsed = started.elapsed();
        if elapsed >= wait {
            let who = describe_holder(file);
            return Err(failure(
                ErrorKind::LockBusy,
                format!(
                    "lock {} is held by {who}; waited {:.1}s: try again later or pass a longer --wait",
                    dir.join(LOCK_FILE).display(),
                    wait.as_secs_f64()
                ),
            ));
        }
        if !logged {
            log::info!(
                "lock {} is busy; waiting up to {:.1}s",
                dir.join(LOCK_FILE).display(),
                wait.as_secs_f64()
            );
            logged = true;
        }
        thread::sleep(POLL_INTERVAL.min(wait - elapsed));
    }
}

fn is_contended(error: &io::Error) -> bool {
    error.raw_os_error() == fs2::lock_contended_error().raw_os_error()
        || error.kind() == io::ErrorKind::WouldBlock
}

/// Reads the lock state without waiting, for `status`.
pub fn probe(dir: &DataDir) -> LockState {
    let path = dir.join(LOCK_FILE);
    let file = match atomic::open_regular(&path) {
        Ok(Some((file, _))) => file,
        Ok(None) => return LockState::Missing,
        Err(error) => {
            return LockState::Unreadable {
                error: error.to_string(),
            };
        }
    };
    match fs2::FileExt::try_lock_shared(&file) {
        Ok(()) => {
            let _ = fs2::FileExt::unlock(&file);
            LockState::Free
        }
        Err(error) if is_contended(&error) => {
            let holder = read_holder(&file);
            let pid = kernel_lock_holder(&file);
            LockState::Held {
                pid,
                description: describe(holder.as_ref(), pid),
                holder,
            }
        }
        Err(error) => LockState::Unreadable {
            error: error.to_string(),
        },
    }
}

fn describe_holder(file: &File) -> String {
    let holder = read_holder(file);
    let pid = kernel_lock_holder(file);
    describe(holder.as_ref(), pid)
}

/// Combines the recorded holder with the pid the kernel reports. The record
/// is trusted only when the pids agree, because a backend that takes the lock
/// does not rewrite the record.
fn describe(holder: Option<&Holder>, pid: Option<u32>) -> String {
    match (holder, pid) {
        (Some(holder), Some(pid)) if holder.pid == pid => holder.describe(),
        (Some(holder), None) => holder.describe(),
        (_, Some(pid)) => format!("pid {pid} ({})", system::process_command(pid)),
        (None, None) => "another process".to_string(),
    }
}

fn read_holder(file: &File) -> Option<Holder> {
    let mut text = String::new();
    let mut reader = file;
    reader.seek(SeekFrom::Start(0)).ok()?;
    reader.take(64 * 1024).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Finds the pid that holds a `flock` on this file in `/proc/locks`.
fn kernel_lock_holder(file: &File) -> Option<u32> {
    let metadata = file.metadata().ok()?;
    let dev = metadata.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let wanted = format!("{major:02x}:{minor:02x}:{}", metadata.ino());
    let locks = fs::read_to_string("/proc/locks").ok()?;
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; blocked waiters
        // carry a "->" marker and do not hold the lock.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[1] != "FLOCK" {
            continue;
        }
        if fields[5] == wanted {
            return fields[4].parse().ok();
        }
    }
    None
}
