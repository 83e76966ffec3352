//! Bad input in the active files: each case has a documented result and exit
//! code, never a panic, and nothing is lost.

use std::fs;
use std::io::Write;

use serde_json::json;

use crate::common::{DataDir, SESSIONS, code, stderr};

const NOW: &str = "2026-12-04T00:00:01+01:00";

/// One bad input: the bytes, the exit code of a plain reset, and a piece of
/// its error message (empty for a successful reset).
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    exit: i32,
    message: &'static str,
}

fn cases() -> Vec<Case> {
    let mut deep = b"{\"a\": ".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.push(b'}');
    vec![
        Case {
            name: "zero bytes",
            bytes: Vec::new(),
            exit: 65,
            message: "is empty (0 bytes)",
        },
        Case {
            name: "truncated",
            bytes: b"{\n  \"a\": {\n    \"status\": \"dra".to_vec(),
            exit: 65,
            message: "line 3, column 19: unexpected end of file inside a string",
        },
        Case {
            name: "merge conflict markers",
            bytes: b"<<<<<<< HEAD\n{}\n=======\n{}\n>>>>>>> branch\n".to_vec(),
            exit: 65,
            message: "line 1, column 1: expected a JSON object, found '<'",
        },
        Case {
            name: "byte order mark",
            bytes: b"\xef\xbb\xbf{}".to_vec(),
            exit: 65,
            message: "byte order mark",
        },
        Case {
            name: "invalid UTF-8",
            bytes: b"{\"a\": {\"status\": \"dr\xffft\"}}".to_vec(),
            exit: 65,
            message: "invalid UTF-8",
        },
        Case {
            name: "top-level array",
            bytes: b"[{\"status\": \"draft\"}]".to_vec(),
            exit: 65,
            message: "top-level value is an array",
        },
        Case {
            name: "top-level string",
            bytes: b"\"sessions\"".to_vec(),
            exit: 65,
            message: "top-level value is a string",
        },
        Case {
            name: "top-level null",
            bytes: b"null".to_vec(),
            exit: 65,
            message: "top-level value is null",
        },
        Case {
            name: "100000 levels of nesting",
            bytes: deep,
            exit: 65,
            message: "nesting deeper than 10000 levels",
        },
        Case {
            name: "session that is not an object",
            bytes: b"{\"a\": {\"status\": \"draft\"}, \"b\": 42}".to_vec(),
            exit: 65,
            message: "entry \"b\" is a number, expected an object",
        },
        Case {
            name: "trailing data",
            bytes: b"{}\n{}".to_vec(),
            exit: 65,
            message: "extra data after the top-level object",
        },
        Case {
            name: "NaN and Infinity",
            bytes: b"{\"a\": {\"status\": \"draft\", \"price\": NaN, \"max\": Infinity, \"min\": -Infinity}}"
                .to_vec(),
            exit: 0,
            message: "",
        },
        Case {
            name: "duplicate keys",
            bytes: b"{\"a\": {\"status\": \"draft\"}, \"a\": {\"status\": \"approved\"}}".to_vec(),
            exit: 0,
            message: "",
        },
        Case {
            name: "non-string status",
            bytes: b"{\"a\": {\"status\": 3}, \"b\": {\"status\": null}, \"c\": {}}".to_vec(),
            exit: 0,
            message: "",
        },
    ]
}

#[test]
fn bad_inputs_have_documented_results() {
    for case in cases() {
        let dir = DataDir::new();
        dir.write(SESSIONS, &case.bytes);
        let output = dir
            .command(&["reset"])
            .env("ORDER_RESET_NOW", NOW)
            .output()
            .unwrap();
        let message = stderr(&output);
        assert_eq!(code(&output), case.exit, "{}: {message}", case.name);
        assert!(!message.contains("panicked"), "{}: {message}", case.name);
        if case.exit == 0 {
            assert_eq!(
                dir.read("session_history_20261204_000001.json"),
                case.bytes,
                "{}",
                case.name
            );
            assert_eq!(dir.read(SESSIONS), b"{}", "{}", case.name);
            continue;
        }
        assert!(message.contains(case.message), "{}: {message}", case.name);
        assert_eq!(dir.read(SESSIONS), case.bytes, "{}: unchanged", case.name);
        assert!(
            dir.names_with("session_history_").is_empty(),
            "{}",
            case.name
        );

        // --force keeps the bytes as they were and starts empty.
        let output = dir
            .command(&["reset", "--force"])
            .env("ORDER_RESET_NOW", NOW)
            .output()
            .unwrap();
        assert_eq!(
            code(&output),
            0,
            "{} --force: {}",
            case.name,
            stderr(&output)
        );
        assert_eq!(
            dir.read("session_history_20261204_000001.invalid"),
            case.bytes,
            "{} --force",
            case.name
        );
        assert_eq!(dir.read(SESSIONS), b"{}", "{} --force", case.name);
    }
}

#[test]
fn odd_but_valid_inputs_are_counted_as_python_reads_them() {
    let dir = DataDir::new();
    dir.write(
        SESSIONS,
        b"{\"a\": {\"status\": \"draft\"}, \"a\": {\"status\": \"approved\"}, \"b\": {\"status\": 3}, \"c\": {}, \"d\": {\"status\": \"on_hold\"}, \"e\": {\"status\": \"x\", \"price\": NaN}}",
    );
    let output = dir.run(&["--json", "reset"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["total_sessions_reset"], json!(5));
    assert_eq!(
        report["sessions_by_status"],
        json!({"approved": 1, "unknown": 2, "on_hold": 1, "x": 1})
    );
    assert!(
        stderr(&output).contains("repeats 1 of its keys"),
        "{}",
        stderr(&output)
    );
}

/// Writes a sessions file of about `megabytes` MiB, streaming it so that the
/// test does not hold it in memory. Returns the number of sessions.
fn write_large_sessions(path: &std::path::Path, megabytes: u64) -> u64 {
    let mut file = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let padding = "x".repeat(1800);
    let target = megabytes << 20;
    let mut written = 2u64;
    let mut count = 0u64;
    file.write_all(b"{\n").unwrap();
    while written < target {
        let separator = if count == 0 { "" } else { ",\n" };
        let entry = format!(
            "{separator}  \"s{count:010}\": {{\n    \"session_id\": \"s{count:010}\",\n    \"status\": \"{}\",\n    \"audit_logs\": [{{\"details\": \"{padding}\"}}]\n  }}",
            if count.is_multiple_of(2) {
                "draft"
            } else {
                "approved"
            }
        );
        file.write_all(entry.as_bytes()).unwrap();
        written += entry.len() as u64;
        count += 1;
    }
    file.write_all(b"\n}").unwrap();
    file.flush().unwrap();
    count
}

/// Runs a reset and returns its exit code and the peak resident memory in
/// KiB that it logs at debug level. The kernel's `ru_maxrss` of a child would
/// include the memory of this test process at the time of the fork.
fn reset_with_peak_memory(dir: &DataDir) -> (i32, u64) {
    let output = dir.run(&["-v", "reset"]);
    let log = stderr(&output);
    let peak = log
        .lines()
        .find_map(|line| line.split_once("peak resident memory "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line in: {log}"));
    (code(&output), peak)
}

#[test]
fn large_file_resets_in_bounded_memory() {
    let megabytes = crate::common::count_from_env("ORDER_RESET_LARGE_MB", 1024) as u64;
    let dir = DataDir::new();
    let count = write_large_sessions(&dir.file(SESSIONS), megabytes);
    let size = fs::metadata(dir.file(SESSIONS)).unwrap().len();
    let hash = crate::common::sha256_file(&dir.file(SESSIONS));

    let (exit, peak_kib) = reset_with_peak_memory(&dir);
    assert_eq!(exit, 0);
    eprintln!(
        "large file: {size} bytes, {count} sessions, peak resident memory {} MiB",
        peak_kib / 1024
    );
    assert!(peak_kib < 64 * 1024, "peak memory {peak_kib} KiB");
    let archives = dir.names_with("session_history_");
    assert_eq!(archives.len(), 1);
    assert_eq!(fs::metadata(dir.file(&archives[0])).unwrap().len(), size);
    assert_eq!(crate::common::sha256_file(&dir.file(&archives[0])), hash);
    let journal = dir.journal();
    assert_eq!(journal[0]["total_sessions_reset"], json!(count));
    assert_eq!(journal[0]["archives"][0]["sha256"], json!(hash));
}
