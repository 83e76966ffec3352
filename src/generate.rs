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
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, page) in man_pages() {
        let mut text = Vec::new();
        page.render(&mut text)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Returns the page of `order-reset` and one per visible subcommand, nested
/// ones included, as `git help` pages do, each with its page name. Each
/// command is named after its page, so that the SUBCOMMANDS section of a
/// page names the pages of its subcommands.
fn man_pages() -> Vec<(String, clap_mangen::Man)> {
    let mut pages = Vec::new();
    add_pages(Cli::command(), "order-reset", "order-reset", &mut pages);
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
    let command = command
        .display_name(name.to_string())
        .bin_name(command_line.to_string())
        .disable_help_subcommand(true);
    let subcommands: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    pages.push((
        name.to_string(),
        clap_mangen::Man::new(command).title(name.to_string()),
    ));
    for sub in subcommands {
        let sub_name = format!("{name}-{}", sub.get_name());
        let sub_line = format!("{command_line} {}", sub.get_name());
        add_pages(sub, &sub_name, &sub_line, pages);
    }
}
