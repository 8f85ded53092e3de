//! Change notifications between replicas: PostgreSQL `LISTEN`/`NOTIFY` on
//! one channel. A change is announced inside the transaction that makes it,
//! so PostgreSQL delivers it when, and only if, that transaction commits.
//! SQLite runs as one process: there is nobody to tell.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::{Conn, Store, StoreError, StoreResult};

/// The channel every replica listens on.
pub const CHANNEL: &str = "asapd_changes";

/// Announces `change` (`<kind>:<name>`, such as `key:svc-a/k1`) to every
/// replica when `conn`'s transaction commits.
pub async fn announce(conn: &mut Conn, change: &str) -> StoreResult<()> {
    if conn.backend_name() != "PostgreSQL" {
        return Ok(());
    }
    sqlx::query("SELECT 1 FROM (SELECT pg_notify($1, $2)) AS sent")
        .bind(CHANNEL)
        .bind(change)
        .execute(conn)
        .await?;
    Ok(())
}

/// A dedicated connection listening on [`CHANNEL`].
pub struct ChangeListener {
    inner: PgListener,
}

impl ChangeListener {
    /// Connects to the PostgreSQL at `url` and starts listening.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let mut inner = PgListener::connect(url)
            .await
            .map_err(StoreError::Unavailable)?;
        // Reconnecting is the caller's job: it must reload everything then.
        inner.ignore_pool_close_event(true);
        inner
            .listen(CHANNEL)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(Self { inner })
    }

    /// Waits for the next change. `Ok(None)` when the connection was lost:
    /// notifications sent meanwhile are gone, so drop this listener,
    /// connect again and reload.
    pub async fn next(&mut self) -> StoreResult<Option<String>> {
        match self.inner.try_recv().await {
            Ok(Some(n)) => Ok(Some(n.payload().to_owned())),
            Ok(None) => Ok(None),
            Err(e) => Err(StoreError::Unavailable(e)),
        }
    }

    /// Changes that already arrived, without waiting: a burst of changes
    /// is applied once.
    pub fn buffered(&mut self) -> Vec<String> {
        let mut changes = Vec::new();
        while let Some(n) = self.inner.next_buffered() {
            changes.push(n.payload().to_owned());
        }
        changes
    }
}

/// How a [`connect_retrying`] ended.
pub enum Connected {
    Listener(ChangeListener),
    /// SQLite: no other replica, no notifications.
    NoNotifications,
    /// `stop` completed first.
    Stopped,
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Connects a listener, retrying failures with exponential backoff (100 ms,
/// doubling, at most 5 s apart) until it connects or `stop` completes.
/// `on_retry` hears each failure with the wait before the next try.
///
/// The replicas' change listener and `asapd mirror --watch` both reconnect
/// this way. One loop here rather than a crate such as `backon`: that would
/// still need this `select!` against `stop` and the SQLite case around it.
pub async fn connect_retrying<S>(
    store: &Store,
    mut stop: Pin<&mut S>,
    on_retry: impl Fn(StoreError, Duration),
) -> Connected
where
    S: Future<Output = ()>,
{
    let mut retry = FIRST_RETRY;
    loop {
        let connected = tokio::select! {
            c = store.change_listener() => c,
            _ = stop.as_mut() => return Connected::Stopped,
        };
        match connected {
            None => return Connected::NoNotifications,
            Some(Ok(listener)) => return Connected::Listener(listener),
            Some(Err(e)) => on_retry(e, retry),
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.as_mut() => return Connected::Stopped,
        }
        retry = (retry * 2).min(LAST_RETRY);
    }
}
