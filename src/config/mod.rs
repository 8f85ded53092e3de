//! Settings: defaults → TOML file → `ASAPD_*` environment → CLI flags.
//!
//! Nested keys use `__` in the environment (`ASAPD_KEYS__DEFAULT_ALGORITHM`).
//! Everything is validated before anything starts, and every error says how
//! to fix it.

pub mod audit;
pub mod federation;
pub mod http;
pub mod keys;
pub mod master_key;
pub mod pkcs11;
pub mod tokens;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use self::audit::{AuditSettings, CommitPacing};
pub use self::federation::FederationSettings;
pub use self::http::HttpSettings;
pub use self::keys::{KeyBackendSetting, KeySettings};
pub use self::master_key::Redacted;
pub use self::pkcs11::Pkcs11Settings;
pub use self::tokens::{RateLimitScope, TokenSettings};

pub const ENV_PREFIX: &str = "ASAPD_";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on; default 127.0.0.1:8080, or :8443 with `dev`.
    pub listen: Option<SocketAddr>,
    /// Holds the SQLite file, and with `dev` the master key and certificate.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default `sqlite://<data_dir>/asapd.db`.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// Base64 of 32 random bytes. Prefer the environment over a file.
    pub master_key: Option<Redacted>,
    /// File holding the base64 master key.
    pub master_key_file: Option<PathBuf>,
    /// Master keys replaced by `master_key`, still accepted for reading
    /// until `asapd rekey` has re-encrypted everything. In the environment,
    /// `ASAPD_PREVIOUS_MASTER_KEYS` is comma-separated.
    #[serde(deserialize_with = "master_key::list_or_commas")]
    pub previous_master_keys: Vec<Redacted>,
    /// File holding previous master keys, one base64 key per line.
    pub previous_master_keys_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Local development: HTTPS with a self-signed certificate, generated
    /// master key, admin bootstrap.
    pub dev: bool,
    /// `text` for humans, `json` for log shippers.
    pub log_format: LogFormat,
    pub keys: KeySettings,
    pub http: HttpSettings,
    pub tokens: TokenSettings,
    pub audit: AuditSettings,
    pub pkcs11: Pkcs11Settings,
    pub federation: FederationSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 16,
            master_key: None,
            master_key_file: None,
            previous_master_keys: Vec::new(),
            previous_master_keys_file: None,
            tls_cert: None,
            tls_key: None,
            dev: false,
            log_format: LogFormat::Text,
            keys: KeySettings::default(),
            http: HttpSettings::default(),
            tokens: TokenSettings::default(),
            audit: AuditSettings::default(),
            pkcs11: Pkcs11Settings::default(),
            federation: FederationSettings::default(),
        }
    }
}

/// Values given on the command line; `None` leaves lower layers in force.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CliOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dev: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// Top-level keys and the `[section]` keys we know (without the `ASAPD_`
/// prefix), for the unknown environment variable warning. Public so the
/// deploy/ drift test can check the manifests' variable names against it.
pub const KNOWN_ENV: &[&str] = &[
    "CONFIG",
    "LISTEN",
    "DATA_DIR",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "MASTER_KEY",
    "MASTER_KEY_FILE",
    "PREVIOUS_MASTER_KEYS",
    "PREVIOUS_MASTER_KEYS_FILE",
    "TLS_CERT",
    "TLS_KEY",
    "DEV",
    "LOG_FORMAT",
    "LOG",
    "KEYS__DEFAULT_ALGORITHM",
    "KEYS__ROTATION_PERIOD_SECS",
    "KEYS__CACHE_MAX_AGE_SECS",
    "KEYS__REFRESH_INTERVAL_SECS",
    "KEYS__BACKEND",
    "PKCS11__MODULE",
    "PKCS11__TOKEN_LABEL",
    "PKCS11__PIN",
    "PKCS11__PIN_FILE",
    "PKCS11__SESSIONS",
    "HTTP__MAX_BODY_BYTES",
    "HTTP__WORKERS",
    "HTTP__TRUSTED_PROXIES",
    "HTTP__FORWARDED_HEADER",
    "HTTP__BODY_TIMEOUT_SECS",
    "HTTP__REQUEST_HEAD_TIMEOUT_MS",
    "HTTP__PUBLIC_URL",
    "TOKENS__DEFAULT_LIFETIME_SECS",
    "TOKENS__MAX_CLAIMS_BYTES",
    "TOKENS__RATE_LIMIT_PER_SECOND",
    "TOKENS__RATE_LIMIT_BURST",
    "TOKENS__RATE_LIMIT_SCOPE",
    "TOKENS__FAILED_AUTH_PER_MINUTE",
    "TOKENS__FAILED_AUTH_BURST",
    "TOKENS__AUDIENCE",
    "TOKENS__CLIENT_ASSERTION_MAX_SECS",
    "AUDIT__PRUNE_INTERVAL_SECS",
    "AUDIT__COMMIT_INTERVAL_MS",
    "AUDIT__COMMIT_BATCH",
    "FEDERATION__JWKS_CACHE_DEFAULT_SECS",
    "FEDERATION__JWKS_CACHE_MIN_SECS",
    "FEDERATION__JWKS_CACHE_MAX_SECS",
    "FEDERATION__JWKS_REFETCH_INTERVAL_SECS",
    "FEDERATION__JWKS_STALE_SECS",
    "FEDERATION__FETCH_TIMEOUT_SECS",
    "FEDERATION__MAX_DOCUMENT_BYTES",
    "FEDERATION__LEEWAY_SECS",
    "FEDERATION__DEFAULT_MAX_TOKEN_AGE_SECS",
    // Read by the test suite only.
    "TEST_POSTGRES_URL",
    // Read by `asapd token`.
    "CLIENT_ID",
    "CLIENT_SECRET",
    // Read by the admin commands (`asapd callers …`).
    "TOKEN",
];

impl Settings {
    /// Loads and validates the layered configuration. Returns the settings
    /// and warnings (unknown variables) for the caller to log.
    pub fn load(
        config_file: Option<&Path>,
        cli: &CliOverrides,
    ) -> Result<(Settings, Vec<String>), ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist; fix --config / ASAPD_CONFIG or create it",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only known variables become settings; the rest are warned about
        // below, so a stray ASAPD_* (a test harness's, a typo) never stops
        // the start.
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| is_setting_variable(key.as_str()))
            .split("__");
        figment = figment.merge(env).merge(Serialized::defaults(cli));
        let mut settings: Settings = figment.extract().map_err(|e| {
            ConfigError(format!(
                "{e}\n  hint: see the configuration reference in README.md; nested keys are \
                 ASAPD_<SECTION>__<KEY> in the environment"
            ))
        })?;
        if let Ok(pin) = std::env::var(format!("{ENV_PREFIX}{}", pkcs11::PIN_VARIABLE)) {
            settings.pkcs11.pin = Some(Redacted(pin));
        }
        settings.validate()?;
        Ok((
            settings,
            unknown_env_warnings(std::env::vars().map(|(k, _)| k)),
        ))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.keys.validate().map_err(ConfigError)?;
        self.http.validate().map_err(ConfigError)?;
        self.tokens.validate().map_err(ConfigError)?;
        self.audit.validate().map_err(ConfigError)?;
        if self.keys.backend == KeyBackendSetting::Pkcs11 {
            self.pkcs11.validate().map_err(ConfigError)?;
        }
        self.federation.validate().map_err(ConfigError)?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError(
                "tls_cert and tls_key go together: set both (--tls-cert/--tls-key or \
                 ASAPD_TLS_CERT/ASAPD_TLS_KEY) or neither"
                    .into(),
            ));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError(
                "database_max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let port = if self.dev { 8443 } else { 8080 };
            SocketAddr::from(([127, 0, 0, 1], port))
        })
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("asapd.db").display()))
    }

    /// `--dev` without a certificate of the operator's: asapd makes (and
    /// keeps) a self-signed one in the data dir.
    pub fn uses_dev_certificate(&self) -> bool {
        self.dev && self.tls_cert.is_none() && self.tls_key.is_none()
    }

    /// Certificate and key to serve HTTPS with, if any.
    pub fn tls_paths(&self) -> Option<(PathBuf, PathBuf)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ if self.dev => Some((
                self.data_dir.join("dev-cert.pem"),
                self.data_dir.join("dev-key.pem"),
            )),
            _ => None,
        }
    }
}

/// Known variables that are read elsewhere, not settings.
const NOT_SETTINGS: &[&str] = &[
    "CONFIG",
    pkcs11::PIN_VARIABLE,
    "LOG",
    "TEST_POSTGRES_URL",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "TOKEN",
];

/// `key` is a variable name without the prefix, in any case.
fn is_setting_variable(key: &str) -> bool {
    !NOT_SETTINGS.iter().any(|k| k.eq_ignore_ascii_case(key))
        && KNOWN_ENV.iter().any(|k| k.eq_ignore_ascii_case(key))
}

fn unknown_env_warnings(vars: impl Iterator<Item = String>) -> Vec<String> {
    vars.filter_map(|name| {
        let rest = name.strip_prefix(ENV_PREFIX)?;
        if KNOWN_ENV.contains(&rest) {
            return None;
        }
        let close = KNOWN_ENV
            .iter()
            .filter(|k| **k != "TEST_POSTGRES_URL")
            .map(|k| (edit_distance(&k.replace("__", "_"), &rest.replace("__", "_")), k))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k);
        Some(match close {
            Some(k) => format!("unknown environment variable {name} is ignored; did you mean {ENV_PREFIX}{k}?"),
            None => format!("unknown environment variable {name} is ignored; see the configuration reference in README.md"),
        })
    })
    .collect()
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_about_unknown_variables_with_a_suggestion() {
        let w = unknown_env_warnings(
            [
                "ASAPD_LISTEN",
                "ASAPD_KEYS_DEFAULT_ALGORITHM",
                "ASAPD_NOPE",
                "PATH",
            ]
            .into_iter()
            .map(String::from),
        );
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("ASAPD_KEYS__DEFAULT_ALGORITHM"), "{w:?}");
        assert!(w[1].contains("ASAPD_NOPE"));
    }

    #[test]
    fn dev_changes_the_default_port() {
        let mut s = Settings::default();
        assert_eq!(s.listen_addr().port(), 8080);
        s.dev = true;
        assert_eq!(s.listen_addr().port(), 8443);
        assert!(s.tls_paths().is_some());
    }

    /// The example deployment config is a valid config: every key in it
    /// exists and every value passes validation.
    #[test]
    fn the_deploy_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/asapd.example.toml");
        let (settings, _) = Settings::load(Some(&path), &CliOverrides::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!settings.dev);
        assert!(settings.tls_paths().is_some());
    }
}
