//! `reset`: archives, active files, JSON output, exit codes and recovery.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::common::{
    DataDir, JOURNAL, SESSIONS, TAKEOVERS, bare_command, code, is_root, real_fixtures, sample_data,
    stderr, stdout,
};

const NOW: &str = "2026-12-04T00:00:01+01:00";

/// Checks a reset of one real fixture: archive bytes, `{}` with owner and
/// mode unchanged, and counts equal to the fixture's real counts.
fn check_real_fixture(name: &str, total: u64, by_status: serde_json::Value) {
    let Some(fixtures) = real_fixtures() else {
        return;
    };
    let dir = DataDir::new();
    let original = fs::read(fixtures.join(name)).unwrap();
    dir.write(SESSIONS, &original);
    dir.write(TAKEOVERS, "{}");
    fs::set_permissions(dir.file(SESSIONS), fs::Permissions::from_mode(0o640)).unwrap();
    let owner = if is_root() {
        std::os::unix::fs::chown(dir.file(SESSIONS), Some(4321), Some(4322)).unwrap();
        (4321, 4322)
    } else {
        dir.owner(SESSIONS)
    };

    let output = dir
        .command(&["--json", "reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(report["success"], json!(true));
    assert_eq!(report["total_sessions_reset"], json!(total));
    assert_eq!(report["sessions_by_status"], by_status);
    assert_eq!(report["takeover_requests_reset"], json!(0));
    assert_eq!(report["takeover_archived_to"], json!(null));
    assert_eq!(report["dry_run"], json!(false));
    assert_eq!(
        report["reset_at"],
        json!("2026-12-04T00:00:01.000000+01:00")
    );
    let archive = dir.file("session_history_20261204_000001.json");
    assert_eq!(report["archived_to"], json!(archive.display().to_string()));

    assert_eq!(fs::read(&archive).unwrap(), original, "archive bytes");
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert_eq!(dir.read(TAKEOVERS), b"{}");
    assert_eq!(dir.mode(SESSIONS), 0o640);
    assert_eq!(dir.owner(SESSIONS), owner);
    assert_eq!(dir.owner("session_history_20261204_000001.json"), owner);
    assert_eq!(dir.mode("session_history_20261204_000001.json"), 0o640);
}

#[test]
fn real_fixture_approved_draft() {
    check_real_fixture(
        "scan_sessions.approved-draft.json",
        4,
        json!({"approved": 2, "draft": 2}),
    );
}

#[test]
fn real_fixture_approved_draft_later() {
    check_real_fixture(
        "scan_sessions.approved-draft-2.json",
        4,
        json!({"approved": 2, "draft": 2}),
    );
}

#[test]
fn real_fixture_cancelled_draft() {
    check_real_fixture(
        "scan_sessions.cancelled-draft.json",
        3,
        json!({"cancelled": 2, "draft": 1}),
    );
}

#[test]
fn sample_data_reset_archives_both_files() {
    let dir = DataDir::new();
    let sessions = fs::read(sample_data().join(SESSIONS)).unwrap();
    let takeovers = fs::read(sample_data().join(TAKEOVERS)).unwrap();
    dir.write(SESSIONS, &sessions);
    dir.write(TAKEOVERS, &takeovers);

    let output = dir
        .command(&["--json", "reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["total_sessions_reset"], json!(5));
    assert_eq!(
        report["sessions_by_status"],
        json!({"approved": 1, "cancelled": 1, "completed": 1, "draft": 1, "in_progress": 1})
    );
    assert_eq!(report["takeover_requests_reset"], json!(1));
    assert_eq!(report["run_id"], json!("20261204_000001"));
    assert_eq!(
        report["takeover_archived_to"],
        json!(
            dir.file("takeover_history_20261204_000001.json")
                .display()
                .to_string()
        )
    );
    assert_eq!(dir.read("session_history_20261204_000001.json"), sessions);
    assert_eq!(dir.read("takeover_history_20261204_000001.json"), takeovers);
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert_eq!(dir.read(TAKEOVERS), b"{}");
}

#[test]
fn journal_line_records_the_reset() {
    let dir = DataDir::new();
    let sessions = fs::read(sample_data().join(SESSIONS)).unwrap();
    dir.write(SESSIONS, &sessions);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));

    let journal = dir.journal();
    assert_eq!(journal.len(), 1);
    let line = &journal[0];
    assert_eq!(line["id"], json!("20261204_000001"));
    assert_eq!(line["total_sessions_reset"], json!(5));
    assert_eq!(line["takeover_requests_reset"], json!(0));
    assert_eq!(line["prev"], json!(""));
    assert_eq!(line["flags"], json!([]));
    assert_eq!(line["version"], json!(env!("CARGO_PKG_VERSION")));
    assert!(line["pid"].as_u64().is_some());
    assert_eq!(
        line["archives"][0]["file"],
        json!("session_history_20261204_000001.json")
    );
    assert_eq!(line["archives"][0]["bytes"], json!(sessions.len()));
    assert_eq!(line["archives"][0]["entries"], json!(5));
    let expected_hash = sha256_hex(&sessions);
    assert_eq!(line["archives"][0]["sha256"], json!(expected_hash));
    assert_eq!(line["archives"].as_array().unwrap().len(), 1);
}

fn sha256_hex(bytes: &[u8]) -> String {
    let output = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("run sha256sum");
    String::from_utf8(output.stdout).unwrap()[..64].to_string()
}

#[test]
fn journal_lines_are_chained() {
    let dir = DataDir::new();
    for round in 0..3 {
        dir.write(
            SESSIONS,
            format!("{{\"s{round}\": {{\"status\": \"draft\"}}}}"),
        );
        let output = dir.run(&["reset"]);
        assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    }
    let text = fs::read_to_string(dir.file(JOURNAL)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    let third: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(second["prev"], json!(sha256_hex(lines[0].as_bytes())));
    assert_eq!(third["prev"], json!(sha256_hex(lines[1].as_bytes())));
}

#[test]
fn two_resets_in_one_second_keep_both_archives() {
    let dir = DataDir::new();
    let first = br#"{"a": {"status": "draft"}}"#;
    let second = br#"{"b": {"status": "approved"}}"#;
    dir.write(SESSIONS, first);
    let output = dir
        .command(&["--json", "reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    dir.write(SESSIONS, second);
    let output = dir
        .command(&["--json", "reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["run_id"], json!("20261204_000001_2"));

    assert_eq!(
        dir.names_with("session_history_"),
        vec![
            "session_history_20261204_000001.json",
            "session_history_20261204_000001_2.json"
        ]
    );
    assert_eq!(dir.read("session_history_20261204_000001.json"), first);
    assert_eq!(dir.read("session_history_20261204_000001_2.json"), second);
}

#[test]
fn two_resets_by_the_real_clock_keep_both_archives() {
    let dir = DataDir::new();
    for name in ["a", "b"] {
        dir.write(
            SESSIONS,
            format!("{{\"{name}\": {{\"status\": \"draft\"}}}}"),
        );
        let output = dir.run(&["reset"]);
        assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    }
    let archives = dir.names_with("session_history_");
    assert_eq!(archives.len(), 2, "{archives:?}");
}

#[test]
fn invalid_json_exits_65_and_changes_nothing() {
    let dir = DataDir::new();
    let sessions = b"{\n  \"a\": {\"status\": \"draft\"},\n  \"b\": {\"status\": \n";
    let takeovers = br#"{"t": {"status": "pending"}}"#;
    dir.write(SESSIONS, sessions);
    dir.write(TAKEOVERS, takeovers);
    let before = dir.names();

    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 65);
    let message = stderr(&output);
    assert!(
        message.contains("scan_sessions.json is not valid JSON"),
        "{message}"
    );
    assert!(message.contains("line 4"), "{message}");
    assert!(message.contains("--force"), "{message}");
    assert_eq!(stdout(&output), "");
    assert_eq!(dir.read(SESSIONS), sessions);
    assert_eq!(dir.read(TAKEOVERS), takeovers);
    let after: Vec<String> = dir
        .names()
        .into_iter()
        .filter(|name| !name.starts_with("order-reset"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn invalid_json_failure_document() {
    let dir = DataDir::new();
    dir.write(SESSIONS, "[1, 2");
    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 65);
    assert_eq!(report["success"], json!(false));
    assert_eq!(report["error_kind"], json!("invalid_data"));
    assert_eq!(report["exit_code"], json!(65));
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("scan_sessions.json"), "{error}");
    assert_eq!(dir.read(SESSIONS), b"[1, 2");
}

#[test]
fn force_archives_invalid_bytes_verbatim() {
    let dir = DataDir::new();
    let broken = b"{\"a\": {\"status\": \"dra";
    dir.write(SESSIONS, broken);
    let output = dir
        .command(&["--json", "reset", "--force"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let archive = "session_history_20261204_000001.invalid";
    assert_eq!(
        report["archived_to"],
        json!(dir.file(archive).display().to_string())
    );
    assert_eq!(report["invalid_files"].as_array().unwrap().len(), 1);
    assert_eq!(dir.read(archive), broken);
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert_eq!(dir.journal()[0]["flags"], json!(["force"]));
    assert_eq!(dir.journal()[0]["archives"][0]["valid"], json!(false));
}

#[test]
fn empty_file_is_invalid() {
    let dir = DataDir::new();
    dir.write(SESSIONS, "");
    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 65);
    assert!(
        stderr(&output).contains("is empty (0 bytes)"),
        "{}",
        stderr(&output)
    );
    assert_eq!(dir.read(SESSIONS), b"");
}

#[test]
fn nothing_to_reset_is_journaled() {
    let dir = DataDir::new();
    dir.write(SESSIONS, "{}");
    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["archived_to"], json!(null));
    assert_eq!(report["takeover_archived_to"], json!(null));
    assert_eq!(report["total_sessions_reset"], json!(0));
    assert_eq!(report["sessions_by_status"], json!({}));
    assert_eq!(report["run_id"], json!(null));
    assert!(dir.names_with("session_history_").is_empty());
    let journal = dir.journal();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0]["archives"], json!([]));
    assert_eq!(journal[0]["id"], json!(null));
}

#[test]
fn missing_files_count_as_empty() {
    let dir = DataDir::new();
    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["total_sessions_reset"], json!(0));
    assert!(!dir.file(SESSIONS).exists(), "a missing file stays missing");
    assert!(
        !dir.file(TAKEOVERS).exists(),
        "a missing file stays missing"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let dir = DataDir::new();
    let sessions = fs::read(sample_data().join(SESSIONS)).unwrap();
    dir.write(SESSIONS, &sessions);
    let before = dir.names();
    let output = dir
        .command(&["--json", "reset", "--dry-run"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["dry_run"], json!(true));
    assert_eq!(report["total_sessions_reset"], json!(5));
    assert_eq!(
        report["archived_to"],
        json!(
            dir.file("session_history_20261204_000001.json")
                .display()
                .to_string()
        )
    );
    assert_eq!(dir.names(), before);
    assert_eq!(dir.read(SESSIONS), sessions);
}

#[test]
fn human_summary_names_archives() {
    let dir = DataDir::new();
    dir.write(
        SESSIONS,
        r#"{"a": {"status": "draft"}, "b": {"status": "draft"}}"#,
    );
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0);
    let archive = dir.file("session_history_20261204_000001.json");
    assert_eq!(
        stdout(&output),
        format!(
            "Reset 2 sessions (draft 2) and 0 takeover requests:\n  sessions archived to           {}\n",
            archive.display()
        )
    );
    let log = stderr(&output);
    assert!(log.contains("starting reset"), "{log}");
    assert!(
        log.contains(&format!("archived 2 sessions to {}", archive.display())),
        "{log}"
    );
    assert!(log.contains("reset complete"), "{log}");
}

#[test]
fn quiet_success_prints_nothing() {
    let dir = DataDir::new();
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    let output = dir.run(&["-q", "reset"]);
    assert_eq!(code(&output), 0);
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "");
}

#[test]
fn missing_data_dir_option_is_usage_error() {
    let output = bare_command().arg("reset").output().unwrap();
    assert_eq!(code(&output), 2);
    let message = stderr(&output);
    assert!(message.contains("--data-dir"), "{message}");
    assert!(message.contains("ORDER_RESET_DATA_DIR"), "{message}");
}

#[test]
fn data_dir_from_environment() {
    let dir = DataDir::new();
    let output = bare_command()
        .args(["--json", "reset"])
        .env("ORDER_RESET_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert!(dir.file(JOURNAL).exists());
}

#[test]
fn nonexistent_data_dir_exits_66() {
    let dir = DataDir::new();
    let missing = dir.file("nope");
    let output = bare_command()
        .arg("--data-dir")
        .arg(&missing)
        .arg("reset")
        .output()
        .unwrap();
    assert_eq!(code(&output), 66);
    assert!(!missing.exists(), "the data directory must not be created");
}

#[test]
fn unknown_option_is_usage_error_with_json() {
    let dir = DataDir::new();
    let (exit, report) = dir.run_json(&["reset", "--no-such-option"]);
    assert_eq!(exit, 2);
    assert_eq!(report["success"], json!(false));
    assert_eq!(report["error_kind"], json!("usage"));
}

#[test]
fn symlinked_active_file_is_rejected() {
    let dir = DataDir::new();
    let outside = DataDir::new();
    outside.write("target.json", r#"{"a": {"status": "draft"}}"#);
    std::os::unix::fs::symlink(outside.file("target.json"), dir.file(SESSIONS)).unwrap();
    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 65);
    assert!(
        stderr(&output).contains("symbolic link"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        outside.read("target.json"),
        br#"{"a": {"status": "draft"}}"#
    );
    assert!(
        fs::symlink_metadata(dir.file(SESSIONS))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn run_id_of_moved_archive_is_not_reused() {
    let dir = DataDir::new();
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0);
    fs::rename(
        dir.file("session_history_20261204_000001.json"),
        dir.file("moved-away.json"),
    )
    .unwrap();

    dir.write(SESSIONS, r#"{"b": {"status": "draft"}}"#);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", NOW)
        .env("ORDER_RESET_FAILPOINT", "after-pending:exit")
        .output()
        .unwrap();
    assert_eq!(code(&output), 86);
    let (exit, report) = dir.run_json(&["reset"]);
    assert_eq!(exit, 0);
    assert_eq!(report["recovered_run_id"], json!("20261204_000001_2"));
    assert_eq!(
        dir.read("session_history_20261204_000001_2.json"),
        br#"{"b": {"status": "draft"}}"#
    );
    assert_eq!(dir.read(SESSIONS), b"{}");
}

#[test]
fn failed_reset_creates_no_journal() {
    let dir = DataDir::new();
    dir.write(SESSIONS, "{");
    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 65);
    assert!(!dir.file(JOURNAL).exists());
}

#[test]
fn full_stdout_exits_74() {
    let dir = DataDir::new();
    let output = dir
        .command(&["status"])
        .stdout(fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(code(&output), 74, "{}", stderr(&output));
}

#[test]
fn journald_lines_carry_priority_prefix() {
    let dir = DataDir::new();
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    let output = dir
        .command(&["reset"])
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0);
    let log = stderr(&output);
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(line.starts_with("<6>") || line.starts_with("<4>"), "{line}");
    }
    assert!(log.contains("<6>starting reset of"), "{log}");
}
