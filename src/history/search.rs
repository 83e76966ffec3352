//! The `history search TERM` command: the archives that hold a session with that session id, order number or invoice id.

use serde::Serialize;

use crate::datadir::DataDir;
use crate::output::Render;

/// The result of `history search`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
}

/// Runs `history search`.
pub fn run(dir: &DataDir, term: &str) -> anyhow::Result<Report> {
    let _ = dir;
    let _ = term;
    anyhow::bail!("`history search` is not implemented yet")
}

impl Render for Report {
    fn render_human(&self, out: &mut String) {
        let _ = out;
    }
}
