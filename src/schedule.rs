//! The daily cutoff of `reset --daily`: the most recent moment at which the
//! local clock showed the cutoff time, in the time zone of `TZ` (or the
//! system's), across daylight-saving changes.

use chrono::{DateTime, Duration, FixedOffset, Local, LocalResult, NaiveDate, NaiveTime, TimeZone};

/// Returns the latest instant not after `now` at which the local time was
/// `at`.
///
/// When `at` falls in the hour skipped as clocks go forward, the cutoff is
/// the first moment after the gap. When it falls in the hour repeated as
/// clocks go back, the cutoff is its first occurrence, so that the repeated
/// hour does not start a second reset.
pub fn latest_cutoff(now: DateTime<FixedOffset>, at: NaiveTime) -> DateTime<FixedOffset> {
    latest_cutoff_in(&Local, now, at)
}

fn latest_cutoff_in<Tz: TimeZone>(
    zone: &Tz,
    now: DateTime<FixedOffset>,
    at: NaiveTime,
) -> DateTime<FixedOffset> {
    let today = now.with_timezone(zone).date_naive();
    for days_back in 0..3 {
        let date = today - Duration::days(days_back);
        let cutoff = cutoff_on(zone, date, at);
        if cutoff <= now {
            return cutoff;
        }
    }
    // Unreachable for real time zones, whose offsets differ by less than a day.
    now
}

/// Returns the instant of local time `at` on `date`.
fn cutoff_on<Tz: TimeZone>(zone: &Tz, date: NaiveDate, at: NaiveTime) -> DateTime<FixedOffset> {
    let mut local = date.and_time(at);
    // Step through a gap minute by minute until the local time exists; gaps
    // are at most a few hours.
    for _ in 0..(24 * 60) {
        match zone.from_local_datetime(&local) {
            LocalResult::Single(time) => return time.fixed_offset(),
            LocalResult::Ambiguous(first, _) => return first.fixed_offset(),
            LocalResult::None => local += Duration::minutes(1),
        }
    }
    zone.from_utc_datetime(&local).fixed_offset()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central European Time with its 2026 daylight-saving changes: clocks go
    /// forward at 02:00 on 29 March and back at 03:00 on 25 October.
    #[derive(Clone, Copy, Debug)]
    struct Berlin;

    impl Berlin {
        fn offset_at_utc(utc: chrono::NaiveDateTime) -> FixedOffset {
            let summer_start = NaiveDate::from_ymd_opt(2026, 3, 29)
                .unwrap()
                .and_hms_opt(1, 0, 0)
                .unwrap();
            let summer_end = NaiveDate::from_ymd_opt(2026, 10, 25)
                .unwrap()
                .and_hms_opt(1, 0, 0)
                .unwrap();
            let hours = if utc >= summer_start && utc < summer_end {
                2
            } else {
                1
            };
            FixedOffset::east_opt(hours * 3600).unwrap()
        }
    }

    impl TimeZone for Berlin {
        type Offset = FixedOffset;

        fn from_offset(_: &FixedOffset) -> Berlin {
            Berlin
        }

        fn offset_from_local_date(&self, _: &NaiveDate) -> LocalResult<FixedOffset> {
            unimplemented!("not used")
        }

        fn offset_from_local_datetime(
            &self,
            local: &chrono::NaiveDateTime,
        ) -> LocalResult<FixedOffset> {
            let candidates: Vec<FixedOffset> = [1, 2]
                .into_iter()
                .map(|hours| FixedOffset::east_opt(hours * 3600).unwrap())
                .filter(|offset| {
                    let utc = *local - Duration::seconds(offset.local_minus_utc() as i64);
                    Berlin::offset_at_utc(utc) == *offset
                })
                .collect();
            match candidates.as_slice() {
                [] => LocalResult::None,
                [one] => LocalResult::Single(*one),
                // The summer-time reading of a repeated local time comes first.
                [winter, summer] => LocalResult::Ambiguous(*summer, *winter),
                _ => unreachable!(),
            }
        }

        fn offset_from_utc_date(&self, _: &NaiveDate) -> FixedOffset {
            unimplemented!("not used")
        }

        fn offset_from_utc_datetime(&self, utc: &chrono::NaiveDateTime) -> FixedOffset {
            Berlin::offset_at_utc(*utc)
        }
    }

    fn time(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn at(hour: u32, minute: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(hour, minute, 0).unwrap()
    }

    #[test]
    fn cutoff_is_today_after_it_passed() {
        let now = time("2026-06-10T09:00:00+02:00");
        assert_eq!(
            latest_cutoff_in(&Berlin, now, at(0, 0)),
            time("2026-06-10T00:00:00+02:00")
        );
    }

    #[test]
    fn cutoff_is_yesterday_before_it_passed() {
        let now = time("2026-06-10T09:00:00+02:00");
        assert_eq!(
            latest_cutoff_in(&Berlin, now, at(23, 30)),
            time("2026-06-09T23:30:00+02:00")
        );
    }

    #[test]
    fn cutoff_in_skipped_hour_moves_after_gap() {
        let now = time("2026-03-29T12:00:00+02:00");
        assert_eq!(
            latest_cutoff_in(&Berlin, now, at(2, 30)),
            time("2026-03-29T03:00:00+02:00")
        );
    }

    #[test]
    fn cutoff_in_repeated_hour_is_first() {
        let now = time("2026-10-25T12:00:00+01:00");
        assert_eq!(
            latest_cutoff_in(&Berlin, now, at(2, 30)),
            time("2026-10-25T02:30:00+02:00")
        );
        // During the repeated hour itself, the first 02:30 has passed.
        let now = time("2026-10-25T02:45:00+01:00");
        assert_eq!(
            latest_cutoff_in(&Berlin, now, at(2, 30)),
            time("2026-10-25T02:30:00+02:00")
        );
    }
}
