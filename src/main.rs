//! order-reset: the nightly reset of a pick/pack backend's order sessions.
//!
//! This file parses the command line, sets up logging, runs one subcommand,
//! prints its result and maps errors to exit codes. Each subcommand and each
//! concern lives in its own module.

mod archive;
mod atomic;
mod cli;
mod clock;
mod datadir;
mod error;
mod failpoint;
mod generate;
mod generation;
mod history;
mod journal;
mod lease;
mod lock;
mod output;
mod pending;
mod preconditions;
mod reset;
mod restore;
mod resurrection;
mod runs;
mod scan;
mod schedule;
mod status;
mod system;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;

use crate::cli::{Cli, Command, DATA_DIR_ENV, HistoryAction};
use crate::datadir::DataDir;
use crate::error::{ErrorKind, failure};
use crate::output::Render;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    init_logging(&cli);

    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let kind = error::kind_of(&error);
            let code = if is_monitoring_check(&cli) {
                MONITORING_UNKNOWN
            } else {
                kind.exit_code()
            };
            let mut message = error::one_line(&error);
            if kind == ErrorKind::PermissionDenied && !message.contains(": run ") {
                message.push_str(": run order-reset as root or as the owner of the data files");
            }
            log::error!("{message}");
            if cli.json {
                let _ = print_json(&FailureReport {
                    schema_version: 1,
                    success: false,
                    error: message,
                    error_kind: kind.as_str(),
                    exit_code: code,
                });
            }
            ExitCode::from(code)
        }
    }
}

/// Exit code UNKNOWN of the monitoring-plugin convention, for a `status`
/// check that could not run.
const MONITORING_UNKNOWN: u8 = 3;

/// Returns whether the command is a `status` monitoring check, whose errors
/// exit with UNKNOWN instead of the usual codes.
fn is_monitoring_check(cli: &Cli) -> bool {
    matches!(&cli.command, Command::Status(args) if args.max_age.is_some() || args.max_lock_age.is_some())
}

/// The `--json` document of a failed run.
#[derive(Serialize)]
struct FailureReport {
    schema_version: u32,
    success: bool,
    error: String,
    error_kind: &'static str,
    exit_code: u8,
}

/// Prints clap's message and exits 2; `--help` and `--version` exit 0. With
/// `--json` anywhere on the command line, the failure document is printed too.
fn usage_error(error: clap::Error) -> ExitCode {
    let _ = error.print();
    if error.exit_code() == 0 {
        return ExitCode::SUCCESS;
    }
    let monitoring = std::env::args_os().any(|arg| {
        arg.to_string_lossy().starts_with("--max-age")
            || arg.to_string_lossy().starts_with("--max-lock-age")
    });
    let code = if monitoring {
        MONITORING_UNKNOWN
    } else {
        ErrorKind::Usage.exit_code()
    };
    if std::env::args_os().any(|arg| arg == "--json") {
        let rendered = error.render().to_string();
        let text = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string();
        let _ = print_json(&FailureReport {
            schema_version: 1,
            success: false,
            error: text,
            error_kind: ErrorKind::Usage.as_str(),
            exit_code: code,
        });
    }
    ExitCode::from(code)
}

/// Runs the subcommand and returns the exit code of a result that was
/// produced without error.
fn run(cli: &Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Completions(args) => {
            return print_generated(|out| generate::completions(args.shell, out));
        }
        Command::Man(args) => match &args.dir {
            None => return print_generated(generate::man_page),
            Some(dir) => return write_man_pages(dir),
        },
        _ => {}
    }
    let dir = DataDir::open(&data_dir_path(cli)?)?;
    match &cli.command {
        Command::Reset(args) => emit(cli, &reset::run(&dir, args)?),
        Command::Status(args) => emit(cli, &status::run(&dir, args)?),
        Command::History(args) => match &args.action {
            None => emit(cli, &history::run(&dir, args)?),
            Some(HistoryAction::Show { id }) => emit(cli, &history::show::run(&dir, id)?),
            Some(HistoryAction::Search { term }) => emit(cli, &history::search::run(&dir, term)?),
            Some(HistoryAction::Verify) => emit(cli, &history::verify::run(&dir)?),
            Some(HistoryAction::Prune(prune)) => emit(cli, &history::prune::run(&dir, prune)?),
        },
        Command::Restore(args) => emit(cli, &restore::run(&dir, args)?),
        Command::Completions(_) | Command::Man(_) => unreachable!("handled above"),
    }
}

/// Prints a generated completion script or man page.
fn print_generated(
    generate: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> anyhow::Result<u8> {
    let mut bytes = Vec::new();
    generate(&mut bytes)?;
    print_stdout(&String::from_utf8_lossy(&bytes)).map_err(stdout_error)?;
    Ok(0)
}

/// Writes the man pages into `dir` and prints the path of each.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<u8> {
    let written = generate::write_man_pages(dir).map_err(|(path, error)| {
        let kind = match error.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::CannotCreate,
        };
        error::io_failure(
            kind,
            error,
            format!(
                "cannot write man page {}: check that {} is a directory this user may write",
                path.display(),
                dir.display()
            ),
        )
    })?;
    let list: String = written
        .iter()
        .map(|path| format!("{}\n", path.display()))
        .collect();
    print_stdout(&list).map_err(stdout_error)?;
    Ok(0)
}

fn stdout_error(error: std::io::Error) -> anyhow::Error {
    error::io_failure(ErrorKind::Io, error, "cannot write the result to stdout")
}

/// Takes the data directory from `--data-dir`, else from the environment; it
/// never defaults to the current directory.
fn data_dir_path(cli: &Cli) -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = &cli.data_dir
        && !path.as_os_str().is_empty()
    {
        return Ok(path.clone());
    }
    match std::env::var_os(DATA_DIR_ENV) {
        Some(path) if !path.is_empty() => Ok(path.into()),
        _ => Err(failure(
            ErrorKind::Usage,
            format!("no data directory given: pass --data-dir DIR or set {DATA_DIR_ENV}"),
        )),
    }
}

/// Prints a result: JSON with `--json`, else the human text. `-q` drops the
/// human summary of the commands that change files (`reset`, `restore`,
/// `history prune`), so that a successful cron run prints nothing; reports
/// such as `status` print regardless.
fn emit(cli: &Cli, result: &impl Render) -> anyhow::Result<u8> {
    let summary_only = matches!(
        &cli.command,
        Command::Reset(_)
            | Command::Restore(_)
            | Command::History(cli::HistoryArgs {
                action: Some(HistoryAction::Prune(_)),
                ..
            })
    );
    if cli.json {
        print_json(result).map_err(stdout_error)?;
    } else if cli.quiet == 0 || !summary_only {
        let mut text = String::new();
        result.render_human(&mut text);
        print_stdout(&text).map_err(stdout_error)?;
    }
    Ok(result.exit_code())
}

fn print_json(value: &impl Serialize) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    print_stdout(&text)
}

/// Writes to stdout. A reader that went away (a closed pipe) is not an
/// error, because the work is done; a full disk behind a redirect is.
fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// Sends logs to stderr. The level comes from `-v`/`-q`, and `RUST_LOG`
/// overrides it. Under systemd (`JOURNAL_STREAM` set) each line starts with
/// the journal's priority prefix instead of a timestamp.
fn init_logging(cli: &Cli) {
    let level = match (cli.verbose, cli.quiet) {
        (0, 0) => log::LevelFilter::Info,
        (1, _) => log::LevelFilter::Debug,
        (2.., _) => log::LevelFilter::Trace,
        (0, 1) => log::LevelFilter::Warn,
        (0, _) => log::LevelFilter::Error,
    };
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
    }
    builder.format(move |buf, record| {
        if journald {
            let priority = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{priority}>{}", record.args())
        } else {
            let time = clock::now().format("%Y-%m-%dT%H:%M:%S%:z");
            writeln!(
                buf,
                "{time} order-reset {}: {}",
                record.level(),
                record.args()
            )
        }
    });
    builder.target(env_logger::Target::Stderr);
    builder.init();
}
