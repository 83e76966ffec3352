//! The `restore ID` command: put an archived reset's sessions back into the active files, under the lock, after archiving the current state like a reset does.

use serde::Serialize;

use crate::datadir::DataDir;
use crate::output::Render;

/// The result of `restore`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
}

/// Runs `restore`.
pub fn run(dir: &DataDir, args: &crate::cli::RestoreArgs) -> anyhow::Result<Report> {
    let _ = dir;
    let _ = args;
    anyhow::bail!("`restore` is not implemented yet")
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        let _ = out;
    }
}
