//! Durable audit writes with group commit.
//!
//! Requests hand their event to one writer task and wait for its commit.
//! The writer takes everything queued since its last commit and commits it
//! as one transaction, so under load many requests share one commit (and
//! one fsync) instead of paying for their own. A request answers only after
//! its event is committed; if the commit fails, every request in the batch
//! gets the error and must not act (no token leaves unaudited).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::Any;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::event::AuditEvent;
use crate::metrics::Metrics;
use crate::store::{audit as audit_store, Store, StoreError};

/// Most events in one transaction; bounds commit latency and statement size.
const MAX_BATCH: usize = 256;
/// Queue depth before writers wait: back-pressure instead of unbounded memory.
const QUEUE: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log cannot be written")]
    Unavailable(#[source] Arc<StoreError>),
    #[error("the audit log is shut down")]
    Closed,
}

enum Msg {
    Event(AuditEvent, oneshot::Sender<Result<(), AuditError>>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::Sender<Msg>,
    closed: Arc<AtomicBool>,
}

impl Auditor {
    /// Starts the writer task.
    pub fn start(store: Store, metrics: Arc<Metrics>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(store, metrics, rx));
        (
            Self {
                tx,
                closed: Arc::new(AtomicBool::new(false)),
            },
            task,
        )
    }

    /// Records `event` and returns once it is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Event(event, done))
            .await
            .map_err(|_| AuditError::Closed)?;
        wait.await.map_err(|_| AuditError::Closed)?
    }

    /// Commits everything queued, then refuses new events. Called on
    /// shutdown after the HTTP server has drained.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(store: Store, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Msg>) {
    // Under load the writer keeps its connection from one batch to the next:
    // taking one from the pool costs a ping round trip, as much as a small
    // batch's insert. Idle, it gives it back, so a small pool is not short.
    let mut conn = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut waiters = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        let mut shutdown = None;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(e, done) => {
                    batch.push(e);
                    waiters.push(done);
                }
                Msg::Shutdown(done) => {
                    shutdown = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let started = Instant::now();
            let result = commit(&store, &mut conn, &batch).await;
            metrics
                .audit_write_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.audit_batch_size.observe(batch.len() as f64);
            let result = result.map_err(|e| {
                tracing::error!(error = ?e, events = batch.len(), "audit commit failed");
                Arc::new(e)
            });
            for done in waiters.drain(..) {
                let _ = done.send(result.clone().map_err(AuditError::Unavailable));
            }
            batch.clear();
            if rx.is_empty() {
                drop(conn.take());
            }
        }
        if let Some(done) = shutdown {
            drop(conn.take());
            rx.close();
            let _ = done.send(());
        }
    }
}

async fn commit(
    store: &Store,
    conn: &mut Option<PoolConnection<Any>>,
    batch: &[AuditEvent],
) -> Result<(), StoreError> {
    let held = match conn {
        Some(held) => held,
        None => conn.insert(store.acquire().await?),
    };
    // One multi-row INSERT in autocommit mode is atomic and durable on its
    // own (SQLite and PostgreSQL alike): no BEGIN/COMMIT round trips, which
    // under load cost as much as the insert itself.
    let result = audit_store::insert_batch(held, batch).await;
    if result.is_err() {
        // The connection may be what failed (a restarted server, a
        // terminated session): close it and take a fresh one next time.
        if let Some(mut broken) = conn.take() {
            broken.close_on_drop();
        }
    }
    result
}
