//! Durable audit writes with group commit.
//!
//! Requests hand their event to one writer task and wait for its commit.
//! The writer takes everything queued since its last commit and commits it
//! as one transaction, so under load many requests share one commit (and
//! one fsync) instead of paying for their own. A request answers only after
//! its event is committed; if the commit fails, every request in the batch
//! gets the error and must not act (no token leaves unaudited).
//!
//! Records nothing depends on (introspection) are handed over without a
//! waiter and only while the queue has room to spare; otherwise they are
//! dropped and counted (`asapd_audit_dropped_total`), so a slow audit store
//! cannot make them pile up in memory, nor crowd out the records that must
//! commit before their request answers. A batch of such records alone
//! gathers for a few milliseconds before its commit, so that under load
//! they share full-sized commits. The writer sleeps through that gathering:
//! it is woken (the queue's [`Notify`]) only by what ends it early, a
//! record someone waits for, a full batch's worth queued, or a shutdown,
//! never by each record, so a busy introspection load costs it a wake-up
//! per commit rather than one per record or per millisecond.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::Any;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::error::AuditError;
use super::fold::Folds;
use super::pacing::{PaceClock, Pacer};
use crate::clock::Clock;
use crate::config::CommitPacing;
use crate::domain::audit_event::AuditEvent;
use crate::error_chain::Chain;
use crate::metrics::Metrics;
use crate::store::{audit as audit_store, Store, StoreError};

/// Most events in one transaction; bounds commit latency and statement size.
const MAX_BATCH: usize = 256;
/// Quiet time after which the writer gives its connection back.
const IDLE: Duration = Duration::from_millis(100);
/// How long a batch of records nobody waits for (introspection) gathers
/// more before it is committed: see [`Batch::gather`].
const GATHER: Duration = Duration::from_millis(20);
/// Queue depth before writers wait, unless the settings say otherwise.
pub use crate::config::audit::DEFAULT_QUEUE_CAPACITY as QUEUE;

type Waiter = oneshot::Sender<Result<(), AuditError>>;

enum Msg {
    /// An event, and who waits for its commit (none for a droppable one).
    Event(AuditEvent, Option<Waiter>),
    Shutdown(oneshot::Sender<()>),
}

/// The senders' side of the writer's queue: the channel, and the bell that
/// ends the writer's gathering early (see [`Batch::gather`]).
#[derive(Clone)]
struct Queue {
    tx: mpsc::Sender<Msg>,
    wake: Arc<Notify>,
    /// Free slots a droppable record leaves in the queue: room kept for the
    /// records requests wait for.
    reserve: usize,
    /// Droppable records queued that are worth ending a gathering for: a
    /// full batch, or half the room they may take in a small queue (past
    /// it they are dropped, so gathering longer would lose some).
    full: usize,
}

/// The writer's side of the queue.
struct Inbox {
    rx: mpsc::Receiver<Msg>,
    wake: Arc<Notify>,
}

fn queue(capacity: usize) -> (Queue, Inbox) {
    let (tx, rx) = mpsc::channel(capacity);
    let wake = Arc::new(Notify::new());
    let reserve = capacity / 4;
    let full = MAX_BATCH.min((capacity - reserve) / 2).max(1);
    let inbox = Inbox {
        rx,
        wake: wake.clone(),
    };
    (
        Queue {
            tx,
            wake,
            reserve,
            full,
        },
        inbox,
    )
}

impl Queue {
    fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues a message the writer must not sit on (an event someone waits
    /// for, a shutdown), waiting for room, and rings. Err: the writer is gone.
    async fn send(&self, msg: Msg) -> Result<(), ()> {
        self.tx.send(msg).await.map_err(|_| ())?;
        self.wake.notify_one();
        Ok(())
    }

    /// Queues an event nobody waits for if more than `reserve` slots are
    /// free; rings once a batch's worth is queued. False: not queued.
    fn offer(&self, event: AuditEvent) -> bool {
        let queued =
            self.tx.capacity() > self.reserve && self.tx.try_send(Msg::Event(event, None)).is_ok();
        if queued && self.queued() >= self.full {
            self.wake.notify_one();
        }
        queued
    }
}

/// Handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    queue: Queue,
    closed: Arc<AtomicBool>,
    pace: PaceClock,
    metrics: Arc<Metrics>,
}

impl Auditor {
    /// Starts the writer task, paced on the system clock.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        pacing: CommitPacing,
    ) -> (Self, JoinHandle<()>) {
        Self::start_with_clock(store, metrics, pacing, QUEUE, &Clock::System)
    }

    /// Starts the writer task with a queue of `capacity` events, paced on
    /// `clock` (see [`PaceClock`]).
    pub fn start_with_clock(
        store: Store,
        metrics: Arc<Metrics>,
        pacing: CommitPacing,
        capacity: usize,
        clock: &Clock,
    ) -> (Self, JoinHandle<()>) {
        let (queue, inbox) = queue(capacity);
        let pace = PaceClock::new(clock);
        let task = tokio::spawn(run(store, metrics.clone(), pacing, pace.clone(), inbox));
        (
            Self {
                queue,
                closed: Arc::new(AtomicBool::new(false)),
                pace,
                metrics,
            },
            task,
        )
    }

    /// Events queued for the writer, not yet taken into a batch.
    pub fn queued(&self) -> usize {
        self.queue.queued()
    }

    /// Under a manual clock, hands commit pacing to it (see [`PaceClock`]):
    /// for tests, which move the clock once their batch is complete.
    pub fn pace_by_manual_clock(&self) {
        self.pace.follow_manual_clock();
    }

    /// Events the writer holds in a wait paced by a manual clock; 0
    /// otherwise.
    pub fn held_for_pacing(&self) -> usize {
        self.pace.held()
    }

    /// Records `event` and returns once it is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Msg::Event(event, Some(done)))
            .await
            .map_err(|_| AuditError::Closed)?;
        wait.await.map_err(|_| AuditError::Closed)?
    }

    /// Hands `event` to the writer without waiting for anything: queued if
    /// more than a quarter of the queue is free, otherwise dropped and
    /// counted by action. For records whose loss the README allows; a
    /// request never waits on them, and nothing is spawned per record.
    pub fn record_or_drop(&self, event: AuditEvent) {
        let action = event.action;
        let queued = !self.closed.load(Ordering::Acquire) && self.queue.offer(event);
        if !queued {
            self.metrics
                .audit_dropped
                .with_label_values(&[action])
                .inc();
        }
    }

    /// Commits everything queued, then refuses new events. Called on
    /// shutdown after the HTTP server has drained.
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let (done, wait) = oneshot::channel();
        if self.queue.send(Msg::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    pacing: CommitPacing,
    pace: PaceClock,
    inbox: Inbox,
) {
    let Inbox { mut rx, wake } = inbox;
    // Under load the writer keeps its connection from one batch to the next:
    // taking one from the pool costs a ping round trip, as much as a small
    // batch's insert. Idle, it gives it back, so a small pool is not short.
    let mut conn = None;
    let mut batch = Batch::default();
    let mut pacer = Pacer::new(pacing);
    loop {
        let first = if conn.is_some() {
            match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(first) => first,
                Err(_) => {
                    drop(conn.take());
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(first) = first else { break };
        batch.push(first);
        batch.drain(&mut rx);
        batch.gather(&mut rx, &wake, GATHER).await;
        if !batch.closed() {
            let now = pace.at(Instant::now());
            if let Some(deadline) = pacer.wait_until(now, batch.events.len()) {
                pace.sleep_until(deadline, || batch.events.len() + rx.len())
                    .await;
                batch.drain(&mut rx);
            }
        }
        if !batch.events.is_empty() {
            let started = Instant::now();
            let result = commit(&store, &mut conn, batch.rows()).await;
            let took = started.elapsed();
            pacer.committed(pace.at(started), batch.events.len(), took);
            metrics.audit_write_seconds.observe(took.as_secs_f64());
            metrics.audit_batch_size.observe(batch.taken as f64);
            let result = result.map_err(|e| {
                metrics.audit_write_failures.inc();
                tracing::error!(error = %Chain(&e), events = batch.taken, "audit commit failed");
                Arc::new(e)
            });
            for done in batch.waiters.drain(..) {
                let _ = done.send(result.clone().map_err(AuditError::Unavailable));
            }
            batch.committed();
        }
        if let Some(done) = batch.shutdown.take() {
            drop(conn.take());
            rx.close();
            let _ = done.send(());
        }
    }
}

/// What the writer has taken off the queue for its next commit.
#[derive(Default)]
struct Batch {
    events: Vec<AuditEvent>,
    /// Records taken, folded ones included: what [`MAX_BATCH`] bounds, so
    /// a folded row's list of request ids is bounded too.
    taken: usize,
    folds: Folds,
    waiters: Vec<Waiter>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Batch {
    fn push(&mut self, msg: Msg) {
        match msg {
            Msg::Event(e, None) => {
                self.taken += 1;
                if let Some(e) = self.folds.fold(&self.events, e) {
                    self.events.push(e);
                }
            }
            Msg::Event(e, Some(done)) => {
                self.taken += 1;
                self.events.push(e);
                self.waiters.push(done);
            }
            Msg::Shutdown(done) => self.shutdown = Some(done),
        }
    }

    /// Whether the batch takes nothing more: full, or shutting down (what
    /// was queued before the shutdown is committed, nothing after it).
    fn closed(&self) -> bool {
        self.taken >= MAX_BATCH || self.shutdown.is_some()
    }

    /// The rows to commit, repeats folded in.
    fn rows(&mut self) -> &[AuditEvent] {
        self.folds.apply(&mut self.events);
        &self.events
    }

    fn committed(&mut self) {
        self.events.clear();
        self.taken = 0;
    }

    /// Takes what is already queued.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Msg>) {
        while !self.closed() {
            match rx.try_recv() {
                Ok(msg) => self.push(msg),
                Err(_) => break,
            }
        }
    }

    /// While no request waits for this batch (introspection records only),
    /// lets it fill for up to `window` ([`GATHER`]) before the commit. Each
    /// commit costs the same whatever its size (an fsync, the pages it
    /// rewrites, the thread hand-offs) and such records may be lost in a
    /// crash anyway, so under load a full batch per commit is what they
    /// should cost.
    ///
    /// The writer sleeps until `wake` rings or the window ends, rather than
    /// looking at the queue every millisecond: under load each look was a
    /// thread woken, and on a busy machine a request preempted, a thousand
    /// times a second. The senders ring it for what ends the gathering: an
    /// event someone waits for (a token's), a shutdown, or enough
    /// droppable records to fill the batch. A ring left over from earlier
    /// only makes the writer look once more.
    async fn gather(&mut self, rx: &mut mpsc::Receiver<Msg>, wake: &Notify, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        while self.waiters.is_empty() && !self.closed() {
            let rung = tokio::time::timeout_at(deadline, wake.notified()).await;
            self.drain(rx);
            if rung.is_err() {
                break;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit_event::{action, Origin, Outcome};

    fn event() -> AuditEvent {
        AuditEvent::new(
            &Origin::system(),
            0,
            action::TOKEN_INTROSPECTED,
            Outcome::Success,
        )
    }

    fn droppable() -> Msg {
        Msg::Event(event(), None)
    }

    /// Gathers with a window no test outlives: only what rings the queue's
    /// bell (a waiter, a full batch, a shutdown) can end it; a sender that
    /// forgets to ring fails here instead of hanging.
    async fn gather_until_ended(batch: &mut Batch, inbox: &mut Inbox) {
        let forever = Duration::from_secs(3600);
        let gathering = batch.gather(&mut inbox.rx, &inbox.wake, forever);
        tokio::time::timeout(Duration::from_secs(30), gathering)
            .await
            .expect("the gathering did not end");
    }

    #[tokio::test]
    async fn droppable_records_gather_until_the_batch_is_full() {
        let (queue, mut inbox) = queue(4 * MAX_BATCH);
        let mut batch = Batch::default();
        batch.push(droppable());
        let sender = tokio::spawn(async move {
            for _ in 0..MAX_BATCH + 10 {
                assert!(queue.offer(event()), "room for every record");
                tokio::task::yield_now().await;
            }
            queue
        });
        gather_until_ended(&mut batch, &mut inbox).await;
        assert_eq!(batch.taken, MAX_BATCH);
        assert_eq!(batch.events.len(), 1, "identical records fold into one row");
        assert!(batch.waiters.is_empty());
        drop(sender.await.unwrap());
    }

    #[tokio::test]
    async fn a_small_queue_is_drained_while_gathering_so_nothing_is_dropped() {
        // 16 slots, 4 kept for waited records: droppable ones would be
        // dropped past 12 queued, so the writer is rung to take them at 6.
        let (queue, mut inbox) = queue(16);
        let mut batch = Batch::default();
        batch.push(droppable());
        let sender = tokio::spawn(async move {
            for n in 1..=40 {
                assert!(queue.offer(event()), "record {n} dropped");
                tokio::task::yield_now().await;
            }
            let (done, wait) = oneshot::channel();
            queue.send(Msg::Event(event(), Some(done))).await.unwrap();
            (queue, wait)
        });
        gather_until_ended(&mut batch, &mut inbox).await;
        let (queue, _wait) = sender.await.expect("no record dropped");
        batch.drain(&mut inbox.rx);
        assert_eq!(batch.taken, 42);
        assert_eq!(queue.queued(), 0);
    }

    #[tokio::test]
    async fn a_record_someone_waits_for_ends_the_gathering() {
        let (queue, mut inbox) = queue(16);
        let mut batch = Batch::default();
        batch.push(droppable());
        assert!(queue.offer(event()));
        let sender = tokio::spawn(async move {
            tokio::task::yield_now().await;
            let (done, wait) = oneshot::channel();
            queue.send(Msg::Event(event(), Some(done))).await.unwrap();
            (queue, wait)
        });
        gather_until_ended(&mut batch, &mut inbox).await;
        assert_eq!(batch.taken, 3);
        assert_eq!(batch.events.len(), 2, "the droppable pair folded");
        assert_eq!(batch.waiters.len(), 1);
        drop(sender.await.unwrap());
    }

    #[tokio::test]
    async fn a_shutdown_ends_the_gathering() {
        let (queue, mut inbox) = queue(16);
        let mut batch = Batch::default();
        batch.push(droppable());
        let sender = tokio::spawn(async move {
            tokio::task::yield_now().await;
            let (stop, stopped) = oneshot::channel();
            queue.send(Msg::Shutdown(stop)).await.unwrap();
            (queue, stopped)
        });
        gather_until_ended(&mut batch, &mut inbox).await;
        assert!(batch.shutdown.is_some());
        drop(sender.await.unwrap());
    }

    #[tokio::test]
    async fn a_batch_with_a_waiter_or_a_shutdown_does_not_gather() {
        let (queue, mut inbox) = queue(16);
        let mut batch = Batch::default();
        let (done, _wait) = oneshot::channel();
        batch.push(Msg::Event(event(), Some(done)));
        assert!(queue.offer(event()));
        gather_until_ended(&mut batch, &mut inbox).await;
        assert_eq!(batch.events.len(), 1, "nothing taken: it commits as it is");

        let mut batch = Batch::default();
        batch.push(droppable());
        let (stop, _stopped) = oneshot::channel();
        batch.push(Msg::Shutdown(stop));
        gather_until_ended(&mut batch, &mut inbox).await;
        assert_eq!(batch.events.len(), 1);
    }
}
