//! Fault injection at every step boundary of a reset, as an I/O error and as
//! an abrupt exit: nothing is lost, and the next reset completes the run.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::common::{DataDir, SESSIONS, TAKEOVERS, code, sample_data, stderr};

const NOW: &str = "2026-12-04T00:00:01+01:00";
const RUN_ID: &str = "20261204_000001";

/// Every failpoint, in the order a reset reaches them.
const POINTS: &[&str] = &[
    "after-lock",
    "after-copy",
    "after-pending",
    "after-archives",
    "after-exchange",
    "after-replace-sessions",
    "after-replace",
    "after-journal",
];

/// Returns whether the run had put its first archive in place when it
/// stopped at `point`, so that the next reset completes it.
fn archives_in_place(point: &str, action: &str) -> bool {
    match point {
        "after-lock" | "after-copy" => false,
        // The synced copies survive an abrupt exit and are renamed by the
        // next run; an error removes them and the pending record.
        "after-pending" => action == "exit",
        _ => true,
    }
}

/// Checks that each original file is in its active file or an archive, and
/// that an active file is either the original or `{}`.
fn check_nothing_lost(dir: &DataDir, name: &str, original: &[u8], context: &str) {
    let active = dir.read(name);
    assert!(
        active == original || active == b"{}",
        "{context}: {name} is partially written"
    );
    let prefix = if name == SESSIONS {
        "session_history_"
    } else {
        "takeover_history_"
    };
    let archived = dir
        .names_with(prefix)
        .iter()
        .filter(|archive| dir.read(archive) == original)
        .count();
    assert!(
        active == original || archived == 1,
        "{context}: {name} is neither active nor archived"
    );
    assert_eq!(dir.mode(name), 0o640, "{context}: mode of {name}");
}

#[test]
fn every_failpoint_loses_nothing() {
    let sessions = fs::read(sample_data().join(SESSIONS)).unwrap();
    let takeovers = fs::read(sample_data().join(TAKEOVERS)).unwrap();
    for point in POINTS {
        for action in ["exit", "error"] {
            let context = format!("{point}:{action}");
            let dir = DataDir::new();
            dir.write(SESSIONS, &sessions);
            dir.write(TAKEOVERS, &takeovers);
            for name in [SESSIONS, TAKEOVERS] {
                fs::set_permissions(dir.file(name), fs::Permissions::from_mode(0o640)).unwrap();
            }

            let output = dir
                .command(&["reset"])
                .env("ORDER_RESET_NOW", NOW)
                .env("ORDER_RESET_FAILPOINT", &context)
                .output()
                .unwrap();
            let message = stderr(&output);
            if action == "exit" {
                assert_eq!(code(&output), 86, "{context}: {message}");
            } else {
                assert_eq!(code(&output), 74, "{context}: {message}");
                assert!(
                    message.contains(&format!("injected failure at {point}")),
                    "{context}: {message}"
                );
                // After the journal line the reset is complete, and only the
                // pending record is left for the next run to remove.
                let incomplete = archives_in_place(point, action) && *point != "after-journal";
                assert_eq!(
                    message.contains("is incomplete"),
                    incomplete,
                    "{context}: {message}"
                );
            }
            check_nothing_lost(&dir, SESSIONS, &sessions, &context);
            check_nothing_lost(&dir, TAKEOVERS, &takeovers, &context);

            let (exit, report) = dir.run_json(&["reset"]);
            assert_eq!(exit, 0, "{context}: second run");
            let recovered = archives_in_place(point, action) && *point != "after-journal";
            let expected = if recovered {
                json!(RUN_ID)
            } else {
                json!(null)
            };
            assert_eq!(report["recovered_run_id"], expected, "{context}");

            assert_eq!(dir.read(SESSIONS), b"{}", "{context}");
            assert_eq!(dir.read(TAKEOVERS), b"{}", "{context}");
            for (prefix, original) in [
                ("session_history_", &sessions),
                ("takeover_history_", &takeovers),
            ] {
                let archives = dir.names_with(prefix);
                assert_eq!(archives.len(), 1, "{context}: {archives:?}");
                assert_eq!(&dir.read(&archives[0]), original, "{context}");
            }
            assert!(!dir.file("order-reset.pending").exists(), "{context}");
            assert!(
                dir.names_with(".").is_empty(),
                "{context}: {:?}",
                dir.names()
            );
            for name in [SESSIONS, TAKEOVERS] {
                assert_eq!(dir.mode(name), 0o640, "{context}: mode of {name}");
            }
            let journal = dir.journal();
            let with_archives: Vec<&serde_json::Value> = journal
                .iter()
                .filter(|line| !line["archives"].as_array().unwrap().is_empty())
                .collect();
            assert_eq!(with_archives.len(), 1, "{context}: {journal:?}");
            assert_eq!(
                with_archives[0]["total_sessions_reset"],
                json!(5),
                "{context}"
            );
            assert_eq!(
                with_archives[0]["takeover_requests_reset"],
                json!(1),
                "{context}"
            );
            assert_eq!(
                with_archives[0]["recovered"],
                if recovered { json!(true) } else { json!(null) },
                "{context}"
            );
        }
    }
}

#[test]
fn failpoint_names_match_the_binary() {
    let source =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/failpoint.rs")).unwrap();
    for point in POINTS {
        assert!(source.contains(&format!("\"{point}\"")), "{point}");
    }
}

#[test]
fn copy_without_threads_gives_same_result() {
    let mut journals = Vec::new();
    for failpoint in [None, Some("copy-thread:error")] {
        let dir = DataDir::new();
        dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
        dir.copy_in(&sample_data().join(TAKEOVERS), TAKEOVERS);
        let mut command = dir.command(&["reset"]);
        command.env("ORDER_RESET_NOW", NOW);
        if let Some(failpoint) = failpoint {
            command.env("ORDER_RESET_FAILPOINT", failpoint);
        }
        let output = command.output().unwrap();
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let warned = stderr(&output).contains("cannot start a thread");
        assert_eq!(warned, failpoint.is_some(), "{}", stderr(&output));
        assert_eq!(
            dir.read(&format!("session_history_{RUN_ID}.json")),
            fs::read(sample_data().join(SESSIONS)).unwrap()
        );
        let mut journal = dir.journal().remove(0);
        for volatile in ["pid", "duration_ms"] {
            journal.as_object_mut().unwrap().remove(volatile);
        }
        journals.push(journal);
    }
    assert_eq!(journals[0], journals[1]);

    // An invalid file stops the one-thread pass as it stops the threads.
    let dir = DataDir::new();
    dir.write(SESSIONS, b"{\"a\": {}} trailing");
    let mut command = dir.command(&["reset"]);
    command.env("ORDER_RESET_FAILPOINT", "copy-thread:error");
    let output = command.output().unwrap();
    assert_eq!(code(&output), 65, "{}", stderr(&output));
    assert_eq!(dir.read(SESSIONS), b"{\"a\": {}} trailing");
}
