//! Archives made as hard links to the active files, guarded by read leases.
//! The tests cover when the reset links and when it copies instead, what a
//! writer that ignores the lock finds when it opens the file during the
//! reset, and how the next reset completes a linked reset that was killed.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{DataDir, SESSIONS, TAKEOVERS, code, generated_sessions, sha256_file, stderr};
use crate::late_writes::{LATE, ORIGINAL, replace_by_rename};

const NOW: &str = "2026-12-04T00:00:01+01:00";
const ARCHIVE: &str = "session_history_20261204_000001.json";

fn reset(dir: &DataDir, failpoint: Option<&str>) -> std::process::Output {
    let mut command = dir.command(&["-v", "reset"]);
    command.env("ORDER_RESET_NOW", NOW);
    if let Some(failpoint) = failpoint {
        command.env("ORDER_RESET_FAILPOINT", failpoint);
    }
    command.output().unwrap()
}

/// The start of the message of a reset stopped by a writer that waits on the lease.
const OPENED: &str = "was opened for writing, or a process tried to, while order-reset archived it";

/// Checks that a reset exited 75 with `message`, left `scan_sessions.json` as
/// `active`, and left no archive, temporary file or journal line.
fn assert_stopped(dir: &DataDir, output: &std::process::Output, message: &str, active: &[u8]) {
    assert_eq!(code(output), 75, "{}", stderr(output));
    assert!(stderr(output).contains(message), "{}", stderr(output));
    assert_eq!(dir.read(SESSIONS), active);
    assert!(
        dir.names_with("session_history_").is_empty(),
        "{:?}",
        dir.names()
    );
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
    assert!(dir.journal().is_empty());
}

/// Starts the reset command `args` with failpoint `failpoint`, its output piped.
fn spawn_reset(dir: &DataDir, args: &[&str], failpoint: &str) -> Child {
    dir.command(args)
        .env("ORDER_RESET_NOW", NOW)
        .env("ORDER_RESET_FAILPOINT", failpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn inode(dir: &DataDir, name: &str) -> u64 {
    fs::metadata(dir.file(name)).unwrap().ino()
}

#[test]
fn archive_is_the_active_file_linked() {
    let dir = DataDir::new();
    let sessions = generated_sessions(2_000, "link");
    dir.write(SESSIONS, &sessions);
    dir.write(TAKEOVERS, br#"{"t1": {"status": "pending"}}"#);
    fs::set_permissions(dir.file(SESSIONS), fs::Permissions::from_mode(0o640)).unwrap();
    let original = inode(&dir, SESSIONS);

    let output = reset(&dir, None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("scan_sessions.json as its archive under a read lease")
            && log.contains("takeover_requests.json as its archive under a read lease"),
        "{log}"
    );
    let archive = fs::metadata(dir.file(ARCHIVE)).unwrap();
    assert_eq!(archive.ino(), original);
    assert_eq!(archive.nlink(), 1);
    assert_eq!(archive.mode() & 0o7777, 0o640);
    assert_eq!(dir.read(ARCHIVE), sessions);
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert_ne!(inode(&dir, SESSIONS), original);
    let journal = dir.journal();
    assert_eq!(
        journal[0]["archives"][0]["sha256"],
        json!(sha256_file(&dir.file(ARCHIVE)))
    );
    assert_eq!(journal[0]["total_sessions_reset"], json!(2_000));
    let verify = dir.run(&["history", "verify"]);
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

#[test]
fn file_with_execute_bits_is_copied() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    fs::set_permissions(dir.file(SESSIONS), fs::Permissions::from_mode(0o750)).unwrap();
    let original = inode(&dir, SESSIONS);

    let output = reset(&dir, None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("its archive gets another owner or mode"),
        "{}",
        stderr(&output)
    );
    assert_ne!(inode(&dir, ARCHIVE), original);
    assert_eq!(dir.mode(ARCHIVE) & 0o7777, 0o640);
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
}

#[test]
fn file_with_another_name_is_copied() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    fs::hard_link(dir.file(SESSIONS), dir.temp.path().join("backup.json")).unwrap();

    let output = reset(&dir, None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("scan_sessions.json: it has 2 names"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::metadata(dir.file(ARCHIVE)).unwrap().nlink(), 1);
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    // Writing the other name leaves the archive as it is.
    fs::write(dir.temp.path().join("backup.json"), LATE).unwrap();
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
}

#[test]
fn copy_option_copies() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let original = inode(&dir, SESSIONS);

    let output = dir
        .command(&["-v", "reset", "--copy"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(!stderr(&output).contains("linked"), "{}", stderr(&output));
    assert_ne!(inode(&dir, ARCHIVE), original);
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
}

/// A process that keeps `name` open for writing until it is killed.
struct OpenForWriting(Child);

impl OpenForWriting {
    fn start(dir: &DataDir, name: &str) -> OpenForWriting {
        let mut child = Command::new("sh")
            .args(["-c", "exec 3>>\"$1\"; echo ready; exec sleep 60", "sh"])
            .arg(dir.file(name))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        OpenForWriting(child)
    }
}

impl Drop for OpenForWriting {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn file_open_for_writing_is_copied() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let original = inode(&dir, SESSIONS);
    let _writer = OpenForWriting::start(&dir, SESSIONS);

    let output = reset(&dir, None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("copying")
            && stderr(&output).contains("scan_sessions.json: no read lease on it"),
        "{}",
        stderr(&output)
    );
    assert_ne!(inode(&dir, ARCHIVE), original);
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    assert_eq!(dir.read(SESSIONS), b"{}");
}

/// Waits until the running reset has linked `scan_sessions.json` under a
/// temporary name, which it does after taking the lease.
fn wait_for_link(dir: &DataDir) {
    let active = inode(dir, SESSIONS);
    let started = Instant::now();
    while !dir
        .names()
        .iter()
        .any(|name| name.ends_with(".order-reset-tmp") && inode(dir, name) == active)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the link never appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn writer_opening_during_read_stops_reset() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let child = spawn_reset(&dir, &["reset"], "after-copy:sleep");
    wait_for_link(&dir);
    // The open waits on the lease until the reset has stopped.
    fs::write(dir.file(SESSIONS), LATE).unwrap();

    let output = child.wait_with_output().unwrap();
    assert_stopped(&dir, &output, OPENED, LATE);
}

#[test]
fn interrupted_linked_reset_is_completed_with_a_copy() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let original = inode(&dir, SESSIONS);
    let output = reset(&dir, Some("after-pending:exit"));
    assert_eq!(code(&output), 86);

    let output = reset(&dir, None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("with a copy"),
        "{}",
        stderr(&output)
    );
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    assert_ne!(inode(&dir, ARCHIVE), original);
    assert_eq!(dir.read(SESSIONS), b"{}");
    let journal = dir.journal();
    assert_eq!(journal[0]["recovered"], json!(true));
    assert_eq!(journal[0]["total_sessions_reset"], json!(1));
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

#[test]
fn interrupted_link_defers_later_write() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let output = reset(&dir, Some("after-pending:exit"));
    assert_eq!(code(&output), 86);
    // The lease ended with the process; this rewrites the active file, which
    // the interrupted reset's temporary archive links to.
    fs::write(dir.file(SESSIONS), LATE).unwrap();

    let output = dir
        .command(&["--json", "-v", "reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("which changed after the interrupted reset read it"),
        "{}",
        stderr(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["recovered_run_id"], json!(null));
    assert_eq!(report["total_sessions_reset"], json!(2));
    assert_eq!(dir.read(ARCHIVE), LATE);
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert_eq!(dir.journal().len(), 1);
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

/// Waits until `name` exists in `dir`.
fn wait_for_file(dir: &DataDir, name: &str) {
    let started = Instant::now();
    while !dir.file(name).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} never appeared: {:?}",
            dir.names()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts a reset with `failpoint` and, once `name` exists, a thread that
/// opens the active file for writing (waiting on the lease), writes `LATE`
/// and keeps the file open for `hold`.
fn reset_with_waiting_writer(
    dir: &DataDir,
    failpoint: &str,
    name: &str,
    hold: Duration,
) -> (Child, std::thread::JoinHandle<()>) {
    let child = spawn_reset(dir, &["-v", "reset"], failpoint);
    wait_for_file(dir, name);
    let path = dir.file(SESSIONS);
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut file = fs::File::create(path).unwrap();
        file.write_all(LATE).unwrap();
        std::thread::sleep(hold);
    });
    (child, writer)
}

#[test]
fn writer_waiting_before_exchange_withdraws_archives() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    // The pause comes before the archives are renamed into place.
    let (child, writer) = reset_with_waiting_writer(
        &dir,
        "after-pending:sleep",
        "order-reset.pending",
        Duration::ZERO,
    );
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_stopped(&dir, &output, OPENED, LATE);
    assert!(!dir.file("order-reset.pending").exists());

    let output = reset(&dir, None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(dir.read(ARCHIVE), LATE);
}

#[test]
fn kill_while_waiting_for_writer_keeps_late_archive() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    // The pause comes after the last check before the exchange, so the
    // writer waits until the reset has copied the archive, then writes and
    // keeps the file open while the reset waits for it to close.
    let (mut child, writer) = reset_with_waiting_writer(
        &dir,
        "after-archives:sleep",
        ARCHIVE,
        Duration::from_secs(3),
    );
    wait_for_file(&dir, "session_history_20261204_000001.late");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    writer.join().unwrap();

    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["recovered_run_id"], json!("20261204_000001"));
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    assert_eq!(dir.read("session_history_20261204_000001.late"), LATE);
    assert_eq!(dir.read(SESSIONS), b"{}");
    let journal = dir.journal();
    let records = journal[0]["archives"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{journal:?}");
    assert_eq!(
        records[1]["file"],
        json!("session_history_20261204_000001.late")
    );
    assert_eq!(records[1]["bytes"], json!(LATE.len()));
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

/// Runs `touch` on the active file while a reset pauses at `failpoint`, once
/// `name` exists, and returns the reset's exit code. GNU touch opens the
/// file for writing without waiting, which fails under the lease but breaks
/// it, then sets the times.
fn touch_during_reset(dir: &DataDir, failpoint: &str, name: &str) -> i32 {
    let child = spawn_reset(dir, &["reset"], failpoint);
    wait_for_file(dir, name);
    let touched = Command::new("touch")
        .arg(dir.file(SESSIONS))
        .status()
        .unwrap();
    assert!(touched.success());
    code(&child.wait_with_output().unwrap())
}

#[test]
fn touch_during_reset_leaves_separate_files() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    assert_eq!(
        touch_during_reset(&dir, "after-pending:sleep", "order-reset.pending"),
        75
    );
    assert_eq!(dir.read(SESSIONS), ORIGINAL);
    assert!(
        dir.names_with("session_history_").is_empty(),
        "{:?}",
        dir.names()
    );

    let output = reset(&dir, None);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);

    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    assert_eq!(touch_during_reset(&dir, "after-archives:sleep", ARCHIVE), 0);
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    assert_eq!(dir.read("session_history_20261204_000001.late"), ORIGINAL);
    assert_eq!(dir.read(SESSIONS), b"{}");
    for name in dir.names() {
        assert_eq!(fs::metadata(dir.file(&name)).unwrap().nlink(), 1, "{name}");
    }
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

#[test]
fn replacing_writer_before_exchange_is_kept_as_late() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let child = spawn_reset(&dir, &["--json", "reset"], "after-pending:sleep");
    wait_for_file(&dir, "order-reset.pending");
    // A rename over the active name does not open the linked file, so it
    // does not wait; the linked file keeps only the archive's name.
    replace_by_rename(&dir, LATE);

    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    assert_eq!(dir.read("session_history_20261204_000001.late"), LATE);
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert_eq!(dir.journal()[0]["archives"].as_array().unwrap().len(), 2);
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

/// Truncates the active file through an open for reading with `O_TRUNC`,
/// which Linux allows and which does not wait on a read lease.
fn truncate_through_read_open(dir: &DataDir) {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_TRUNC)
        .open(dir.file(SESSIONS))
        .unwrap();
}

#[test]
fn truncating_read_open_is_noticed() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let child = spawn_reset(&dir, &["reset"], "after-pending:sleep");
    wait_for_file(&dir, "order-reset.pending");
    truncate_through_read_open(&dir);
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 75, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("was emptied by an open that does not wait on the read lease"),
        "{}",
        stderr(&output)
    );
    assert!(
        dir.names_with("session_history_").is_empty(),
        "{:?}",
        dir.names()
    );

    // After the last check the truncation reaches the archive, which the
    // reset notices after the exchange and the next reset keeps as `.late`.
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let child = spawn_reset(&dir, &["reset"], "after-archives:sleep");
    wait_for_file(&dir, ARCHIVE);
    truncate_through_read_open(&dir);
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 74, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("through an open that did not wait on its lease"),
        "{}",
        stderr(&output)
    );
    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["recovered_run_id"], json!("20261204_000001"));
    assert_eq!(
        dir.names_with("session_history_"),
        vec!["session_history_20261204_000001.late"]
    );
    assert_eq!(dir.read("session_history_20261204_000001.late"), b"");
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

#[test]
fn rename_to_another_name_withdraws_archives() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let child = spawn_reset(&dir, &["reset"], "after-pending:sleep");
    wait_for_file(&dir, "order-reset.pending");
    fs::rename(dir.file(SESSIONS), dir.temp.path().join("backup.json")).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 75, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("got another name while order-reset archived it"),
        "{}",
        stderr(&output)
    );
    assert!(
        dir.names_with("session_history_").is_empty(),
        "{:?}",
        dir.names()
    );
    assert_eq!(
        fs::read(dir.temp.path().join("backup.json")).unwrap(),
        ORIGINAL
    );
    assert_eq!(
        fs::metadata(dir.temp.path().join("backup.json"))
            .unwrap()
            .nlink(),
        1
    );
}

#[test]
fn writer_on_file_without_entries_does_not_wait() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    dir.write(TAKEOVERS, b"{}");
    let child = spawn_reset(&dir, &["reset"], "after-copy:sleep");
    wait_for_link(&dir);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    fs::write(dir.file(TAKEOVERS), br#"{"t1": {"status": "pending"}}"#).unwrap();
    let waited = started.elapsed();
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(waited < Duration::from_millis(500), "waited {waited:?}");
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    assert_eq!(dir.read(TAKEOVERS), br#"{"t1": {"status": "pending"}}"#);
}

#[test]
fn waiting_and_replacing_writers_both_kept() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let (child, writer) =
        reset_with_waiting_writer(&dir, "after-archives:sleep", ARCHIVE, Duration::ZERO);
    // Give the waiting writer time to look the file up, then replace it.
    std::thread::sleep(Duration::from_millis(200));
    replace_by_rename(&dir, br#"{"b": {"status": "approved"}}"#);
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    let mut late = vec![
        dir.read("session_history_20261204_000001.late"),
        dir.read("session_history_20261204_000001.late.2"),
    ];
    late.sort();
    let mut expected = vec![LATE.to_vec(), br#"{"b": {"status": "approved"}}"#.to_vec()];
    expected.sort();
    assert_eq!(late, expected);
    assert_eq!(dir.journal()[0]["archives"].as_array().unwrap().len(), 3);
    let verify = dir.run(&["history", "verify"]);
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
}

#[test]
fn waiting_writer_after_active_name_removed_kept_once() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let (child, writer) =
        reset_with_waiting_writer(&dir, "after-archives:sleep", ARCHIVE, Duration::ZERO);
    // Give the waiting writer time to look the file up, then remove the name.
    std::thread::sleep(Duration::from_millis(200));
    fs::remove_file(dir.file(SESSIONS)).unwrap();
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    assert_eq!(dir.read("session_history_20261204_000001.late"), LATE);
    assert_eq!(
        dir.names_with("session_history_"),
        vec![
            ARCHIVE.to_string(),
            "session_history_20261204_000001.late".to_string()
        ]
    );
    assert_eq!(dir.journal()[0]["archives"].as_array().unwrap().len(), 2);
}

#[test]
fn withdrawal_keeps_copied_archive_of_changed_file() {
    const TAKEOVERS_ORIGINAL: &[u8] = br#"{"t1": {"status": "pending"}}"#;
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    dir.write(TAKEOVERS, TAKEOVERS_ORIGINAL);
    // The takeovers file is open for writing elsewhere, so its archive is a copy.
    let _holder = OpenForWriting::start(&dir, TAKEOVERS);
    let (child, writer) = reset_with_waiting_writer(
        &dir,
        "after-pending:sleep",
        "order-reset.pending",
        Duration::ZERO,
    );
    dir.write(TAKEOVERS, b"{}");
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_ne!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("whose active file changed since it was copied"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        dir.read("takeover_history_20261204_000001.json"),
        TAKEOVERS_ORIGINAL
    );

    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["recovered_run_id"], json!("20261204_000001"));
    assert_eq!(
        dir.read("takeover_history_20261204_000001.json"),
        TAKEOVERS_ORIGINAL
    );
    // The sessions file was not reset by the interrupted run; this one archives what
    // the writer put there.
    let sessions: Vec<Vec<u8>> = dir
        .names_with("session_history_")
        .iter()
        .map(|name| dir.read(name))
        .collect();
    assert_eq!(sessions, vec![LATE.to_vec()]);
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn second_late_archive_of_killed_run_is_journaled() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let (mut child, writer) = reset_with_waiting_writer(
        &dir,
        "after-archives:sleep,after-replace-sessions:exit",
        ARCHIVE,
        Duration::ZERO,
    );
    std::thread::sleep(Duration::from_millis(200));
    replace_by_rename(&dir, br#"{"b": {"status": "approved"}}"#);
    assert_eq!(child.wait().unwrap().code(), Some(86));
    writer.join().unwrap();

    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["recovered_run_id"], json!("20261204_000001"));
    let journal = dir.journal();
    let files: Vec<&str> = journal[0]["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 3, "{journal:?}");
    assert!(
        files.contains(&"session_history_20261204_000001.late.2"),
        "{files:?}"
    );
    let verify = dir.run(&["history", "verify"]);
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
}

#[test]
fn name_added_after_last_check_gets_a_copy() {
    let dir = DataDir::new();
    dir.write(SESSIONS, ORIGINAL);
    let child = spawn_reset(&dir, &["-v", "reset"], "after-archives:sleep");
    wait_for_file(&dir, ARCHIVE);
    fs::hard_link(dir.file(SESSIONS), dir.temp.path().join("backup.json")).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("got another name during the reset"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::metadata(dir.file(ARCHIVE)).unwrap().nlink(), 1);
    fs::write(dir.temp.path().join("backup.json"), LATE).unwrap();
    assert_eq!(dir.read(ARCHIVE), ORIGINAL);
    let verify = dir.run(&["history", "verify"]);
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
}
