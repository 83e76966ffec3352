//! Several resets at once on one data directory while writer processes that
//! behave like the Python backend keep adding sessions under the lock.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::{DataDir, SESSIONS, code, count_from_env, stderr};

/// Returns the top-level keys of a JSON object file.
fn keys(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|error| panic!("{} is not valid JSON: {error}", path.display()));
    value.as_object().unwrap().keys().cloned().collect()
}

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn resets_race_backend_writers_without_loss() {
    if !python3_available() {
        eprintln!("skipping: python3 is not installed");
        return;
    }
    let rounds = count_from_env("ORDER_RESET_WRITER_ROUNDS", 300);
    let dir = DataDir::new();
    let log = dir.temp.path().parent().unwrap().join(format!(
        "writer-log-{}",
        dir.path().file_name().unwrap().to_string_lossy()
    ));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/backend_writer.py"
    );

    let writers: Vec<_> = (0..2)
        .map(|_| {
            Command::new("python3")
                .arg(script)
                .arg(dir.path())
                .arg(rounds.to_string())
                .arg(&log)
                .arg("0.005")
                .spawn()
                .expect("start the backend writer")
        })
        .collect();
    let writers_done = Arc::new(AtomicBool::new(false));
    let resetters: Vec<_> = (0..3)
        .map(|_| {
            let path = dir.path().to_path_buf();
            let writers_done = Arc::clone(&writers_done);
            std::thread::spawn(move || {
                let mut resets = 0;
                let mut archived = 0;
                while !writers_done.load(Ordering::SeqCst) {
                    let output = crate::common::bare_command()
                        .arg("--data-dir")
                        .arg(&path)
                        .args(["--json", "reset", "--wait", "60s"])
                        .output()
                        .unwrap();
                    assert_eq!(code(&output), 0, "reset failed: {}", stderr(&output));
                    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
                    archived += report["total_sessions_reset"].as_u64().unwrap();
                    resets += 1;
                }
                (resets, archived)
            })
        })
        .collect();

    for mut writer in writers {
        assert!(writer.wait().unwrap().success(), "writer failed");
    }
    writers_done.store(true, Ordering::SeqCst);
    let mut resets = 0;
    let mut archived = 0;
    for resetter in resetters {
        let (count, sessions) = resetter.join().unwrap();
        resets += count;
        archived += sessions;
    }

    let written: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let _ = std::fs::remove_file(&log);
    let mut found: HashSet<String> = HashSet::new();
    let active = keys(&dir.file(SESSIONS));
    found.extend(active.iter().cloned());
    let mut archive_keys = 0;
    for archive in dir.names_with("session_history_") {
        let archive_sessions = keys(&dir.file(&archive));
        archive_keys += archive_sessions.len();
        found.extend(archive_sessions);
    }
    assert!(
        resets >= 10,
        "only {resets} resets ran while the writers wrote"
    );
    let lost: Vec<&String> = written.iter().filter(|id| !found.contains(*id)).collect();
    eprintln!(
        "concurrency test: {} sessions written by 2 writers, {resets} resets, {archived} sessions archived in {} archives, {} left active, {} lost",
        written.len(),
        dir.names_with("session_history_").len(),
        active.len(),
        lost.len()
    );
    assert_eq!(written.len(), 2 * rounds);
    assert!(lost.is_empty(), "lost sessions: {lost:?}");
    assert_eq!(
        archive_keys as u64, archived,
        "archives hold exactly what was reported"
    );
    assert_eq!(
        archive_keys + active.len(),
        written.len(),
        "no session archived twice"
    );
}
