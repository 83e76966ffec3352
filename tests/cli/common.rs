//! Shared helpers for the integration tests: a temporary data directory and a
//! way to run the built binary on it with a scrubbed environment.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub const SESSIONS: &str = "scan_sessions.json";
pub const TAKEOVERS: &str = "takeover_requests.json";
pub const JOURNAL: &str = "order-reset-journal.jsonl";
pub const LOCK: &str = "order-reset.lock";
pub const GENERATION: &str = "order-reset.generation";

/// Environment variables that would change the binary's behaviour and must
/// not leak in from the shell that runs the tests.
const SCRUBBED: &[&str] = &[
    "ORDER_RESET_DATA_DIR",
    "ORDER_RESET_NOW",
    "ORDER_RESET_FAILPOINT",
    "ORDER_RESET_NO_EXCHANGE",
    "RUST_LOG",
    "JOURNAL_STREAM",
];

/// Returns the real backend fixtures directory, or `None` (with a message)
/// when it is not present beside the project.
pub fn real_fixtures() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real");
    if path.is_dir() {
        Some(path)
    } else {
        eprintln!("skipping: the backend's real fixtures are not beside the checkout");
        None
    }
}

/// Returns the sample data directory shipped in `examples/data`.
pub fn sample_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data")
}

/// A temporary data directory.
pub struct DataDir {
    pub temp: TempDir,
}

impl DataDir {
    pub fn new() -> DataDir {
        DataDir {
            temp: tempfile::Builder::new()
                .prefix("order-reset-test")
                .tempdir()
                .expect("create temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) {
        fs::write(self.file(name), bytes).expect("write test file");
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.file(name)).unwrap_or_else(|error| panic!("read {name}: {error}"))
    }

    pub fn copy_in(&self, from: &Path, name: &str) {
        fs::copy(from, self.file(name)).expect("copy fixture");
    }

    /// Returns the sorted names of the files in the directory.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Returns the names that start with `prefix`, sorted.
    pub fn names_with(&self, prefix: &str) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|name| name.starts_with(prefix))
            .collect()
    }

    pub fn mode(&self, name: &str) -> u32 {
        fs::symlink_metadata(self.file(name)).unwrap().mode() & 0o7777
    }

    pub fn owner(&self, name: &str) -> (u32, u32) {
        let metadata = fs::symlink_metadata(self.file(name)).unwrap();
        (metadata.uid(), metadata.gid())
    }

    /// Returns a command for the binary with `--data-dir` set to this directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = bare_command();
        command.arg("--data-dir").arg(self.path()).args(args);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run order-reset")
    }

    /// Runs with `--json` and returns the exit code and parsed stdout.
    pub fn run_json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is not one JSON document ({error}): {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().expect("exit code"), value)
    }

    /// Returns the journal's parsed lines.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let Ok(text) = fs::read_to_string(self.file(JOURNAL)) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| serde_json::from_str(line).expect("journal line is JSON"))
            .collect()
    }
}

/// Returns a command for the binary with a scrubbed environment and UTC.
pub fn bare_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_order-reset"));
    for name in SCRUBBED {
        command.env_remove(name);
    }
    command.env("TZ", "UTC");
    command
}

/// Returns the exit code, panicking with the output when there is none.
pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or_else(|| {
        panic!(
            "killed by a signal; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns whether the tests run as root, which chown tests need.
pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|metadata| metadata.uid() == 0)
        .unwrap_or(false)
}

/// Builds a sessions file of `count` sessions in the backend's shape, written
/// with two-space indentation like Python's `json.dump(indent=2)`. The
/// statuses cycle through the six the backend uses.
pub fn generated_sessions(count: usize, prefix: &str) -> Vec<u8> {
    const STATUSES: [&str; 6] = [
        "draft",
        "approved",
        "in_progress",
        "ready_to_check",
        "completed",
        "cancelled",
    ];
    let mut sessions = serde_json::Map::new();
    for number in 0..count {
        let id = format!("{prefix}-{number:08}");
        let status = STATUSES[number % STATUSES.len()];
        let items: Vec<serde_json::Value> = (0..3)
            .map(|item| {
                serde_json::json!({
                    "sku": format!("SKU{item:03}"),
                    "name": "Shipping box S (10 pcs)",
                    "qty_ordered": 1.0,
                    "qty_invoiced": 1.0,
                    "qty_scanned": 0,
                    "price": 12.5,
                    "row_total": 12.5,
                    "product_id": 100 + item,
                    "is_complete": false
                })
            })
            .collect();
        sessions.insert(
            id.clone(),
            serde_json::json!({
                "session_id": id,
                "invoice_id": format!("{}", 2_000_000_000u64 + number as u64),
                "order_number": format!("{}", 3_000_000_000u64 + number as u64),
                "session_type": "pick",
                "started_at": "2026-03-02T08:14:03.120311",
                "completed_at": null,
                "items_expected": items,
                "items_scanned": [],
                "status": status,
                "user_id": "picker01",
                "created_by": "picker01",
                "last_modified_by": "picker01",
                "last_modified_at": "2026-03-02T08:14:03.121004",
                "audit_logs": [{
                    "timestamp": "2026-03-02T08:14:03.121030",
                    "action": "approved",
                    "user": "admin",
                    "details": "Approved for picking"
                }]
            }),
        );
    }
    serde_json::to_vec_pretty(&serde_json::Value::Object(sessions)).unwrap()
}

/// Reads a count from an environment variable, for test loops that CI runs
/// with a smaller count.
pub fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Returns the SHA-256 of a file as lowercase hex, computed by `sha256sum`.
pub fn sha256_file(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()[..64].to_string()
}

/// A `flock(1)` process that holds the exclusive lock of a data directory
/// until it is dropped.
pub struct LockHolder {
    child: std::process::Child,
}

impl LockHolder {
    /// Starts the holder and returns once it has the lock.
    pub fn start(dir: &DataDir) -> LockHolder {
        use std::io::{BufRead, BufReader};
        // --no-fork keeps the lock in this one process, so killing it frees the lock.
        let mut child = Command::new("flock")
            .args(["--exclusive", "--no-fork"])
            .arg(dir.file(LOCK))
            .args(["-c", "echo locked; exec sleep 60"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run flock(1) from util-linux");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "locked\n");
        LockHolder { child }
    }

    /// Returns the holder's pid, which the kernel lists for the lock.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
