//! The `history verify` command: every archive against the SHA-256 in its journal line, and the journal's hash chain.

use serde::Serialize;

use crate::datadir::DataDir;
use crate::output::Render;

/// The result of `history verify`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
}

/// Runs `history verify`.
pub fn run(dir: &DataDir) -> anyhow::Result<Report> {
    let _ = dir;
    anyhow::bail!("`history verify` is not implemented yet")
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        let _ = out;
    }
}
