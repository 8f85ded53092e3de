//! Background jobs: one file each, all started from [`spawn`] and stopped
//! together on shutdown. A failing pass is logged and the loop goes on.

pub mod audit_prune;
pub mod change_listener;
pub mod key_refresh;
pub mod key_rotation;
pub mod revoked_tokens;
pub mod used_assertions;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::state::AppState;

/// Running jobs and the switch that stops them.
pub struct Jobs {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Jobs {
    /// Signals every job to stop and waits for the current passes to end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

pub fn spawn(state: Arc<AppState>) -> Jobs {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let s = state.clone();
    let listener_stop = stopped.clone();
    tasks.spawn(async move { change_listener::run(&s, listener_stop).await });
    let every = Duration::from_secs(state.settings.keys.refresh_interval_secs);
    let s = state.clone();
    tasks.spawn(every_interval(
        "key_refresh",
        every,
        stopped.clone(),
        move || {
            let state = s.clone();
            async move { key_refresh::run_once(&state).await }
        },
    ));
    let s = state.clone();
    tasks.spawn(every_interval(
        "key_rotation",
        Duration::from_secs(60),
        stopped.clone(),
        move || {
            let state = s.clone();
            async move { key_rotation::run_once(&state).await.map(|_| ()) }
        },
    ));
    let every = Duration::from_secs(state.settings.keys.refresh_interval_secs);
    let s = state.clone();
    tasks.spawn(every_interval(
        "revoked_tokens",
        every,
        stopped.clone(),
        move || {
            let state = s.clone();
            async move { revoked_tokens::run_once(&state).await.map(|_| ()) }
        },
    ));
    let s = state.clone();
    tasks.spawn(every_interval(
        "used_assertions",
        Duration::from_secs(used_assertions::INTERVAL_SECS),
        stopped.clone(),
        move || {
            let state = s.clone();
            async move { used_assertions::run_once(&state).await.map(|_| ()) }
        },
    ));
    let every = Duration::from_secs(state.settings.audit.prune_interval_secs);
    tasks.spawn(every_interval("audit_prune", every, stopped, move || {
        let state = state.clone();
        async move { audit_prune::run_once(&state).await.map(|_| ()) }
    }));
    Jobs { stop, tasks }
}

/// Runs `pass` every `period` until `stopped` flips.
async fn every_interval<F, Fut>(
    name: &'static str,
    period: Duration,
    mut stopped: watch::Receiver<bool>,
    pass: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = pass().await {
                    tracing::warn!(job = name, error = format!("{e:#}"), "job pass failed");
                }
            }
            _ = stopped.changed() => break,
        }
    }
}
