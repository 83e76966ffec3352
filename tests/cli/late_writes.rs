//! A writer that ignores the lock and writes an active file after the reset
//! archived it: what it wrote is kept in a `.late` archive, never lost. Where
//! the archive is a hard link guarded by a read lease, the writer's open
//! waits until the reset has made the archive a copy. `reset --copy` makes
//! the reset copy from the start, as where leases are not available.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{DataDir, SESSIONS, code, stderr};

const NOW: &str = "2026-12-04T00:00:01+01:00";
pub(crate) const ORIGINAL: &[u8] = br#"{"a": {"status": "draft"}}"#;
pub(crate) const LATE: &[u8] = br#"{"a": {"status": "draft"}, "b": {"status": "approved"}}"#;

/// Starts a reset that pauses after its archives are in place, runs `write`
/// in that pause, and returns the reset's JSON report.
pub(crate) fn reset_with_write_in_window(
    dir: &DataDir,
    write: impl FnOnce(&DataDir),
) -> serde_json::Value {
    reset_with_write_in_window_on(dir, write, &[], false)
}

/// Like [`reset_with_write_in_window`], with more arguments for the reset;
/// `no_exchange` makes it behave as on a filesystem without `RENAME_EXCHANGE`.
fn reset_with_write_in_window_on(
    dir: &DataDir,
    write: impl FnOnce(&DataDir),
    arguments: &[&str],
    no_exchange: bool,
) -> serde_json::Value {
    let mut command = dir.command(&["--json", "-v", "reset"]);
    command.args(arguments);
    if no_exchange {
        command.env("ORDER_RESET_NO_EXCHANGE", "1");
    }
    let child = command
        .env("ORDER_RESET_NOW", NOW)
        .env("ORDER_RESET_FAILPOINT", "after-archives:sleep")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.file("session_history_20261204_000001.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "archive never appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    write(dir);
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("does not take order-reset.lock"),
        "{}",
        stderr(&output)
    );
    let mut report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    report["stderr"] = json!(stderr(&output));
    report
}

/// Returns whether the reset whose report `reset_with_write_in_window` gave
/// archived the active file by a hard link, then made a copy when the writer
/// opened the file.
fn linked_then_copied(report: &serde_json::Value) -> bool {
    let log = report["stderr"].as_str().unwrap();
    log.contains("linked") && log.contains("opened scan_sessions.json for writing during the reset")
}

/// Replaces the active sessions file by writing `bytes` to a new file and
/// renaming it over the active name, as a writer that saves atomically does.
pub(crate) fn replace_by_rename(dir: &DataDir, bytes: &[u8]) {
    let temp = dir.file("writer.tmp");
    fs::write(&temp, bytes).unwrap();
    fs::rename(&temp, dir.file(SESSIONS)).unwrap();
}

pub(crate) fn check_kept(dir: &DataDir, report: &serde_json::Value) {
    let late = "session_history_20261204_000001.late";
    assert_eq!(dir.read("session_history_20261204_000001.json"), ORIGINAL);
    assert_eq!(dir.read(late), LATE);
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert_eq!(
        report["late_archives"],
        json!([dir.file(late).display().to_string()])
    );
    let journal = dir.journal();
    let records = journal[0]["archives"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["file"], json!(late));
    assert_eq!(records[1]["late"], json!(true));
    assert_eq!(records[1]["bytes"], json!(LATE.len()));
    assert_eq!(
        records[1]["sha256"],
        json!(crate::common::sha256_file(&dir.file(late)))
    );
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

#[test]
fn late_write_in_place_is_kept() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    // fs::write truncates and rewrites the same inode, as Python's open("w") does.
    // Its open waits on the lease until the reset has copied the linked archive.
    let report =
        reset_with_write_in_window(&dir, |dir| fs::write(dir.file(SESSIONS), LATE).unwrap());
    assert!(linked_then_copied(&report), "{}", report["stderr"]);
    check_kept(&dir, &report);
}

#[test]
fn copied_archive_keeps_late_write() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let report = reset_with_write_in_window_on(
        &dir,
        |dir| fs::write(dir.file(SESSIONS), LATE).unwrap(),
        &["--copy"],
        false,
    );
    assert!(!linked_then_copied(&report), "{}", report["stderr"]);
    check_kept(&dir, &report);
}

#[test]
fn late_replacing_write_is_kept() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let report = reset_with_write_in_window(&dir, |dir| {
        replace_by_rename(dir, LATE);
    });
    check_kept(&dir, &report);
}

#[test]
fn history_lists_late_archive() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    reset_with_write_in_window(&dir, |dir| fs::write(dir.file(SESSIONS), LATE).unwrap());
    let (exit, history) = dir.run_json(&["history"]);
    assert_eq!(exit, 0);
    assert_eq!(history["resets"].as_array().unwrap().len(), 1);
    assert_eq!(
        history["resets"][0]["archives"].as_array().unwrap().len(),
        2
    );
}

/// Starts a reset that pauses after its archives are in place and is killed
/// right after its exchange, and rewrites the active file in place in the
/// pause. Returns once the killed reset has exited.
fn crash_after_exchange_with_late_write(dir: &DataDir, copy_archives: bool) {
    let mut command = dir.command(&["reset"]);
    if copy_archives {
        command.arg("--copy");
    }
    let child = command
        .env("ORDER_RESET_NOW", NOW)
        .env(
            "ORDER_RESET_FAILPOINT",
            "after-archives:sleep,after-exchange:exit",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.file("session_history_20261204_000001.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "archive never appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    fs::write(dir.file(SESSIONS), LATE).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 86);
}

#[test]
fn late_write_survives_crash_after_exchange() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    crash_after_exchange_with_late_write(&dir, true);

    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["recovered_run_id"], json!("20261204_000001"));
    assert_eq!(dir.read("session_history_20261204_000001.json"), ORIGINAL);
    assert_eq!(dir.read("session_history_20261204_000001.late"), LATE);
    assert_eq!(dir.read(SESSIONS), b"{}");
    let journal = dir.journal();
    let records = journal[0]["archives"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{journal:?}");
    assert_eq!(records[1]["late"], json!(true));
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

#[test]
fn crash_after_exchange_without_late_write_keeps_one_archive() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", NOW)
        .env("ORDER_RESET_FAILPOINT", "after-exchange:exit")
        .output()
        .unwrap();
    assert_eq!(code(&output), 86);
    let (exit, _) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(
        dir.names_with("session_history_"),
        vec!["session_history_20261204_000001.json"]
    );
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

#[test]
fn late_writes_are_kept_without_exchange() {
    let in_place = DataDir::new();
    in_place.write(SESSIONS, ORIGINAL);
    let report = reset_with_write_in_window_on(
        &in_place,
        |dir| fs::write(dir.file(SESSIONS), LATE).unwrap(),
        &[],
        true,
    );
    check_kept(&in_place, &report);

    let replacing = DataDir::new();
    replacing.write(SESSIONS, ORIGINAL);
    let report = reset_with_write_in_window_on(
        &replacing,
        |dir| {
            replace_by_rename(dir, LATE);
        },
        &[],
        true,
    );
    check_kept(&replacing, &report);
}

#[test]
fn invalid_read_of_changed_file_exits_busy() {
    let dir = DataDir::new();
    let torn = br#"{"a": {"status": "dra"#;
    dir.write(SESSIONS, torn);

    let child = dir
        .command(&["reset", "--copy"])
        .env("ORDER_RESET_NOW", NOW)
        .env("ORDER_RESET_FAILPOINT", "after-copy:sleep")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The temporary archive exists from the start of the copy, and the copy
    // of a few bytes ends long before the pause after it does.
    let started = Instant::now();
    while !dir
        .names()
        .iter()
        .any(|name| name.ends_with(".order-reset-tmp"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the copy never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    // The writer that ignores the lock finishes its write.
    dir.write(SESSIONS, LATE);

    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 75, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("changed while order-reset read it"),
        "{}",
        stderr(&output)
    );
    assert_eq!(dir.read(SESSIONS), LATE);
    assert!(dir.names_with("session_history_").is_empty());
}

#[test]
fn linked_crash_keeps_late_write() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    // The writer's open waits on the lease until the reset is killed. It then
    // rewrites the file that is both the archive and the displaced file.
    crash_after_exchange_with_late_write(&dir, false);

    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["recovered_run_id"], json!("20261204_000001"));
    // The archive name held the writer's bytes, not the archived ones, so
    // only the .late archive is left, with what the writer wrote.
    assert_eq!(
        dir.names_with("session_history_"),
        vec!["session_history_20261204_000001.late"]
    );
    assert_eq!(dir.read("session_history_20261204_000001.late"), LATE);
    assert_eq!(dir.read(SESSIONS), b"{}");
    let journal = dir.journal();
    assert_eq!(journal.len(), 2, "{journal:?}");
    assert_eq!(journal[0]["recovered"], json!(true));
    assert_eq!(journal[0]["total_sessions_reset"], json!(0));
    let records = journal[0]["archives"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{journal:?}");
    assert_eq!(
        records[0]["file"],
        json!("session_history_20261204_000001.late")
    );
    assert_eq!(records[0]["late"], json!(true));
    assert_eq!(records[0]["bytes"], json!(LATE.len()));
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}
