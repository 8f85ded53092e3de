//! Applies the fleet's changes as they commit (PostgreSQL only): every
//! committed change to callers, secrets, groups, keys, settings or revoked
//! jtis arrives as a notification, and this replica reloads its key ring,
//! drops its caller cache or adds the revoked jti to its set at once,
//! instead of at the next periodic refresh.
//!
//! Notifications sent while the connection is down are lost, so each
//! (re)connection starts with a full reload. The periodic key refresh and
//! the caller cache's expiry stay as the fallback.

use tokio::sync::watch;

use crate::revoked;
use crate::state::AppState;
use crate::store::changes::{connect_retrying, Connected};

/// Listens until `stopped` flips. Returns at once on SQLite.
pub async fn run(state: &AppState, mut stopped: watch::Receiver<bool>) {
    let stop = async move {
        let _ = stopped.changed().await;
    };
    tokio::pin!(stop);
    let mut lost_before = false;
    loop {
        let connected = connect_retrying(&state.store, stop.as_mut(), |e, retry| {
            tracing::warn!(
                error = format!("{:#}", anyhow::Error::from(e)),
                retry_in_ms = retry.as_millis() as u64,
                "change listener cannot connect; changes from other replicas wait for the periodic refresh"
            );
        })
        .await;
        let mut listener = match connected {
            Connected::Listener(listener) => listener,
            Connected::NoNotifications | Connected::Stopped => return,
        };
        state.metrics.change_listener_connected.set(1);
        if lost_before {
            tracing::info!("change listener reconnected; reloading everything it may have missed");
        }
        // Whatever changed before LISTEN took effect was not heard.
        refresh(state, Refresh::EVERYTHING).await;
        loop {
            let heard = tokio::select! {
                heard = listener.next() => heard,
                _ = stop.as_mut() => return,
            };
            match heard {
                Ok(Some(change)) => {
                    let mut changes = vec![change];
                    changes.extend(listener.buffered());
                    apply(state, &changes).await;
                }
                Ok(None) => {
                    tracing::warn!("change listener lost its connection; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{:#}", anyhow::Error::from(e)),
                        "change listener failed; reconnecting"
                    );
                    break;
                }
            }
        }
        lost_before = true;
        state.metrics.change_listener_connected.set(0);
        state.metrics.change_listener_reconnects.inc();
    }
}

/// Brings this replica's in-memory state up to date with `changes`.
pub async fn apply(state: &AppState, changes: &[String]) {
    let mut what = Refresh::default();
    for change in changes {
        let (kind, name) = change.split_once(':').unwrap_or((change, ""));
        state
            .metrics
            .change_notifications
            .with_label_values(&[kind])
            .inc();
        // A deleted caller takes its keys along; a key change moves a
        // caller's signer.
        what.keys |= matches!(kind, "key" | "caller");
        what.callers |= matches!(kind, "caller" | "secret" | "group");
        // Bindings live on callers; issuers are their own kind.
        what.federation |= matches!(kind, "caller" | "issuer");
        if kind == "token" {
            match revoked::parse_notification(name) {
                // Heard late, after its token expired and was pruned:
                // nothing to keep.
                Some((_, exp)) if exp < revoked::keep_from(state.clock.now()) => {}
                Some((jti, exp)) => state.revoked.insert(jti, exp),
                // From an older replica: it does not say the exp.
                None => what.revoked = true,
            }
        }
    }
    refresh(state, what).await;
}

/// What a batch of changes makes this replica reload.
#[derive(Default, Clone, Copy)]
struct Refresh {
    keys: bool,
    callers: bool,
    revoked: bool,
    federation: bool,
}

impl Refresh {
    const EVERYTHING: Refresh = Refresh {
        keys: true,
        callers: true,
        revoked: true,
        federation: true,
    };
}

async fn refresh(state: &AppState, what: Refresh) {
    if what.callers {
        state.callers.invalidate();
    }
    if what.federation {
        state.federation.invalidate();
    }
    if what.revoked {
        if let Err(e) = state.revoked.reload(&state.store, state.clock.now()).await {
            tracing::warn!(
                error = format!("{:#}", anyhow::Error::from(e)),
                "reloading revoked jtis after a change failed; the periodic pass retries"
            );
        }
    }
    if what.keys {
        if let Err(e) = state.keyring.reload(&state.store).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "reloading the key ring after a change failed; the periodic refresh retries"
            );
        }
    }
}
