//! The `asapd` command line: a thin layer over the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use asapd::client;
use asapd::clock::Clock;
use asapd::config::{CliOverrides, Settings};
use asapd::domain::qsh::CanonicalRequest;
use asapd::mirror;
use asapd::service::bootstrap;
use asapd::startup::{prepare_state, shutdown_signal, Application};

/// glibc's malloc/free took 14 % of the server's CPU issuing tokens
/// (`benches/profile.sh tokens`); mimalloc's per-thread free lists suit
/// actix's thread-per-core workers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "asapd",
    version,
    about = "Key management and token issuing for ASAP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
enum AdminCommand {
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
struct TokenArgs {
    /// Base URL of the asapd.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    url: String,
    /// The caller's name.
    #[arg(long, env = "ASAPD_CLIENT_ID")]
    client_id: String,
    /// The caller's secret. Prefer the environment: flags show in `ps`.
    #[arg(long, env = "ASAPD_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// Audience; repeat for several.
    #[arg(long = "audience", required = true)]
    audiences: Vec<String>,
    /// Lifetime in seconds [default: the server's].
    #[arg(long)]
    lifetime: Option<u32>,
    /// A subject other than the caller (needs a grant that allows it).
    #[arg(long)]
    subject: Option<String>,
    /// Extra CA certificate to trust (PEM), e.g. data/dev-cert.pem.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Print the whole JSON answer, not just the token.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct HealthcheckArgs {
    /// The URL to probe.
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
    /// Extra CA certificate to trust (PEM), for an HTTPS URL.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// Key repository base URL; the kid is appended literally.
    #[arg(long, default_value = "https://127.0.0.1:8443/v1/keys/")]
    repository: String,
    /// The verifier's name: the token's aud must contain it.
    #[arg(long)]
    audience: String,
    /// Accepted issuer; repeat for several [default: any].
    #[arg(long = "issuer")]
    issuers: Vec<String>,
    /// Accept a sub other than iss.
    #[arg(long)]
    allow_subject: bool,
    /// Clock skew tolerated, in seconds.
    #[arg(long, default_value_t = 0)]
    leeway: u64,
    /// Extra CA certificate to trust (PEM), e.g. data/dev-cert.pem.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Check the token's qsh (Connect request binding) against this HTTP
    /// method; needs --url.
    #[arg(long, requires = "url")]
    method: Option<String>,
    /// Check the token's qsh against this request target (`/path?query`);
    /// needs --method.
    #[arg(long, requires = "method")]
    url: Option<String>,
    /// The token; `-` or nothing reads it from standard input.
    token: Option<String>,
}

#[derive(Args)]
struct MirrorArgs {
    /// The directory to write; created if missing.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Keep running and follow every change (PostgreSQL: notifications;
    /// SQLite: a look once a second) until SIGTERM or Ctrl-C.
    #[arg(long)]
    watch: bool,
    /// After every pass, write the mirror's metrics here in Prometheus
    /// text format (for node_exporter's textfile collector: name it
    /// `*.prom`). Keep it outside DIR.
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args)]
struct QshArgs {
    /// The HTTP method.
    #[arg(long)]
    method: String,
    /// The request target, `/path?query`.
    #[arg(long)]
    url: String,
    /// Print the canonical request instead of its hash.
    #[arg(long)]
    canonical: bool,
}

/// `--method`/`--url` as a canonical request, or why not, naming the flag.
fn bound_request(method: &str, url: &str) -> anyhow::Result<CanonicalRequest> {
    CanonicalRequest::parse(method, url)
        .map_err(|e| anyhow::anyhow!("--{}: {}", e.field, e.message))
}

/// Flags shared by every command that touches the database.
#[derive(Args, Clone)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "ASAPD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080; --dev: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory for the SQLite file and dev files [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://… or postgres://… [default: sqlite://<data-dir>/asapd.db].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// PEM certificate chain to serve HTTPS with.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Local development: HTTPS with a self-signed certificate, a generated
    /// master key and an admin created on first start.
    #[arg(long)]
    dev: bool,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<Settings> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Resource(resource) => return admin_command(resource).await,
        Command::Openapi => {
            print!("{}", asapd::http::openapi::spec_json());
        }
        Command::Healthcheck(args) => {
            let client = client::http_client(args.cacert.as_deref())?;
            let timeout = std::time::Duration::from_secs(args.timeout);
            if let Err(e) = client::health::check(&client, &args.url, timeout).await {
                eprintln!("unhealthy: {e:#}");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Token(args) => {
            let client = client::http_client(args.cacert.as_deref())?;
            let answer = client::token::request(
                &client,
                &client::token::TokenRequest {
                    url: &args.url,
                    client_id: &args.client_id,
                    client_secret: &args.client_secret,
                    audiences: &args.audiences,
                    lifetime: args.lifetime,
                    subject: args.subject.as_deref(),
                },
            )
            .await?;
            if args.json {
                println!("{answer}");
            } else {
                println!("{}", answer["token"].as_str().unwrap_or_default());
            }
        }
        Command::Qsh(args) => {
            let request = bound_request(&args.method, &args.url)?;
            if args.canonical {
                println!("{}", request.as_str());
            } else {
                println!("{}", request.qsh());
            }
        }
        Command::Verify(args) => {
            let request = match (&args.method, &args.url) {
                (Some(method), Some(url)) => Some(bound_request(method, url)?),
                _ => None,
            };
            let token = match args.token.as_deref() {
                Some(t) if t != "-" => t.to_owned(),
                _ => {
                    let mut t = String::new();
                    std::io::stdin()
                        .read_to_string(&mut t)
                        .context("reading the token from standard input")?;
                    t
                }
            };
            let client = client::http_client(args.cacert.as_deref())?;
            let expect = client::verify::Expectations {
                repository: &args.repository,
                audience: &args.audience,
                issuers: &args.issuers,
                allow_subject: args.allow_subject,
                leeway: args.leeway,
                request: request.as_ref(),
            };
            match client::verify::verify(&client, token.trim(), &expect).await {
                Ok(claims) => println!("{claims}"),
                Err(e) => {
                    eprintln!("invalid: {e:#}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Mirror(args) => {
            let settings = args.config.load()?;
            let store = mirror::open_store(&settings.database_url()).await?;
            let report = args.metrics_file.clone().map(mirror::Report::new);
            let code = if args.watch {
                tracing::info!(dir = %args.to.display(), "asapd mirror: watching");
                mirror::watch(&store, &args.to, report.as_ref(), shutdown_signal()).await;
                ExitCode::SUCCESS
            } else {
                mirror_once(&store, &args.to, report.as_ref()).await?
            };
            store.close().await;
            return Ok(code);
        }
        Command::Migrate(args) => {
            let settings = args.load()?;
            prepare_state(settings, Clock::System).await?;
            eprintln!("migrations applied");
        }
        Command::Init { config, json } => {
            let settings = config.load()?;
            let state = prepare_state(settings, Clock::System).await?;
            match bootstrap::create_first_admin(&state).await? {
                Ok(creds) => print_credentials(&creds, json)?,
                Err(exists) => {
                    eprintln!("error: {exists}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        Command::Admin(AdminCommand::ResetSecret { name, config, json }) => {
            let settings = config.load()?;
            let state = prepare_state(settings, Clock::System).await?;
            let reset = asapd::service::secrets::reset(&state, &name)
                .await
                .with_context(|| format!("resetting the secret of {name}"))?;
            state.store.close().await;
            if !json {
                eprintln!(
                    "asapd admin reset-secret: {name}'s other secrets are revoked; this secret is \
                     shown once (running replicas accept it at once, and stop accepting the old \
                     ones within keys.refresh_interval_secs):"
                );
            }
            print_credentials(
                &bootstrap::AdminCredentials {
                    client_id: name,
                    client_secret: reset.client_secret,
                },
                json,
            )?;
        }
        Command::Rekey {
            config,
            batch,
            json,
        } => {
            let settings = config.load()?;
            let state = prepare_state(settings, Clock::System).await?;
            let summary = asapd::service::rekey::run(&state, batch)
                .await
                .context("re-encrypting under the current master key")?;
            state.store.close().await;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!(
                    "asapd rekey: {} private keys under master key {}: {} re-encrypted, {} already \
                     current, {} changed concurrently; check value {}; {} batches.\n\
                     Every replica can now drop previous_master_keys.",
                    summary.keys_total,
                    summary.key_id,
                    summary.keys_rekeyed,
                    summary.keys_already_current,
                    summary.keys_changed_concurrently,
                    if summary.check_value_rekeyed {
                        "re-encrypted"
                    } else {
                        "already current"
                    },
                    summary.batches
                );
            }
        }
        Command::Serve(args) => {
            let settings = args.load()?;
            let dev_cert = settings
                .uses_dev_certificate()
                .then(|| settings.tls_paths())
                .flatten()
                .map(|(cert, _)| cert);
            let app = Application::build(settings).await?;
            let scheme = if app.is_https() { "https" } else { "http" };
            tracing::info!(port = app.port(), "asapd listening ({scheme})");
            if bootstrap::existing_admin(&app.state()).await?.is_none() {
                tracing::warn!(
                    "there is no admin yet, so nobody can use the admin API: `asapd init` \
                     (same database and master key) creates one and prints its secret once"
                );
            }
            if let Some(creds) = &app.bootstrap_admin {
                eprintln!("asapd --dev: created the first admin; this secret is shown once:");
                print_credentials(creds, false)?;
            }
            if let Some(cert) = dev_cert {
                eprintln!(
                    "asapd --dev: serving {scheme}://127.0.0.1:{}/ with the self-signed certificate {}",
                    app.port(),
                    cert.display()
                );
            }
            app.run_until_stopped().await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an admin API command; a refusal exits 1 with the server's status
/// and problem detail (`error: 409 Conflict: <detail>`).
/// `asapd mirror` without `--watch`: one pass. Exits 1 when an entry
/// failed, after doing all the others.
async fn mirror_once(
    store: &asapd::store::Store,
    dir: &std::path::Path,
    report: Option<&mirror::Report>,
) -> anyhow::Result<ExitCode> {
    let result = mirror::sync(store, dir).await;
    if let Some(report) = report {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        report.record(result.as_ref().ok(), now)?;
    }
    let pass = result?;
    for failure in &pass.failed {
        eprintln!("asapd mirror: failed: {failure}");
    }
    eprintln!(
        "asapd mirror: {} published keys in {} ({} files written, {} removed, {} failed)",
        pass.keys,
        dir.display(),
        pass.written,
        pass.removed,
        pass.failed.len()
    );
    Ok(if pass.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn admin_command(resource: client::admin_cli::AdminResource) -> anyhow::Result<ExitCode> {
    match client::admin_cli::run(resource).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast_ref::<client::admin::ApiFailure>() {
            Some(failure) => {
                eprintln!("error: {failure}");
                Ok(ExitCode::FAILURE)
            }
            None => Err(e),
        },
    }
}

fn print_credentials(creds: &bootstrap::AdminCredentials, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(creds).context("serialising credentials")?
        );
    } else {
        println!("client_id:     {}", creds.client_id);
        println!("client_secret: {}", creds.client_secret);
    }
    Ok(())
}
