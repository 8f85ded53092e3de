//! The layer table, read from docs/ARCHITECTURE.md, where it is declared
//! once: the rows between `<!-- layers -->` and `<!-- /layers -->`, the
//! layer in the first cell (`3 runtime state`, or `client`), the modules
//! as `backticked` names in the second.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Layers {
    pub layer_of: BTreeMap<String, u32>,
    /// Modules of the client tree: only the binary may use them.
    pub client: BTreeSet<String>,
}

pub fn parse(markdown: &str) -> Result<Layers, String> {
    let start = markdown
        .find("<!-- layers -->")
        .ok_or("no `<!-- layers -->` marker before the layer table")?;
    let end = markdown[start..]
        .find("<!-- /layers -->")
        .ok_or("no `<!-- /layers -->` marker after the layer table")?;
    let mut layers = Layers::default();
    let mut seen = BTreeSet::new();
    for row in markdown[start..start + end].lines() {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if cells.len() < 3 || !row.trim_start().starts_with('|') {
            continue;
        }
        let layer = cells[1];
        let number: String = layer.chars().take_while(char::is_ascii_digit).collect();
        for module in backticked(cells[2]) {
            if !seen.insert(module.clone()) {
                return Err(format!("`{module}` is in the layer table twice"));
            }
            if let Ok(n) = number.parse() {
                layers.layer_of.insert(module, n);
            } else if layer.starts_with("client") {
                layers.client.insert(module);
            }
        }
    }
    if layers.layer_of.is_empty() {
        return Err("the layer table between the markers has no layer rows".into());
    }
    Ok(layers)
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}
