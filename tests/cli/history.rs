//! `history`: journaled resets and legacy archives, newest first.

use std::fs;

use serde_json::json;

use crate::common::{DataDir, SESSIONS, code, real_fixtures, sample_data, stderr, stdout};

fn reset_at(dir: &DataDir, now: &str, sessions: &str) {
    dir.write(SESSIONS, sessions);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", now)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
}

#[test]
fn history_lists_resets_and_legacy_archives() {
    let dir = DataDir::new();
    dir.copy_in(
        &sample_data().join("session_history_20260301_000000.json"),
        "session_history_20260301_000000.json",
    );
    reset_at(
        &dir,
        "2026-12-03T00:00:00+00:00",
        r#"{"a": {"status": "draft"}}"#,
    );
    let latest = r#"{"b": {"status": "approved"}, "c": {"status": "approved"}}"#;
    reset_at(&dir, "2026-12-04T00:00:00+00:00", latest);

    let (exit, report) = dir.run_json(&["history"]);
    assert_eq!(exit, 0);
    let resets = report["resets"].as_array().unwrap();
    assert_eq!(resets.len(), 3);
    assert_eq!(resets[0]["run_id"], json!("20261204_000000"));
    assert_eq!(resets[0]["origin"], json!("journal"));
    assert_eq!(resets[0]["total_sessions_reset"], json!(2));
    assert_eq!(resets[0]["sessions_by_status"], json!({"approved": 2}));
    assert_eq!(
        resets[0]["archives"],
        json!([{"file": "session_history_20261204_000000.json", "bytes": latest.len(), "pruned": false}])
    );
    assert_eq!(resets[1]["run_id"], json!("20261203_000000"));
    assert_eq!(resets[2]["run_id"], json!("20260301_000000"));
    assert_eq!(resets[2]["origin"], json!("archive"));
    assert_eq!(resets[2]["total_sessions_reset"], json!(1));
    assert_eq!(resets[2]["sessions_by_status"], json!({"approved": 1}));
    assert_eq!(resets[2]["takeover_requests_reset"], json!(null));
    assert_eq!(resets[2]["reset_at"], json!("2026-03-01T00:00:00+00:00"));

    let (_, limited) = dir.run_json(&["history", "--limit", "1"]);
    assert_eq!(limited["resets"].as_array().unwrap().len(), 1);
    assert_eq!(limited["resets"][0]["run_id"], json!("20261204_000000"));
}

#[test]
fn history_human_output() {
    let dir = DataDir::new();
    reset_at(
        &dir,
        "2026-12-04T00:00:00+00:00",
        r#"{"a": {"status": "draft"}}"#,
    );
    let output = dir.run(&["history"]);
    assert_eq!(code(&output), 0);
    assert_eq!(
        stdout(&output),
        "RESET AT                    RUN ID           SESSIONS  TAKEOVERS  ARCHIVED  BY STATUS\n\
         2026-12-04 00:00:00 +00:00  20261204_000000         1          0      26 B  draft 1\n"
    );
}

#[test]
fn history_reads_real_legacy_archives() {
    let Some(fixtures) = real_fixtures() else {
        return;
    };
    let dir = DataDir::new();
    for name in [
        "session_history_20251205_120337.json",
        "session_history_20251205_120402.json",
    ] {
        fs::copy(fixtures.join(name), dir.file(name)).unwrap();
    }
    let (exit, report) = dir.run_json(&["history"]);
    assert_eq!(exit, 0);
    let resets = report["resets"].as_array().unwrap();
    assert_eq!(resets.len(), 2);
    assert_eq!(resets[0]["run_id"], json!("20251205_120402"));
    assert_eq!(resets[0]["total_sessions_reset"], json!(1));
    assert_eq!(resets[0]["sessions_by_status"], json!({"approved": 1}));
    assert_eq!(resets[1]["run_id"], json!("20251205_120337"));
    assert_eq!(resets[1]["total_sessions_reset"], json!(4));
    assert_eq!(
        resets[1]["sessions_by_status"],
        json!({"approved": 2, "draft": 2})
    );
}

#[test]
fn history_of_empty_directory() {
    let dir = DataDir::new();
    let output = dir.run(&["history"]);
    assert_eq!(code(&output), 0);
    assert_eq!(stdout(&output), "No resets yet.\n");
}

#[test]
fn history_orders_same_second_runs_numerically() {
    let dir = DataDir::new();
    for number in 0..11 {
        reset_at(
            &dir,
            "2026-12-04T00:00:00+00:00",
            &format!("{{\"s{number}\": {{\"status\": \"draft\"}}}}"),
        );
    }
    let (_, report) = dir.run_json(&["history", "--limit", "3"]);
    let ids: Vec<&str> = report["resets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|reset| reset["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "20261204_000000_11",
            "20261204_000000_10",
            "20261204_000000_9"
        ]
    );
    assert_eq!(report["total"], json!(11));

    let output = dir.run(&["history", "--limit", "0"]);
    assert_eq!(stdout(&output), "");
}

#[test]
fn history_reports_unparseable_journal_lines() {
    let dir = DataDir::new();
    reset_at(
        &dir,
        "2026-12-04T00:00:00+00:00",
        r#"{"a": {"status": "draft"}}"#,
    );
    let mut journal = fs::read(dir.file(crate::common::JOURNAL)).unwrap();
    journal.extend_from_slice(b"[]\n{\"id\": null}\n");
    dir.write(crate::common::JOURNAL, &journal);
    let (exit, report) = dir.run_json(&["history"]);
    assert_eq!(exit, 0);
    assert_eq!(report["resets"].as_array().unwrap().len(), 1);
    assert_eq!(report["journal_errors"].as_array().unwrap().len(), 2);
}

#[test]
fn history_lists_restore_with_its_source() {
    let dir = DataDir::new();
    reset_at(
        &dir,
        "2026-12-04T00:00:00+00:00",
        r#"{"a": {"status": "draft"}}"#,
    );
    dir.write(SESSIONS, r#"{"b": {"status": "approved"}}"#);
    let output = dir
        .command(&["restore", "20261204_000000", "--merge"])
        .env("ORDER_RESET_NOW", "2026-12-04T10:00:00+00:00")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    let (exit, report) = dir.run_json(&["history"]);
    assert_eq!(exit, 0);
    let resets = report["resets"].as_array().unwrap();
    assert_eq!(resets.len(), 2, "{report}");
    assert_eq!(resets[0]["event"], json!("restore"));
    assert_eq!(resets[0]["restored_from"], json!("20261204_000000"));
    assert_eq!(resets[0]["origin"], json!("journal"));
    assert_eq!(resets[1]["event"], json!("reset"));
    let output = dir.run(&["history"]);
    assert!(
        stdout(&output).contains("[restore of 20261204_000000]"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn restore_into_empty_files_is_labelled() {
    let dir = DataDir::new();
    reset_at(
        &dir,
        "2026-12-04T00:00:00+00:00",
        r#"{"a": {"status": "draft"}}"#,
    );
    let output = dir
        .command(&["restore", "20261204_000000"])
        .env("ORDER_RESET_NOW", "2026-12-04T10:00:00+00:00")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = dir.run(&["history"]);
    let listing = stdout(&output);
    let restore_row = listing
        .lines()
        .find(|line| line.contains("[restore of 20261204_000000]"))
        .unwrap_or_else(|| panic!("no restore row in:\n{listing}"));
    assert!(
        restore_row.ends_with("[restore of 20261204_000000], [active files were empty]"),
        "{restore_row}"
    );
    assert!(!listing.contains("[nothing to reset]"), "{listing}");
}
