//! The wall clock, with a fixed time for tests.
//!
//! `ORDER_RESET_NOW` set to an RFC 3339 time (such as
//! `2026-12-04T00:00:00+01:00`) replaces the clock, so that archive names,
//! same-second resets and ages in reports can be tested exactly. The offset in
//! that value is taken as the local offset. Only debug builds (with
//! `debug_assertions`, as `cargo test` builds the binary) read the variable;
//! a release build always uses the system clock.

use chrono::{DateTime, FixedOffset, Local};

/// Environment variable that fixes the clock, for tests.
pub const NOW_ENV: &str = "ORDER_RESET_NOW";

/// Returns the current local time with its UTC offset.
pub fn now() -> DateTime<FixedOffset> {
    let fixed = if cfg!(debug_assertions) {
        std::env::var_os(NOW_ENV)
    } else {
        None
    };
    if let Some(fixed) = fixed {
        let text = fixed.to_string_lossy();
        match DateTime::parse_from_rfc3339(&text) {
            Ok(time) => return time,
            Err(error) => log::warn!("ignoring {NOW_ENV}={text}: {error}"),
        }
    }
    Local::now().fixed_offset()
}
