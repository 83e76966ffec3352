//! `restore`: byte-identical restores, merges checked with Python's json
//! module, archives of the replaced state, the journal, and rejections.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::common::LockHolder;
use crate::common::{
    DataDir, JOURNAL, LOCK, SESSIONS, TAKEOVERS, code, is_root, real_fixtures, sample_data, stderr,
    stdout,
};

/// Time of the accidental reset.
const RESET_AT: &str = "2026-12-04T00:00:01+01:00";
const RESET_ID: &str = "20261204_000001";
/// Time of the restore, later the same morning.
const RESTORE_AT: &str = "2026-12-04T10:30:00+01:00";
const RESTORE_ID: &str = "20261204_103000";

/// Sessions the backend wrote after the reset, in `json.dump(indent=2)`
/// layout: one session that the archive also has (with other content), and
/// one new session with non-ASCII text, which Python writes as `\u` escapes.
const ACTIVE_AFTER_RESET: &str = concat!(
    "{\n",
    "  \"0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01\": {\n",
    "    \"session_id\": \"0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01\",\n",
    "    \"status\": \"approved\",\n",
    "    \"qty_ordered\": 1.0,\n",
    "    \"audit_logs\": []\n",
    "  },\n",
    "  \"caf\\u00e9-0007\": {\n",
    "    \"session_id\": \"caf\\u00e9-0007\",\n",
    "    \"status\": \"draft\",\n",
    "    \"name\": \"Stra\\u00dfe \\ud83d\\ude00\",\n",
    "    \"price\": 12.5,\n",
    "    \"items_scanned\": [\n",
    "      {\n",
    "        \"sku\": \"TB100\",\n",
    "        \"qty\": 2.0\n",
    "      }\n",
    "    ]\n",
    "  }\n",
    "}"
);

fn run_at(dir: &DataDir, now: &str, args: &[&str]) -> Output {
    dir.command(args)
        .env("ORDER_RESET_NOW", now)
        .output()
        .expect("run order-reset")
}

/// Runs with `--json` at `now` and returns the exit code and the document.
fn json_at(dir: &DataDir, now: &str, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = run_at(dir, now, &all);
    let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not one JSON document ({error}): {}\nstderr: {}",
            stdout(&output),
            stderr(&output)
        )
    });
    (code(&output), value)
}

/// Resets the directory at [`RESET_AT`] and checks that it succeeded.
fn accidental_reset(dir: &DataDir) {
    let output = run_at(dir, RESET_AT, &["reset"]);
    assert_eq!(code(&output), 0, "reset stderr: {}", stderr(&output));
}

/// Returns every file in the directory but the lock file, whose holder
/// record a run may rewrite, with its content (lossy UTF-8, so that a
/// failed comparison prints readable text).
fn snapshot(dir: &DataDir) -> BTreeMap<String, String> {
    dir.names()
        .into_iter()
        .filter(|name| name != LOCK)
        .map(|name| {
            let text = String::from_utf8_lossy(&dir.read(&name)).into_owned();
            (name, text)
        })
        .collect()
}

/// Returns [`snapshot`] without the journal and files kept beside it.
fn snapshot_without_journal(dir: &DataDir) -> BTreeMap<String, String> {
    let mut files = snapshot(dir);
    files.retain(|name, _| !name.starts_with(JOURNAL.trim_end_matches(".jsonl")));
    files
}

fn path_text(dir: &DataDir, name: &str) -> Value {
    json!(dir.file(name).display().to_string())
}

/// Splits a document in `json.dump(indent=2)` layout into its top-level
/// members, as (key text, value text), by the two-space indent that only
/// top-level keys have.
fn layout_members(text: &str) -> Vec<(String, String)> {
    let body = text
        .strip_prefix("{\n")
        .and_then(|rest| rest.strip_suffix("\n}"))
        .expect("a non-empty object in json.dump(indent=2) layout");
    let mut members: Vec<(String, String)> = Vec::new();
    for line in body.split('\n') {
        let is_key = line.starts_with("  \"");
        if is_key {
            if let Some((_, value)) = members.last_mut() {
                let trimmed = value.strip_suffix(',').expect("members end with a comma");
                *value = trimmed.to_string();
            }
            let (key, value) = line[2..].split_once("\": ").expect("key and value");
            members.push((format!("{key}\""), value.to_string()));
        } else {
            let (_, value) = members.last_mut().expect("a value line after a key");
            value.push('\n');
            value.push_str(line);
        }
    }
    members
}

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Reads the merged file with Python's `json.load` and compares it with
/// what Python makes of the same merge: the active sessions, then the
/// archived ones whose ids are absent, dumped with `indent=2`.
const PYTHON_CHECK: &str = r#"
import json, sys
merged_path, active_path, archive_path = sys.argv[1:4]
with open(merged_path) as f:
    merged = json.load(f)
with open(active_path) as f:
    active = json.load(f)
with open(archive_path) as f:
    archive = json.load(f)
expected = dict(active)
for key, value in archive.items():
    expected.setdefault(key, value)
with open(merged_path) as f:
    text = f.read()
print(json.dumps({
    "keys": list(merged),
    "same_data": merged == expected,
    "same_text": json.dumps(expected, indent=2) == text,
}))
"#;

/// Runs [`PYTHON_CHECK`]. Returns `None`, with a message, when python3 is
/// not installed.
fn python_check(merged: &Path, active: &Path, archive: &Path) -> Option<Value> {
    if !python3_available() {
        eprintln!("skipping the json.load check: python3 is not installed");
        return None;
    }
    let output = Command::new("python3")
        .args(["-c", PYTHON_CHECK])
        .arg(merged)
        .arg(active)
        .arg(archive)
        .output()
        .expect("run python3");
    assert!(output.status.success(), "python3: {}", stderr(&output));
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

/// Resets `original` by accident, restores it, and checks the bytes.
fn check_restore_after_reset(original: &[u8], context: &str) {
    let dir = DataDir::new();
    dir.write(SESSIONS, original);
    accidental_reset(&dir);
    assert_eq!(dir.read(SESSIONS), b"{}", "{context}: reset emptied it");

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID]);
    assert_eq!(exit, 0, "{context}: {report}");
    assert_eq!(dir.read(SESSIONS), original, "{context}: restored bytes");
    assert_eq!(report["success"], json!(true), "{context}");
    assert_eq!(report["restored_from"], json!(RESET_ID), "{context}");
    assert_eq!(report["merged"], json!(false), "{context}");
    assert_eq!(report["archived_to"], json!(null), "{context}");
    assert_eq!(report["dry_run"], json!(false), "{context}");
    assert!(
        dir.names_with(".").is_empty(),
        "{context}: temporary files left: {:?}",
        dir.names_with(".")
    );
}

#[test]
fn restore_after_reset_gives_back_sample_bytes() {
    let original = fs::read(sample_data().join(SESSIONS)).unwrap();
    check_restore_after_reset(&original, "examples/data");

    let dir = DataDir::new();
    dir.write(SESSIONS, &original);
    accidental_reset(&dir);
    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID]);
    assert_eq!(exit, 0);
    assert_eq!(report["schema_version"], json!(1));
    assert_eq!(report["sessions_restored"], json!(5));
    assert_eq!(report["takeover_requests_restored"], json!(0));
    assert_eq!(report["conflicts"], json!([]));
    assert_eq!(report["takeover_archived_to"], json!(null));
    assert_eq!(report["run_id"], json!(null));
    assert_eq!(
        report["restored_at"],
        json!("2026-12-04T10:30:00.000000+01:00")
    );
    assert!(report["duration_ms"].is_u64());
}

#[test]
fn restore_after_reset_gives_back_real_bytes() {
    let Some(fixtures) = real_fixtures() else {
        return;
    };
    let mut checked = 0;
    for entry in fs::read_dir(&fixtures).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("scan_sessions.") && name.ends_with(".json") {
            check_restore_after_reset(&fs::read(fixtures.join(&name)).unwrap(), &name);
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no scan_sessions.*.json in {}",
        fixtures.display()
    );
}

#[test]
fn restore_with_takeovers_gives_back_both_files() {
    let dir = DataDir::new();
    let sessions = fs::read(sample_data().join(SESSIONS)).unwrap();
    let takeovers = fs::read(sample_data().join(TAKEOVERS)).unwrap();
    dir.write(SESSIONS, &sessions);
    dir.write(TAKEOVERS, &takeovers);
    accidental_reset(&dir);
    assert_eq!(dir.read(TAKEOVERS), b"{}");

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--takeovers"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(dir.read(SESSIONS), sessions);
    assert_eq!(dir.read(TAKEOVERS), takeovers);
    assert_eq!(report["sessions_restored"], json!(5));
    assert_eq!(report["takeover_requests_restored"], json!(1));
    assert_eq!(report["takeover_conflicts"], json!([]));
}

#[test]
fn restore_without_takeovers_leaves_them() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    dir.copy_in(&sample_data().join(TAKEOVERS), TAKEOVERS);
    accidental_reset(&dir);

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(dir.read(TAKEOVERS), b"{}");
    assert_eq!(report["takeover_requests_restored"], json!(0));
}

#[test]
fn non_empty_active_file_is_rejected() {
    let dir = merge_setup();
    let before = snapshot(&dir);

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID]);
    assert_eq!(exit, 1, "{report}");
    assert_eq!(report["success"], json!(false));
    assert_eq!(report["error_kind"], json!("other"));
    assert_eq!(report["exit_code"], json!(1));
    let message = report["error"].as_str().unwrap();
    assert!(message.contains("has 2 sessions"), "{message}");
    assert!(message.contains("--merge"), "{message}");
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn non_empty_takeovers_reject_both() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    dir.copy_in(&sample_data().join(TAKEOVERS), TAKEOVERS);
    accidental_reset(&dir);
    let takeovers = r#"{"t1": {"request_id": "t1", "status": "pending"}}"#;
    dir.write(TAKEOVERS, takeovers);
    let before = snapshot(&dir);

    let output = run_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--takeovers"]);
    assert_eq!(code(&output), 1, "stderr: {}", stderr(&output));
    assert!(stderr(&output).contains("has 1 takeover request"));
    assert_eq!(snapshot(&dir), before);
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn merge_adds_absent_sessions_and_keeps_active_ones() {
    let dir = DataDir::new();
    let archived = fs::read(sample_data().join(SESSIONS)).unwrap();
    dir.write(SESSIONS, &archived);
    accidental_reset(&dir);
    dir.write(SESSIONS, ACTIVE_AFTER_RESET);

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["merged"], json!(true));
    assert_eq!(report["sessions_restored"], json!(4));
    assert_eq!(
        report["conflicts"],
        json!(["0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01"])
    );
    let pre_restore = format!("session_history_{RESTORE_ID}.json");
    assert_eq!(report["archived_to"], path_text(&dir, &pre_restore));
    assert_eq!(report["run_id"], json!(RESTORE_ID));
    assert_eq!(dir.read(&pre_restore), ACTIVE_AFTER_RESET.as_bytes());

    // Each session keeps the exact text of the file it came from: the two
    // active ones first, then the archived ones that were absent.
    let merged = String::from_utf8(dir.read(SESSIONS)).unwrap();
    let merged_members = layout_members(&merged);
    let active_members = layout_members(ACTIVE_AFTER_RESET);
    let archive_members = layout_members(std::str::from_utf8(&archived).unwrap());
    let mut expected = active_members.clone();
    expected.extend(archive_members.into_iter().skip(1));
    assert_eq!(merged_members.len(), 6);
    for ((key, value), (expected_key, expected_value)) in merged_members.iter().zip(&expected) {
        assert_eq!(key, expected_key);
        assert_eq!(value, expected_value, "session {key}");
    }
    assert_eq!(merged_members[1].0, "\"caf\\u00e9-0007\"");

    let archive_path = dir.file(&format!("session_history_{RESET_ID}.json"));
    let Some(python) = python_check(&dir.file(SESSIONS), &dir.file(&pre_restore), &archive_path)
    else {
        return;
    };
    assert_eq!(python["same_data"], json!(true), "{python}");
    assert_eq!(python["same_text"], json!(true), "{python}");
    assert_eq!(
        python["keys"],
        json!([
            "0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01",
            "café-0007",
            "1a7d2e4f-5c6b-4d8e-8f90-2b3c4d5e6f02",
            "2b8e3f50-6d7c-4e9f-a0b1-3c4d5e6f7a03",
            "3c9f4061-7e8d-4fa0-b1c2-4d5e6f7a8b04",
            "4da05172-8f9e-40b1-c2d3-5e6f7a8b9c05"
        ])
    );
}

#[test]
fn merge_of_real_fixtures_matches_python() {
    let Some(fixtures) = real_fixtures() else {
        return;
    };
    // Archive, active file, sessions added.
    let cases = [
        (
            "scan_sessions.approved-draft.json",
            "scan_sessions.cancelled-draft.json",
            4,
        ),
        (
            "scan_sessions.cancelled-draft.json",
            "session_history_20251205_120402.json",
            3,
        ),
    ];
    for (archived_name, active_name, added) in cases {
        let dir = DataDir::new();
        dir.copy_in(&fixtures.join(archived_name), SESSIONS);
        accidental_reset(&dir);
        dir.copy_in(&fixtures.join(active_name), SESSIONS);

        let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
        assert_eq!(exit, 0, "{archived_name} into {active_name}: {report}");
        assert_eq!(report["sessions_restored"], json!(added), "{active_name}");
        assert_eq!(report["conflicts"], json!([]), "{active_name}");

        let archive_path = dir.file(&format!("session_history_{RESET_ID}.json"));
        let merged = String::from_utf8(dir.read(SESSIONS)).unwrap();
        let active = fs::read_to_string(fixtures.join(active_name)).unwrap();
        let archived = fs::read_to_string(&archive_path).unwrap();
        let mut expected = layout_members(&active);
        expected.extend(layout_members(&archived));
        assert_eq!(layout_members(&merged), expected, "{active_name}");

        if let Some(python) = python_check(
            &dir.file(SESSIONS),
            &fixtures.join(active_name),
            &archive_path,
        ) {
            assert_eq!(python["same_data"], json!(true), "{python}");
            assert_eq!(python["same_text"], json!(true), "{python}");
        }
    }
}

#[test]
fn merge_with_only_conflicts_changes_nothing() {
    let dir = DataDir::new();
    let archived = fs::read(sample_data().join(SESSIONS)).unwrap();
    dir.write(SESSIONS, &archived);
    accidental_reset(&dir);
    dir.write(SESSIONS, &archived);
    let before = snapshot_without_journal(&dir);

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["sessions_restored"], json!(0));
    assert_eq!(report["merged"], json!(false));
    assert_eq!(report["conflicts"].as_array().unwrap().len(), 5);
    assert_eq!(report["archived_to"], json!(null));
    assert_eq!(dir.read(SESSIONS), archived);
    assert_eq!(snapshot_without_journal(&dir), before);
    let journal = dir.journal();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[1]["event"], json!("restore"));
    assert_eq!(journal[1]["archives"], json!([]));
}

#[test]
fn merge_of_takeovers_reports_their_conflicts() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    dir.copy_in(&sample_data().join(TAKEOVERS), TAKEOVERS);
    accidental_reset(&dir);
    let takeovers = fs::read_to_string(sample_data().join(TAKEOVERS)).unwrap();
    let new_request =
        "{\n  \"t-new\": {\n    \"request_id\": \"t-new\",\n    \"status\": \"pending\"\n  }\n}";
    dir.write(TAKEOVERS, new_request);

    let (exit, report) = json_at(
        &dir,
        RESTORE_AT,
        &["restore", RESET_ID, "--takeovers", "--merge"],
    );
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["sessions_restored"], json!(5));
    assert_eq!(report["takeover_requests_restored"], json!(1));
    assert_eq!(report["takeover_conflicts"], json!([]));
    assert_eq!(
        report["takeover_archived_to"],
        path_text(&dir, &format!("takeover_history_{RESTORE_ID}.json"))
    );
    // The sessions file was empty, so it gets the archive's bytes as they are.
    assert_eq!(report["archived_to"], json!(null));
    assert_eq!(
        dir.read(SESSIONS),
        fs::read(sample_data().join(SESSIONS)).unwrap()
    );
    let expected_body = takeovers.strip_prefix("{\n").unwrap();
    let expected = format!(
        "{},\n{expected_body}",
        new_request.strip_suffix("\n}").unwrap()
    );
    assert_eq!(String::from_utf8(dir.read(TAKEOVERS)).unwrap(), expected);
}

#[test]
fn restore_is_undoable() {
    let dir = merge_setup();

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
    assert_eq!(exit, 0, "{report}");
    let pre_restore = format!("session_history_{RESTORE_ID}.json");
    assert_eq!(dir.read(&pre_restore), ACTIVE_AFTER_RESET.as_bytes());

    // Undo: reset the merged state away, then restore the archive of the
    // state before the restore.
    let output = run_at(&dir, "2026-12-04T10:45:00+01:00", &["reset"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let (exit, report) = json_at(
        &dir,
        "2026-12-04T10:46:00+01:00",
        &["restore", &pre_restore],
    );
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["restored_from"], json!(RESTORE_ID));
    assert_eq!(report["sessions_restored"], json!(2));
    assert_eq!(dir.read(SESSIONS), ACTIVE_AFTER_RESET.as_bytes());
}

#[test]
fn restore_writes_a_journal_line() {
    let dir = merge_setup();

    let (exit, _) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
    assert_eq!(exit, 0);
    let journal = dir.journal();
    assert_eq!(journal.len(), 2);
    let line = &journal[1];
    assert_eq!(line["event"], json!("restore"));
    assert_eq!(line["restored_from"], json!(RESET_ID));
    assert_eq!(line["id"], json!(RESTORE_ID));
    assert_eq!(line["reset_at"], json!("2026-12-04T10:30:00.000000+01:00"));
    assert_eq!(line["total_sessions_reset"], json!(2));
    assert_eq!(
        line["sessions_by_status"],
        json!({"approved": 1, "draft": 1})
    );
    assert_eq!(line["takeover_requests_reset"], json!(0));
    assert_eq!(line["flags"], json!(["merge"]));
    assert_eq!(line["pid"].as_u64().map(|pid| pid > 0), Some(true));
    assert_eq!(line["version"], json!(env!("CARGO_PKG_VERSION")));
    assert!(line["user"].is_string());
    assert!(line["host"].is_string());
    assert!(line["duration_ms"].is_u64());
    let archives = line["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 1);
    let pre_restore = format!("session_history_{RESTORE_ID}.json");
    assert_eq!(archives[0]["file"], json!(pre_restore));
    assert_eq!(archives[0]["source"], json!("sessions"));
    assert_eq!(archives[0]["entries"], json!(2));
    assert_eq!(archives[0]["bytes"], json!(ACTIVE_AFTER_RESET.len()));
    assert_eq!(
        archives[0]["sha256"],
        json!(crate::common::sha256_file(&dir.file(&pre_restore)))
    );
}

#[test]
fn restore_into_empty_file_journals_no_archive() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    accidental_reset(&dir);
    let (exit, _) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID]);
    assert_eq!(exit, 0);
    let journal = dir.journal();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[1]["event"], json!("restore"));
    assert_eq!(journal[1]["id"], json!(null));
    assert_eq!(journal[1]["archives"], json!([]));
    assert_eq!(journal[1]["total_sessions_reset"], json!(0));
    assert_eq!(journal[1]["flags"], json!([]));
}

#[test]
fn legacy_archive_restores_as_archived() {
    let legacy = "session_history_20260301_000000.json";
    let original = fs::read(sample_data().join(legacy)).unwrap();
    assert!(String::from_utf8_lossy(&original).contains("\"archived_at\""));
    for id in [legacy, "20260301_000000"] {
        let dir = DataDir::new();
        dir.copy_in(&sample_data().join(legacy), legacy);
        dir.write(SESSIONS, "{}");

        let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", id]);
        assert_eq!(exit, 0, "{id}: {report}");
        assert_eq!(report["restored_from"], json!("20260301_000000"));
        assert_eq!(report["sessions_restored"], json!(1));
        assert_eq!(dir.read(SESSIONS), original, "{id}");
        assert_eq!(dir.read(legacy), original, "{id}: archive unchanged");
    }
}

#[test]
fn real_legacy_archives_restore_as_archived() {
    let Some(fixtures) = real_fixtures() else {
        return;
    };
    for name in [
        "session_history_20251205_120337.json",
        "session_history_20251205_120402.json",
    ] {
        let original = fs::read(fixtures.join(name)).unwrap();
        let dir = DataDir::new();
        dir.write(name, &original);
        let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", name]);
        assert_eq!(exit, 0, "{name}: {report}");
        assert_eq!(dir.read(SESSIONS), original, "{name}");
    }
}

#[test]
fn dry_run_changes_nothing() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    dir.copy_in(&sample_data().join(TAKEOVERS), TAKEOVERS);
    accidental_reset(&dir);
    dir.write(SESSIONS, ACTIVE_AFTER_RESET);
    let before = snapshot(&dir);

    let (exit, report) = json_at(
        &dir,
        RESTORE_AT,
        &["restore", RESET_ID, "--takeovers", "--merge", "--dry-run"],
    );
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["dry_run"], json!(true));
    assert_eq!(report["sessions_restored"], json!(4));
    assert_eq!(report["takeover_requests_restored"], json!(1));
    assert_eq!(report["merged"], json!(true));
    assert_eq!(
        report["conflicts"],
        json!(["0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01"])
    );
    assert_eq!(
        report["archived_to"],
        path_text(&dir, &format!("session_history_{RESTORE_ID}.json"))
    );
    assert_eq!(report["takeover_archived_to"], json!(null));
    assert_eq!(snapshot(&dir), before);

    let output = run_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--dry-run"]);
    assert_eq!(code(&output), 1, "a dry run rejects what a restore rejects");
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn dry_run_without_lock_file_creates_nothing() {
    let dir = DataDir::new();
    let legacy = "session_history_20260301_000000.json";
    dir.copy_in(&sample_data().join(legacy), legacy);
    let before = dir.names();

    let output = run_at(&dir, RESTORE_AT, &["restore", legacy, "--dry-run"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert!(stdout(&output).starts_with("Dry run, nothing changed."));
    assert_eq!(dir.names(), before);
}

#[test]
fn rejected_ids_exit_2() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    accidental_reset(&dir);
    for id in [
        "../x",
        "/etc/passwd",
        "20261204",
        "./session_history_20261204_000001.json",
        "scan_sessions.json",
    ] {
        let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", id]);
        assert_eq!(exit, 2, "{id}: {report}");
        assert_eq!(report["error_kind"], json!("usage"), "{id}");
    }
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn unknown_id_exits_66() {
    let dir = DataDir::new();
    dir.write(SESSIONS, "{}");
    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", "20991231_235959"]);
    assert_eq!(exit, 66, "{report}");
    assert_eq!(report["error_kind"], json!("not_found"));
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn pruned_archive_exits_66() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    accidental_reset(&dir);
    fs::remove_file(dir.file(&format!("session_history_{RESET_ID}.json"))).unwrap();

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID]);
    assert_eq!(exit, 66, "{report}");
    assert!(report["error"].as_str().unwrap().contains("is missing"));
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn invalid_and_late_archives_exit_65() {
    let dir = DataDir::new();
    dir.write(SESSIONS, "{\"a\": ");
    let output = run_at(&dir, RESET_AT, &["reset", "--force"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let invalid = format!("session_history_{RESET_ID}.invalid");
    assert_eq!(dir.names_with("session_history_"), vec![invalid.clone()]);
    let late = format!("session_history_{RESET_ID}.late");
    dir.write(&late, "{}");

    for id in [invalid.as_str(), late.as_str(), RESET_ID] {
        let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", id]);
        assert_eq!(exit, 65, "{id}: {report}");
        assert_eq!(report["error_kind"], json!("invalid_data"), "{id}");
        assert!(
            report["error"].as_str().unwrap().contains(".json archives"),
            "{id}: {report}"
        );
    }
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn changed_archive_exits_65() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    accidental_reset(&dir);
    let archive = format!("session_history_{RESET_ID}.json");
    dir.write(&archive, r#"{"x": {"status": "draft"}}"#);

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID]);
    assert_eq!(exit, 65, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("the journal recorded"),
        "{report}"
    );
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn invalid_active_file_exits_65() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    accidental_reset(&dir);
    for content in ["", "{\"a\": {", "[]"] {
        dir.write(SESSIONS, content);
        let before = snapshot(&dir);
        let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
        assert_eq!(exit, 65, "{content:?}: {report}");
        assert_eq!(snapshot(&dir), before, "{content:?}");
    }
}

#[test]
fn held_lock_exits_75() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    accidental_reset(&dir);
    let before = snapshot(&dir);
    let holder = LockHolder::start(&dir);

    for args in [
        &["restore", RESET_ID, "--wait", "300ms"][..],
        &["restore", RESET_ID, "--wait", "300ms", "--dry-run"][..],
    ] {
        let output = run_at(&dir, RESTORE_AT, args);
        assert_eq!(code(&output), 75, "{args:?} stderr: {}", stderr(&output));
        assert!(
            stderr(&output).contains(&format!("pid {}", holder.pid())),
            "{}",
            stderr(&output)
        );
    }
    assert_eq!(snapshot(&dir), before);

    drop(holder);
    let output = run_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--wait", "5s"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
}

#[test]
fn owner_and_mode_are_kept() {
    let dir = DataDir::new();
    let original = fs::read(sample_data().join(SESSIONS)).unwrap();
    dir.write(SESSIONS, &original);
    fs::set_permissions(dir.file(SESSIONS), fs::Permissions::from_mode(0o640)).unwrap();
    let owner = if is_root() {
        std::os::unix::fs::chown(dir.file(SESSIONS), Some(4321), Some(4322)).unwrap();
        (4321, 4322)
    } else {
        eprintln!("not root: checking the mode and this user's ownership only");
        dir.owner(SESSIONS)
    };
    accidental_reset(&dir);
    assert_eq!(dir.owner(SESSIONS), owner);

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(dir.read(SESSIONS), original);
    assert_eq!(dir.owner(SESSIONS), owner);
    assert_eq!(dir.mode(SESSIONS), 0o640);

    // A merge keeps them too, and the archive of the replaced state gets
    // the same owner.
    let output = run_at(&dir, "2026-12-04T10:00:00+01:00", &["reset"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    dir.write(SESSIONS, ACTIVE_AFTER_RESET);
    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(dir.owner(SESSIONS), owner);
    assert_eq!(dir.mode(SESSIONS), 0o640);
    let pre_restore = format!("session_history_{RESTORE_ID}.json");
    assert_eq!(dir.owner(&pre_restore), owner);
    assert_eq!(dir.mode(&pre_restore), 0o640);
}

#[test]
fn missing_active_file_gets_archive_owner_and_mode() {
    let dir = DataDir::new();
    let legacy = "session_history_20260301_000000.json";
    dir.copy_in(&sample_data().join(legacy), legacy);
    fs::set_permissions(dir.file(legacy), fs::Permissions::from_mode(0o640)).unwrap();
    let owner = if is_root() {
        std::os::unix::fs::chown(dir.file(legacy), Some(4321), Some(4322)).unwrap();
        (4321, 4322)
    } else {
        dir.owner(legacy)
    };

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", legacy]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(dir.owner(SESSIONS), owner);
    assert_eq!(dir.mode(SESSIONS), 0o640);
}

/// Runs a merge restore that stops at `failpoints` (`NAME:ACTION`, comma
/// separated) and returns its output.
fn restore_stopping_at(dir: &DataDir, failpoints: &str) -> Output {
    dir.command(&["restore", RESET_ID, "--merge"])
        .env("ORDER_RESET_NOW", RESTORE_AT)
        .env("ORDER_RESET_FAILPOINT", failpoints)
        .output()
        .unwrap()
}

/// Prepares the state of a merge: an archive of the sample sessions, and
/// [`ACTIVE_AFTER_RESET`] in the active file.
fn merge_setup() -> DataDir {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    accidental_reset(&dir);
    dir.write(SESSIONS, ACTIVE_AFTER_RESET);
    dir
}

/// Returns the journal lines of restores, as (restored_from, recovered).
fn journaled_restores(dir: &DataDir) -> Vec<(Value, bool)> {
    dir.journal()
        .into_iter()
        .filter(|line| line["event"] == json!("restore"))
        .map(|line| {
            (
                line["restored_from"].clone(),
                line["recovered"] == json!(true),
            )
        })
        .collect()
}

#[test]
fn abrupt_exit_loses_nothing() {
    // At each step boundary the run ends as if killed. The active file is
    // either as it was or fully merged, and the replaced content is in its
    // archive whenever the active file changed. Once the pending record is
    // written, the next reset writes the restore's journal line.
    let pre_restore = format!("session_history_{RESTORE_ID}.json");
    for point in [
        "after-lock",
        "after-copy",
        "after-archives",
        "after-exchange",
        "after-pending",
        "after-replace",
        "after-journal",
    ] {
        let dir = merge_setup();
        let output = restore_stopping_at(&dir, &format!("{point}:exit"));
        assert_eq!(code(&output), 86, "{point}: {}", stderr(&output));

        let active = dir.read(SESSIONS);
        let changed = active != ACTIVE_AFTER_RESET.as_bytes();
        let expect_changed = !matches!(point, "after-lock" | "after-copy" | "after-archives");
        assert_eq!(changed, expect_changed, "{point}");
        if changed {
            let sessions = layout_members(std::str::from_utf8(&active).unwrap());
            assert_eq!(sessions.len(), 6, "{point}: merged file is complete");
        }
        if point != "after-lock" && point != "after-copy" {
            assert_eq!(
                dir.read(&pre_restore),
                ACTIVE_AFTER_RESET.as_bytes(),
                "{point}: replaced content archived"
            );
        }
        let journaled = journaled_restores(&dir);
        if point == "after-journal" {
            assert_eq!(journaled, vec![(json!(RESET_ID), false)], "{point}");
        } else {
            assert!(journaled.is_empty(), "{point}: {journaled:?}");
        }

        // The next reset completes what the killed run left, removes its
        // temporary files and archives the active file as it is.
        let output = run_at(&dir, "2026-12-05T00:00:00+01:00", &["reset"]);
        assert_eq!(code(&output), 0, "{point}: {}", stderr(&output));
        assert_eq!(dir.read(SESSIONS), b"{}", "{point}");
        assert!(dir.names_with(".").is_empty(), "{point}: {:?}", dir.names());
        assert!(!dir.file("order-reset.pending").exists(), "{point}");
        assert!(
            dir.names().iter().all(|name| !name.contains(".late")),
            "{point}: {:?}",
            dir.names()
        );
        assert_eq!(
            dir.read("session_history_20261205_000000.json"),
            active,
            "{point}: the next reset archived the active file"
        );
        let journaled = journaled_restores(&dir);
        match point {
            "after-pending" | "after-replace" => {
                assert_eq!(journaled, vec![(json!(RESET_ID), true)], "{point}");
            }
            "after-journal" => assert_eq!(journaled, vec![(json!(RESET_ID), false)]),
            _ => assert!(journaled.is_empty(), "{point}: {journaled:?}"),
        }
    }
}

#[test]
fn next_restore_completes_an_interrupted_one() {
    let dir = merge_setup();
    let output = restore_stopping_at(&dir, "after-pending:exit");
    assert_eq!(code(&output), 86, "{}", stderr(&output));
    let merged = dir.read(SESSIONS);

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["sessions_restored"], json!(0));
    assert_eq!(report["conflicts"].as_array().unwrap().len(), 5);
    assert_eq!(dir.read(SESSIONS), merged);
    assert_eq!(
        journaled_restores(&dir),
        vec![(json!(RESET_ID), true), (json!(RESET_ID), false)]
    );
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}

#[test]
fn failures_say_what_was_left() {
    let cases = [
        ("after-archives:error", "changed no active file"),
        ("after-exchange:error", "its journal line is missing"),
        (
            "after-pending:error",
            "the next reset or restore writes its journal line",
        ),
    ];
    for (failpoint, expected) in cases {
        let dir = merge_setup();
        let output = restore_stopping_at(&dir, failpoint);
        assert_eq!(code(&output), 74, "{failpoint}: {}", stderr(&output));
        let message = stderr(&output);
        assert!(message.contains(expected), "{failpoint}: {message}");
        assert!(
            message.contains(&format!("session_history_{RESTORE_ID}.json")),
            "{failpoint}: {message}"
        );
    }
}

#[test]
fn human_summary_names_archive_and_conflicts() {
    let dir = merge_setup();

    let output = run_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!(
            "Restored 4 sessions and 0 takeover requests from reset {RESET_ID}:\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("session_history_{RESTORE_ID}.json")),
        "{text}"
    );
    assert!(
        text.contains("kept the active version of 1 session that the archive also has: 0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01"),
        "{text}"
    );
    assert!(text.contains("must re-read"), "{text}");
    assert!(
        stderr(&output).contains("the backend must re-read"),
        "{}",
        stderr(&output)
    );

    let output = run_at(&dir, RESTORE_AT, &["-q", "restore", RESET_ID, "--merge"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "");
}

#[test]
fn merge_writes_keys_as_python_does() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    accidental_reset(&dir);
    // Keys with raw non-ASCII text, a DEL character and an escaped quote, as
    // a writer without ensure_ascii leaves them. Python writes each of them
    // with \u escapes.
    let active = "{\n  \"caf\u{e9} \u{1F600}\u{7f}\\\"\\/\": {\n    \"status\": \"draft\"\n  }\n}";
    dir.write(SESSIONS, active);

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--merge"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["sessions_restored"], json!(5));
    let merged = String::from_utf8(dir.read(SESSIONS)).unwrap();
    assert!(
        merged.starts_with("{\n  \"caf\\u00e9 \\ud83d\\ude00\\u007f\\\"/\": {\n    \"status\": \"draft\"\n  },\n  \"0f6c1f0e-"),
        "{merged}"
    );
    assert!(merged.is_ascii());

    let archive_path = dir.file(&format!("session_history_{RESET_ID}.json"));
    let pre_restore = dir.file(&format!("session_history_{RESTORE_ID}.json"));
    if let Some(python) = python_check(&dir.file(SESSIONS), &pre_restore, &archive_path) {
        assert_eq!(python["same_data"], json!(true), "{python}");
        assert_eq!(python["same_text"], json!(true), "{python}");
    }
}

#[test]
fn reset_with_only_takeovers_needs_the_option() {
    let dir = DataDir::new();
    dir.write(SESSIONS, "{}");
    let takeovers = fs::read(sample_data().join(TAKEOVERS)).unwrap();
    dir.write(TAKEOVERS, &takeovers);
    accidental_reset(&dir);
    assert_eq!(dir.names_with("session_history_"), Vec::<String>::new());
    // Restoring takeover requests never reads the sessions file.
    dir.write(SESSIONS, "{\"broken\": ");

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID]);
    assert_eq!(exit, 66, "{report}");
    assert!(
        report["error"].as_str().unwrap().contains("--takeovers"),
        "{report}"
    );

    let (exit, report) = json_at(&dir, RESTORE_AT, &["restore", RESET_ID, "--takeovers"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["sessions_restored"], json!(0));
    assert_eq!(report["takeover_requests_restored"], json!(1));
    assert_eq!(dir.read(TAKEOVERS), takeovers);
    assert_eq!(dir.read(SESSIONS), b"{\"broken\": ");
}

#[test]
fn late_write_during_restore_is_kept() {
    // A writer that ignores the lock rewrites the active file in the pause
    // after the archives are in place, with and without RENAME_EXCHANGE.
    let late_write = "{\n  \"late\": {\n    \"status\": \"draft\"\n  }\n}";
    for no_exchange in [false, true] {
        let dir = merge_setup();
        let mut command = dir.command(&["--json", "restore", RESET_ID, "--merge"]);
        if no_exchange {
            command.env("ORDER_RESET_NO_EXCHANGE", "1");
        }
        let child = command
            .env("ORDER_RESET_NOW", RESTORE_AT)
            .env("ORDER_RESET_FAILPOINT", "after-archives:sleep")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pre_restore = format!("session_history_{RESTORE_ID}.json");
        let started = std::time::Instant::now();
        while !dir.file(&pre_restore).exists() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "archive never appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        dir.write(SESSIONS, late_write);
        let output = child.wait_with_output().unwrap();
        assert_eq!(code(&output), 0, "{no_exchange}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("does not take order-reset.lock"),
            "{}",
            stderr(&output)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();

        let late = format!("session_history_{RESTORE_ID}.late");
        assert_eq!(report["late_archives"], json!([path_text(&dir, &late)]));
        assert_eq!(dir.read(&late), late_write.as_bytes(), "{no_exchange}");
        assert_eq!(dir.read(&pre_restore), ACTIVE_AFTER_RESET.as_bytes());
        let merged = String::from_utf8(dir.read(SESSIONS)).unwrap();
        assert_eq!(layout_members(&merged).len(), 6, "{no_exchange}");
        let journal = dir.journal();
        let archives = journal[1]["archives"].as_array().unwrap();
        assert_eq!(archives.len(), 2);
        assert_eq!(archives[1]["file"], json!(late));
        assert_eq!(archives[1]["late"], json!(true));
        assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
    }
}
