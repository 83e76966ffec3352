//! Printing results: one JSON document with `--json`, human text otherwise,
//! and the small formatting helpers the human text shares.

use std::collections::BTreeMap;

use serde::Serialize;

/// A command result that can print itself for people or as JSON.
pub trait Render: Serialize {
    /// Appends the human-readable form to `out`.
    fn render_human(&self, out: &mut String);

    /// Returns the exit code for a result that was produced without error:
    /// 0, unless a check such as `history verify` or `status --max-age`
    /// found a problem.
    fn exit_code(&self) -> u8 {
        0
    }
}

/// Column alignment in [`table`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Formats rows as a table with a header line, columns separated by two
/// spaces and padded to their widest cell. The last column is not padded.
pub fn table(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|(name, _)| name.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<String> = headers.iter().map(|(name, _)| name.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            let pad = widths[index].saturating_sub(cell.chars().count());
            let last = index + 1 == row.len();
            match headers[index].1 {
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if !last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Returns `1 session`, `2 sessions`.
pub fn count_noun(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Returns ` (approved 2, draft 1)`, or nothing for no counts.
pub fn format_counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(status, count)| format!("{status} {count}"))
        .collect();
    format!(" ({})", parts.join(", "))
}

/// Returns a byte count in binary units, such as `512 B` or `1.5 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Returns an age such as `45s`, `12m`, `3h 5m` or `2d 4h`.
pub fn format_age(seconds: i64) -> String {
    if seconds < 0 {
        return "in the future".to_string();
    }
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(100 * 1024 * 1024), "100.0 MiB");
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(125), "2m");
        assert_eq!(format_age(3 * 3600 + 300), "3h 5m");
        assert_eq!(format_age(2 * 86_400 + 4 * 3600), "2d 4h");
        assert_eq!(format_age(-1), "in the future");
    }

    #[test]
    fn tables_align_columns() {
        let text = table(
            &[
                ("NAME", Align::Left),
                ("COUNT", Align::Right),
                ("NOTE", Align::Left),
            ],
            &[
                vec!["a".to_string(), "1".to_string(), "x".to_string()],
                vec!["longer".to_string(), "12345".to_string(), String::new()],
            ],
        );
        assert_eq!(
            text,
            "NAME    COUNT  NOTE\na           1  x\nlonger  12345\n"
        );
    }

    #[test]
    fn counts() {
        let mut counts = BTreeMap::new();
        assert_eq!(format_counts(&counts), "");
        counts.insert("draft".to_string(), 1);
        counts.insert("approved".to_string(), 2);
        assert_eq!(format_counts(&counts), " (approved 2, draft 1)");
        assert_eq!(count_noun(1, "session"), "1 session");
        assert_eq!(count_noun(0, "session"), "0 sessions");
    }
}
