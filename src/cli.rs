//! The `asapd` command line's arguments: what each command takes. `main.rs`
//! runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use asapd::config::{CliOverrides, Settings};

use crate::client;

#[derive(Parser)]
#[command(
    name = "asapd",
    version,
    about = "Key management and token issuing for ASAP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the API (applies migrations first).
    Serve(ConfigArgs),
    /// Create the first admin caller and print its credentials once.
    Init {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print `{"client_id", "client_secret"}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply database migrations and exit.
    Migrate(ConfigArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Exit 0 when a running asapd's health URL answers 2xx, else 1: the
    /// container image's HEALTHCHECK (it has no curl or wget).
    Healthcheck(HealthcheckArgs),
    /// Ask a running asapd for a token, as a caller; prints the token.
    Token(TokenArgs),
    /// Check a token as an ASAP verifier does, against a key repository;
    /// prints its claims, or why it is refused (exit 1).
    Verify(VerifyArgs),
    /// Print the Connect query string hash (qsh) of a request, as asapd
    /// puts it in tokens; the interop tests compare it with npm atlassian-jwt.
    #[command(hide = true)]
    Qsh(QshArgs),
    /// Write the key repository as static files: DIR/<kid> (PEM) and
    /// DIR/.well-known/jwks.json, for any web server or CDN to serve as a
    /// fallback. Reads the database; needs no master key.
    Mirror(MirrorArgs),
    /// Offline administration on the database itself (needs the master key).
    #[command(subcommand)]
    Admin(AdminCommand),
    #[command(flatten)]
    Resource(client::admin_cli::AdminResource),
    /// Re-encrypt every private key under the current master key, so the
    /// keys in previous_master_keys can be dropped. Resumable, safe while
    /// replicas serve; prints a summary.
    Rekey {
        #[command(flatten)]
        config: ConfigArgs,
        /// Rows re-encrypted per transaction.
        #[arg(long, default_value_t = asapd::service::rekey::BATCH, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Recover a caller (the last admin, say) whose secrets are lost:
    /// revokes all its secrets and prints a new one once. Audited as
    /// `secret.reset` by `system`.
    ResetSecret {
        /// The caller's name.
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
        /// Print `{"client_id", "client_secret"}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct TokenArgs {
    /// Base URL of the asapd.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// The caller's name.
    #[arg(long, env = "ASAPD_CLIENT_ID")]
    pub client_id: String,
    /// The caller's secret. Prefer the environment: flags show in `ps`.
    #[arg(long, env = "ASAPD_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// Audience; repeat for several.
    #[arg(long = "audience", required = true)]
    pub audiences: Vec<String>,
    /// Lifetime in seconds [default: the server's].
    #[arg(long)]
    pub lifetime: Option<u32>,
    /// A subject other than the caller (needs a grant that allows it).
    #[arg(long)]
    pub subject: Option<String>,
    /// Extra CA certificate to trust (PEM), e.g. data/dev-cert.pem.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Print the whole JSON answer, not just the token.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct HealthcheckArgs {
    /// The URL to probe.
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
    /// Extra CA certificate to trust (PEM), for an HTTPS URL.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Key repository base URL; the kid is appended literally.
    #[arg(long, default_value = "https://127.0.0.1:8443/v1/keys/")]
    pub repository: String,
    /// The verifier's name: the token's aud must contain it.
    #[arg(long)]
    pub audience: String,
    /// Accepted issuer; repeat for several [default: any].
    #[arg(long = "issuer")]
    pub issuers: Vec<String>,
    /// Accept a sub other than iss.
    #[arg(long)]
    pub allow_subject: bool,
    /// Clock skew tolerated, in seconds.
    #[arg(long, default_value_t = 0)]
    pub leeway: u64,
    /// Extra CA certificate to trust (PEM), e.g. data/dev-cert.pem.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Check the token's qsh (Connect request binding) against this HTTP
    /// method; needs --url.
    #[arg(long, requires = "url")]
    pub method: Option<String>,
    /// Check the token's qsh against this request target (`/path?query`);
    /// needs --method.
    #[arg(long, requires = "method")]
    pub url: Option<String>,
    /// The token; `-` or nothing reads it from standard input.
    pub token: Option<String>,
}

#[derive(Args)]
pub struct MirrorArgs {
    /// The directory to write; created if missing.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Keep running and follow every change (PostgreSQL: notifications;
    /// SQLite: a look once a second) until SIGTERM or Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// After every pass, write the mirror's metrics here in Prometheus
    /// text format (for node_exporter's textfile collector: name it
    /// `*.prom`). Keep it outside DIR.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Args)]
pub struct QshArgs {
    /// The HTTP method.
    #[arg(long)]
    pub method: String,
    /// The request target, `/path?query`.
    #[arg(long)]
    pub url: String,
    /// Print the canonical request instead of its hash.
    #[arg(long)]
    pub canonical: bool,
}

/// Flags shared by every command that touches the database.
#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "ASAPD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080; --dev: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for the SQLite file and dev files [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://… or postgres://… [default: sqlite://<data-dir>/asapd.db].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// PEM certificate chain to serve HTTPS with.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Local development: HTTPS with a self-signed certificate, a generated
    /// master key and an admin created on first start.
    #[arg(long)]
    pub dev: bool,
}

impl ConfigArgs {
    pub fn load(&self) -> anyhow::Result<Settings> {
        let cli = CliOverrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            dev: self.dev,
        };
        let (settings, warnings) = Settings::load(self.config.as_deref(), &cli)?;
        asapd::telemetry::init(settings.log_format);
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        Ok(settings)
    }
}
