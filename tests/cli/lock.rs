//! The data directory lock, held by real processes.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::LockHolder;
use crate::common::{DataDir, LOCK, SESSIONS, code, stderr};

#[test]
fn held_lock_exits_75_within_wait() {
    let dir = DataDir::new();
    let sessions = br#"{"a": {"status": "draft"}}"#;
    dir.write(SESSIONS, sessions);
    let holder = LockHolder::start(&dir);

    let started = Instant::now();
    let output = dir.run(&["reset", "--wait", "500ms"]);
    let elapsed = started.elapsed();
    assert_eq!(code(&output), 75, "stderr: {}", stderr(&output));
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let message = stderr(&output);
    assert!(
        message.contains(&format!("pid {}", holder.pid())),
        "{message}"
    );
    assert!(message.contains("--wait"), "{message}");
    assert_eq!(dir.read(SESSIONS), sessions);
    assert!(dir.names_with("session_history_").is_empty());

    drop(holder);
    let output = dir.run(&["reset", "--wait", "5s"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn held_lock_failure_document() {
    let dir = DataDir::new();
    dir.write(LOCK, "");
    fs::set_permissions(dir.file(LOCK), fs::Permissions::from_mode(0o600)).unwrap();
    let _holder = LockHolder::start(&dir);
    let (exit, report) = dir.run_json(&["reset", "--wait", "0"]);
    assert_eq!(exit, 75);
    assert_eq!(report["error_kind"], json!("lock_busy"));
    assert_eq!(report["success"], json!(false));
}

#[test]
fn reset_waits_for_a_short_holder() {
    let dir = DataDir::new();
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    let mut holder = Command::new("flock")
        .arg("--exclusive")
        .arg(dir.file(LOCK))
        .args(["-c", "echo locked; exec sleep 0.5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let output = dir.run(&["reset", "--wait", "10s"]);
    holder.wait().unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn lock_file_is_private() {
    let dir = DataDir::new();
    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 0);
    assert_eq!(dir.mode(LOCK), 0o600);
}

#[test]
fn open_lock_file_mode_is_tightened() {
    let dir = DataDir::new();
    dir.write(LOCK, "");
    fs::set_permissions(dir.file(LOCK), fs::Permissions::from_mode(0o666)).unwrap();
    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(dir.mode(LOCK), 0o600);
    assert!(
        stderr(&output).contains("changed it to 0600"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn symlinked_lock_file_is_rejected() {
    let dir = DataDir::new();
    let outside = DataDir::new();
    outside.write("victim", "keep");
    fs::set_permissions(outside.file("victim"), fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(outside.file("victim"), dir.file(LOCK)).unwrap();
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);

    let output = dir.run(&["reset"]);
    assert_ne!(code(&output), 0);
    assert!(
        stderr(&output).contains("symbolic link"),
        "{}",
        stderr(&output)
    );
    assert_eq!(outside.read("victim"), b"keep");
    assert_eq!(outside.mode("victim"), 0o644);
    assert_eq!(dir.read(SESSIONS), br#"{"a": {"status": "draft"}}"#);
}

#[test]
fn concurrent_resets_lose_nothing() {
    let dir = DataDir::new();
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    let children: Vec<Child> = (0..6)
        .map(|_| {
            dir.command(&["-q", "reset", "--wait", "30s"])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let archives = dir.names_with("session_history_");
    assert_eq!(archives, vec![archives[0].clone()], "exactly one archive");
    assert_eq!(dir.read(&archives[0]), br#"{"a": {"status": "draft"}}"#);
    assert_eq!(dir.journal().len(), 6);
}
