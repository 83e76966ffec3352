//! The data directory: the names of the files in it, and the names of
//! archives and their run ids.
//!
//! The backend fixes `scan_sessions.json`, `takeover_requests.json` and the
//! legacy `session_history_YYYYMMDD_HHMMSS.json` names. Everything else named
//! here belongs to order-reset.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{ErrorKind, failure, io_failure};

/// Active sessions, written by the backend.
pub const SESSIONS_FILE: &str = "scan_sessions.json";
/// Active takeover requests, written by the backend.
pub const TAKEOVERS_FILE: &str = "takeover_requests.json";
/// Lock file shared with the backend; never replaced or removed.
pub const LOCK_FILE: &str = "order-reset.lock";
/// One JSON line per reset.
pub const JOURNAL_FILE: &str = "order-reset-journal.jsonl";
/// Record of a reset that has written its archives but not yet its journal line.
pub const PENDING_FILE: &str = "order-reset.pending";
/// The reset generation: one decimal integer that every command replacing
/// the active files increases first, so that a backend reloads them.
pub const GENERATION_FILE: &str = "order-reset.generation";
/// Suffix of every temporary file order-reset creates.
pub const TEMP_SUFFIX: &str = ".order-reset-tmp";

/// One of the two active files and the archive family it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Sessions,
    Takeovers,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Sessions, Source::Takeovers];

    /// Returns the active file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Source::Sessions => SESSIONS_FILE,
            Source::Takeovers => TAKEOVERS_FILE,
        }
    }

    fn archive_prefix(self) -> &'static str {
        match self {
            Source::Sessions => "session_history_",
            Source::Takeovers => "takeover_history_",
        }
    }

    /// Returns the archive name for a run id; `valid` is false for the
    /// `.invalid` archive that `--force` writes for unparseable bytes.
    pub fn archive_name(self, run_id: &str, valid: bool) -> String {
        let extension = if valid { "json" } else { "invalid" };
        format!("{}{run_id}.{extension}", self.archive_prefix())
    }

    /// Returns the name of the `.late` archive that keeps what a writer that
    /// ignores the lock wrote into the active file during the reset.
    pub fn late_archive_name(self, run_id: &str) -> String {
        format!("{}{run_id}.late", self.archive_prefix())
    }
}

/// An archive file name taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveName {
    pub source: Source,
    /// `YYYYMMDD_HHMMSS`, with `_N` appended for the Nth reset in one second.
    pub run_id: String,
    /// False for a `.invalid` or `.late` archive, whose content was not
    /// checked.
    pub valid: bool,
    /// True for a `.late` archive.
    pub late: bool,
}

impl ArchiveName {
    /// Parses an archive file name; returns `None` for any other name.
    pub fn parse(name: &str) -> Option<ArchiveName> {
        for source in Source::ALL {
            let Some(rest) = name.strip_prefix(source.archive_prefix()) else {
                continue;
            };
            let (run_id, valid, late) = if let Some(id) = rest.strip_suffix(".json") {
                (id, true, false)
            } else if let Some(id) = rest.strip_suffix(".invalid") {
                (id, false, false)
            } else if let Some(id) = rest.strip_suffix(".late") {
                (id, false, true)
            } else if let Some((id, _)) = rest
                .rsplit_once(".late.")
                .filter(|(_, number)| is_later_number(number))
            {
                // `.late.2` and on: a second writer's file in the same reset.
                (id, false, true)
            } else {
                return None;
            };
            if !is_run_id(run_id) {
                return None;
            }
            return Some(ArchiveName {
                source,
                run_id: run_id.to_string(),
                valid,
                late,
            });
        }
        None
    }
}

/// Checks that `text` is a decimal number of 2 or more without a leading zero.
fn is_later_number(text: &str) -> bool {
    !text.starts_with('0')
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && text.parse::<u32>().is_ok_and(|number| number >= 2)
}

/// Checks the `YYYYMMDD_HHMMSS` or `YYYYMMDD_HHMMSS_N` shape of a run id.
pub fn is_run_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 15 {
        return false;
    }
    let stamp_ok = bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'_'
        && bytes[9..15].iter().all(u8::is_ascii_digit);
    let suffix = &bytes[15..];
    let suffix_ok = suffix.is_empty()
        || (suffix.len() >= 2
            && suffix[0] == b'_'
            && suffix[1] != b'0'
            && suffix[1..].iter().all(u8::is_ascii_digit));
    stamp_ok && suffix_ok
}

/// The checked data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    path: PathBuf,
    owner: (u32, u32),
}

impl DataDir {
    /// Checks that `path` is an existing directory; never creates it.
    pub fn open(path: &Path) -> anyhow::Result<DataDir> {
        let metadata = match fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(failure(
                    ErrorKind::DataDirMissing,
                    format!(
                        "data directory {} does not exist: check --data-dir or ORDER_RESET_DATA_DIR",
                        path.display()
                    ),
                ));
            }
            Err(error) => {
                return Err(io_failure(
                    ErrorKind::DataDirMissing,
                    error,
                    format!("cannot access data directory {}", path.display()),
                ));
            }
        };
        if !metadata.is_dir() {
            return Err(failure(
                ErrorKind::DataDirMissing,
                format!(
                    "data directory {} is not a directory: check --data-dir or ORDER_RESET_DATA_DIR",
                    path.display()
                ),
            ));
        }
        // The backend's user owns the sessions file; the directory itself
        // may belong to root with a group the backend is in.
        let owner = [SESSIONS_FILE, TAKEOVERS_FILE]
            .iter()
            .filter_map(|name| fs::symlink_metadata(path.join(name)).ok())
            .find(|file| file.file_type().is_file())
            .map_or((metadata.uid(), metadata.gid()), |file| {
                (file.uid(), file.gid())
            });
        Ok(DataDir {
            path: path.to_path_buf(),
            owner,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the path of a file in the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Returns the owner and group of `scan_sessions.json`, else of
    /// `takeover_requests.json`, else of the directory. Root gives them to the lock file
    /// and the journal it creates, so that the backend's user can use them.
    pub fn owner(&self) -> (u32, u32) {
        self.owner
    }

    /// Lists the archive files in the directory, sorted by name.
    pub fn archives(&self) -> anyhow::Result<Vec<(ArchiveName, String)>> {
        let entries = fs::read_dir(&self.path).map_err(|error| {
            io_failure(
                ErrorKind::Io,
                error,
                format!("cannot list data directory {}", self.path.display()),
            )
        })?;
        let mut archives = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| {
                io_failure(
                    ErrorKind::Io,
                    error,
                    format!("cannot list data directory {}", self.path.display()),
                )
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if let Some(parsed) = ArchiveName::parse(&name) {
                archives.push((parsed, name));
            }
        }
        archives.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(archives)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_round_trip() {
        let name = Source::Sessions.archive_name("20261204_000000", true);
        assert_eq!(name, "session_history_20261204_000000.json");
        let parsed = ArchiveName::parse(&name).unwrap();
        assert_eq!(parsed.source, Source::Sessions);
        assert_eq!(parsed.run_id, "20261204_000000");
        assert!(parsed.valid);

        let name = Source::Takeovers.archive_name("20261204_000000_2", false);
        assert_eq!(name, "takeover_history_20261204_000000_2.invalid");
        let parsed = ArchiveName::parse(&name).unwrap();
        assert_eq!(parsed.source, Source::Takeovers);
        assert_eq!(parsed.run_id, "20261204_000000_2");
        assert!(!parsed.valid);
        assert!(!parsed.late);

        let name = Source::Sessions.late_archive_name("20261204_000000");
        assert_eq!(name, "session_history_20261204_000000.late");
        let parsed = ArchiveName::parse(&name).unwrap();
        assert!(parsed.late);
        assert!(!parsed.valid);
    }

    #[test]
    fn second_late_archive_name_parses() {
        let parsed = ArchiveName::parse("session_history_20261204_000000.late.2").unwrap();
        assert_eq!(parsed.run_id, "20261204_000000");
        assert!(parsed.late);
        assert!(!parsed.valid);
        for name in [
            "session_history_20261204_000000.late.1",
            "session_history_20261204_000000.late.02",
            "session_history_20261204_000000.late.x",
            "session_history_20261204_000000.late.",
        ] {
            assert_eq!(ArchiveName::parse(name), None, "{name}");
        }
    }

    #[test]
    fn archive_names_reject_other_files() {
        for name in [
            "scan_sessions.json",
            "session_history_.json",
            "session_history_2026120_000000.json",
            "session_history_20261204_000000_0.json",
            "session_history_20261204_000000_.json",
            "session_history_20261204_000000.json.tmp",
            "session_history_../x.json",
        ] {
            assert_eq!(ArchiveName::parse(name), None, "{name}");
        }
    }
}
