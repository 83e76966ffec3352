//! Finding one reset by the id a user types: a run id such as
//! `20261204_000000` or `20261204_000000_2`, or one of its archive file names,
//! as `history` prints them. Anything else, a path such as `../x` included, is
//! rejected before any file is opened.

use crate::datadir::{ArchiveName, DataDir, Source, is_run_id};
use crate::error::{ErrorKind, failure};
use crate::journal::{self, Entry};

/// The archives of one reset.
#[derive(Debug, Clone)]
pub struct Run {
    pub run_id: String,
    /// The sessions archive (`.json`) file name, when it exists on disk.
    pub sessions: Option<String>,
    /// The takeover requests archive (`.json`) file name, when it exists on disk.
    pub takeovers: Option<String>,
    /// The journal line of the reset; `None` for a legacy archive.
    pub entry: Option<Entry>,
}

impl Run {
    /// Returns the archive file name of `source`, if present.
    pub fn archive(&self, source: Source) -> Option<&str> {
        match source {
            Source::Sessions => self.sessions.as_deref(),
            Source::Takeovers => self.takeovers.as_deref(),
        }
    }
}

/// Parses a user-typed id into a run id, rejecting anything that is not a
/// run id or an archive file name (exit 2).
pub fn parse_id(id: &str) -> anyhow::Result<String> {
    if is_run_id(id) {
        return Ok(id.to_string());
    }
    if let Some(name) = ArchiveName::parse(id) {
        return Ok(name.run_id);
    }
    Err(failure(
        ErrorKind::Usage,
        format!(
            "`{id}` is not a run id (YYYYMMDD_HHMMSS or YYYYMMDD_HHMMSS_N) or an archive file name: use one that `order-reset history` prints"
        ),
    ))
}

/// Finds the reset `id` names, from the journal and the archive files.
/// Fails with [`ErrorKind::NotFound`] when neither has it.
pub fn find(dir: &DataDir, id: &str) -> anyhow::Result<Run> {
    let run_id = parse_id(id)?;
    let entry = journal::read_all(dir)?
        .into_iter()
        .filter_map(|line| line.entry.ok())
        // A restore writes archives of the state it replaced under its own
        // run id, so its line names a run as a reset's does.
        .rfind(|entry| entry.event != "prune" && entry.id.as_deref() == Some(run_id.as_str()));
    let present = |source: Source| {
        let name = source.archive_name(&run_id, true);
        std::fs::symlink_metadata(dir.join(&name))
            .is_ok_and(|metadata| metadata.file_type().is_file())
            .then_some(name)
    };
    let run = Run {
        sessions: present(Source::Sessions),
        takeovers: present(Source::Takeovers),
        entry,
        run_id,
    };
    if run.entry.is_none() && run.sessions.is_none() && run.takeovers.is_none() {
        return Err(failure(
            ErrorKind::NotFound,
            format!(
                "no reset {} in {}: `order-reset history` lists the resets",
                run.run_id,
                dir.path().display()
            ),
        ));
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_run_ids_and_archive_names() {
        assert_eq!(parse_id("20261204_000000").unwrap(), "20261204_000000");
        assert_eq!(parse_id("20261204_000000_2").unwrap(), "20261204_000000_2");
        assert_eq!(
            parse_id("session_history_20261204_000000.json").unwrap(),
            "20261204_000000"
        );
        assert_eq!(
            parse_id("takeover_history_20261204_000000_3.json").unwrap(),
            "20261204_000000_3"
        );
    }

    #[test]
    fn ids_reject_paths() {
        for id in [
            "../x",
            "/etc/passwd",
            "session_history_20261204_000000.json/..",
            "./session_history_20261204_000000.json",
            "20261204",
            "",
        ] {
            let error = parse_id(id).unwrap_err();
            assert_eq!(crate::error::kind_of(&error), ErrorKind::Usage, "{id}");
        }
    }
}
