//! The `history prune` command: delete old archives under the lock; the journal keeps their lines and records the prune.

use serde::Serialize;

use crate::datadir::DataDir;
use crate::output::Render;

/// The result of `history prune`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
}

/// Runs `history prune`.
pub fn run(dir: &DataDir, args: &crate::cli::PruneArgs) -> anyhow::Result<Report> {
    let _ = dir;
    let _ = args;
    anyhow::bail!("`history prune` is not implemented yet")
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        let _ = out;
    }
}
