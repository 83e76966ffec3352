//! `history prune`: which archives go under `--keep` and `--keep-days`, what
//! the journal records, and that `history verify` passes afterwards.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::LockHolder;
use crate::common::{
    DataDir, JOURNAL, LOCK, SESSIONS, TAKEOVERS, code, real_fixtures, sample_data, stderr, stdout,
};

const HEAD: &str = "order-reset-journal.head";
const LEGACY: &str = "session_history_20260301_000000.json";
const NOW: &str = "2026-12-05T00:00:00+00:00";

/// Resets one session and, when `takeover` is set, one takeover request,
/// with the clock fixed at `now`.
fn reset_at(dir: &DataDir, now: &str, session: &str, takeover: bool) {
    dir.write(
        SESSIONS,
        format!(r#"{{"{session}": {{"status": "draft"}}}}"#),
    );
    let takeovers = if takeover {
        format!(r#"{{"t-{session}": {{"status": "open"}}}}"#)
    } else {
        "{}".to_string()
    };
    dir.write(TAKEOVERS, takeovers);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", now)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
}

/// Builds a directory with four resets at midnight on December 1 to 4; the
/// first two also archive takeover requests.
fn four_resets() -> DataDir {
    let dir = DataDir::new();
    reset_at(&dir, "2026-12-01T00:00:00+00:00", "a", true);
    reset_at(&dir, "2026-12-02T00:00:00+00:00", "b", true);
    reset_at(&dir, "2026-12-03T00:00:00+00:00", "c", false);
    reset_at(&dir, "2026-12-04T00:00:00+00:00", "d", false);
    dir
}

fn sessions_archive(day: u32) -> String {
    format!("session_history_202612{day:02}_000000.json")
}

fn takeovers_archive(day: u32) -> String {
    format!("takeover_history_202612{day:02}_000000.json")
}

/// Runs `history prune ARGS --json` at [`NOW`].
fn prune(dir: &DataDir, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json", "history", "prune"];
    all.extend_from_slice(args);
    let output = dir
        .command(&all)
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}\nstderr: {}",
            stdout(&output),
            stderr(&output)
        )
    });
    (code(&output), report)
}

/// Returns the expected `deleted` entries for archive names, with their sizes
/// read before the prune.
fn sized(dir: &DataDir, names: &[String]) -> Vec<Value> {
    names
        .iter()
        .map(|name| json!({"file": name, "bytes": dir.read(name).len()}))
        .collect()
}

fn archive_names(dir: &DataDir) -> Vec<String> {
    dir.names()
        .into_iter()
        .filter(|name| name.contains("_history_"))
        .collect()
}

/// Returns the length in bytes of the journal's longest line.
fn longest_journal_line(dir: &DataDir) -> usize {
    fs::read_to_string(dir.file(JOURNAL))
        .unwrap()
        .lines()
        .map(str::len)
        .max()
        .unwrap()
}

#[test]
fn prune_keep_deletes_older_resets() {
    let dir = four_resets();
    let journal_before = dir.read(JOURNAL);
    let gone = [
        sessions_archive(1),
        takeovers_archive(1),
        sessions_archive(2),
        takeovers_archive(2),
    ];
    let expected = sized(&dir, &gone);
    let freed: usize = gone.iter().map(|name| dir.read(name).len()).sum();

    let (exit, report) = prune(&dir, &["--keep", "2"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["schema_version"], json!(1));
    assert_eq!(report["dry_run"], json!(false));
    assert_eq!(report["deleted"], json!(expected));
    assert_eq!(report["kept_resets"], json!(2));
    assert_eq!(report["freed_bytes"], json!(freed));
    assert_eq!(
        archive_names(&dir),
        vec![sessions_archive(3), sessions_archive(4)]
    );

    // The old lines stay byte for byte, and one prune line follows them.
    let journal_after = dir.read(JOURNAL);
    assert!(journal_after.starts_with(&journal_before));
    let lines = dir.journal();
    assert_eq!(lines.len(), 5);
    let line = &lines[4];
    assert_eq!(line["event"], json!("prune"));
    assert_eq!(line["reset_at"], json!("2026-12-05T00:00:00.000000+00:00"));
    assert_eq!(line["pruned"], json!(gone));
    assert_eq!(line["id"], json!(null));
    assert_eq!(line["archives"], json!([]));
    assert_eq!(line["pid"].as_u64().map(|pid| pid > 0), Some(true));
    assert_eq!(line["version"], lines[0]["version"]);
    assert_eq!(line["user"], lines[0]["user"]);
    assert_eq!(line["uid"], lines[0]["uid"]);
    assert_eq!(line["host"], lines[0]["host"]);
    assert!(line["duration_ms"].is_u64(), "{line}");
    let head: Value = serde_json::from_slice(&dir.read(HEAD)).unwrap();
    assert_eq!(head["lines"], json!(5));

    let (exit, verified) = dir.run_json(&["history", "verify"]);
    assert_eq!(exit, 0, "{verified}");
    assert_eq!(verified["ok"], json!(true));
    assert_eq!(verified["lines"], json!(5));
    assert_eq!(verified["archives_checked"], json!(2));
    let mut sorted = gone.to_vec();
    sorted.sort();
    assert_eq!(verified["pruned"], json!(sorted));
    assert_eq!(verified["unjournaled"], json!([]));
}

#[test]
fn prune_keep_days_deletes_by_age() {
    let dir = four_resets();
    // At December 5, 00:00, the reset of December 3 is exactly two days old,
    // which is not younger than two days.
    let gone = [
        sessions_archive(1),
        takeovers_archive(1),
        sessions_archive(2),
        takeovers_archive(2),
        sessions_archive(3),
    ];
    let expected = sized(&dir, &gone);
    let (exit, report) = prune(&dir, &["--keep-days", "2"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["deleted"], json!(expected));
    assert_eq!(report["kept_resets"], json!(1));
    assert_eq!(archive_names(&dir), vec![sessions_archive(4)]);
}

#[test]
fn prune_keeps_what_either_rule_keeps() {
    // --keep keeps more than --keep-days here.
    let dir = four_resets();
    let expected = sized(&dir, &[sessions_archive(1), takeovers_archive(1)]);
    let (exit, report) = prune(&dir, &["--keep", "3", "--keep-days", "1"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["deleted"], json!(expected));
    assert_eq!(report["kept_resets"], json!(3));

    // --keep-days keeps more than --keep here.
    let dir = four_resets();
    let expected = sized(
        &dir,
        &[
            sessions_archive(1),
            takeovers_archive(1),
            sessions_archive(2),
            takeovers_archive(2),
        ],
    );
    let (exit, report) = prune(&dir, &["--keep", "1", "--keep-days", "3"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["deleted"], json!(expected));
    assert_eq!(report["kept_resets"], json!(2));
    assert_eq!(
        archive_names(&dir),
        vec![sessions_archive(3), sessions_archive(4)]
    );
}

#[test]
fn prune_dry_run_changes_nothing() {
    let dir = four_resets();
    // The lock file is never removed in use; without it, a dry run must not
    // create it.
    fs::remove_file(dir.file(LOCK)).unwrap();
    let names_before = dir.names();
    let journal_before = dir.read(JOURNAL);
    let head_before = dir.read(HEAD);
    let expected = sized(&dir, &[sessions_archive(1), takeovers_archive(1)]);
    let sessions_bytes = dir.read(&sessions_archive(1)).len();
    let takeovers_bytes = dir.read(&takeovers_archive(1)).len();

    let (exit, report) = prune(&dir, &["--keep", "3", "--dry-run"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["dry_run"], json!(true));
    assert_eq!(report["deleted"], json!(expected));
    assert_eq!(report["kept_resets"], json!(3));
    assert_eq!(dir.names(), names_before);
    assert_eq!(dir.read(JOURNAL), journal_before);
    assert_eq!(dir.read(HEAD), head_before);

    let output = dir
        .command(&["history", "prune", "--keep", "3", "--dry-run"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "Dry run, nothing changed. A prune would delete 2 archives ({} B) and keep 3 resets:\n  {}  {sessions_bytes} B\n  {}  {takeovers_bytes} B\n",
            sessions_bytes + takeovers_bytes,
            sessions_archive(1),
            takeovers_archive(1)
        )
    );
    assert_eq!(dir.names(), names_before);
}

#[test]
fn prune_deletes_legacy_archives_by_name() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(LEGACY), LEGACY);
    let mut legacy = vec![LEGACY.to_string()];
    if let Some(real) = real_fixtures() {
        for name in [
            "session_history_20251205_120337.json",
            "session_history_20251205_120402.json",
        ] {
            dir.copy_in(&real.join(name), name);
            legacy.push(name.to_string());
        }
    }
    legacy.sort();
    reset_at(&dir, "2026-12-04T00:00:00+00:00", "a", false);
    let expected = sized(&dir, &legacy);

    let (exit, report) = prune(&dir, &["--keep-days", "30"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["deleted"], json!(expected));
    assert_eq!(report["kept_resets"], json!(1));
    assert_eq!(archive_names(&dir), vec![sessions_archive(4)]);
    assert_eq!(dir.journal()[1]["pruned"], json!(legacy));

    let (exit, verified) = dir.run_json(&["history", "verify"]);
    assert_eq!(exit, 0, "{verified}");
    assert_eq!(verified["pruned"], json!(legacy));
    assert_eq!(verified["unjournaled"], json!([]));
}

#[test]
fn prune_never_deletes_newest_reset() {
    let dir = DataDir::new();
    reset_at(&dir, "2025-01-01T00:00:00+00:00", "a", true);
    let names_before = archive_names(&dir);

    let (exit, report) = prune(&dir, &["--keep-days", "1", "--keep", "0"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["deleted"], json!([]));
    assert_eq!(report["kept_resets"], json!(1));
    assert_eq!(report["freed_bytes"], json!(0));
    assert_eq!(archive_names(&dir), names_before);
    // A prune that deletes nothing is journaled too.
    let lines = dir.journal();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["event"], json!("prune"));
    assert_eq!(lines[1].get("pruned"), None);
}

#[test]
fn prune_newest_legacy_archive_is_kept() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(LEGACY), LEGACY);
    let older = "session_history_20260201_000000.json";
    dir.copy_in(&sample_data().join(LEGACY), older);

    let expected = sized(&dir, &[older.to_string()]);

    let (exit, report) = prune(&dir, &["--keep-days", "1"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["deleted"], json!(expected));
    assert_eq!(report["kept_resets"], json!(1));
    assert_eq!(archive_names(&dir), vec![LEGACY.to_string()]);
}

#[test]
fn prune_requires_a_rule() {
    let dir = four_resets();
    fs::remove_file(dir.file(LOCK)).unwrap();
    let names_before = dir.names();

    let (exit, report) = prune(&dir, &[]);
    assert_eq!(exit, 2, "{report}");
    assert_eq!(report["error_kind"], json!("usage"));
    let message = report["error"].as_str().unwrap();
    assert!(
        message.starts_with("give --keep-days N, --keep N or both"),
        "{message}"
    );
    assert_eq!(dir.names(), names_before);

    let output = dir.run(&["history", "prune", "--dry-run"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("give --keep-days N, --keep N or both"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn prune_waits_for_held_lock() {
    let dir = four_resets();
    let names_before = dir.names();
    let journal_before = dir.read(JOURNAL);
    let holder = LockHolder::start(&dir);

    for args in [
        &["--keep", "1", "--wait", "500ms"][..],
        &["--keep", "1", "--wait", "500ms", "--dry-run"][..],
    ] {
        let started = Instant::now();
        let (exit, report) = prune(&dir, args);
        let elapsed = started.elapsed();
        assert_eq!(exit, 75, "{args:?}: {report}");
        assert_eq!(report["error_kind"], json!("lock_busy"));
        let message = report["error"].as_str().unwrap();
        assert!(
            message.contains(&format!("pid {}", holder.pid())),
            "{message}"
        );
        assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(dir.names(), names_before);
        assert_eq!(dir.read(JOURNAL), journal_before);
    }

    drop(holder);
    let (exit, report) = prune(&dir, &["--keep", "1"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["deleted"].as_array().unwrap().len(), 5);
}

#[test]
fn prune_then_reset_then_verify() {
    let dir = four_resets();
    let (exit, _) = prune(&dir, &["--keep", "1"]);
    assert_eq!(exit, 0);
    reset_at(&dir, "2026-12-06T00:00:00+00:00", "e", false);
    let lines = dir.journal();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[5]["event"], json!("reset"));

    let output = dir.run(&["history", "verify"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(
            "Verified 6 journal lines and 2 archives, found no problems\nPruned, not checked:\n"
        ),
        "{text}"
    );
}

#[test]
fn large_prune_is_journaled_in_batches() {
    let dir = DataDir::new();
    // 10,001 legacy archives, one per minute from 2020-01-01 on.
    let start = chrono::NaiveDate::from_ymd_opt(2020, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    for minute in 0..10_001 {
        let time = start + chrono::Duration::minutes(minute);
        let name = format!("session_history_{}.json", time.format("%Y%m%d_%H%M%S"));
        dir.write(&name, "{}");
    }
    reset_at(&dir, "2026-12-04T00:00:00+00:00", "a", false);

    let (exit, report) = prune(&dir, &["--keep", "1"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["deleted"].as_array().unwrap().len(), 10_001);
    assert_eq!(archive_names(&dir), vec![sessions_archive(4)]);

    let journal = dir.journal();
    assert_eq!(journal.len(), 3);
    assert_eq!(journal[1]["pruned"].as_array().unwrap().len(), 10_000);
    assert_eq!(journal[2]["pruned"].as_array().unwrap().len(), 1);
    let longest = longest_journal_line(&dir);
    assert!(
        longest < 1024 * 1024,
        "longest journal line {longest} bytes"
    );

    let (exit, verified) = dir.run_json(&["history", "verify"]);
    assert_eq!(exit, 0, "{verified}");
    assert_eq!(verified["pruned"].as_array().unwrap().len(), 10_001);
}

#[test]
fn prune_keeps_resurrection_baseline() {
    let dir = DataDir::new();
    reset_at(&dir, "2026-12-02T00:00:00+00:00", "a", false);
    // A later reset that archives only takeover requests.
    dir.write(SESSIONS, "{}");
    dir.write(TAKEOVERS, r#"{"t1": {"status": "open"}}"#);
    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", "2026-12-03T00:00:00+00:00")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let (exit, report) = prune(&dir, &["--keep", "1"]);
    assert_eq!(exit, 0, "{report}");
    // The older reset's sessions archive is what the check compares with.
    assert!(dir.file(&sessions_archive(2)).exists());
    assert_eq!(report["deleted"], json!([]));

    // The archived session comes back unchanged, without a time.
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    let (exit, status) = dir.run_json(&["status"]);
    assert_eq!(exit, 2, "{status}");
    assert_eq!(status["resurrection"]["count"], 1);
    assert_eq!(status["resurrection"]["run_id"], "20261202_000000");
}

#[test]
fn long_archive_names_split_prune_lines() {
    let dir = DataDir::new();
    // Valid run ids with a long same-second number, 230 bytes per name.
    let suffix = "1".repeat(190);
    for n in 1..=3_000 {
        let name = format!("session_history_20200101_000000_{n}{suffix}.json");
        dir.write(&name, "{}");
    }
    reset_at(&dir, "2026-12-04T00:00:00+00:00", "a", false);

    let (exit, report) = prune(&dir, &["--keep", "1"]);
    assert_eq!(exit, 0, "{report}");
    assert_eq!(report["deleted"].as_array().unwrap().len(), 3_000);
    let journal = dir.journal();
    assert_eq!(journal.len(), 3, "one reset line and two prune lines");
    let longest = longest_journal_line(&dir);
    assert!(
        longest < 1024 * 1024,
        "longest journal line {longest} bytes"
    );
    let (exit, verified) = dir.run_json(&["history", "verify"]);
    assert_eq!(exit, 0, "{verified}");
}
