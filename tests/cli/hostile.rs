//! A hostile data directory, as when root resets a directory that the
//! service user can write: links, FIFOs and directories planted at every name
//! order-reset uses. Nothing outside the data directory may change.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{DataDir, JOURNAL, LOCK, SESSIONS, TAKEOVERS, code, stderr};

const NOW: &str = "2026-12-04T00:00:01+01:00";
const SESSIONS_BYTES: &[u8] = br#"{"a": {"status": "draft"}}"#;

/// A directory outside the data directory with a file that links point to.
struct Outside {
    dir: DataDir,
}

impl Outside {
    fn new() -> Outside {
        let dir = DataDir::new();
        dir.write("victim", "outside content");
        fs::set_permissions(dir.file("victim"), fs::Permissions::from_mode(0o644)).unwrap();
        Outside { dir }
    }

    fn victim(&self) -> std::path::PathBuf {
        self.dir.file("victim")
    }

    /// Returns content, mode, size and modification time of everything in it.
    fn snapshot(&self) -> Vec<(String, Vec<u8>, u32, i64, i64)> {
        self.dir
            .names()
            .into_iter()
            .map(|name| {
                let metadata = fs::symlink_metadata(self.dir.file(&name)).unwrap();
                let content = if metadata.is_file() {
                    self.dir.read(&name)
                } else {
                    Vec::new()
                };
                (
                    name,
                    content,
                    metadata.mode(),
                    metadata.mtime(),
                    metadata.mtime_nsec(),
                )
            })
            .collect()
    }
}

/// Runs a command with a deadline, so that a FIFO that blocks an open fails
/// the test instead of hanging it.
fn run_with_deadline(mut command: Command) -> Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("order-reset hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn link_at_archive_name_is_skipped() {
    let dir = DataDir::new();
    let outside = Outside::new();
    let before = outside.snapshot();
    dir.write(SESSIONS, SESSIONS_BYTES);
    symlink(
        outside.victim(),
        dir.file("session_history_20261204_000001.json"),
    )
    .unwrap();

    let output = dir
        .command(&["--json", "reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["run_id"], "20261204_000001_2");
    assert_eq!(
        dir.read("session_history_20261204_000001_2.json"),
        SESSIONS_BYTES
    );
    assert!(
        fs::symlink_metadata(dir.file("session_history_20261204_000001.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(outside.snapshot(), before);
}

#[test]
fn links_at_temporary_names_are_removed_not_followed() {
    let dir = DataDir::new();
    let outside = Outside::new();
    let before = outside.snapshot();
    dir.write(SESSIONS, SESSIONS_BYTES);
    let planted = ".scan_sessions.json.1.0.order-reset-tmp";
    symlink(outside.victim(), dir.file(planted)).unwrap();
    fs::create_dir(dir.file(".dir.order-reset-tmp")).unwrap();

    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        fs::symlink_metadata(dir.file(planted)).is_err(),
        "planted link removed"
    );
    assert!(stderr(&output).contains("cannot remove temporary file .dir.order-reset-tmp"));
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert_eq!(outside.snapshot(), before);
}

#[test]
fn special_active_files_are_rejected() {
    let outside = Outside::new();
    let before = outside.snapshot();
    for (kind, name) in [
        ("link", SESSIONS),
        ("fifo", SESSIONS),
        ("directory", SESSIONS),
        ("link", TAKEOVERS),
        ("fifo", TAKEOVERS),
        ("directory", TAKEOVERS),
    ] {
        let dir = DataDir::new();
        let other = if name == SESSIONS {
            TAKEOVERS
        } else {
            SESSIONS
        };
        dir.write(other, SESSIONS_BYTES);
        match kind {
            "link" => symlink(outside.victim(), dir.file(name)).unwrap(),
            "fifo" => {
                let status = Command::new("mkfifo").arg(dir.file(name)).status().unwrap();
                assert!(status.success());
            }
            _ => fs::create_dir(dir.file(name)).unwrap(),
        }
        let output = run_with_deadline(dir.command(&["reset"]));
        let context = format!("{kind} at {name}");
        assert_eq!(code(&output), 65, "{context}: {}", stderr(&output));
        let expected = match kind {
            "link" => "symbolic link",
            "fifo" => "is a FIFO",
            _ => "is a directory",
        };
        assert!(
            stderr(&output).contains(expected),
            "{context}: {}",
            stderr(&output)
        );
        assert_eq!(dir.read(other), SESSIONS_BYTES, "{context}");
        assert!(dir.names_with("session_history_").is_empty(), "{context}");
        assert!(dir.names_with("takeover_history_").is_empty(), "{context}");

        let status = run_with_deadline(dir.command(&["--json", "status"]));
        assert_eq!(code(&status), 0, "{context}: status");
    }
    assert_eq!(outside.snapshot(), before);
}

#[test]
fn link_at_journal_is_rejected() {
    let dir = DataDir::new();
    let outside = Outside::new();
    let before = outside.snapshot();
    dir.write(SESSIONS, SESSIONS_BYTES);
    symlink(outside.victim(), dir.file(JOURNAL)).unwrap();
    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 73, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("symbolic link"),
        "{}",
        stderr(&output)
    );
    assert_eq!(dir.read(SESSIONS), SESSIONS_BYTES);
    assert_eq!(outside.snapshot(), before);
}

#[test]
fn link_at_pending_record_is_rejected() {
    let dir = DataDir::new();
    let outside = Outside::new();
    let before = outside.snapshot();
    dir.write(SESSIONS, SESSIONS_BYTES);
    symlink(outside.victim(), dir.file("order-reset.pending")).unwrap();
    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 74, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("symbolic link"),
        "{}",
        stderr(&output)
    );
    assert_eq!(dir.read(SESSIONS), SESSIONS_BYTES);
    assert_eq!(outside.snapshot(), before);
}

#[test]
fn link_at_lock_file_is_rejected_by_every_command() {
    let dir = DataDir::new();
    let outside = Outside::new();
    let before = outside.snapshot();
    dir.write(SESSIONS, SESSIONS_BYTES);
    symlink(outside.victim(), dir.file(LOCK)).unwrap();
    for args in [
        &["reset"][..],
        &["reset", "--dry-run"],
        &["status"],
        &["history"],
    ] {
        let output = dir.run(args);
        if args[0] == "reset" {
            assert_ne!(code(&output), 0, "{args:?}");
        } else {
            assert_eq!(code(&output), 0, "{args:?}: {}", stderr(&output));
        }
    }
    assert_eq!(dir.read(SESSIONS), SESSIONS_BYTES);
    assert_eq!(outside.snapshot(), before);
}

#[test]
fn archives_are_never_more_readable_than_sources() {
    for mode in [0o600, 0o640, 0o644, 0o660, 0o755, 0o2664] {
        let dir = DataDir::new();
        dir.write(SESSIONS, SESSIONS_BYTES);
        fs::set_permissions(dir.file(SESSIONS), fs::Permissions::from_mode(mode)).unwrap();

        // Stop after the copy, while the temporary archive still exists.
        let output = dir
            .command(&["reset"])
            .env("ORDER_RESET_FAILPOINT", "after-copy:exit")
            .output()
            .unwrap();
        assert_eq!(code(&output), 86);
        let temps = dir.names_with(".session_history_");
        assert_eq!(temps.len(), 1, "{temps:?}");
        let temp_mode = dir.mode(&temps[0]);
        assert_eq!(
            temp_mode & !(mode & 0o7777),
            0,
            "temporary {temp_mode:o} vs {mode:o}"
        );

        let output = dir
            .command(&["reset"])
            .env("ORDER_RESET_NOW", NOW)
            .output()
            .unwrap();
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let archive_mode = dir.mode("session_history_20261204_000001.json");
        assert_eq!(archive_mode, mode & 0o666, "archive of a {mode:o} source");
        assert_eq!(dir.mode(SESSIONS), mode, "active file keeps {mode:o}");
    }
}

/// Writes a pending record naming `archive` and `temp`, with `temp`'s hash.
fn plant_pending(dir: &DataDir, archive: &str, temp: &str, temp_path: &std::path::Path) {
    let hash = crate::common::sha256_file(temp_path);
    let record = serde_json::json!({
        "entry": {"schema_version": 1, "id": "20260101_000000", "reset_at": "2026-01-01T00:00:00+00:00"},
        "files": [{"source": "sessions", "archive": archive, "temp": temp, "sha256": hash, "bytes": 1}]
    });
    dir.write("order-reset.pending", serde_json::to_vec(&record).unwrap());
}

#[test]
fn planted_pending_record_cannot_move_files() {
    let outside = Outside::new();
    let before = outside.snapshot();
    let victim_dir = outside.dir.path().display().to_string();
    for (archive, temp) in [
        (
            format!("{victim_dir}/planted.sh"),
            ".x.order-reset-tmp".to_string(),
        ),
        (
            "../planted.sh".to_string(),
            ".x.order-reset-tmp".to_string(),
        ),
        (
            "session_history_20260101_000000.json".to_string(),
            format!(
                "../{}/victim",
                outside.dir.path().file_name().unwrap().to_string_lossy()
            ),
        ),
        (
            "session_history_20260101_000000.json".to_string(),
            outside.victim().display().to_string(),
        ),
    ] {
        let dir = DataDir::new();
        dir.write(SESSIONS, SESSIONS_BYTES);
        dir.write(".x.order-reset-tmp", "payload");
        let temp_path = if temp.starts_with('.') && !temp.contains('/') {
            dir.file(&temp)
        } else {
            outside.victim()
        };
        plant_pending(&dir, &archive, &temp, &temp_path);

        let output = dir.run(&["reset"]);
        let context = format!("archive {archive}, temp {temp}");
        assert_eq!(code(&output), 65, "{context}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("is damaged"),
            "{context}: {}",
            stderr(&output)
        );
        assert_eq!(dir.read(SESSIONS), SESSIONS_BYTES, "{context}");
        assert!(!outside.dir.file("planted.sh").exists(), "{context}");
        assert!(
            !dir.path().parent().unwrap().join("planted.sh").exists(),
            "{context}"
        );

        let (exit, status) = dir.run_json(&["status"]);
        assert_eq!(exit, 0, "{context}");
        assert!(
            status["pending_error"]
                .as_str()
                .unwrap()
                .contains("is damaged"),
            "{context}"
        );
    }
    assert_eq!(outside.snapshot(), before);
}

#[test]
fn pending_record_of_another_user_is_rejected() {
    if !crate::common::is_root() {
        eprintln!("skipping: changing a file's owner needs root");
        return;
    }
    let dir = DataDir::new();
    dir.write(SESSIONS, SESSIONS_BYTES);
    dir.write(".x.order-reset-tmp", "payload");
    plant_pending(
        &dir,
        "session_history_20260101_000000.json",
        ".x.order-reset-tmp",
        &dir.file(".x.order-reset-tmp"),
    );
    std::os::unix::fs::chown(dir.file("order-reset.pending"), Some(4321), Some(4321)).unwrap();
    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 65, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("belongs to uid 4321"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.file("session_history_20260101_000000.json").exists());
}

#[test]
fn hard_links_at_lock_and_journal_are_rejected() {
    for name in [LOCK, JOURNAL] {
        let dir = DataDir::new();
        let outside = Outside::new();
        dir.write(SESSIONS, SESSIONS_BYTES);
        if fs::hard_link(outside.victim(), dir.file(name)).is_err() {
            eprintln!("skipping: the temporary directories are on different filesystems");
            return;
        }
        let before = outside.snapshot();
        let output = dir.run(&["reset"]);
        assert_eq!(code(&output), 73, "{name}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("hard links"),
            "{name}: {}",
            stderr(&output)
        );
        assert_eq!(outside.snapshot(), before, "{name}");
        assert_eq!(dir.read(SESSIONS), SESSIONS_BYTES, "{name}");
    }
}

fn getfacl(path: &std::path::Path) -> String {
    let output = Command::new("getfacl")
        .args(["--omit-header", "--numeric"])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn acls_are_kept_on_archive_and_active_file() {
    if Command::new("setfacl").arg("--version").output().is_err() {
        eprintln!("skipping: setfacl is not installed");
        return;
    }
    let dir = DataDir::new();
    dir.write(SESSIONS, SESSIONS_BYTES);
    fs::set_permissions(dir.file(SESSIONS), fs::Permissions::from_mode(0o640)).unwrap();
    let status = Command::new("setfacl")
        .args(["-m", "u:4321:r--,g::---,m::r--"])
        .arg(dir.file(SESSIONS))
        .status()
        .unwrap();
    if !status.success() {
        eprintln!("skipping: this filesystem does not support ACLs");
        return;
    }
    let before = getfacl(&dir.file(SESSIONS));
    assert!(before.contains("user:4321:r--"), "{before}");

    let output = dir
        .command(&["reset"])
        .env("ORDER_RESET_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(getfacl(&dir.file(SESSIONS)), before, "active file");
    assert_eq!(
        getfacl(&dir.file("session_history_20261204_000001.json")),
        before,
        "archive"
    );
}

/// Runs `args` on `dir` with the address space limited to 200 MB, far less
/// than the journal line planted by the test.
fn run_with_memory_limit(dir: &DataDir, args: &[&str]) -> Output {
    let binary = crate::common::bare_command().get_program().to_owned();
    let mut command = crate::common::bare_command();
    command
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg("ulimit -v 200000 && exec \"$0\" \"$@\"")
        .arg(binary)
        .args(command.get_args())
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key, value?))),
        );
    run_with_deadline(limited)
}

#[test]
fn huge_journal_line_is_read_in_bounded_memory() {
    let dir = DataDir::new();
    dir.write(SESSIONS, SESSIONS_BYTES);
    assert_eq!(code(&dir.run(&["-q", "reset"])), 0);
    // 512 MiB of zero bytes without a newline, as a journal extended by
    // truncate(1) or a crash on some filesystems leaves it; sparse on disk.
    let journal = fs::OpenOptions::new()
        .write(true)
        .open(dir.file(JOURNAL))
        .unwrap();
    let planted_length = journal.metadata().unwrap().len() + 512 * 1024 * 1024;
    journal.set_len(planted_length).unwrap();
    drop(journal);

    let history = run_with_memory_limit(&dir, &["--json", "history"]);
    assert_eq!(code(&history), 0, "{}", stderr(&history));
    let report: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(report["total"], 1);
    assert_eq!(
        report["journal_errors"],
        serde_json::json!(["line 2: line is longer than 1048576 bytes"])
    );

    dir.write(SESSIONS, SESSIONS_BYTES);
    let reset = run_with_memory_limit(&dir, &["-q", "reset"]);
    assert_eq!(code(&reset), 0, "{}", stderr(&reset));

    // The new line's prev covers the whole planted line, so verify reports
    // only the planted line itself.
    let verify = run_with_memory_limit(&dir, &["--json", "history", "verify"]);
    assert_eq!(code(&verify), 65, "{}", stderr(&verify));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["lines"], 3);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["line"], 2);
}
