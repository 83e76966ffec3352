//! Shell completion scripts and the man page, generated from the clap
//! definition so that they never disagree with the binary.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut Vec<u8>) -> io::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "order-reset", out);
    Ok(())
}

/// Writes the man page of `order-reset` followed by those of its
/// subcommands, nested ones included, in roff, as one document.
pub fn man_page(out: &mut Vec<u8>) -> io::Result<()> {
    for (index, (_, page)) in man_pages().into_iter().enumerate() {
        if index > 0 {
            out.write_all(b"\n")?;
        }
        page.render(out)?;
    }
    Ok(())
}

/// Writes each man page into `dir` as `NAME.1` and returns the paths
/// written, so that the references between pages, such as
/// `order-reset-reset(1)`, find their page.
///
/// Each page is written to a new temporary file that is then renamed over
/// the page, as install(1) does, so that a link planted at a page name is
/// replaced and never followed. Fails with the path of the page that could
/// not be written.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
    let mut written = Vec::new();
    for (name, page) in man_pages() {
        let path = dir.join(format!("{name}.1"));
        let temp = dir.join(format!(".{name}.1.{}.tmp", std::process::id()));
        let result = write_new_file(&temp, &page).and_then(|()| std::fs::rename(&temp, &path));
        if let Err(error) = result {
            let _ = std::fs::remove_file(&temp);
            return Err((path, error));
        }
        written.push(path);
    }
    Ok(written)
}

/// Renders `page` into a file that must not exist yet, with mode 0644.
fn write_new_file(path: &Path, page: &clap_mangen::Man) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = Vec::new();
    page.render(&mut text)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(&text)
}

/// Returns the page of `order-reset` and one per visible subcommand, nested
/// ones included, as `git help` pages do, each with its page name. Each
/// command is named after its page, so that the SUBCOMMANDS section of a
/// page names the pages of its subcommands.
fn man_pages() -> Vec<(String, clap_mangen::Man)> {
    // Building copies the global options, such as --data-dir, into every
    // subcommand, so that each page lists them.
    let mut command = Cli::command();
    command.build();
    let mut pages = Vec::new();
    add_pages(command, "order-reset", "order-reset", &mut pages);
    pages
}

/// Adds the page of `command`, named `name`, and those of its subcommands.
/// `command_line` is how the command is typed, such as
/// `order-reset history prune`, which the synopsis shows.
fn add_pages(
    command: clap::Command,
    name: &str,
    command_line: &str,
    pages: &mut Vec<(String, clap_mangen::Man)>,
) {
    // The `help` subcommand that clap adds only repeats the pages.
    let subcommands: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        .cloned()
        .collect();
    let command = command
        .display_name(name.to_string())
        .bin_name(command_line.to_string())
        .mut_subcommands(|sub| {
            let is_help = sub.get_name() == "help";
            sub.hide(is_help)
        });
    let page = clap_mangen::Man::new(command)
        .title(name.to_string())
        .source(format!("order-reset {}", env!("CARGO_PKG_VERSION")));
    pages.push((name.to_string(), page));
    for sub in subcommands {
        let sub_name = format!("{name}-{}", sub.get_name());
        let sub_line = format!("{command_line} {}", sub.get_name());
        add_pages(sub, &sub_name, &sub_line, pages);
    }
}
