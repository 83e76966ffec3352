//! Shell completion scripts and the man page, generated from the clap
//! definition so that they never disagree with the binary.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::cli::Cli;

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut Vec<u8>) -> io::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "order-reset", out);
    Ok(())
}

/// Writes the man page of `order-reset` and its subcommands, in roff.
pub fn man_page(out: &mut Vec<u8>) -> io::Result<()> {
    let command = Cli::command();
    clap_mangen::Man::new(command.clone()).render(out)?;
    render_subcommands(&command, "order-reset", out)
}

/// Appends one page per subcommand, nested ones included, as `git help`
/// pages do, so that each option of each subcommand is documented.
fn render_subcommands(command: &clap::Command, prefix: &str, out: &mut Vec<u8>) -> io::Result<()> {
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let title = format!("{prefix}-{}", sub.get_name());
        out.write_all(b"\n")?;
        clap_mangen::Man::new(sub.clone())
            .title(title.clone())
            .render(out)?;
        render_subcommands(sub, &title, out)?;
    }
    Ok(())
}
