//! The durability order of a reset, checked on a traced real run: power loss
//! cannot be simulated here, so strace records the system calls and the test
//! checks that every file is synced before its rename, the directory after
//! it, and no active file is replaced before its archive and the increased
//! generation are durable. An archive made as a hard link to the active file
//! counts as synced when that file is.

use std::collections::HashMap;
use std::process::Command;

use crate::common::{DataDir, SESSIONS, TAKEOVERS, code, sample_data, stderr};

/// One traced system call that matters for durability.
#[derive(Debug)]
enum Call {
    Open {
        fd: i64,
        path: String,
        directory: bool,
    },
    Sync {
        fd: i64,
    },
    Rename {
        from: String,
        to: String,
    },
    Close {
        fd: i64,
    },
    /// A second descriptor for the open file of `from`.
    Dup {
        from: i64,
        to: i64,
    },
    /// A hard link at `to` to the file open as `fd`, made through `/proc/self/fd`.
    Link {
        fd: i64,
        to: String,
    },
}

/// Extracts the first double-quoted string after `start` in `line`.
fn quoted(line: &str, start: usize) -> Option<(String, usize)> {
    let open = line[start..].find('"')? + start + 1;
    let close = line[open..].find('"')? + open;
    Some((line[open..close].to_string(), close + 1))
}

fn result(line: &str) -> Option<i64> {
    line.rsplit_once(" = ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn argument_fd(line: &str) -> Option<i64> {
    let open = line.find('(')? + 1;
    line[open..].split([',', ')']).next()?.trim().parse().ok()
}

fn parse(trace: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    // When another thread makes a system call in the middle of one, strace -f splits the first
    // into an `<unfinished ...>` line and a `<... NAME resumed>` line of the same pid. Such a
    // call counts where it returned, except `close`: it frees the descriptor number at once,
    // and another thread can get that number from `openat` before the `close` returns.
    let mut unfinished: HashMap<&str, &str> = HashMap::new();
    for line in trace.lines() {
        // Lines start with the pid when -f is given.
        let (pid, line) = line.split_once(' ').unwrap_or(("", line));
        let line = line.trim();
        if let Some(start) = line.strip_suffix("<unfinished ...>") {
            if start.starts_with("close(") {
                if let Some(fd) = argument_fd(start) {
                    calls.push(Call::Close { fd });
                }
            } else {
                unfinished.insert(pid, start);
            }
            continue;
        }
        let joined;
        let line = match line.strip_prefix("<... ") {
            Some(resumed) => {
                let (Some(start), Some((_, end))) =
                    (unfinished.remove(pid), resumed.split_once("resumed>"))
                else {
                    continue;
                };
                joined = format!("{start}{end}");
                joined.as_str()
            }
            None => line,
        };
        if line.starts_with("openat(") {
            let (Some((path, _)), Some(fd)) = (quoted(line, 0), result(line)) else {
                continue;
            };
            if fd >= 0 {
                calls.push(Call::Open {
                    fd,
                    path,
                    directory: line.contains("O_DIRECTORY"),
                });
            }
        } else if line.starts_with("fsync(") || line.starts_with("fdatasync(") {
            if let Some(fd) = argument_fd(line) {
                calls.push(Call::Sync { fd });
            }
        } else if line.starts_with("rename(") || line.starts_with("renameat2(") {
            let Some((from, next)) = quoted(line, 0) else {
                continue;
            };
            let Some((to, _)) = quoted(line, next) else {
                continue;
            };
            if result(line) == Some(0) {
                calls.push(Call::Rename { from, to });
            }
        } else if line.starts_with("fcntl(") && line.contains("F_DUPFD") {
            if let (Some(from), Some(to)) = (argument_fd(line), result(line))
                && to >= 0
            {
                calls.push(Call::Dup { from, to });
            }
        } else if line.starts_with("linkat(") {
            let Some((from, next)) = quoted(line, 0) else {
                continue;
            };
            let Some((to, _)) = quoted(line, next) else {
                continue;
            };
            let fd = from
                .strip_prefix("/proc/self/fd/")
                .and_then(|fd| fd.parse().ok());
            if let Some(fd) = fd
                && result(line) == Some(0)
            {
                calls.push(Call::Link { fd, to });
            }
        } else if line.starts_with("close(")
            && let Some(fd) = argument_fd(line)
        {
            calls.push(Call::Close { fd });
        }
    }
    calls
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[test]
fn reset_syncs_in_durable_order() {
    check_durable_order(false);
}

#[test]
fn reset_with_copied_archives_syncs_in_durable_order() {
    check_durable_order(true);
}

/// Traces a reset, with archives linked where possible or always copied, and
/// checks the order of its syncs and renames.
fn check_durable_order(copy_archives: bool) {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipping: strace is not installed");
        return;
    }
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(SESSIONS), SESSIONS);
    dir.copy_in(&sample_data().join(TAKEOVERS), TAKEOVERS);
    let trace_path = dir.temp.path().with_extension("strace");

    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-o"])
        .arg(&trace_path)
        .args([
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat2,close,fcntl,linkat",
        ])
        .arg(env!("CARGO_BIN_EXE_order-reset"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("reset");
    if copy_archives {
        command.arg("--copy");
    }
    for name in ["ORDER_RESET_FAILPOINT", "ORDER_RESET_NOW", "RUST_LOG"] {
        command.env_remove(name);
    }
    let output = command.output().unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let _ = std::fs::remove_file(&trace_path);
    let calls = parse(&trace);

    let mut open: HashMap<i64, (String, bool)> = HashMap::new();
    // The path of the file each hard link was made to.
    let mut links: HashMap<String, String> = HashMap::new();
    let mut synced_files: Vec<String> = Vec::new();
    // Renames not yet followed by a sync of the data directory.
    let mut unsynced_renames: Vec<String> = Vec::new();
    let mut durable_archives: Vec<String> = Vec::new();
    let mut durable_generation = false;
    let mut renames = 0;
    let mut active_replaced = 0;
    let mut journal_synced_after_replace = false;
    for call in &calls {
        match call {
            Call::Open {
                fd,
                path,
                directory,
            } => {
                open.insert(*fd, (path.clone(), *directory));
            }
            Call::Close { fd } => {
                open.remove(fd);
            }
            Call::Dup { from, to } => {
                if let Some(opened) = open.get(from).cloned() {
                    open.insert(*to, opened);
                }
            }
            Call::Link { fd, to } => {
                if let Some((path, _)) = open.get(fd) {
                    links.insert(to.clone(), path.clone());
                }
            }
            Call::Sync { fd } => {
                let Some((path, directory)) = open.get(fd) else {
                    continue;
                };
                if *directory {
                    for name in unsynced_renames.drain(..) {
                        if name == crate::common::GENERATION {
                            durable_generation = true;
                        }
                        if name.contains("_history_") {
                            durable_archives.push(name);
                        }
                    }
                } else {
                    if active_replaced == 2 && file_name(path) == crate::common::JOURNAL {
                        journal_synced_after_replace = true;
                    }
                    synced_files.push(path.clone());
                }
            }
            Call::Rename { from, to } => {
                renames += 1;
                let file = links.get(from).unwrap_or(from);
                assert!(
                    synced_files.iter().any(|path| path == file),
                    "{from} renamed to {to} before it was synced"
                );
                let target = file_name(to).to_string();
                if target == SESSIONS || target == TAKEOVERS {
                    active_replaced += 1;
                    let prefix = if target == SESSIONS {
                        "session_history_"
                    } else {
                        "takeover_history_"
                    };
                    assert!(
                        durable_archives.iter().any(|name| name.starts_with(prefix)),
                        "{target} replaced before its archive was durable"
                    );
                    assert!(
                        durable_generation,
                        "{target} replaced before the increased generation was durable"
                    );
                }
                unsynced_renames.push(target);
            }
        }
    }
    assert!(
        unsynced_renames.is_empty(),
        "renames never followed by a directory sync: {unsynced_renames:?}"
    );
    assert_eq!(active_replaced, 2, "{trace}");
    assert!(
        journal_synced_after_replace,
        "journal not synced after the reset: {trace}"
    );
    assert_eq!(durable_archives.len(), 2, "{durable_archives:?}");
    // Generation, pending record, two archives, two active files, journal head.
    assert_eq!(renames, 7, "{trace}");
    assert!(durable_generation, "generation never renamed into place");
    assert_eq!(links.len(), if copy_archives { 0 } else { 2 }, "{trace}");
    assert_eq!(dir.read(SESSIONS), b"{}");
    assert_eq!(dir.read(crate::common::GENERATION), b"1\n");
}
