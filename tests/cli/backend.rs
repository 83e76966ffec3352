//! Cooperation with the backend: the generation file, the Python module in
//! `examples/backend` driven by real python3 processes, and the detection of
//! sessions that a writer ignoring the protocol puts back after a reset.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use crate::common::{
    DataDir, GENERATION, LOCK, SESSIONS, bare_command, code, count_from_env, is_root, sample_data,
    stderr, stdout,
};

/// Time of the reset in the tests that fix the clock.
const RESET_AT: &str = "2026-12-04T00:00:00+00:00";
const RESET_ID: &str = "20261204_000000";

fn python3_available() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!("skipping: python3 is not installed");
    }
    found
}

fn support_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/backend")
}

/// Returns a python3 command in UTC, the time zone the binary runs in here,
/// so that the naive local times the scripts write match the reset times.
/// It writes no `__pycache__` into the checkout.
fn python3() -> Command {
    let mut command = Command::new("python3");
    command
        .env("TZ", "UTC")
        .env("PYTHONPATH", module_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

fn run_at(dir: &DataDir, now: &str, args: &[&str]) -> Output {
    dir.command(args)
        .env("ORDER_RESET_NOW", now)
        .output()
        .expect("run order-reset")
}

/// Returns the exit code and the JSON document of a run with `--json`.
fn json_of(output: &Output) -> (i32, Value) {
    let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not one JSON document ({error}): {}\nstderr: {}",
            stdout(output),
            stderr(output)
        )
    });
    (code(output), value)
}

/// Runs with `--json` at `now` and returns the exit code and the document.
fn json_at(dir: &DataDir, now: &str, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    json_of(&run_at(dir, now, &all))
}

/// Returns the generation file's content, or `None` when it is missing.
fn generation_file(dir: &DataDir) -> Option<String> {
    fs::read_to_string(dir.file(GENERATION)).ok()
}

/// Returns the top-level object of a JSON file.
fn object(path: &Path) -> serde_json::Map<String, Value> {
    let bytes = fs::read(path).unwrap();
    let value: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|error| panic!("{} is not valid JSON: {error}", path.display()));
    value.as_object().unwrap().clone()
}

// The generation file.

#[test]
fn generation_counts_replacing_runs() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);

    let (exit, report) = json_at(&dir, RESET_AT, &["reset", "--dry-run"]);
    assert_eq!(exit, 0);
    assert_eq!(report["generation"], json!(0));
    assert_eq!(generation_file(&dir), None, "a dry run creates no file");

    let (exit, report) = json_at(&dir, RESET_AT, &["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["generation"], json!(1));
    assert_eq!(generation_file(&dir).as_deref(), Some("1\n"));
    assert_eq!(dir.mode(GENERATION), 0o644);

    let (exit, report) = json_at(&dir, RESET_AT, &["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["archived_to"], json!(null));
    assert_eq!(report["generation"], json!(1), "nothing replaced, no bump");
    assert_eq!(generation_file(&dir).as_deref(), Some("1\n"));

    let (exit, report) = dir.run_json(&["status"]);
    assert_eq!(exit, 0);
    assert_eq!(report["generation"], json!(1));
    assert_eq!(report["generation_error"], json!(null));
    let output = dir.run(&["status"]);
    assert!(
        stdout(&output).contains("\ngeneration         1\n"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn generation_rises_before_active_files_change() {
    let original = fs::read(sample_data().join(SESSIONS)).unwrap();

    let dir = DataDir::new();
    dir.write(SESSIONS, &original);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_FAILPOINT", "after-copy:exit")
        .output()
        .unwrap();
    assert_eq!(code(&output), 86);
    assert_eq!(generation_file(&dir), None, "nothing changed, no bump");
    assert_eq!(dir.read(SESSIONS), original);

    let dir = DataDir::new();
    dir.write(SESSIONS, &original);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_FAILPOINT", "after-pending:exit")
        .output()
        .unwrap();
    assert_eq!(code(&output), 86);
    assert_eq!(
        generation_file(&dir).as_deref(),
        Some("1\n"),
        "bumped before the pending record"
    );
    assert_eq!(dir.read(SESSIONS), original, "active file not changed yet");
    assert!(dir.file("order-reset.pending").exists());

    // The next reset completes the interrupted one, which empties the active
    // file, and has nothing of its own to reset: one bump for the command.
    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert!(report["recovered_run_id"].is_string(), "{report}");
    assert_eq!(report["generation"], json!(2));
    assert_eq!(generation_file(&dir).as_deref(), Some("2\n"));
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn restore_raises_generation() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    let (exit, _) = json_at(&dir, RESET_AT, &["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(generation_file(&dir).as_deref(), Some("1\n"));

    let (exit, report) = dir.run_json(&["restore", RESET_ID, "--dry-run"]);
    assert_eq!(exit, 0);
    assert_eq!(report["generation"], json!(1));
    assert_eq!(generation_file(&dir).as_deref(), Some("1\n"));

    // Stopped right before the active file is replaced: already bumped.
    let output = dir
        .command(&["restore", RESET_ID])
        .env("ORDER_RESET_FAILPOINT", "after-archives:exit")
        .output()
        .unwrap();
    assert_eq!(code(&output), 86, "{}", stderr(&output));
    assert_eq!(generation_file(&dir).as_deref(), Some("2\n"));
    assert_eq!(dir.read(SESSIONS), b"{}");

    let (exit, report) = dir.run_json(&["restore", RESET_ID]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["sessions_restored"], json!(5));
    assert_eq!(report["generation"], json!(3));
    assert_eq!(generation_file(&dir).as_deref(), Some("3\n"));

    // Rejected without --merge, because the active file is no longer empty.
    let (exit, _) = dir.run_json(&["restore", RESET_ID]);
    assert_eq!(exit, 1);
    assert_eq!(generation_file(&dir).as_deref(), Some("3\n"));
}

#[test]
fn invalid_generation_stops_reset() {
    let dir = DataDir::new();
    let original = fs::read(sample_data().join(SESSIONS)).unwrap();
    dir.write(SESSIONS, &original);
    dir.write(GENERATION, "abc\n");
    // The lock file is created before the generation is read.
    let names_but_lock = || {
        let mut names = dir.names();
        names.retain(|name| name != LOCK);
        names
    };
    let before = names_but_lock();

    for args in [&["reset"][..], &["reset", "--dry-run"]] {
        let output = dir.run(args);
        assert_eq!(code(&output), 65, "{args:?}");
        let message = stderr(&output);
        assert!(
            message.contains(&format!(
                "generation file {} is invalid",
                dir.file(GENERATION).display()
            )),
            "{message}"
        );
        assert!(message.contains("\"abc\\n\""), "{message}");
        assert!(message.contains("date +%s >"), "{message}");
    }
    let (exit, report) = dir.run_json(&["restore", "20260301_000000"]);
    assert_eq!(exit, 65, "{report}");
    assert_eq!(names_but_lock(), before, "no file created or removed");
    assert_eq!(dir.read(SESSIONS), original);
    assert_eq!(generation_file(&dir).as_deref(), Some("abc\n"));

    let (exit, report) = dir.run_json(&["status"]);
    assert_eq!(exit, 0);
    assert_eq!(report["generation"], json!(null));
    let error = report["generation_error"].as_str().unwrap();
    assert!(error.contains("is invalid"), "{error}");

    // The documented repair: a number no backend can have read.
    dir.write(GENERATION, "1733300000\n");
    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["generation"], json!(1_733_300_001u64));
    assert_eq!(generation_file(&dir).as_deref(), Some("1733300001\n"));
}

#[test]
fn generation_symlink_is_rejected() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    let outside = tempfile::NamedTempFile::new().unwrap();
    fs::write(outside.path(), "5\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.file(GENERATION)).unwrap();

    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 65);
    assert!(
        stderr(&output).contains("symbolic link"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read_to_string(outside.path()).unwrap(), "5\n");
    assert!(dir.names_with("session_history_").is_empty());
}

#[test]
fn generation_file_gets_data_owner() {
    if !is_root() {
        eprintln!("skipping: changing owners needs root");
        return;
    }
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    std::os::unix::fs::chown(dir.file(SESSIONS), Some(4321), Some(4322)).unwrap();
    let (exit, _) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(dir.owner(GENERATION), (4321, 4322));
    assert_eq!(dir.mode(GENERATION), 0o644);

    // A mode the administrator chose is kept.
    fs::set_permissions(dir.file(GENERATION), fs::Permissions::from_mode(0o640)).unwrap();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    std::os::unix::fs::chown(dir.file(SESSIONS), Some(4321), Some(4322)).unwrap();
    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["generation"], json!(2));
    assert_eq!(dir.owner(GENERATION), (4321, 4322));
    assert_eq!(dir.mode(GENERATION), 0o640);
}

// Resurrection detection with fixed files and clock.

/// Formats one session as `json.dump(indent=2)` lays it out at depth 1.
fn session_text(id: &str, status: &str, modified: Option<&str>) -> String {
    let mut text = format!("{{\n    \"session_id\": \"{id}\",\n    \"status\": \"{status}\"");
    if let Some(modified) = modified {
        text.push_str(&format!(",\n    \"last_modified_at\": \"{modified}\""));
    }
    text.push_str("\n  }");
    text
}

/// Joins session texts into a sessions file.
fn sessions_file(sessions: &[(&str, String)]) -> String {
    let members: Vec<String> = sessions
        .iter()
        .map(|(id, text)| format!("  \"{id}\": {text}"))
        .collect();
    format!("{{\n{}\n}}", members.join(",\n"))
}

#[test]
fn resurrection_compares_time_and_content() {
    let dir = DataDir::new();
    let archived = [
        (
            "a",
            session_text("a", "draft", Some("2026-12-03T10:00:00.000001")),
        ),
        ("b", session_text("b", "draft", Some("2026-12-03T11:00:00"))),
        ("c", session_text("c", "approved", None)),
        ("d", session_text("d", "approved", None)),
        ("e", session_text("e", "approved", Some("yesterday"))),
    ];
    dir.write(SESSIONS, sessions_file(&archived));
    let (exit, _) = json_at(&dir, RESET_AT, &["reset"]);
    assert_eq!(exit, 0);

    let active = [
        // Unchanged, and older than the reset: resurrected.
        ("a", archived[0].1.clone()),
        // Changed after the reset: the backend worked on it again.
        (
            "b",
            session_text("b", "approved", Some("2026-12-04T08:00:00")),
        ),
        // No time, same text: resurrected.
        ("c", archived[2].1.clone()),
        // No time, other text: changed.
        ("d", session_text("d", "completed", None)),
        // Unreadable time, same text: resurrected.
        ("e", archived[4].1.clone()),
        // Old, but not in the archive.
        ("f", session_text("f", "draft", Some("2026-12-01T09:00:00"))),
    ];
    dir.write(SESSIONS, sessions_file(&active));

    let (exit, report) = json_at(&dir, "2026-12-04T09:00:00+00:00", &["status"]);
    assert_eq!(exit, 2);
    let resurrection = &report["resurrection"];
    assert_eq!(resurrection["checked"], json!(true));
    assert_eq!(resurrection["count"], json!(3));
    assert_eq!(resurrection["session_ids"], json!(["a", "c", "e"]));
    assert_eq!(resurrection["run_id"], json!(RESET_ID));
    assert_eq!(resurrection["error"], json!(null));
    assert_eq!(report["check"]["state"], json!("CRITICAL"));
    assert_eq!(report["check"]["exit_code"], json!(2));
}

#[test]
fn resurrection_uses_local_time() {
    if !Path::new("/usr/share/zoneinfo/Europe/Berlin").exists() {
        eprintln!("skipping: the time zone database is not installed");
        return;
    }
    let dir = DataDir::new();
    // 00:30 naive is after a reset at 00:00 UTC when read in UTC, and before
    // it when read in Berlin, which is UTC+1 in December.
    let sessions = sessions_file(&[("a", session_text("a", "draft", Some("2026-12-04T00:30:00")))]);
    dir.write(SESSIONS, &sessions);
    let (exit, _) = json_at(&dir, RESET_AT, &["reset"]);
    assert_eq!(exit, 0);
    dir.write(SESSIONS, &sessions);

    let (exit, report) = dir.run_json(&["status"]);
    assert_eq!(exit, 0);
    assert_eq!(report["resurrection"]["count"], json!(0));
    let output = dir
        .command(&["--json", "status"])
        .env("TZ", "Europe/Berlin")
        .output()
        .unwrap();
    let (exit, report) = json_of(&output);
    assert_eq!(exit, 2);
    assert_eq!(report["resurrection"]["count"], json!(1));
}

#[test]
fn restore_after_reset_is_not_checked() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    let (exit, _) = json_at(&dir, RESET_AT, &["reset"]);
    assert_eq!(exit, 0);
    let (exit, _) = dir.run_json(&["restore", RESET_ID]);
    assert_eq!(exit, 0);

    let (exit, report) = dir.run_json(&["status"]);
    assert_eq!(exit, 0, "restored sessions are back on purpose");
    let resurrection = &report["resurrection"];
    assert_eq!(resurrection["checked"], json!(false));
    assert_eq!(resurrection["count"], json!(0));
    let reason = resurrection["not_checked"].as_str().unwrap();
    assert!(reason.contains("restore"), "{reason}");
    assert_eq!(report["check"], json!(null));
}

#[test]
fn legacy_archives_are_not_checked() {
    let dir = DataDir::new();
    let sessions = fs::read(sample_data().join(SESSIONS)).unwrap();
    dir.write(SESSIONS, &sessions);
    dir.copy_in(
        &sample_data().join("session_history_20260301_000000.json"),
        "session_history_20260301_000000.json",
    );
    let (exit, report) = dir.run_json(&["status"]);
    assert_eq!(exit, 0);
    assert_eq!(report["resurrection"]["checked"], json!(false));
    assert_eq!(report["resurrection"]["run_id"], json!(null));

    let (exit, report) = json_at(&dir, RESET_AT, &["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["resurrected_sessions"], json!(null));
    assert_eq!(report["resurrected_from"], json!(null));
}

#[test]
fn unusable_archive_makes_status_unknown() {
    let sessions = fs::read(sample_data().join(SESSIONS)).unwrap();
    let archive = format!("session_history_{RESET_ID}.json");
    // Removed, or changed by one byte after the reset.
    for (remove, expected) in [(true, "is missing"), (false, "history verify")] {
        let dir = DataDir::new();
        dir.write(SESSIONS, &sessions);
        let (exit, _) = json_at(&dir, RESET_AT, &["reset"]);
        assert_eq!(exit, 0);
        dir.write(SESSIONS, &sessions);
        if remove {
            fs::remove_file(dir.file(&archive)).unwrap();
        } else {
            let mut changed = dir.read(&archive);
            changed.push(b'\n');
            dir.write(&archive, changed);
        }

        let (exit, report) = dir.run_json(&["status"]);
        assert_eq!(exit, 3, "{expected}");
        let error = report["resurrection"]["error"].as_str().unwrap();
        assert!(error.contains(expected), "{error}");
        assert_eq!(report["resurrection"]["count"], json!(0));
        assert_eq!(report["check"]["state"], json!("UNKNOWN"));
    }
}

// A writer that ignores the protocol.

/// A running `stale_writer.py`.
struct StaleWriter {
    child: Child,
    lines: BufReader<ChildStdout>,
}

impl StaleWriter {
    fn start(dir: &DataDir, count: usize) -> StaleWriter {
        let mut child = python3()
            .arg(support_script("stale_writer.py"))
            .arg(dir.path())
            .arg(count.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start stale_writer.py");
        let lines = BufReader::new(child.stdout.take().unwrap());
        let mut writer = StaleWriter { child, lines };
        writer.expect_saved();
        writer
    }

    fn expect_saved(&mut self) {
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        assert_eq!(line, "saved\n", "stale_writer.py did not save");
    }

    /// Makes the writer add one session and write its whole memory back.
    fn save_again(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"save\n").unwrap();
        stdin.flush().unwrap();
        self.expect_saved();
    }
}

impl Drop for StaleWriter {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[test]
fn stale_writer_resurrection_is_reported() {
    if !python3_available() {
        return;
    }
    let dir = DataDir::new();
    let mut writer = StaleWriter::start(&dir, 7);

    let (exit, reset) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(reset["total_sessions_reset"], json!(7));
    let run_id = reset["run_id"].as_str().unwrap().to_string();
    assert_eq!(object(&dir.file(SESSIONS)).len(), 0);

    writer.save_again();
    assert_eq!(object(&dir.file(SESSIONS)).len(), 8, "7 old and 1 new");

    let (exit, report) = dir.run_json(&["status"]);
    assert_eq!(exit, 2);
    let resurrection = &report["resurrection"];
    assert_eq!(resurrection["count"], json!(7));
    assert_eq!(
        resurrection["session_ids"],
        json!(["stale-0", "stale-1", "stale-2", "stale-3", "stale-4"])
    );
    assert_eq!(resurrection["run_id"], json!(run_id));
    assert_eq!(report["check"]["state"], json!("CRITICAL"));

    let output = dir.run(&["status"]);
    assert_eq!(code(&output), 2);
    let first_line = stdout(&output).lines().next().unwrap().to_string();
    assert_eq!(
        first_line,
        format!(
            "ORDER-RESET CRITICAL - 7 sessions archived by reset {run_id} active again (stale-0, stale-1, stale-2, stale-3, stale-4, …)"
        )
    );
    let output = dir.run(&["status", "--max-age", "25h"]);
    assert_eq!(code(&output), 2);

    let output = dir.run(&["--json", "reset"]);
    let (exit, reset) = json_of(&output);
    assert_eq!(exit, 0);
    assert_eq!(reset["total_sessions_reset"], json!(8));
    assert_eq!(reset["resurrected_sessions"], json!(7));
    assert_eq!(reset["resurrected_from"], json!(run_id));
    let log = stderr(&output);
    assert!(
        log.contains(&format!(
            "WARN: 7 sessions in scan_sessions.json had been archived by reset {run_id}"
        )),
        "{log}"
    );

    let (exit, report) = dir.run_json(&["status"]);
    assert_eq!(exit, 0);
    assert_eq!(report["resurrection"]["count"], json!(0));
    assert_eq!(report["resurrection"]["checked"], json!(true));
    assert_eq!(report["check"], json!(null));
    drop(writer);
}

// The Python module.

#[test]
fn demo_shows_reset_respected() {
    if !python3_available() {
        return;
    }
    let dir = DataDir::new();
    let output = python3()
        .arg(module_dir().join("demo.py"))
        .arg(dir.path())
        .arg("--order-reset")
        .arg(env!("CARGO_BIN_EXE_order-reset"))
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}{}", stdout(&output), stderr(&output));
    assert!(
        stdout(&output).contains("the reset stuck"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        object(&dir.file(SESSIONS)).keys().collect::<Vec<_>>(),
        ["demo-after-reset"]
    );
    assert_eq!(generation_file(&dir).as_deref(), Some("1\n"));
}

/// Python that saves through a Store and counts its file reads: with the
/// generation unchanged, after it changed without any data file changing,
/// and while the generation file is invalid.
const RELOAD_SCRIPT: &str = r#"
import os, sys
from order_reset_store import Store
data_dir = sys.argv[1]
store = Store(data_dir)
counts = []
def save_twice(generation):
    if generation is not None:
        with open(os.path.join(data_dir, "order-reset.generation"), "w") as file:
            file.write(generation)
    for _ in range(2):
        with store.transaction() as data:
            data.sessions[f"s{len(data.sessions)}"] = {"status": "draft"}
        counts.append(store.reload_count)
save_twice(None)
save_twice("7\n")
save_twice("garbage\n")
names = sorted(name for name in os.listdir(data_dir) if name.endswith("tmp"))
with store.read() as data:
    ids = sorted(data.sessions)
print(counts, ids, names)
"#;

#[test]
fn module_reloads_only_when_needed() {
    if !python3_available() {
        return;
    }
    let dir = DataDir::new();
    let output = python3()
        .args(["-c", RELOAD_SCRIPT])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    // Both files are read at the start, then not while the generation and
    // the files stay the same. A new generation reloads both once, and an
    // invalid one reloads both on every transaction.
    assert_eq!(
        stdout(&output),
        "[2, 2, 4, 4, 6, 8] ['s0', 's1', 's2', 's3', 's4', 's5'] []\n"
    );
    assert!(
        stderr(&output).contains("is invalid"),
        "{}",
        stderr(&output)
    );
    assert_eq!(object(&dir.file(SESSIONS)).len(), 6);
    assert!(
        !dir.file("takeover_requests.json").exists(),
        "an unchanged empty file is not written"
    );
}

#[test]
fn module_keeps_owner_and_mode() {
    if !python3_available() {
        return;
    }
    if !is_root() {
        eprintln!("skipping: changing owners needs root");
        return;
    }
    let dir = DataDir::new();
    dir.write(SESSIONS, "{}");
    std::os::unix::fs::chown(dir.file(SESSIONS), Some(4321), Some(4322)).unwrap();
    fs::set_permissions(dir.file(SESSIONS), fs::Permissions::from_mode(0o640)).unwrap();
    let script = "import sys\nfrom order_reset_store import Store\nwith Store(sys.argv[1]).transaction() as data:\n    data.sessions['a'] = {}\n";
    let output = python3()
        .args(["-c", script])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(dir.read(SESSIONS), b"{\n  \"a\": {}\n}");
    assert_eq!(dir.owner(SESSIONS), (4321, 4322));
    assert_eq!(dir.mode(SESSIONS), 0o640);
}

/// Returns, for each session id, every file that contains it (the active
/// file or an archive) with the session's version there.
fn sessions_by_id(dir: &DataDir) -> BTreeMap<String, Vec<(String, u64)>> {
    let mut places: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    let files = std::iter::once(SESSIONS.to_string()).chain(dir.names_with("session_history_"));
    for name in files {
        for (id, session) in object(&dir.file(&name)) {
            let version = session["version"].as_u64().unwrap();
            places.entry(id).or_default().push((name.clone(), version));
        }
    }
    places
}

#[test]
fn module_writers_and_resets_lose_nothing() {
    if !python3_available() {
        return;
    }
    let operations = count_from_env("ORDER_RESET_MODULE_OPERATIONS", 500);
    let dir = DataDir::new();
    let started = Instant::now();
    let writers: Vec<(String, PathBuf, Child)> = ["alpha", "beta"]
        .iter()
        .map(|name| {
            let result = dir.temp.path().with_extension(format!("{name}.json"));
            let child = python3()
                .arg(support_script("module_writer.py"))
                .arg(dir.path())
                .arg(name)
                .arg(operations.to_string())
                .arg(&result)
                .arg("0.003")
                .spawn()
                .expect("start module_writer.py");
            (name.to_string(), result, child)
        })
        .collect();

    let writers_done = Arc::new(AtomicBool::new(false));
    let resetter = {
        let path = dir.path().to_path_buf();
        let writers_done = Arc::clone(&writers_done);
        std::thread::spawn(move || {
            let mut resets = 0u64;
            let mut resurrected = 0u64;
            while !writers_done.load(Ordering::SeqCst) {
                let output = bare_command()
                    .arg("--data-dir")
                    .arg(&path)
                    .args(["--json", "reset", "--wait", "30s"])
                    .output()
                    .unwrap();
                assert_eq!(code(&output), 0, "reset failed: {}", stderr(&output));
                let report: Value = serde_json::from_slice(&output.stdout).unwrap();
                resurrected += report["resurrected_sessions"].as_u64().unwrap_or(0);
                resets += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            (resets, resurrected)
        })
    };

    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    let mut reloads = 0;
    for (name, result, mut child) in writers {
        assert!(child.wait().unwrap().success(), "writer {name} failed");
        let report: Value = serde_json::from_slice(&fs::read(&result).unwrap()).unwrap();
        let _ = fs::remove_file(&result);
        reloads += report["reloads"].as_u64().unwrap();
        for (id, version) in report["last_versions"].as_object().unwrap() {
            written.insert(id.clone(), version.as_u64().unwrap());
        }
    }
    writers_done.store(true, Ordering::SeqCst);
    let (resets, resurrected_in_resets) = resetter.join().unwrap();

    let found = sessions_by_id(&dir);
    let archives = dir.names_with("session_history_").len();
    eprintln!(
        "module test: 2 writers, {} operations, {} sessions, {resets} resets, {archives} archives, {reloads} file reads, {:.1} s",
        2 * operations,
        written.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(resets >= 10, "only {resets} resets ran");
    assert!(archives >= 2, "only {archives} archives");
    assert_eq!(
        resurrected_in_resets, 0,
        "a reset found resurrected sessions"
    );
    let late: Vec<String> = dir
        .names()
        .into_iter()
        .filter(|name| name.ends_with(".late") || name.ends_with("tmp"))
        .collect();
    assert!(late.is_empty(), "late or temporary files: {late:?}");

    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    let mut stale = Vec::new();
    for (id, version) in &written {
        match found.get(id).map(Vec::as_slice) {
            None | Some([]) => lost.push(id.clone()),
            Some([(_, found_version)]) if found_version == version => {}
            Some([(place, found_version)]) => stale.push(format!(
                "{id}: v{found_version} in {place}, v{version} written"
            )),
            Some(places) => duplicated.push(format!("{id}: {places:?}")),
        }
    }
    assert!(lost.is_empty(), "lost sessions: {lost:?}");
    assert!(
        duplicated.is_empty(),
        "sessions in two places: {duplicated:?}"
    );
    assert!(stale.is_empty(), "last writes not found: {stale:?}");
    assert_eq!(found.len(), written.len(), "sessions nobody wrote");

    let (exit, report) = dir.run_json(&["status"]);
    assert_eq!(exit, 0);
    assert_eq!(report["resurrection"]["count"], json!(0));
}
