//! Detection of resurrected sessions: sessions that the most recent reset
//! archived and that are back in `scan_sessions.json` unchanged or older.
//!
//! A backend that keeps the sessions in memory and writes them back without
//! reloading after a reset puts the archived sessions back. Such a session
//! has the id of a session in that reset's archive and a `last_modified_at`
//! that is not after the end of the reset, because nothing changed it since.
//! A session without a readable `last_modified_at` counts when its text
//! equals the archived one byte for byte.
//!
//! The check costs nothing extra in the common case. The scanner that
//! validates the active file also counts the sessions whose
//! `last_modified_at` is not after the reset (see
//! [`Baseline::modified_cutoff`]), and only when there are such sessions do
//! two more passes run. The first reads the active sessions again and keeps
//! a 64-bit fingerprint of the id of each candidate: a session last modified
//! before the reset ended, or one without a readable time. The second
//! streams the archive to confirm their ids. That pass checks the archive
//! against the SHA-256 its journal line records instead of scanning it
//! again, because the scanner's table of entries would double the memory.
//! Memory is about 10 to 20 bytes per candidate, 16 more per candidate
//! without a time, and at most [`MAX_SAMPLE_IDS`] ids.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use sha2::{Digest, Sha256};

use crate::archive;
use crate::atomic;
use crate::datadir::{DataDir, Source};
use crate::error::{ErrorKind, archive_read_failure, failure, io_failure};
use crate::history::show::reader::{Session, Walker};
use crate::journal::{Entry, Line, hex};
use crate::restore::RESTORE_EVENT;

/// Maximum number of resurrected session ids kept for a report.
pub const MAX_SAMPLE_IDS: usize = 5;

/// The reset that the active sessions are compared with.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub run_id: String,
    /// Time of the reset, RFC 3339, as its journal line records it.
    pub reset_at: String,
    /// File name of its sessions archive.
    pub archive: String,
    /// SHA-256 of the archive, lowercase hex, as the journal line records it.
    archive_sha256: String,
    /// `reset_at` plus the reset's duration. The reset held the lock until
    /// then, so a session that the backend changed after the reset has a
    /// later `last_modified_at`.
    ended_at: DateTime<FixedOffset>,
}

/// Picks the most recent reset in the journal that archived sessions as a
/// `.json` archive. Returns why no comparison can be made when there is no
/// such reset, when a later run completed it after an interruption, or when
/// a restore ran after it.
pub fn find_baseline(lines: &[Line]) -> Result<Baseline, String> {
    let entries: Vec<_> = lines
        .iter()
        .filter_map(|line| line.entry.as_ref().ok())
        .collect();
    let sessions_archive = |entry: &Entry| {
        entry
            .archives
            .iter()
            .find(|record| record.source == Source::Sessions && record.valid && !record.late)
            .cloned()
    };
    let Some(position) = entries
        .iter()
        .rposition(|entry| entry.is_reset() && sessions_archive(entry).is_some())
    else {
        return Err("no reset in the journal archived sessions".to_string());
    };
    let entry = entries[position];
    let later = &entries[position + 1..];
    let run_id = entry.id.clone().unwrap_or_default();

    if entry.recovered {
        // Completing an interrupted reset leaves an active file alone when
        // the backend changed it in between, so its sessions may be active
        // on purpose.
        return Err(format!(
            "reset {run_id} was interrupted and completed by a later run, which can leave its sessions active"
        ));
    }
    if let Some(restore) = later.iter().find(|entry| entry.event == RESTORE_EVENT) {
        return Err(format!(
            "a restore at {} ran after reset {run_id} and may have put its sessions back",
            restore.reset_at
        ));
    }
    let record = sessions_archive(entry).expect("the entry was chosen for its sessions archive");
    if later
        .iter()
        .any(|entry| entry.pruned.contains(&record.file))
    {
        return Err(format!(
            "history prune deleted {}, the sessions archive of reset {run_id}",
            record.file
        ));
    }

    let started = DateTime::parse_from_rfc3339(&entry.reset_at).map_err(|error| {
        format!(
            "the time of reset {run_id}, {:?}, cannot be read: {error}",
            entry.reset_at
        )
    })?;
    let duration = chrono::Duration::milliseconds(entry.duration_ms.min(i64::MAX as u64) as i64);
    Ok(Baseline {
        run_id,
        reset_at: entry.reset_at.clone(),
        archive: record.file,
        archive_sha256: record.sha256,
        ended_at: started + duration,
    })
}

impl Baseline {
    /// Returns the local time that the scanner compares `last_modified_at`
    /// with, so that every session [`Candidates::add`] takes is counted.
    ///
    /// That is the latest local clock reading up to the end of the reset.
    /// It is the reading at the end unless clocks went back shortly before,
    /// in which case it is the reading just before the change. Clock changes
    /// shift by at most two hours, so looking back three hours is enough.
    pub fn modified_cutoff(&self) -> NaiveDateTime {
        let ended = self.ended_at.with_timezone(&Local);
        let look_back = chrono::Duration::hours(3);
        let earlier = (ended - look_back).naive_local() + look_back;
        ended.naive_local().max(earlier)
    }
}

/// Sessions of the active file that may have come back from the baseline
/// reset, kept as fingerprints of their ids.
#[derive(Debug)]
pub struct Candidates {
    ended_at: DateTime<FixedOffset>,
    /// Random keys of the id fingerprints, so that ids cannot be chosen to
    /// collide.
    keys: RandomState,
    /// Candidates with a `last_modified_at` not after the reset's end.
    dated: HashSet<u64>,
    /// Candidates without a readable `last_modified_at`, with the first 128
    /// bits of the SHA-256 of their text.
    undated: HashMap<u64, [u8; 16]>,
}

impl Candidates {
    pub fn new(baseline: &Baseline) -> Candidates {
        Candidates {
            ended_at: baseline.ended_at,
            keys: RandomState::new(),
            dated: HashSet::new(),
            undated: HashMap::new(),
        }
    }

    /// Adds `session` when it is a candidate. A later session with the same
    /// id replaces an earlier one, as in Python's `json.load`.
    pub fn add(&mut self, session: &Session) {
        let id = self.fingerprint(&session.key);
        self.dated.remove(&id);
        self.undated.remove(&id);
        match session.last_modified_at.as_deref().and_then(parse_time) {
            Some(modified) if modified > self.ended_at => {}
            Some(_) => {
                self.dated.insert(id);
            }
            None => {
                let content = session.content_sha256.unwrap_or_default();
                self.undated.insert(id, short_hash(&content));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.dated.len() + self.undated.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn fingerprint(&self, id: &str) -> u64 {
        self.keys.hash_one(id)
    }
}

/// The first pass over the active sessions file, fed the chunks of a pass
/// that validates them.
pub struct ActiveScan {
    walker: Walker,
    candidates: Candidates,
}

impl ActiveScan {
    pub fn new(baseline: &Baseline) -> ActiveScan {
        ActiveScan {
            walker: Walker::hashing_sessions(),
            candidates: Candidates::new(baseline),
        }
    }

    /// Reads the next chunk of a file that the scanner has accepted.
    pub fn feed(&mut self, chunk: &[u8]) {
        let candidates = &mut self.candidates;
        self.walker
            .walk(chunk, &mut |session| candidates.add(&session));
    }

    pub fn finish(self) -> Candidates {
        self.candidates
    }
}

/// Reads the sessions file at `path` and returns its candidates. The caller
/// has checked that the scanner accepts it.
pub fn find_candidates(baseline: &Baseline, path: &std::path::Path) -> anyhow::Result<Candidates> {
    let read_failure = |error| {
        io_failure(
            ErrorKind::Io,
            error,
            format!("cannot read {}", path.display()),
        )
    };
    let Some((mut file, _)) = atomic::open_regular(path).map_err(read_failure)? else {
        return Err(failure(
            ErrorKind::NotFound,
            format!("{} is missing", path.display()),
        ));
    };
    let mut scan = ActiveScan::new(baseline);
    archive::for_each_chunk(&mut file, |chunk| {
        scan.feed(chunk);
        Ok(())
    })
    .map_err(read_failure)?;
    Ok(scan.finish())
}

/// Resurrected sessions found by [`confirm`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub count: u64,
    /// The first ids in archive order, at most [`MAX_SAMPLE_IDS`].
    pub session_ids: Vec<String>,
}

/// A candidate without a time, and whether the archive's last session with
/// its id has the same text.
struct Undated {
    content: [u8; 16],
    matched: bool,
}

/// Streams the baseline's sessions archive and counts the candidates whose
/// id it contains, or, for a candidate without a time, whose text it
/// contains unchanged. Reads nothing when there are no candidates. Fails
/// when the archive is missing or its SHA-256 is not the recorded one, since
/// the walker relies on input that the scanner accepted when it was written.
pub fn confirm(
    dir: &DataDir,
    baseline: &Baseline,
    candidates: Candidates,
) -> anyhow::Result<Found> {
    let mut found = Found::default();
    if candidates.is_empty() {
        return Ok(found);
    }
    let path = dir.join(&baseline.archive);
    let read_failure = archive_read_failure(&path);
    let Some((mut file, _)) = atomic::open_regular(&path).map_err(read_failure)? else {
        return Err(failure(
            ErrorKind::NotFound,
            format!(
                "archive {} of reset {} is missing",
                path.display(),
                baseline.run_id
            ),
        ));
    };

    let Candidates {
        keys,
        mut dated,
        undated,
        ..
    } = candidates;
    let mut undated: HashMap<u64, Undated> = undated
        .into_iter()
        .map(|(id, content)| {
            let state = Undated {
                content,
                matched: false,
            };
            (id, state)
        })
        .collect();
    let hash_content = !undated.is_empty();
    // (fingerprint, id) of the first resurrected sessions.
    let mut sample: Vec<(u64, String)> = Vec::new();
    let mut on_session = |session: Session| {
        let id = keys.hash_one(&session.key);
        if dated.remove(&id) {
            found.count += 1;
            if sample.len() < MAX_SAMPLE_IDS {
                sample.push((id, session.key));
            }
        } else if let Some(state) = undated.get_mut(&id) {
            // The last session with a repeated id is the one Python reads.
            state.matched = session
                .content_sha256
                .is_some_and(|content| short_hash(&content) == state.content);
            let listed = sample.iter().any(|(listed, _)| *listed == id);
            if state.matched && !listed && sample.len() < MAX_SAMPLE_IDS {
                sample.push((id, session.key));
            } else if !state.matched && listed {
                sample.retain(|(listed, _)| *listed != id);
            }
        }
    };
    let mut walker = if hash_content {
        Walker::hashing_sessions()
    } else {
        Walker::new()
    };
    let mut hasher = Sha256::new();
    archive::for_each_chunk(&mut file, |chunk| {
        hasher.update(chunk);
        walker.walk(chunk, &mut on_session);
        Ok(())
    })
    .map_err(read_failure)?;
    let sha256 = hex(&hasher.finalize());
    if sha256 != baseline.archive_sha256 {
        return Err(failure(
            ErrorKind::InvalidData,
            format!(
                "archive {} has SHA-256 {sha256}, not the {} that reset {} recorded, so it was changed after the reset: `order-reset history verify` lists such changes",
                path.display(),
                baseline.archive_sha256,
                baseline.run_id
            ),
        ));
    }
    found.count += undated.values().filter(|state| state.matched).count() as u64;
    found.session_ids = sample.into_iter().map(|(_, key)| key).collect();
    Ok(found)
}

fn short_hash(content: &[u8; 32]) -> [u8; 16] {
    let mut short = [0; 16];
    short.copy_from_slice(&content[..16]);
    short
}

/// Parses a `last_modified_at` value. The backend writes Python's
/// `datetime.now().isoformat()`, a local time without offset such as
/// `2025-12-04T12:35:14.126823`, which is read in the local time zone of
/// this process. A time with an offset (RFC 3339) is read as it is.
///
/// A local time that occurs twice, in the hour repeated when clocks go back,
/// is taken at its earlier occurrence, which can only add a candidate that
/// the archive then has to confirm. A local time that does not exist, in the
/// hour skipped when clocks go forward, is not a readable time.
pub fn parse_time(text: &str) -> Option<DateTime<FixedOffset>> {
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Local
                .from_local_datetime(&naive)
                .earliest()
                .map(|time| time.fixed_offset());
        }
    }
    DateTime::parse_from_rfc3339(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{ArchiveRecord, Entry};

    fn reset_line(number: usize, run_id: &str, archived: bool) -> Line {
        let mut entry = Entry {
            event: "reset".to_string(),
            id: Some(run_id.to_string()),
            reset_at: "2026-12-04T00:00:00+00:00".to_string(),
            duration_ms: 1500,
            ..Entry::default()
        };
        if archived {
            entry.archives.push(ArchiveRecord {
                file: Source::Sessions.archive_name(run_id, true),
                source: Source::Sessions,
                valid: true,
                late: false,
                bytes: 2,
                sha256: String::new(),
                entries: Some(1),
            });
        }
        Line {
            number,
            entry: Ok(entry),
        }
    }

    fn session(key: &str, modified: Option<&str>, content: u8) -> Session {
        Session {
            key: key.to_string(),
            last_modified_at: modified.map(str::to_string),
            content_sha256: Some([content; 32]),
            ..Session::default()
        }
    }

    #[test]
    fn baseline_skips_resets_without_sessions_archive() {
        let lines = [
            reset_line(1, "20261203_000000", true),
            reset_line(2, "20261204_000000", false),
        ];
        let baseline = find_baseline(&lines).unwrap();
        assert_eq!(baseline.run_id, "20261203_000000");
        assert_eq!(baseline.archive, "session_history_20261203_000000.json");
        assert_eq!(
            baseline.ended_at,
            DateTime::parse_from_rfc3339("2026-12-04T00:00:01.5+00:00").unwrap()
        );
    }

    #[test]
    fn baseline_missing_after_restore_or_recovery() {
        assert!(find_baseline(&[]).is_err());
        assert!(find_baseline(&[reset_line(1, "20261204_000000", false)]).is_err());

        let mut restore = reset_line(2, "20261204_010000", false);
        if let Ok(entry) = &mut restore.entry {
            entry.event = RESTORE_EVENT.to_string();
        }
        let reason = find_baseline(&[reset_line(1, "20261204_000000", true), restore]).unwrap_err();
        assert!(reason.contains("restore"), "{reason}");

        let mut recovered = reset_line(1, "20261204_000000", true);
        if let Ok(entry) = &mut recovered.entry {
            entry.recovered = true;
        }
        let reason = find_baseline(&[recovered]).unwrap_err();
        assert!(reason.contains("interrupted"), "{reason}");

        let mut prune = reset_line(3, "20261205_000000", false);
        if let Ok(entry) = &mut prune.entry {
            entry.event = crate::journal::PRUNE_EVENT.to_string();
            entry.pruned = vec!["session_history_20261204_000000.json".to_string()];
        }
        let reason = find_baseline(&[
            reset_line(1, "20261204_000000", true),
            reset_line(2, "20261204_120000", false),
            prune,
        ])
        .unwrap_err();
        assert!(reason.contains("prune deleted"), "{reason}");
    }

    #[test]
    fn candidates_follow_time_and_last_duplicate() {
        let baseline = find_baseline(&[reset_line(1, "20261204_000000", true)]).unwrap();
        let mut candidates = Candidates::new(&baseline);
        candidates.add(&session("old", Some("2026-12-03T23:59:59+00:00"), 1));
        candidates.add(&session(
            "during",
            Some("2026-12-04T00:00:01.000001+00:00"),
            1,
        ));
        candidates.add(&session("new", Some("2026-12-04T00:00:01.500001+00:00"), 1));
        candidates.add(&session("untimed", Some("yesterday"), 1));
        candidates.add(&session("missing", None, 1));
        assert_eq!(candidates.dated.len(), 2);
        assert_eq!(candidates.undated.len(), 2);

        candidates.add(&session("old", Some("2026-12-05T00:00:00+00:00"), 1));
        assert_eq!(candidates.len(), 3, "a later duplicate replaces the first");
    }

    #[test]
    fn parse_time_reads_python_isoformat() {
        let utc = |text: &str| DateTime::parse_from_rfc3339(text).unwrap();
        // The unit tests run with the time zone of the machine, so only
        // times with an offset, and the difference of local ones, are exact.
        let with_fraction = parse_time("2025-12-04T12:35:14.126823").unwrap();
        let without = parse_time("2025-12-04T12:35:14").unwrap();
        assert_eq!((with_fraction - without).num_microseconds(), Some(126_823));
        assert_eq!(parse_time("2025-12-04 12:35:14"), Some(without));
        assert_eq!(
            parse_time("2025-12-04T12:35:14+01:00"),
            Some(utc("2025-12-04T11:35:14+00:00"))
        );
        assert_eq!(parse_time("2025-12-04"), None);
        assert_eq!(parse_time("1733315714"), None);
        assert_eq!(parse_time(""), None);
    }
}
