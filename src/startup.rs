//! Building and running the application. Tests and production share this
//! path: tests bind port 0 and read the port back.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use anyhow::Context;
use utoipa_actix_web::AppExt;

use crate::audit::Auditor;
use crate::caller_cache::CallerCache;
use crate::clock::Clock;
use crate::config::{KeyBackendSetting, Settings};
use crate::crypto::signer::pkcs11::{Pin, Token, TokenConfig};
use crate::crypto::signing_pool::SigningPool;
use crate::crypto::tls;
use crate::crypto::KeyBackend;
use crate::federation::Federation;
use crate::fleet_limits::FleetLimits;
use crate::http::openapi::SpecJson;
use crate::http::{self, request_id};
use crate::jobs::{self, Jobs};
use crate::keyring::KeyRing;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::revoked::RevokedTokens;
use crate::service::bootstrap::{self, AdminCredentials};
use crate::state::AppState;
use crate::store::Store;

pub struct Application {
    port: u16,
    https: bool,
    server: Server,
    state: Arc<AppState>,
    jobs: Jobs,
    /// Set when `--dev` created the first admin on this start.
    pub bootstrap_admin: Option<AdminCredentials>,
}

/// Opens the database, applies migrations, checks the master key and loads
/// the key ring: everything both `serve` and `init` need.
pub async fn prepare_state(settings: Settings, clock: Clock) -> anyhow::Result<AppState> {
    let master_key = settings.master_key()?;
    if settings.database_url.is_none() {
        crate::fsutil::create_private_dir(&settings.data_dir).with_context(|| {
            format!(
                "cannot create data dir {}; fix --data-dir / ASAPD_DATA_DIR",
                settings.data_dir.display()
            )
        })?;
    }
    let store = Store::connect(&settings.database_url(), settings.database_max_connections)
        .await
        .context("cannot open the database; check --database-url / ASAPD_DATABASE_URL")?;
    store
        .migrate()
        .await
        .context("applying database migrations")?;
    bootstrap::verify_master_key(&store, &master_key).await?;
    let backend = match settings.keys.backend {
        KeyBackendSetting::Software => KeyBackend::software(master_key),
        KeyBackendSetting::Pkcs11 => KeyBackend::pkcs11(master_key, open_token(&settings).await?),
    };
    let keyring = Arc::new(KeyRing::new(backend));
    keyring
        .reload(&store)
        .await
        .context("loading the key ring")?;
    let revoked = Arc::new(RevokedTokens::default());
    revoked
        .reload(&store, clock.now())
        .await
        .context("loading the revoked token ids")?;
    let metrics = Arc::new(Metrics::new());
    let (audit, _writer) = Auditor::start_with_clock(
        store.clone(),
        metrics.clone(),
        settings.audit.pacing(),
        settings.audit.queue_capacity,
        &clock,
    );
    let cache_ttl = std::time::Duration::from_secs(settings.keys.refresh_interval_secs);
    let federation = Federation::new(
        settings.federation.clone(),
        clock.clone(),
        metrics.clone(),
        cache_ttl,
    );
    Ok(AppState {
        store,
        keyring,
        federation,
        limits: RateLimits::new(&settings.tokens, clock.clone()),
        fleet_limits: FleetLimits::new(metrics.rate_bucket_writes.clone()),
        settings: Arc::new(settings),
        clock,
        audit,
        metrics,
        callers: CallerCache::new(cache_ttl),
        signing: SigningPool::new(),
        revoked,
    })
}

/// Loads the PKCS#11 module and logs in to the token of `[pkcs11]`. Every
/// failure names the setting to fix; none shows the PIN.
async fn open_token(settings: &Settings) -> anyhow::Result<Arc<Token>> {
    let p = &settings.pkcs11;
    let pin = p.read_pin()?;
    let config = TokenConfig {
        module: p.module.clone().context("pkcs11.module is required")?,
        label: p
            .token_label
            .clone()
            .context("pkcs11.token_label is required")?,
        pin: Pin::new(pin.0),
        pin_setting: if p.pin.is_some() {
            "pkcs11.pin"
        } else {
            "pkcs11.pin (read from pkcs11.pin_file)"
        },
        sessions: p.sessions,
    };
    let token = tokio::task::spawn_blocking(move || Token::open(config))
        .await
        .context("opening the PKCS#11 token panicked")??;
    tracing::info!(
        token = token.label(),
        "signing keys are held in a PKCS#11 token"
    );
    Ok(Arc::new(token))
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::System).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Self> {
        let state = Arc::new(prepare_state(settings, clock).await?);
        let settings = state.settings.clone();

        // Everything that can fail at start (the port, the certificate) comes
        // before the dev admin is created: its secret is printed once, so a
        // start that failed after creating it would lose it for good.
        let addr = settings.listen_addr();
        let listener = TcpListener::bind(addr).with_context(|| {
            format!("cannot listen on {addr}; choose another address with --listen / ASAPD_LISTEN")
        })?;
        let port = listener.local_addr()?.port();
        let tls_config = match settings.tls_paths() {
            Some((cert, key)) => {
                if settings.uses_dev_certificate() && tls::ensure_dev_certificate(&cert, &key)? {
                    tracing::info!(cert = %cert.display(), "created a self-signed dev certificate");
                }
                Some(tls::server_config(&cert, &key)?)
            }
            None => None,
        };

        let bootstrap_admin = if settings.dev {
            bootstrap::create_first_admin(&state).await?.ok()
        } else {
            None
        };

        let data = web::Data::from(state.clone());
        let spec = web::Data::new(SpecJson(http::openapi::spec_json().into()));
        let workers = match settings.http.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let https = tls_config.is_some();
        let head_timeout = std::time::Duration::from_millis(settings.http.request_head_timeout_ms);
        let server = http::server::serve(listener, tls_config, workers, head_timeout, move || {
            let (app, _) = App::new()
                .into_utoipa_app()
                .app_data(data.clone())
                .app_data(spec.clone())
                .configure(http::routes)
                .split_for_parts();
            app.default_service(web::to(http::not_found))
                .wrap(from_fn(http::auth::admin_gate))
                .wrap(from_fn(http::body_timeout::middleware))
                .wrap(from_fn(http::metrics::middleware))
                .wrap(from_fn(http::methods::head_as_get))
                .wrap(from_fn(request_id::middleware))
        })?;

        let jobs = jobs::spawn(state.clone());
        Ok(Self {
            port,
            https,
            server,
            state,
            jobs,
            bootstrap_admin,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until SIGINT/SIGTERM, then drains: stop accepting, finish
    /// in-flight requests, stop jobs, close the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        tokio::select! {
            res = server => { res??; }
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                handle.stop(true).await;
            }
        }
        self.jobs.stop().await;
        self.state.audit.shutdown().await;
        self.state.store.close().await;
        Ok(())
    }

    /// Serves until the returned future is dropped (tests).
    pub async fn run_in_background(self) -> anyhow::Result<()> {
        let res = self.server.await;
        self.jobs.stop().await;
        res.map_err(Into::into)
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
