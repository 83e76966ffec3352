//! The `history show ID` command: one reset in detail, with every session it archived.

use serde::Serialize;

use crate::datadir::DataDir;
use crate::output::Render;

/// The result of `history show`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
}

/// Runs `history show`.
pub fn run(dir: &DataDir, id: &str) -> anyhow::Result<Report> {
    let _ = dir;
    let _ = id;
    anyhow::bail!("`history show` is not implemented yet")
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        let _ = out;
    }
}
