//! Where the master key comes from, and the redacting wrapper for it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Settings};
use crate::crypto::MasterKey;

/// A secret string that prints as `<redacted>`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Settings {
    /// The current master key (see [`Settings::current_master_key`]) with
    /// the previous ones of `previous_master_keys` and
    /// `previous_master_keys_file`, which still open what they sealed.
    pub fn master_key(&self) -> Result<MasterKey, ConfigError> {
        let current = self.current_master_key()?;
        let mut previous = Vec::new();
        for (i, key) in self.previous_master_keys.iter().enumerate() {
            previous.push(MasterKey::from_base64(&key.0).map_err(|e| {
                ConfigError(format!(
                    "previous_master_keys (ASAPD_PREVIOUS_MASTER_KEYS), key {}: {e}",
                    i + 1
                ))
            })?);
        }
        if let Some(path) = &self.previous_master_keys_file {
            previous.extend(read_previous_keys_file(path)?);
        }
        Ok(current.with_previous(previous))
    }

    /// Resolves the current master key: `ASAPD_MASTER_KEY`, then
    /// `master_key_file`, then (with `dev` only) `<data_dir>/master.key`,
    /// created on first run.
    fn current_master_key(&self) -> Result<MasterKey, ConfigError> {
        if let Some(key) = &self.master_key {
            return MasterKey::from_base64(&key.0)
                .map_err(|e| ConfigError(format!("ASAPD_MASTER_KEY: {e}; {}", how_to_make_one())));
        }
        if let Some(path) = &self.master_key_file {
            return read_key_file(path);
        }
        if self.dev {
            let path = self.data_dir.join("master.key");
            if !path.exists() {
                crate::fsutil::create_private_dir(&self.data_dir).map_err(|e| {
                    ConfigError(format!(
                        "cannot create data dir {}: {e}",
                        self.data_dir.display()
                    ))
                })?;
                crate::fsutil::write_private(&path, MasterKey::generate_base64().as_bytes())
                    .map_err(|e| ConfigError(format!("cannot write {}: {e}", path.display())))?;
                tracing::warn!(path = %path.display(), "created a dev master key; keep it with the database");
            }
            return read_key_file(&path);
        }
        Err(ConfigError(format!(
            "no master key: asapd encrypts private keys at rest and needs one. {}",
            how_to_make_one()
        )))
    }
}

fn read_key_file(path: &Path) -> Result<MasterKey, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read master key file {}: {e}",
            path.display()
        ))
    })?;
    MasterKey::from_base64(&text).map_err(|e| {
        ConfigError(format!(
            "master key file {}: {e}; {}",
            path.display(),
            how_to_make_one()
        ))
    })
}

/// One base64 key per line; blank lines and `#` comments are skipped.
fn read_previous_keys_file(path: &Path) -> Result<Vec<MasterKey>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read previous_master_keys_file {}: {e}",
            path.display()
        ))
    })?;
    text.lines()
        .enumerate()
        .map(|(n, line)| (n, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| {
            MasterKey::from_base64(line).map_err(|e| {
                ConfigError(format!(
                    "previous_master_keys_file {} line {}: {e}",
                    path.display(),
                    n + 1
                ))
            })
        })
        .collect()
}

/// Accepts a list (TOML) or one comma-separated string (the environment,
/// where a list has no natural spelling).
pub(super) fn list_or_commas<'de, D>(deserializer: D) -> Result<Vec<Redacted>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(deserializer)? {
        Either::List(keys) => keys.into_iter().map(Redacted).collect(),
        Either::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| Redacted(k.to_owned()))
            .collect(),
    })
}

fn how_to_make_one() -> String {
    format!(
        "Set ASAPD_MASTER_KEY to 32 random bytes in base64 (for example \
         ASAPD_MASTER_KEY={} — generate your own with `openssl rand -base64 32`), \
         or point master_key_file / ASAPD_MASTER_KEY_FILE at a file holding one, \
         or use --dev for a local setup",
        MasterKey::generate_base64()
    )
}
