//! `status`: active files, last reset, archives and lock, read-only.

use std::fs;

use serde_json::json;

use crate::common::{DataDir, LOCK, SESSIONS, TAKEOVERS, code, sample_data, stderr, stdout};

#[test]
fn status_reports_files_and_last_reset() {
    let dir = DataDir::new();
    let sessions = fs::read(sample_data().join(SESSIONS)).unwrap();
    dir.write(SESSIONS, &sessions);
    dir.copy_in(&sample_data().join(TAKEOVERS), TAKEOVERS);
    dir.copy_in(
        &sample_data().join("session_history_20260301_000000.json"),
        "session_history_20260301_000000.json",
    );

    let (exit, before) = dir.run_json(&["status"]);
    assert_eq!(exit, 0);
    assert_eq!(before["schema_version"], json!(1));
    assert_eq!(before["sessions"]["entries"], json!(5));
    assert_eq!(before["sessions"]["bytes"], json!(sessions.len()));
    assert_eq!(before["sessions"]["by_status"]["draft"], json!(1));
    assert_eq!(before["takeover_requests"]["entries"], json!(1));
    assert_eq!(before["last_reset"], json!(null));
    assert_eq!(before["archives"]["count"], json!(1));
    assert_eq!(before["lock"]["state"], json!("missing"));

    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", "2026-12-04T00:00:00+00:00")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));

    let output = dir
        .command(&["--json", "status"])
        .env("ORDER_RESET_NOW", "2026-12-04T02:30:00+00:00")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0);
    let after: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(after["sessions"]["entries"], json!(0));
    assert_eq!(after["last_reset"]["run_id"], json!("20261204_000000"));
    assert_eq!(after["last_reset"]["total_sessions_reset"], json!(5));
    assert_eq!(after["last_reset"]["takeover_requests_reset"], json!(1));
    assert_eq!(after["last_reset"]["age_seconds"], json!(9000));
    assert_eq!(after["archives"]["count"], json!(3));
    assert_eq!(after["lock"]["state"], json!("free"));
}

#[test]
fn status_reports_invalid_file_without_failing() {
    let dir = DataDir::new();
    dir.write(SESSIONS, "{\"a\": ");
    let (exit, report) = dir.run_json(&["status"]);
    assert_eq!(exit, 0);
    assert_eq!(report["sessions"]["entries"], json!(null));
    let error = report["sessions"]["error"].as_str().unwrap();
    assert!(error.starts_with("invalid: line 1"), "{error}");
    assert_eq!(dir.read(SESSIONS), b"{\"a\": ");
}

#[test]
fn status_is_read_only() {
    let dir = DataDir::new();
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    let before = dir.names();
    let output = dir.run(&["status"]);
    assert_eq!(code(&output), 0);
    assert!(
        stdout(&output).contains("1 session (draft 1)"),
        "{}",
        stdout(&output)
    );
    assert_eq!(dir.names(), before, "status creates no file");
}

#[test]
fn status_names_the_lock_holder() {
    let dir = DataDir::new();
    dir.write(LOCK, "");
    let holder = crate::common::LockHolder::start(&dir);
    let (exit, report) = dir.run_json(&["status"]);
    let pid = holder.pid();
    drop(holder);
    assert_eq!(exit, 0);
    assert_eq!(report["lock"]["state"], json!("held"));
    assert_eq!(report["lock"]["pid"], json!(pid));
}

fn status_at(dir: &DataDir, now: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let output = dir
        .command(&all)
        .env("ORDER_RESET_NOW", now)
        .output()
        .unwrap();
    (code(&output), stdout(&output))
}

#[test]
fn max_age_follows_monitoring_convention() {
    let dir = DataDir::new();
    let (exit, text) = status_at(&dir, "2026-12-04T00:00:00+00:00", &["--max-age", "25h"]);
    assert_eq!(exit, 2, "no reset yet is critical");
    assert!(
        text.starts_with("ORDER-RESET CRITICAL - no reset in the journal\n"),
        "{text}"
    );

    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", "2026-12-04T00:00:00+00:00")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0);

    let (exit, text) = status_at(&dir, "2026-12-05T00:30:00+00:00", &["--max-age", "25h"]);
    assert_eq!(exit, 0, "{text}");
    assert!(
        text.starts_with("ORDER-RESET OK - last reset 1d 0h ago\n"),
        "{text}"
    );

    let (exit, text) = status_at(&dir, "2026-12-05T01:30:00+00:00", &["--max-age", "25h"]);
    assert_eq!(exit, 2, "{text}");
    assert!(
        text.starts_with("ORDER-RESET CRITICAL - last reset 1d 1h ago, longer than 1d 1h\n"),
        "{text}"
    );

    let output = dir
        .command(&["--json", "status", "--max-age", "25h"])
        .env("ORDER_RESET_NOW", "2026-12-05T01:30:00+00:00")
        .output()
        .unwrap();
    assert_eq!(code(&output), 2);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["check"]["state"], json!("CRITICAL"));
    assert_eq!(report["check"]["exit_code"], json!(2));
}

#[test]
fn max_age_errors_are_unknown() {
    let dir = DataDir::new();
    let output = crate::common::bare_command()
        .arg("--data-dir")
        .arg(dir.file("missing"))
        .args(["status", "--max-age", "25h"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 3, "a check that cannot run is unknown");
    let output = dir.run(&["status", "--max-age", "soon"]);
    assert_eq!(code(&output), 3, "a check with a bad option is unknown");
}

#[test]
fn max_lock_age_warns_on_a_long_held_lock() {
    let dir = DataDir::new();
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    // A reset that pauses while holding the lock, with its record's start time.
    let child = dir
        .command(&["-q", "reset"])
        .env("ORDER_RESET_NOW", "2026-12-04T00:00:00+00:00")
        .env("ORDER_RESET_FAILPOINT", "after-lock:sleep")
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while fs::read(dir.file(LOCK)).map_or(true, |record| record.is_empty()) {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (exit, text) = status_at(
        &dir,
        "2026-12-04T00:20:00+00:00",
        &["--max-lock-age", "10m"],
    );
    let (ok_exit, _) = status_at(
        &dir,
        "2026-12-04T00:05:00+00:00",
        &["--max-lock-age", "10m"],
    );
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 0);
    assert_eq!(exit, 1, "{text}");
    assert!(
        text.starts_with("ORDER-RESET WARNING - lock held for 20m, longer than 10m\n"),
        "{text}"
    );
    assert_eq!(ok_exit, 0);
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let output = crate::common::bare_command()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(code(&output), 0, "{shell}");
        assert!(stdout(&output).contains("order-reset"), "{shell}");
        assert!(stdout(&output).contains("data-dir"), "{shell}");
    }
    let output = crate::common::bare_command().arg("man").output().unwrap();
    assert_eq!(code(&output), 0);
    let page = stdout(&output);
    assert!(page.starts_with(".ie"), "{}", &page[..40.min(page.len())]);
    for needle in [
        ".TH order-reset 1",
        ".TH order-reset-reset 1",
        "\\-\\-max\\-age",
        "\\-\\-keep\\-days",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    // A link planted at a page name is replaced, not followed.
    let victim = dir.path().join("victim");
    std::os::unix::fs::symlink(&victim, dir.path().join("order-reset-reset.1")).unwrap();
    let output = crate::common::bare_command()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", crate::common::stderr(&output));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let expected = [
        "order-reset-completions.1",
        "order-reset-history-prune.1",
        "order-reset-history-search.1",
        "order-reset-history-show.1",
        "order-reset-history-verify.1",
        "order-reset-history.1",
        "order-reset-man.1",
        "order-reset-reset.1",
        "order-reset-restore.1",
        "order-reset-status.1",
        "order-reset.1",
    ];
    assert_eq!(names, expected);
    assert_eq!(stdout(&output).lines().count(), expected.len());

    // Every page that a SUBCOMMANDS section names exists.
    for name in &names {
        let page = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let title = name.trim_end_matches(".1");
        assert!(page.contains(&format!(".TH {title} 1")), "{name}");
        for line in page.lines().filter(|line| line.ends_with("(1)")) {
            let referenced = format!("{}.1", line.trim_end_matches("(1)").replace("\\-", "-"));
            assert!(names.contains(&referenced), "{name} names {line}");
        }
    }
    assert!(!victim.exists());
    let prune = std::fs::read_to_string(dir.path().join("order-reset-history-prune.1")).unwrap();
    assert!(
        prune.contains("\\fBorder\\-reset history prune\\fR"),
        "{prune}"
    );
    // The global options are on every page, and so is the version.
    assert!(prune.contains("\\-\\-data\\-dir"), "{prune}");
    assert!(
        prune.contains(&format!("\"order-reset {}\"", env!("CARGO_PKG_VERSION"))),
        "{prune}"
    );
}
