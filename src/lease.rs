//! Read leases (`F_SETLEASE`) on active files, which let a reset archive an
//! active file by a hard link instead of a copy.
//!
//! A read lease can be taken only while no process has the file open for
//! writing. While it is held, a process that opens the file for writing or
//! truncates it waits in the kernel, and the lease shows the attempt, until
//! the holder releases the lease or the system's lease break time runs out.
//! An open for reading with `O_TRUNC` is the exception: Linux empties the
//! file without waiting, so the reset also compares the file's size.
//! So while the reset holds the lease, the file's bytes cannot change without
//! the reset seeing it first, and it can make a real copy before letting the
//! writer go on.
//!
//! A lease needs the file's owner or `CAP_LEASE`, a local filesystem that
//! supports leases, and leases enabled. Where any of that is missing, taking
//! one fails and the reset copies as before.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Once;
use std::time::{Duration, Instant};

/// The shortest lease break time (`/proc/sys/fs/lease-break-time`) with which
/// a lease is taken. A writer waits at most that long for the holder, so it
/// must be far longer than a reset takes. The kernel's default is 45 seconds.
const MIN_BREAK_TIME: Duration = Duration::from_secs(10);

/// Takes a read lease on `file`, which must be open read-only.
///
/// Fails with `WouldBlock` when a process has the file open for writing, and
/// with other errors where leases cannot be used.
pub fn take(file: &File) -> io::Result<()> {
    let break_time = std::fs::read_to_string("/proc/sys/fs/lease-break-time")?;
    let seconds: u64 = break_time.trim().parse().map_err(io::Error::other)?;
    if Duration::from_secs(seconds) < MIN_BREAK_TIME {
        return Err(io::Error::other(format!(
            "the lease break time is {seconds} s, below {} s",
            MIN_BREAK_TIME.as_secs()
        )));
    }
    ignore_break_signal();
    set(file, libc::F_RDLCK)
}

/// Returns whether a process tried to open the file for writing or to
/// truncate it since the lease was taken, or the lease is gone.
pub fn broken(file: &File) -> bool {
    // SAFETY: F_GETLEASE takes no argument and the descriptor stays open for
    // the duration of the call.
    let lease = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLEASE) };
    lease != libc::F_RDLCK
}

/// Releases the lease, which lets a waiting writer go on. The descriptor
/// stays open. Closing the last descriptor of the open file releases it too.
pub fn release(file: &File) {
    if let Err(error) = set(file, libc::F_UNLCK) {
        log::debug!("cannot release a read lease: {error}");
    }
}

/// Waits until no process has the file open for writing, checking every
/// millisecond for at most `limit`, and returns whether that happened.
/// Call it only after [`take`] succeeded on the file once.
pub fn wait_for_writers(file: &File, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        // A read lease can be taken exactly when no process has the file
        // open for writing; it is released again at once.
        match set(file, libc::F_RDLCK) {
            Ok(()) => {
                release(file);
                return true;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn set(file: &File, lease: libc::c_int) -> io::Result<()> {
    // SAFETY: F_SETLEASE takes an integer argument and the descriptor stays
    // open for the duration of the call.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, lease) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel notifies a lease holder of a writer with `SIGIO`, whose default
/// action ends the process. The reset polls `F_GETLEASE` instead, so the
/// signal is ignored.
fn ignore_break_signal() {
    static IGNORED: Once = Once::new();
    IGNORED.call_once(|| {
        // SAFETY: SIG_IGN installs no handler code, and nothing else in this
        // program uses SIGIO.
        unsafe {
            libc::signal(libc::SIGIO, libc::SIG_IGN);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::os::unix::fs::OpenOptionsExt;

    fn open_for_writing_without_waiting(path: &std::path::Path) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
    }

    #[test]
    fn open_for_writing_breaks_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("active.json");
        std::fs::write(&path, b"{}").unwrap();
        let file = File::open(&path).unwrap();
        if let Err(error) = take(&file) {
            eprintln!("skipping: no read lease here ({error})");
            return;
        }
        assert!(!broken(&file));

        // Under the lease, a non-blocking open for writing fails and breaks it.
        let error = open_for_writing_without_waiting(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        assert!(broken(&file));

        release(&file);
        let writer = open_for_writing_without_waiting(&path).unwrap();
        assert!(!wait_for_writers(&file, Duration::from_millis(20)));
        drop(writer);
        assert!(wait_for_writers(&file, Duration::from_millis(20)));
    }

    #[test]
    fn lease_needs_no_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("active.json");
        std::fs::write(&path, b"{}").unwrap();
        let _writer = OpenOptions::new().append(true).open(&path).unwrap();
        let file = File::open(&path).unwrap();
        let error = take(&file).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
    }
}
