//! The command-line definition: global options, subcommands and their
//! arguments, and the parsers for option values such as durations.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Name of the environment variable that can supply the data directory.
pub const DATA_DIR_ENV: &str = "ORDER_RESET_DATA_DIR";

/// Archive and reset the order sessions of a pick/pack backend.
///
/// The data directory holds scan_sessions.json and takeover_requests.json as
/// the backend writes them. `reset` archives both files and empties them under
/// a lock; `status` and `history` report without changing anything.
#[derive(Debug, Parser)]
#[command(name = "order-reset", version, max_term_width = 100)]
pub struct Cli {
    /// Data directory that holds scan_sessions.json [env: ORDER_RESET_DATA_DIR]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Print one JSON document on stdout instead of the human summary
    #[arg(long, global = true)]
    pub json: bool,

    /// Log more on stderr (-v debug, -vv trace)
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Log less: -q shows warnings and errors and no human summary, -qq errors only
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive both data files and replace them with empty objects
    Reset(ResetArgs),
    /// Show the active files, the last reset, the archives and the lock
    Status(StatusArgs),
    /// List past resets, newest first, or show, search, verify and prune them
    History(HistoryArgs),
    /// Put the sessions of an archived reset back into the active files
    Restore(RestoreArgs),
    /// Print a shell completion script to stdout
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout, or write one page per command
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Time to wait for a busy lock, such as 500ms, 10s or 2m (a bare number is seconds)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub wait: Duration,

    /// Reset even when a file is not valid JSON, keeping its bytes in a .invalid archive
    #[arg(long)]
    pub force: bool,

    /// Report what a reset would do and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Make each archive a copy (or a clone, where the filesystem can share
    /// extents), never a hard link to the active file
    #[arg(long)]
    pub copy: bool,

    /// Reset only if no reset has run since the most recent daily cutoff
    /// (see --at), so that an hourly schedule catches a missed midnight once
    #[arg(long)]
    pub daily: bool,

    /// Local time of the daily cutoff for --daily, as HH:MM
    #[arg(long, value_name = "HH:MM", default_value = "00:00", requires = "daily", value_parser = parse_time_of_day)]
    pub at: chrono::NaiveTime,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Exit 2 (critical) when the last reset is older than DURATION, such as 25h
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,

    /// Exit 1 (warning) when the lock has been held longer than DURATION
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_lock_age: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show at most N resets
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    #[command(subcommand)]
    pub action: Option<HistoryAction>,
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Show one reset in detail: every session it archived
    Show {
        /// Run id (YYYYMMDD_HHMMSS[_N]) or archive file name, as `history` prints them
        id: String,
    },
    /// Find the archives that hold a session by session id, order number or invoice id
    Search {
        /// Exact session id, order number or invoice id
        term: String,
    },
    /// Check every archive against its SHA-256 and the journal's hash chain
    Verify,
    /// Delete old archives; the journal keeps their lines, marked pruned
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep archives of resets from the last N days
    #[arg(long, value_name = "N")]
    pub keep_days: Option<u32>,

    /// Keep the archives of the newest N resets
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,

    /// Report what would be deleted and delete nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Time to wait for a busy lock, such as 500ms, 10s or 2m
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Run id (YYYYMMDD_HHMMSS[_N]) or archive file name, as `history` prints them
    pub id: String,

    /// Restore the takeover requests of that reset too
    #[arg(long)]
    pub takeovers: bool,

    /// Add the archived sessions whose ids are absent from a non-empty active file
    #[arg(long)]
    pub merge: bool,

    /// Report what a restore would do and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Time to wait for a busy lock, such as 500ms, 10s or 2m
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command, such as order-reset-reset.1, into DIR
    /// (for example /usr/local/share/man/man1) instead of printing them all
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate the script for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Parses a local time of day such as `00:00` or `23:30`.
pub fn parse_time_of_day(text: &str) -> Result<chrono::NaiveTime, String> {
    chrono::NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| format!("invalid time `{text}`: expected HH:MM, such as 00:00 or 23:30"))
}

/// Parses a duration such as `250ms`, `10s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid duration `{text}`: expected a number such as 10s or 500ms")
    })?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => {
            return Err(format!(
                "invalid duration unit `{unit}` in `{text}`: use ms, s, m, h or d"
            ));
        }
    };
    if !seconds.is_finite() || seconds > 86_400.0 * 365.0 {
        return Err(format!("duration `{text}` is too large"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn duration_rejects_garbage() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn time_of_day() {
        assert_eq!(
            parse_time_of_day("23:30"),
            Ok(chrono::NaiveTime::from_hms_opt(23, 30, 0).unwrap())
        );
        assert!(parse_time_of_day("24:00").is_err());
        assert!(parse_time_of_day("7").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
