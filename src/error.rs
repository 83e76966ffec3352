//! Error kinds that choose the exit code and the JSON `error_kind`.
//!
//! Most errors are plain `anyhow` chains with context at each layer. The few
//! conditions that a cron wrapper or a script has to tell apart are raised as a
//! [`Failure`] carrying an [`ErrorKind`]; an `io::Error` anywhere in the chain
//! maps to a kind when no `Failure` is present.

use std::fmt;
use std::io;

/// The class of a failed run, one per documented exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Invalid command line or environment (exit 2).
    Usage,
    /// A data file is not valid JSON or not in the backend's shape (exit 65).
    InvalidData,
    /// The data directory does not exist or is not a directory (exit 66).
    DataDirMissing,
    /// A reset or archive named on the command line does not exist (exit 66).
    NotFound,
    /// An output file (archive, temporary file, journal) cannot be created (exit 73).
    CannotCreate,
    /// Reading, writing or syncing failed (exit 74).
    Io,
    /// The lock stayed busy, or a file changed under a writer that ignores the lock (exit 75).
    LockBusy,
    /// The operating system denied access (exit 77).
    PermissionDenied,
    /// Anything else (exit 1).
    Other,
}

impl ErrorKind {
    /// Returns the process exit code, following sysexits.h where it has one.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => 2,
            ErrorKind::InvalidData => 65,
            ErrorKind::DataDirMissing | ErrorKind::NotFound => 66,
            ErrorKind::CannotCreate => 73,
            ErrorKind::Io => 74,
            ErrorKind::LockBusy => 75,
            ErrorKind::PermissionDenied => 77,
            ErrorKind::Other => 1,
        }
    }

    /// Returns the stable name printed as `error_kind` in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::InvalidData => "invalid_data",
            ErrorKind::DataDirMissing => "data_dir_missing",
            ErrorKind::NotFound => "not_found",
            ErrorKind::CannotCreate => "cannot_create",
            ErrorKind::Io => "io_error",
            ErrorKind::LockBusy => "lock_busy",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Other => "other",
        }
    }
}

/// An error whose kind is known where it is raised.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Builds an `anyhow::Error` that carries `kind`.
pub fn failure(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        kind,
        message: message.into(),
    })
}

/// Wraps an I/O error with a message, choosing `kind` unless the operating
/// system denied access (exit 77) or the disk is full or read-only (exit 74).
pub fn io_failure(kind: ErrorKind, error: io::Error, message: impl Into<String>) -> anyhow::Error {
    let kind = match error.kind() {
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::StorageFull | io::ErrorKind::ReadOnlyFilesystem => ErrorKind::Io,
        _ if error.raw_os_error() == Some(libc::EPERM) => ErrorKind::PermissionDenied,
        _ => kind,
    };
    anyhow::Error::new(error).context(Failure {
        kind,
        message: message.into(),
    })
}

/// Returns a function that turns an I/O error while reading the archive at `path` into the
/// failure "cannot read archive PATH".
pub fn archive_read_failure(
    path: &std::path::Path,
) -> impl Fn(io::Error) -> anyhow::Error + Copy + '_ {
    move |error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot read archive {}", path.display()),
        )
    }
}

/// Finds the kind of an error chain: the outermost [`Failure`], else the
/// first `io::Error`, else [`ErrorKind::Other`].
pub fn kind_of(error: &anyhow::Error) -> ErrorKind {
    // anyhow's own downcast also finds a `Failure` attached as context, which
    // iterating `chain()` would not.
    if let Some(failure) = error.downcast_ref::<Failure>() {
        return failure.kind;
    }
    for cause in error.chain() {
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            return match io_error.kind() {
                io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Io,
            };
        }
    }
    ErrorKind::Other
}

/// Formats an error chain on one line, outermost first, as `a: b: c`.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        // A context that already repeats its cause adds nothing.
        if parts.last().is_some_and(|last| last.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct() {
        let kinds = [
            ErrorKind::Usage,
            ErrorKind::InvalidData,
            ErrorKind::DataDirMissing,
            ErrorKind::NotFound,
            ErrorKind::CannotCreate,
            ErrorKind::Io,
            ErrorKind::LockBusy,
            ErrorKind::PermissionDenied,
            ErrorKind::Other,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|kind| kind.exit_code()).collect();
        codes.sort_unstable();
        assert_eq!(codes, vec![1, 2, 65, 66, 66, 73, 74, 75, 77]);
    }

    #[test]
    fn io_failure_maps_permission_denied() {
        let error = io::Error::from_raw_os_error(libc::EACCES);
        let wrapped = io_failure(ErrorKind::CannotCreate, error, "x");
        assert_eq!(kind_of(&wrapped), ErrorKind::PermissionDenied);
    }

    #[test]
    fn io_failure_maps_disk_full_to_io() {
        let error = io::Error::from_raw_os_error(libc::ENOSPC);
        let wrapped = io_failure(ErrorKind::CannotCreate, error, "x");
        assert_eq!(kind_of(&wrapped), ErrorKind::Io);
    }

    #[test]
    fn kind_of_finds_failure_used_as_context() {
        let error = io::Error::other("is a symbolic link");
        let wrapped = io_failure(ErrorKind::InvalidData, error, "cannot open x").context("outer");
        assert_eq!(kind_of(&wrapped), ErrorKind::InvalidData);
        assert_eq!(
            one_line(&wrapped),
            "outer: cannot open x: is a symbolic link"
        );
    }

    #[test]
    fn kind_of_sees_through_context() {
        let error = failure(ErrorKind::LockBusy, "busy").context("outer");
        assert_eq!(kind_of(&error), ErrorKind::LockBusy);
        assert_eq!(one_line(&error), "outer: busy");
    }
}
