//! Tests of `search`.

use std::fs;

use serde_json::{Value, json};

use crate::common::{DataDir, SESSIONS, code, real_fixtures, sample_data, stderr, stdout};

const LEGACY: &str = "session_history_20260301_000000.json";
const SAMPLE_ARCHIVE: &str = "session_history_20260303_000000.json";
const OTHER_ARCHIVE: &str = "session_history_20260304_000000.json";

/// Sessions archived by the second reset: a session carried over from the
/// legacy archive, a term hidden in other fields, escaped text and a key
/// that differs from its `session_id` member.
const OTHER_SESSIONS: &str = r#"{
  "5eb16283-9a0f-41c2-93e4-6f7a8b9c0d06": {
    "session_id": "5eb16283-9a0f-41c2-93e4-6f7a8b9c0d06",
    "invoice_id": "2000100099",
    "order_number": "3000500099",
    "started_at": "2026-03-03T07:00:00.000001",
    "status": "completed",
    "user_id": "packer01",
    "last_modified_at": "2026-03-03T07:30:00.000002",
    "audit_logs": []
  },
  "k-777": {
    "session_id": "s-777",
    "invoice_id": "2000100777",
    "order_number": "3000500777",
    "items_expected": [{"sku": "4000500777", "name": "Box 5000500777x"}],
    "status": "draft",
    "user_id": null,
    "last_modified_by": "admin",
    "audit_logs": [
      {"action": "note", "user": "admin", "details": "replaces order 6000500777"}
    ]
  },
  "k-778": {
    "session_id": "k-778",
    "invoice_id": "2000100778",
    "order_number": "ORD-Cr\u00e8me-\"7\"",
    "status": "approved",
    "user_id": "picker\u00e9",
    "audit_logs": []
  }
}"#;

/// Returns a data directory with a legacy archive and two journaled resets:
/// the sample data at 2026-03-03 and [`OTHER_SESSIONS`] at 2026-03-04.
fn archives() -> DataDir {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(LEGACY), LEGACY);
    let sample = fs::read(sample_data().join(SESSIONS)).unwrap();
    reset_at(&dir, "2026-03-03T00:00:00+00:00", &sample);
    reset_at(&dir, "2026-03-04T00:00:00+00:00", OTHER_SESSIONS.as_bytes());
    dir
}

fn reset_at(dir: &DataDir, now: &str, sessions: &[u8]) {
    dir.write(SESSIONS, sessions);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", now)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
}

fn total_size(dir: &DataDir, names: &[&str]) -> u64 {
    names
        .iter()
        .map(|name| fs::metadata(dir.file(name)).unwrap().len())
        .sum()
}

/// Returns the matches of a search that exits `expected_exit`, after checking
/// the fields every report has.
fn search(dir: &DataDir, term: &str, expected_exit: i32) -> Vec<Value> {
    let (exit, report) = dir.run_json(&["history", "search", term]);
    assert_eq!(exit, expected_exit, "{report}");
    assert_eq!(report["schema_version"], json!(1));
    assert_eq!(report["term"], json!(term));
    report["matches"].as_array().unwrap().clone()
}

#[test]
fn search_by_session_id() {
    let dir = archives();
    let matches = search(&dir, "0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01", 0);
    assert_eq!(
        matches,
        [json!({
            "run_id": "20260303_000000",
            "file": SAMPLE_ARCHIVE,
            "reset_at": "2026-03-03T00:00:00.000000+00:00",
            "origin": "journal",
            "session_id": "0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01",
            "order_number": "3000500101",
            "invoice_id": "2000100101",
            "status": "draft",
            "user": "admin",
            "started_at": "2026-03-02T08:14:03.120311",
            "last_modified_at": "2026-03-02T08:14:03.121004",
            "matched_fields": ["session_id"],
        })]
    );
}

#[test]
fn search_by_session_id_member() {
    let dir = archives();
    for term in ["k-777", "s-777"] {
        let matches = search(&dir, term, 0);
        assert_eq!(matches.len(), 1, "{term}");
        assert_eq!(matches[0]["session_id"], json!("k-777"), "{term}");
        assert_eq!(matches[0]["matched_fields"], json!(["session_id"]));
        assert_eq!(matches[0]["user"], json!("admin"));
    }
}

#[test]
fn search_by_order_number() {
    let dir = archives();
    let matches = search(&dir, "3000500777", 0);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0]["run_id"], json!("20260304_000000"));
    assert_eq!(matches[0]["file"], json!(OTHER_ARCHIVE));
    assert_eq!(matches[0]["session_id"], json!("k-777"));
    assert_eq!(matches[0]["invoice_id"], json!("2000100777"));
    assert_eq!(matches[0]["status"], json!("draft"));
    assert_eq!(matches[0]["started_at"], json!(null));
    assert_eq!(matches[0]["matched_fields"], json!(["order_number"]));
}

#[test]
fn search_by_invoice_id() {
    let dir = archives();
    let matches = search(&dir, "2000100102", 0);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0]["file"], json!(SAMPLE_ARCHIVE));
    assert_eq!(
        matches[0]["session_id"],
        json!("1a7d2e4f-5c6b-4d8e-8f90-2b3c4d5e6f02")
    );
    assert_eq!(matches[0]["order_number"], json!("3000500102"));
    assert_eq!(matches[0]["status"], json!("approved"));
    assert_eq!(matches[0]["matched_fields"], json!(["invoice_id"]));
}

#[test]
fn search_across_archives() {
    let dir = archives();
    let (exit, report) = dir.run_json(&["history", "search", "3000500099"]);
    assert_eq!(exit, 0);
    assert_eq!(report["archives_searched"], json!(3));
    assert_eq!(
        report["bytes_searched"],
        json!(total_size(&dir, &[LEGACY, SAMPLE_ARCHIVE, OTHER_ARCHIVE]))
    );
    assert_eq!(report["invalid_archives"], json!([]));
    let matches = report["matches"].as_array().unwrap();
    let found: Vec<(&str, &str, &str, &str, &str)> = matches
        .iter()
        .map(|found| {
            (
                found["run_id"].as_str().unwrap(),
                found["origin"].as_str().unwrap(),
                found["reset_at"].as_str().unwrap(),
                found["status"].as_str().unwrap(),
                found["last_modified_at"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "20260304_000000",
                "journal",
                "2026-03-04T00:00:00.000000+00:00",
                "completed",
                "2026-03-03T07:30:00.000002"
            ),
            (
                "20260301_000000",
                "archive",
                "2026-03-01T00:00:00+00:00",
                "approved",
                "2026-03-02T08:21:10.002215"
            ),
        ]
    );
    for found in matches {
        assert_eq!(
            found["session_id"],
            json!("5eb16283-9a0f-41c2-93e4-6f7a8b9c0d06")
        );
        assert_eq!(found["matched_fields"], json!(["order_number"]));
    }
}

#[test]
fn search_human_output() {
    let dir = archives();
    let output = dir.run(&["history", "search", "2000100099"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "\
session_history_20260304_000000.json  reset at 2026-03-04T00:00:00.000000+00:00
SESSION ID                            ORDER       STATUS     USER      STARTED      MODIFIED
5eb16283-9a0f-41c2-93e4-6f7a8b9c0d06  3000500099  completed  packer01  03-03 07:00  03-03 07:30

session_history_20260301_000000.json  reset at 2026-03-01T00:00:00+00:00 [not in the journal]
SESSION ID                            ORDER       STATUS    USER   STARTED      MODIFIED
5eb16283-9a0f-41c2-93e4-6f7a8b9c0d06  3000500099  approved  admin  03-02 08:20  03-02 08:21

2 matching sessions in 2 of 3 archives (7.4 KiB).
"
    );
}

#[test]
fn search_ignores_other_fields_and_substrings() {
    let dir = archives();
    for term in [
        // In a nested item, an item name, an audit log entry.
        "4000500777",
        "5000500777",
        "6000500777",
        // Part of a longer order number or session id.
        "300050077",
        "000500777",
        "0f6c1f0e",
        // A status, a user and a time are not searched.
        "draft",
        "admin",
        "2026-03-02T08:14:03.120311",
    ] {
        let matches = search(&dir, term, 1);
        assert_eq!(matches, Vec::<Value>::new(), "{term}");
    }
}

#[test]
fn search_escaped_text() {
    let dir = archives();
    let matches = search(&dir, "ORD-Crème-\"7\"", 0);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0]["session_id"], json!("k-778"));
    assert_eq!(matches[0]["order_number"], json!("ORD-Crème-\"7\""));
    assert_eq!(matches[0]["user"], json!("pickeré"));
    assert_eq!(matches[0]["matched_fields"], json!(["order_number"]));

    let matches = search(&dir, "ORD-Creme-\"7\"", 1);
    assert!(matches.is_empty());
}

#[test]
fn search_raw_utf8_archive() {
    // A writer without ensure_ascii stores the characters as UTF-8.
    let dir = DataDir::new();
    dir.write(
        "session_history_20260305_000000.json",
        "{\"k\": {\"order_number\": \"ORD-Crème-1\", \"status\": \"draft\"}}",
    );
    let matches = search(&dir, "ORD-Crème-1", 0);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0]["session_id"], json!("k"));
}

#[test]
fn search_no_match() {
    let dir = archives();
    let (exit, report) = dir.run_json(&["history", "search", "9999999999"]);
    assert_eq!(exit, 1);
    assert_eq!(report["matches"], json!([]));
    assert_eq!(report["archives_searched"], json!(3));
    assert_eq!(report["invalid_archives"], json!([]));

    let output = dir.run(&["history", "search", "9999999999"]);
    assert_eq!(code(&output), 1);
    assert_eq!(
        stdout(&output),
        "No session matches `9999999999` in 3 archives (7.4 KiB).\n"
    );
}

#[test]
fn search_empty_directory() {
    let dir = DataDir::new();
    let (exit, report) = dir.run_json(&["history", "search", "3000500101"]);
    assert_eq!(exit, 1);
    assert_eq!(report["archives_searched"], json!(0));
    assert_eq!(report["bytes_searched"], json!(0));
    assert_eq!(report["matches"], json!([]));
}

#[test]
fn search_skips_invalid_and_late_archives() {
    let dir = archives();
    let hidden = r#"{"x": {"order_number": "3000500888"}}"#;
    dir.write("session_history_20260305_000000.late", hidden);
    dir.write("session_history_20260306_000000.invalid", hidden);
    dir.write("takeover_history_20260307_000000.json", hidden);
    let (exit, report) = dir.run_json(&["history", "search", "3000500888"]);
    assert_eq!(exit, 1);
    assert_eq!(report["archives_searched"], json!(3));
    assert_eq!(report["matches"], json!([]));
}

#[test]
fn search_reports_unparseable_archive() {
    let dir = archives();
    let broken = "session_history_20260305_000000.json";
    dir.write(broken, "{\"x\": {\"order_number\": \"3000500099\"}");
    let (exit, report) = dir.run_json(&["history", "search", "3000500099"]);
    assert_eq!(exit, 65);
    assert_eq!(report["archives_searched"], json!(4));
    assert_eq!(report["matches"].as_array().unwrap().len(), 2);
    assert_eq!(report["invalid_archives"][0]["file"], json!(broken));
    let error = report["invalid_archives"][0]["error"].as_str().unwrap();
    assert!(error.contains("is not valid JSON"), "{error}");
    assert!(error.contains("line 1, column 37"), "{error}");

    // An archive that does not contain the term is not parsed.
    let (exit, report) = dir.run_json(&["history", "search", "3000500101"]);
    assert_eq!(exit, 0);
    assert_eq!(report["invalid_archives"], json!([]));
}

#[test]
fn search_rejects_empty_term() {
    let dir = archives();
    let (exit, report) = dir.run_json(&["history", "search", ""]);
    assert_eq!(exit, 2);
    assert_eq!(report["error_kind"], json!("usage"));
}

#[test]
fn search_repeated_key_keeps_last_value() {
    let dir = DataDir::new();
    dir.write(
        "session_history_20260305_000000.json",
        r#"{"a": {"order_number": "1"}, "b": {"order_number": "1"}, "a": {"order_number": "2"}}"#,
    );
    let matches = search(&dir, "1", 0);
    let ids: Vec<&str> = matches
        .iter()
        .map(|found| found["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b"]);
    let matches = search(&dir, "2", 0);
    assert_eq!(matches[0]["session_id"], json!("a"));
}

#[test]
fn search_real_legacy_archives() {
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
    let matches = search(&dir, "1045327745", 0);
    let found: Vec<(&str, &str, &str)> = matches
        .iter()
        .map(|found| {
            (
                found["session_id"].as_str().unwrap(),
                found["invoice_id"].as_str().unwrap(),
                found["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "7b863f9f-df77-4d7b-aa63-13042105889d",
                "1003210333",
                "approved"
            ),
            (
                "4c320675-0319-44fb-b50d-2b6ee19659fa",
                "1003210333",
                "draft"
            ),
        ]
    );
    for found in &matches {
        assert_eq!(found["run_id"], json!("20251205_120337"));
        assert_eq!(found["reset_at"], json!("2025-12-05T12:03:37+00:00"));
        assert_eq!(found["user"], json!("superadmin"));
    }

    let matches = search(&dir, "33ace247-2564-418d-8688-37693d2cda93", 0);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0]["run_id"], json!("20251205_120402"));
    assert_eq!(matches[0]["order_number"], json!("1045327853"));
}
