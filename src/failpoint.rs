//! Fault injection for tests: `ORDER_RESET_FAILPOINT=NAME:ACTION` makes the
//! step boundary `NAME` of a reset fail. Several `NAME:ACTION` pairs can be
//! given, separated by commas.
//!
//! ACTION `error` returns an I/O error from that point, as a failing disk
//! would. ACTION `exit` ends the process at once with exit code 86, skipping
//! destructors and cleanup, as `kill -9` would. ACTION `sleep` pauses there
//! for 1.5 seconds, so that a test can act in the middle of a reset. Without the variable every
//! check is a no-op. The names are listed in [`POINTS`].
//!
//! Only debug builds (with `debug_assertions`, as `cargo test` builds the
//! binary) read the variable; a release build ignores it, so a variable left
//! in root's environment cannot change a nightly run.

use std::io;

/// Environment variable that selects a failpoint.
pub const FAILPOINT_ENV: &str = "ORDER_RESET_FAILPOINT";

/// Every failpoint, in the order a reset reaches them.
pub const POINTS: &[&str] = &[
    "after-lock",
    "after-copy",
    "after-pending",
    "after-archives",
    "after-exchange",
    "after-replace-sessions",
    "after-replace",
    "after-journal",
    // Not a step boundary: makes starting a thread of the copy pass fail,
    // in every command that reads a data file.
    "copy-thread",
];

/// Fails with the configured action when `name` is the selected failpoint.
pub fn check(name: &str) -> io::Result<()> {
    debug_assert!(POINTS.contains(&name), "unknown failpoint {name}");
    if !cfg!(debug_assertions) {
        return Ok(());
    }
    let Some(setting) = std::env::var_os(FAILPOINT_ENV) else {
        return Ok(());
    };
    let setting = setting.to_string_lossy();
    for item in setting.split(',') {
        let (point, action) = item.split_once(':').unwrap_or((item, "error"));
        if point != name {
            continue;
        }
        match action {
            "sleep" => {
                // Leaves a window in which a test can change files, as a
                // writer that ignores the lock would.
                std::thread::sleep(std::time::Duration::from_millis(1500));
            }
            "exit" => {
                // SAFETY: _exit ends the process without running any Rust code after it.
                unsafe { libc::_exit(86) };
            }
            _ => return Err(io::Error::other(format!("injected failure at {name}"))),
        }
    }
    Ok(())
}
