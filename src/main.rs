//! The `asapd` command: parses the command line (`cli`) and runs one
//! command. Server-side commands (`serve`, `init`, `migrate`, `rekey`,
//! `mirror`, `admin reset-secret`) call the library; the client commands
//! (`token`, `verify`, `healthcheck` and the admin CLI) live in `client`,
//! which the library never sees.

mod cli;
mod client;

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use asapd::clock::Clock;
use asapd::domain::qsh::CanonicalRequest;
use asapd::mirror;
use asapd::service::bootstrap;
use asapd::startup::{prepare_state, shutdown_signal, Application};

use cli::{
    AdminCommand, Cli, Command, ConfigArgs, HealthcheckArgs, MirrorArgs, QshArgs, TokenArgs,
    VerifyArgs,
};

/// glibc's malloc/free took 14 % of the server's CPU issuing tokens
/// (`benches/profile.sh tokens`); mimalloc's per-thread free lists suit
/// actix's thread-per-core workers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--method`/`--url` as a canonical request, or why not, naming the flag.
fn bound_request(method: &str, url: &str) -> anyhow::Result<CanonicalRequest> {
    CanonicalRequest::parse(method, url)
        .map_err(|e| anyhow::anyhow!("--{}: {}", e.field, e.message))
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

/// Runs one command; `Ok` carries the exit code of a command that
/// reports a refusal itself (an unhealthy server, an invalid token).
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Resource(resource) => return admin_command(resource).await,
        Command::Openapi => print!("{}", asapd::http::openapi::spec_json()),
        Command::Healthcheck(args) => return healthcheck(args).await,
        Command::Token(args) => token(args).await?,
        Command::Qsh(args) => qsh(&args)?,
        Command::Verify(args) => return verify(args).await,
        Command::Mirror(args) => return mirror(args).await,
        Command::Migrate(args) => {
            prepare_state(args.load()?, Clock::System).await?;
            eprintln!("migrations applied");
        }
        Command::Init { config, json } => return init(&config, json).await,
        Command::Admin(AdminCommand::ResetSecret { name, config, json }) => {
            reset_secret(name, &config, json).await?
        }
        Command::Rekey {
            config,
            batch,
            json,
        } => rekey(&config, batch, json).await?,
        Command::Serve(args) => serve(&args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let client = client::http_client(args.cacert.as_deref())?;
    let timeout = std::time::Duration::from_secs(args.timeout);
    if let Err(e) = client::health::check(&client, &args.url, timeout).await {
        eprintln!("unhealthy: {e:#}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn token(args: TokenArgs) -> anyhow::Result<()> {
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
    Ok(())
}

fn qsh(args: &QshArgs) -> anyhow::Result<()> {
    let request = bound_request(&args.method, &args.url)?;
    if args.canonical {
        println!("{}", request.as_str());
    } else {
        println!("{}", request.qsh());
    }
    Ok(())
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}

async fn mirror(args: MirrorArgs) -> anyhow::Result<ExitCode> {
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
    Ok(code)
}

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

/// `asapd init`: exit 2 when an admin exists already.
async fn init(config: &ConfigArgs, json: bool) -> anyhow::Result<ExitCode> {
    let state = prepare_state(config.load()?, Clock::System).await?;
    match bootstrap::create_first_admin(&state).await? {
        Ok(creds) => print_credentials(&creds, json)?,
        Err(exists) => {
            eprintln!("error: {exists}");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn reset_secret(name: String, config: &ConfigArgs, json: bool) -> anyhow::Result<()> {
    let state = prepare_state(config.load()?, Clock::System).await?;
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
    )
}

async fn rekey(config: &ConfigArgs, batch: i64, json: bool) -> anyhow::Result<()> {
    let state = prepare_state(config.load()?, Clock::System).await?;
    let summary = asapd::service::rekey::run(&state, batch)
        .await
        .context("re-encrypting under the current master key")?;
    state.store.close().await;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "asapd rekey: {} private keys under master key {}: {} re-encrypted, {} already \
             current, {} changed concurrently; check value {}; {} batches.\n{}",
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
            summary.batches,
            summary.advice()
        );
    }
    // A row still sealed under a previous key means the replicas may not
    // drop it yet: the exit status must say so to a script.
    if !summary.verified {
        anyhow::bail!("{}", summary.advice());
    }
    Ok(())
}

async fn serve(args: &ConfigArgs) -> anyhow::Result<()> {
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
    Ok(())
}

/// Runs an admin API command; a refusal exits 1 with the server's status
/// and problem detail (`error: 409 Conflict: <detail>`).
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
