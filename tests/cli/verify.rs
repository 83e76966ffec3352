//! `history verify`: archives against their journal hashes, the journal's
//! `prev` chain and its head file, with exact exit codes.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{
    DataDir, JOURNAL, LOCK, SESSIONS, TAKEOVERS, code, real_fixtures, sample_data, sha256_file,
    stderr, stdout,
};

const HEAD: &str = "order-reset-journal.head";
const LEGACY: &str = "session_history_20260301_000000.json";

/// Resets `sessions` and `takeovers` with the clock fixed at `now`.
fn reset_at(dir: &DataDir, now: &str, sessions: &str, takeovers: &str) {
    dir.write(SESSIONS, sessions);
    dir.write(TAKEOVERS, takeovers);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", now)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
}

/// Builds a data directory with the sample legacy archive and three resets:
/// journal line 1 archives sessions and takeovers, lines 2 and 3 sessions.
fn three_resets() -> DataDir {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(LEGACY), LEGACY);
    reset_at(
        &dir,
        "2026-12-01T00:00:00+00:00",
        r#"{"a": {"status": "draft"}}"#,
        r#"{"t": {"status": "open"}}"#,
    );
    reset_at(
        &dir,
        "2026-12-02T00:00:00+00:00",
        r#"{"b": {"status": "approved"}}"#,
        "{}",
    );
    reset_at(
        &dir,
        "2026-12-03T00:00:00+00:00",
        r#"{"c": {"status": "draft"}, "d": {"status": "draft"}}"#,
        "{}",
    );
    dir
}

fn verify_json(dir: &DataDir) -> (i32, Value) {
    dir.run_json(&["history", "verify"])
}

/// Returns the journal's lines, without newlines.
fn journal_lines(dir: &DataDir) -> Vec<String> {
    String::from_utf8(dir.read(JOURNAL))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_journal_lines(dir: &DataDir, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    dir.write(JOURNAL, text);
}

#[test]
fn verify_passes_on_clean_directory() {
    let dir = three_resets();
    let names_before = dir.names();

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["schema_version"], json!(1));
    assert_eq!(report["ok"], json!(true));
    assert_eq!(report["lines"], json!(3));
    assert_eq!(report["archives_checked"], json!(4));
    assert_eq!(report["problems"], json!([]));
    assert_eq!(report["unjournaled"], json!([LEGACY]));
    assert_eq!(report["pruned"], json!([]));
    assert_eq!(report["warnings"], json!([]));

    let output = dir.run(&["history", "verify"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "Verified 3 journal lines and 4 archives, found no problems\nNot in the journal, not checked:\n  {LEGACY}\n"
        )
    );
    assert_eq!(
        dir.names(),
        names_before,
        "verify created or removed a file"
    );
}

#[test]
fn verify_passes_with_real_legacy_archives() {
    let Some(real) = real_fixtures() else {
        return;
    };
    let dir = DataDir::new();
    let legacy = [
        "session_history_20251205_120337.json",
        "session_history_20251205_120402.json",
    ];
    for name in legacy {
        dir.copy_in(&real.join(name), name);
    }
    dir.copy_in(&real.join("scan_sessions.approved-draft.json"), SESSIONS);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", "2026-12-04T00:00:00+00:00")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["ok"], json!(true));
    assert_eq!(report["lines"], json!(1));
    assert_eq!(report["archives_checked"], json!(1));
    assert_eq!(report["unjournaled"], json!(legacy));
}

#[test]
fn verify_of_empty_directory_creates_nothing() {
    let dir = DataDir::new();
    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["ok"], json!(true));
    assert_eq!(report["lines"], json!(0));
    assert_eq!(report["archives_checked"], json!(0));
    assert_eq!(report["warnings"], json!([]));
    assert!(dir.names().is_empty(), "{:?}", dir.names());
}

#[test]
fn verify_catches_edited_archive() {
    let dir = three_resets();
    let name = "session_history_20261202_000000.json";
    let original = dir.read(name);
    let recorded = sha256_file(&dir.file(name));
    let edited = String::from_utf8(original.clone())
        .unwrap()
        .replace("approved", "cancelled");
    dir.write(name, &edited);
    let changed = sha256_file(&dir.file(name));

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    assert_eq!(report["ok"], json!(false));
    assert_eq!(
        report["problems"],
        json!([{
            "line": 2,
            "file": name,
            "problem": format!(
                "content changed (sha256 {changed}, {} bytes; the journal records sha256 {recorded}, {} bytes)",
                edited.len(),
                original.len()
            ),
        }])
    );

    let output = dir.run(&["history", "verify"]);
    assert_eq!(code(&output), 65);
    let text = stdout(&output);
    assert!(
        text.starts_with("Verified 3 journal lines and 4 archives, found 1 problem:\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  archive {name}: content changed (sha256 {changed}"
        )),
        "{text}"
    );
}

#[test]
fn verify_catches_deleted_archive() {
    let dir = three_resets();
    let name = "takeover_history_20261201_000000.json";
    fs::remove_file(dir.file(name)).unwrap();

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    assert_eq!(
        report["problems"],
        json!([{"line": 1, "file": name, "problem": "missing"}])
    );
    assert_eq!(report["archives_checked"], json!(4));

    let output = dir.run(&["history", "verify"]);
    assert_eq!(code(&output), 65);
    assert!(
        stdout(&output).contains(&format!("  archive {name}: missing (journal line 1)\n")),
        "{}",
        stdout(&output)
    );
}

#[test]
fn verify_does_not_follow_archive_symlink() {
    let dir = three_resets();
    let name = "session_history_20261203_000000.json";
    let elsewhere = DataDir::new();
    elsewhere.write("copy.json", dir.read(name));
    fs::remove_file(dir.file(name)).unwrap();
    symlink(elsewhere.file("copy.json"), dir.file(name)).unwrap();

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["line"], json!(3));
    assert_eq!(problems[0]["file"], json!(name));
    let problem = problems[0]["problem"].as_str().unwrap();
    assert!(problem.starts_with("cannot be read: "), "{problem}");
    assert!(problem.contains("is a symbolic link"), "{problem}");
}

#[test]
fn verify_catches_edited_middle_line() {
    let dir = three_resets();
    let mut lines = journal_lines(&dir);
    assert!(lines[1].contains(r#""total_sessions_reset":1,"#));
    lines[1] = lines[1].replace(
        r#""total_sessions_reset":1,"#,
        r#""total_sessions_reset":7,"#,
    );
    write_journal_lines(&dir, &lines);

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    assert_eq!(
        report["problems"],
        json!([{
            "line": 3,
            "file": JOURNAL,
            "problem": "prev does not match line 2 (a line was edited, inserted or deleted)",
        }])
    );

    let output = dir.run(&["history", "verify"]);
    assert_eq!(code(&output), 65);
    assert!(
        stdout(&output).contains(
            "  line 3: prev does not match line 2 (a line was edited, inserted or deleted)\n"
        ),
        "{}",
        stdout(&output)
    );
}

#[test]
fn verify_catches_edited_last_line() {
    let dir = three_resets();
    let mut lines = journal_lines(&dir);
    lines[2] = lines[2].replace(r#""user":""#, r#""user":"x"#);
    write_journal_lines(&dir, &lines);

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    assert_eq!(
        report["problems"],
        json!([{
            "line": 3,
            "file": JOURNAL,
            "problem": format!("last line edited (its SHA-256 differs from the one in {HEAD})"),
        }])
    );
    assert_eq!(report["warnings"], json!([]));
}

#[test]
fn verify_catches_deleted_middle_line() {
    let dir = three_resets();
    let mut lines = journal_lines(&dir);
    lines.remove(1);
    write_journal_lines(&dir, &lines);

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    assert_eq!(
        report["problems"],
        json!([
            {
                "line": 2,
                "file": JOURNAL,
                "problem": "prev does not match line 1 (a line was edited, inserted or deleted)",
            },
            {
                "line": null,
                "file": JOURNAL,
                "problem": format!("journal lost lines at the end: {HEAD} records 3 lines, the journal has 2"),
            },
        ])
    );
    // The deleted line's archive is no longer named, so it shows as legacy.
    assert_eq!(
        report["unjournaled"],
        json!([LEGACY, "session_history_20261202_000000.json"])
    );
}

#[test]
fn verify_catches_deleted_last_line() {
    let dir = three_resets();
    let mut lines = journal_lines(&dir);
    lines.pop();
    write_journal_lines(&dir, &lines);

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    assert_eq!(
        report["problems"],
        json!([{
            "line": null,
            "file": JOURNAL,
            "problem": format!("journal lost lines at the end: {HEAD} records 3 lines, the journal has 2"),
        }])
    );

    let output = dir.run(&["history", "verify"]);
    assert_eq!(code(&output), 65);
    assert!(
        stdout(&output).contains(&format!(
            "  journal lost lines at the end: {HEAD} records 3 lines, the journal has 2\n"
        )),
        "{}",
        stdout(&output)
    );
}

#[test]
fn verify_catches_deleted_journal() {
    let dir = three_resets();
    fs::remove_file(dir.file(JOURNAL)).unwrap();
    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    assert_eq!(report["lines"], json!(0));
    assert_eq!(
        report["problems"][0]["problem"],
        json!(format!(
            "journal lost lines at the end: {HEAD} records 3 lines, the journal has 0"
        ))
    );
}

#[test]
fn verify_reports_unparseable_line() {
    let dir = three_resets();
    let mut lines = journal_lines(&dir);
    lines[1] = lines[1][..40].to_string();
    write_journal_lines(&dir, &lines);

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{report}");
    assert_eq!(problems[0]["line"], json!(2));
    let problem = problems[0]["problem"].as_str().unwrap();
    assert!(
        problem.starts_with("not a valid journal line ("),
        "{problem}"
    );
    assert_eq!(
        problems[1]["problem"],
        json!("prev does not match line 2 (a line was edited, inserted or deleted)")
    );
}

#[test]
fn verify_warns_without_head() {
    let dir = three_resets();
    fs::remove_file(dir.file(HEAD)).unwrap();

    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["ok"], json!(true));
    let warnings = report["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{report}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("no {HEAD}, so ")),
        "{report}"
    );
    assert!(!dir.file(HEAD).exists(), "verify created the head file");

    // The next reset writes the head again.
    reset_at(&dir, "2026-12-04T00:00:00+00:00", "{}", "{}");
    let head: Value = serde_json::from_slice(&dir.read(HEAD)).unwrap();
    assert_eq!(head["lines"], json!(4));
    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["warnings"], json!([]));
}

#[test]
fn head_records_last_line() {
    let dir = three_resets();
    let last = journal_lines(&dir).pop().unwrap();
    let expected = {
        let scratch = DataDir::new();
        scratch.write("line", &last);
        sha256_file(&scratch.file("line"))
    };
    assert_eq!(
        String::from_utf8(dir.read(HEAD)).unwrap(),
        format!("{{\"lines\":3,\"sha256\":\"{expected}\"}}\n")
    );
    assert_eq!(dir.mode(HEAD), dir.mode(JOURNAL));
}

#[test]
fn reset_after_edit_keeps_head() {
    let dir = three_resets();
    let head_before = dir.read(HEAD);
    let mut lines = journal_lines(&dir);
    lines[2] = lines[2].replace(r#""user":""#, r#""user":"x"#);
    write_journal_lines(&dir, &lines);

    dir.write(SESSIONS, r#"{"e": {"status": "draft"}}"#);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", "2026-12-04T00:00:00+00:00")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert!(
        stderr(&output).contains("left the head unchanged"),
        "{}",
        stderr(&output)
    );
    assert_eq!(dir.read(HEAD), head_before);

    // The new line's prev covers the edited line, so only the head still
    // shows the edit.
    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 65, "{report}");
    assert_eq!(
        report["problems"],
        json!([{
            "line": 3,
            "file": JOURNAL,
            "problem": format!(
                "line edited (its SHA-256 differs from the one in {HEAD}, which records it as the last line)"
            ),
        }])
    );
    assert_eq!(report["warnings"].as_array().unwrap().len(), 1, "{report}");
}

#[test]
fn head_catches_up_after_interrupted_update() {
    let dir = three_resets();
    let head_after_two = {
        let lines = journal_lines(&dir);
        let scratch = DataDir::new();
        scratch.write("line", &lines[1]);
        format!(
            "{{\"lines\":2,\"sha256\":\"{}\"}}\n",
            sha256_file(&scratch.file("line"))
        )
    };
    // As a run that stopped between its append and its head update leaves it.
    dir.write(HEAD, &head_after_two);
    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["warnings"].as_array().unwrap().len(), 1, "{report}");

    reset_at(&dir, "2026-12-04T00:00:00+00:00", "{}", "{}");
    let head: Value = serde_json::from_slice(&dir.read(HEAD)).unwrap();
    assert_eq!(head["lines"], json!(4));
    let (exit, report) = verify_json(&dir);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["warnings"], json!([]));
}

#[test]
fn verify_waits_for_short_lock_holder() {
    let dir = three_resets();
    let mut holder = Command::new("flock")
        .arg("--exclusive")
        .arg(dir.file(LOCK))
        .args(["-c", "echo locked; exec sleep 0.5"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run flock(1) from util-linux");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "locked\n");

    let started = Instant::now();
    let (exit, report) = verify_json(&dir);
    let elapsed = started.elapsed();
    holder.wait().unwrap();
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["warnings"], json!([]));
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
}
