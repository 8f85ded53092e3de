//! How the mirror reports its passes to monitoring: a Prometheus text file
//! (`--metrics-file`), rewritten after every pass, for node_exporter's
//! textfile collector or any scraper that reads a file. The mirror serves
//! no HTTP of its own, so a file is the simplest honest channel.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use super::Pass;

pub struct Report {
    path: PathBuf,
    registry: Registry,
    passes: IntCounterVec,
    failed_entries: IntGauge,
    published_keys: IntGauge,
    last_pass: IntGauge,
}

impl Report {
    pub fn new(path: PathBuf) -> Self {
        let registry = Registry::new_custom(Some("asapd_mirror".into()), None)
            .expect("a valid metrics prefix");
        let passes = IntCounterVec::new(
            Opts::new(
                "passes_total",
                "Mirror passes by result: ok, partial (some entries failed) or failed",
            ),
            &["result"],
        )
        .expect("valid metric");
        let failed_entries = IntGauge::new(
            "failed_entries",
            "Entries (key files, the JWKS, removals) the last pass could not do",
        )
        .expect("valid metric");
        let published_keys = IntGauge::new("published_keys", "Keys published at the last pass")
            .expect("valid metric");
        let last_pass = IntGauge::new(
            "last_pass_timestamp_seconds",
            "When the last pass ended, Unix seconds",
        )
        .expect("valid metric");
        for metric in [&failed_entries, &published_keys, &last_pass] {
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
        }
        registry
            .register(Box::new(passes.clone()))
            .expect("registered once");
        Self {
            path,
            registry,
            passes,
            failed_entries,
            published_keys,
            last_pass,
        }
    }

    /// Counts a pass (`None`: it could not run) and rewrites the file.
    pub fn record(&self, pass: Option<&Pass>, now_unix: i64) -> anyhow::Result<()> {
        let result = match pass {
            None => "failed",
            Some(pass) if !pass.failed.is_empty() => "partial",
            Some(_) => "ok",
        };
        self.passes.with_label_values(&[result]).inc();
        if let Some(pass) = pass {
            self.failed_entries.set(pass.failed.len() as i64);
            self.published_keys.set(pass.keys as i64);
        }
        self.last_pass.set(now_unix);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .context("encoding the mirror's metrics")?;
        write_atomically(&self.path, &text)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// A collector must never read half a file: a temporary file beside it,
/// then a rename.
fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(body)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
