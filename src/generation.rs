//! The reset generation, `order-reset.generation`: one decimal integer and a
//! newline. A missing file is generation 0.
//!
//! Every command that replaces the active files (`reset`, `restore`, and the
//! completion of an interrupted run) increases the number under the exclusive
//! lock before it changes any active file. A backend that keeps the data in
//! memory reads the number under the same lock before each write. When it
//! differs from the number at the backend's last load, the files were
//! replaced since then, and the backend must reload them instead of writing
//! its memory back. Because the number goes up before the files change, a
//! crash in between costs the backend one unneeded reload, never a missed one.
//!
//! The file is replaced atomically: a synced temporary file renamed over it,
//! then a directory sync. When root writes it, it gets the owner and group of
//! `scan_sessions.json`, as the lock file and the journal do.

use std::fs::Permissions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::atomic::{self, TempFile};
use crate::datadir::{DataDir, GENERATION_FILE};
use crate::error::{ErrorKind, failure, io_failure};

/// Mode of a new generation file: readable by anyone, so that a backend and
/// a monitoring user can read it whatever their group.
const NEW_FILE_MODE: u32 = 0o644;

/// Maximum number of bytes read from the file. A valid file has at most 20
/// digits and some whitespace, so anything longer is invalid.
const MAX_BYTES: u64 = 64;

/// The generation of one data directory, read under the exclusive lock by a
/// command that may replace the active files.
#[derive(Debug)]
pub struct Generation {
    value: u64,
    bumped: bool,
}

impl Generation {
    /// Reads the generation. Fails with [`ErrorKind::InvalidData`] when the
    /// file is not one decimal integer, so call it before the command changes
    /// anything.
    pub fn read(dir: &DataDir) -> anyhow::Result<Generation> {
        Ok(Generation {
            value: read(dir)?,
            bumped: false,
        })
    }

    /// Returns the current generation, increased if this command bumped it.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// Increases the generation by one and writes it durably. Call it before
    /// the first change to an active file. Later calls by the same command do
    /// nothing, because the command holds the lock from the first bump to its
    /// end, so no backend can see the state in between.
    pub fn bump(&mut self, dir: &DataDir) -> anyhow::Result<()> {
        if self.bumped {
            return Ok(());
        }
        let path = dir.join(GENERATION_FILE);
        let next = self.value.checked_add(1).ok_or_else(|| {
            failure(
                ErrorKind::InvalidData,
                format!(
                    "generation file {} holds {}, which cannot be increased; nothing was changed: {}",
                    path.display(),
                    self.value,
                    fix_hint(dir)
                ),
            )
        })?;
        write(dir, next)?;
        log::debug!("increased the generation in {} to {next}", path.display());
        self.value = next;
        self.bumped = true;
        Ok(())
    }
}

/// Reads the generation, 0 when the file does not exist. Fails with
/// [`ErrorKind::InvalidData`], naming the file and the fix, when its content
/// is not one decimal integer or it is not a regular file.
pub fn read(dir: &DataDir) -> anyhow::Result<u64> {
    let path = dir.join(GENERATION_FILE);
    let opened = atomic::open_regular(&path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::Other {
            // A symbolic link, directory or FIFO at the name.
            failure(
                ErrorKind::InvalidData,
                format!(
                    "cannot use generation file {}: {error}; nothing was changed: remove it, then {}",
                    path.display(),
                    fix_hint(dir)
                ),
            )
        } else {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot open generation file {}", path.display()),
            )
        }
    })?;
    let Some((file, _)) = opened else {
        return Ok(0);
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot read generation file {}", path.display()),
            )
        })?;
    parse(&bytes).ok_or_else(|| {
        let content = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_BYTES as usize)]);
        let cut = if bytes.len() as u64 > MAX_BYTES {
            " (cut)"
        } else {
            ""
        };
        failure(
            ErrorKind::InvalidData,
            format!(
                "generation file {} is invalid: it contains {content:?}{cut}, expected one decimal integer such as \"12\\n\"; nothing was changed: {}",
                path.display(),
                fix_hint(dir)
            ),
        )
    })
}

/// Returns the fix for a generation file that cannot be used. Any number
/// that no backend can have read works, because a backend reloads whenever
/// the number differs from its own. The Unix time in seconds is far above
/// any count of resets, so it is such a number.
fn fix_hint(dir: &DataDir) -> String {
    format!(
        "write a number that no backend can have read yet, such as the current Unix time with `date +%s > {}`, then run the command again",
        dir.join(GENERATION_FILE).display()
    )
}

/// Parses the file content: ASCII digits, with optional ASCII whitespace
/// before and after. Returns `None` for anything else, an empty file and a
/// number above `u64::MAX` included.
fn parse(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Replaces the generation file with `value` through a synced temporary
/// file, then syncs the directory.
fn write(dir: &DataDir, value: u64) -> anyhow::Result<()> {
    let path = dir.join(GENERATION_FILE);
    let temp = TempFile::create(dir, GENERATION_FILE).map_err(|error| {
        io_failure(
            ErrorKind::CannotCreate,
            error,
            format!("cannot create a temporary file for {}", path.display()),
        )
    })?;
    let existing = std::fs::symlink_metadata(&path)
        .ok()
        .filter(|metadata| metadata.file_type().is_file());
    let mode = existing
        .as_ref()
        .map_or(NEW_FILE_MODE, |metadata| metadata.mode() & 0o666);
    let result = (|| {
        temp.file().write_all(format!("{value}\n").as_bytes())?;
        if atomic::is_root() {
            let (uid, gid) = dir.owner();
            temp.set_owner_and_mode(uid, gid, mode)?;
        } else {
            temp.file().set_permissions(Permissions::from_mode(mode))?;
        }
        temp.sync()
    })();
    result.map_err(|error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot write generation file {}", path.display()),
        )
    })?;
    temp.persist(dir, GENERATION_FILE, true)
        .and_then(|()| atomic::sync_dir(dir.path()))
        .map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot replace generation file {}", path.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_digits_with_whitespace() {
        assert_eq!(parse(b"0\n"), Some(0));
        assert_eq!(parse(b"12\n"), Some(12));
        assert_eq!(parse(b"  7 \r\n"), Some(7));
        assert_eq!(parse(b"0042"), Some(42));
        assert_eq!(parse(b"18446744073709551615\n"), Some(u64::MAX));
    }

    #[test]
    fn parse_rejects_anything_else() {
        for bytes in [
            &b""[..],
            b"\n",
            b"-1\n",
            b"+1\n",
            b"1 2\n",
            b"1_000\n",
            b"0x10\n",
            b"abc\n",
            b"18446744073709551616\n",
            "\u{0663}\n".as_bytes(),
            b"\xff\n",
        ] {
            assert_eq!(parse(bytes), None, "{bytes:?}");
        }
    }
}
