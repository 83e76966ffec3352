//! `reset --daily`: an hourly schedule over simulated days, with a missed
//! midnight, double firing and daylight-saving changes, resets exactly once
//! per day.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use serde_json::json;

use crate::common::{DataDir, SESSIONS, code, stderr};

/// Offset of Europe/Berlin at a UTC instant in 2026: summer time from
/// 29 March 01:00 UTC to 25 October 01:00 UTC.
fn berlin(utc: DateTime<Utc>) -> DateTime<FixedOffset> {
    let summer_start = Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap();
    let summer_end = Utc.with_ymd_and_hms(2026, 10, 25, 1, 0, 0).unwrap();
    let hours = if utc >= summer_start && utc < summer_end {
        2
    } else {
        1
    };
    utc.with_timezone(&FixedOffset::east_opt(hours * 3600).unwrap())
}

/// Runs `reset --daily` at `now` in Berlin time and returns whether it reset.
fn run_daily(dir: &DataDir, now: DateTime<FixedOffset>, at: &str) -> bool {
    let output = dir
        .command(&["--json", "reset", "--daily", "--at", at])
        .env("TZ", "Europe/Berlin")
        .env("ORDER_RESET_NOW", now.to_rfc3339())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{now}: {}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["daily_cutoff"].is_string(), "{report}");
    !report["skipped"].as_bool().unwrap()
}

/// Simulates an hourly timer from `start` for `hours` hours, skipping the
/// hours for which `off` is true and firing twice in the hours for which
/// `twice` is true. Returns the local dates on which a reset ran.
fn simulate(
    start: DateTime<Utc>,
    hours: i64,
    at: &str,
    off: impl Fn(DateTime<FixedOffset>) -> bool,
    twice: impl Fn(DateTime<FixedOffset>) -> bool,
) -> BTreeMap<NaiveDate, usize> {
    let dir = DataDir::new();
    let mut resets: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    for hour in 0..hours {
        let now = berlin(start + Duration::hours(hour) + Duration::minutes(5));
        if off(now) {
            continue;
        }
        dir.write(
            SESSIONS,
            format!("{{\"s{hour}\": {{\"status\": \"draft\"}}}}"),
        );
        let fired = if twice(now) { 2 } else { 1 };
        for _ in 0..fired {
            if run_daily(&dir, now, at) {
                *resets.entry(now.date_naive()).or_default() += 1;
            }
        }
    }
    let archives = dir.names_with("session_history_");
    let mut sorted = archives.clone();
    sorted.sort();
    assert_eq!(archives, sorted);
    assert_eq!(archives.len(), resets.values().sum::<usize>());
    resets
}

fn date(month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, month, day).unwrap()
}

#[test]
fn daily_over_autumn_change_resets_once_a_day() {
    // 23 to 27 October 2026, clocks go back at 03:00 on the 25th. The machine
    // is off from 22:00 on the 25th to 04:00 on the 26th, and a second cron
    // entry fires every hour at 01:00 and 02:00.
    let start = Utc.with_ymd_and_hms(2026, 10, 22, 22, 0, 0).unwrap();
    let resets = simulate(
        start,
        24 * 4 + 2,
        "00:00",
        |now| {
            (now.date_naive() == date(10, 25)
                && now.time() >= chrono::NaiveTime::from_hms_opt(22, 0, 0).unwrap())
                || (now.date_naive() == date(10, 26)
                    && now.time() < chrono::NaiveTime::from_hms_opt(4, 0, 0).unwrap())
        },
        |now| matches!(chrono::Timelike::hour(&now), 1 | 2),
    );
    let expected: BTreeMap<NaiveDate, usize> = [
        (date(10, 23), 1),
        (date(10, 24), 1),
        (date(10, 25), 1),
        (date(10, 26), 1),
        (date(10, 27), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(resets, expected);
}

#[test]
fn daily_cutoff_in_repeated_hour_resets_once() {
    // Cutoff 02:30 on 25 October 2026 happens twice; only the first counts.
    let start = Utc.with_ymd_and_hms(2026, 10, 24, 12, 0, 0).unwrap();
    let resets = simulate(start, 36, "02:30", |_| false, |_| true);
    assert_eq!(resets.get(&date(10, 25)), Some(&1), "{resets:?}");
    assert_eq!(resets.values().sum::<usize>(), 2, "{resets:?}");
}

#[test]
fn daily_cutoff_in_skipped_hour_resets_once() {
    // Cutoff 02:30 does not exist on 29 March 2026; the reset runs after the gap.
    let start = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
    let resets = simulate(start, 36, "02:30", |_| false, |_| false);
    assert_eq!(resets.get(&date(3, 29)), Some(&1), "{resets:?}");
    assert_eq!(resets.values().sum::<usize>(), 2, "{resets:?}");
}

#[test]
fn daily_skip_changes_nothing() {
    let dir = DataDir::new();
    dir.write(SESSIONS, r#"{"a": {"status": "draft"}}"#);
    let now = "2026-06-10T09:00:00+02:00";
    let first = dir
        .command(&["--json", "reset", "--daily"])
        .env("TZ", "Europe/Berlin")
        .env("ORDER_RESET_NOW", now)
        .output()
        .unwrap();
    assert_eq!(code(&first), 0);
    dir.write(SESSIONS, r#"{"b": {"status": "draft"}}"#);
    let second = dir
        .command(&["--json", "reset", "--daily"])
        .env("TZ", "Europe/Berlin")
        .env("ORDER_RESET_NOW", now)
        .output()
        .unwrap();
    assert_eq!(code(&second), 0);
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(report["skipped"], json!(true));
    assert_eq!(report["daily_cutoff"], json!("2026-06-10T00:00:00+02:00"));
    assert_eq!(report["archived_to"], json!(null));
    assert_eq!(dir.read(SESSIONS), br#"{"b": {"status": "draft"}}"#);
    assert_eq!(
        dir.journal().len(),
        1,
        "a skipped run writes no journal line"
    );
}

#[test]
fn names_stay_ordered_when_clock_goes_back() {
    let dir = DataDir::new();
    for (number, now) in [
        "2026-10-25T02:45:00+02:00",
        "2026-10-25T02:15:00+01:00",
        "2026-10-25T02:50:00+01:00",
    ]
    .iter()
    .enumerate()
    {
        dir.write(
            SESSIONS,
            format!("{{\"s{number}\": {{\"status\": \"draft\"}}}}"),
        );
        let output = dir
            .command(&["reset"])
            .env("TZ", "Europe/Berlin")
            .env("ORDER_RESET_NOW", now)
            .output()
            .unwrap();
        assert_eq!(code(&output), 0, "{}", stderr(&output));
    }
    assert_eq!(
        dir.names_with("session_history_"),
        vec![
            "session_history_20261025_024500.json",
            "session_history_20261025_024500_2.json",
            "session_history_20261025_025000.json",
        ]
    );
    let (_, history) = dir.run_json(&["history"]);
    let order: Vec<&str> = history["resets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|reset| reset["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["20261025_025000", "20261025_024500_2", "20261025_024500"]
    );
}
