//! Persistence with sqlx. Every SQL statement in asapd lives below this
//! module. The same statements run on SQLite and PostgreSQL through sqlx's
//! `Any` driver: timestamps are Unix seconds, booleans 0/1, lists JSON text.

pub mod audit;
pub mod callers;
pub mod changes;
pub mod client_keys;
pub mod federation;
pub mod groups;
pub mod keys;
pub mod meta;
pub mod rate_buckets;
pub mod revoked_tokens;
pub mod secrets;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Executor};

pub use sqlx::Any;

/// A transaction; commit it at the top, where the decision is made.
pub type Tx = sqlx::Transaction<'static, Any>;
/// A connection to run statements on, in or out of a transaction.
pub type Conn = AnyConnection;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Other(#[source] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Text the database cannot hold (PostgreSQL refuses NUL in `TEXT`):
    /// bad input that got past validation, never a server fault.
    #[error("text the database cannot store")]
    UnstorableText,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            // PostgreSQL: character_not_in_repertoire (NUL in text),
            // untranslatable_character.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| matches!(c.as_ref(), "22021" | "22P05")) =>
            {
                StoreError::UnstorableText
            }
            sqlx::Error::Database(db) if db.code().is_some_and(|c| is_storage_fault(&c)) => {
                StoreError::Unavailable(err)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            _ => StoreError::Other(err),
        }
    }
}

/// A database error that says the database cannot serve now, not that
/// the statement is wrong: the request gets 503, never 500.
///
/// SQLite reports extended result codes; their low byte is the primary
/// code: busy (5), locked (6), read-only (8), I/O error (10), disk full
/// (13), cannot open (14). PostgreSQL reports five-character SQLSTATEs:
/// connection exceptions (08), insufficient resources (53: disk full, out
/// of memory, too many connections), a read-only transaction (25006, a
/// standby), operator intervention (57P0x: shutdown) and I/O errors (58030).
fn is_storage_fault(code: &str) -> bool {
    if code.len() == 5 {
        return code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P0")
            || matches!(code, "25006" | "58030");
    }
    code.parse::<u32>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The connection pool plus which database it talks to.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Where a change listener connects: PostgreSQL only.
    listen_url: Option<std::sync::Arc<str>>,
}

impl Store {
    /// Opens the database at `url`, creating a SQLite file if missing.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!(
                "database_url {url:?} is neither sqlite://… nor postgres://…; \
                 set ASAPD_DATABASE_URL to one of those"
            );
        };
        if backend == Backend::Sqlite && (!url.contains("mode=") || url.contains("mode=rwc")) {
            if let Some(file) = crate::fsutil::sqlite_file(url) {
                crate::fsutil::create_private_file(&file).map_err(|e| {
                    anyhow::anyhow!("creating the database file {}: {e}", file.display())
                })?;
            }
        }
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; one writer connection per
            // pool avoids "database is locked" churn under load.
            .max_connections(match backend {
                Backend::Sqlite => max_connections.min(8),
                Backend::Postgres => max_connections,
            })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // synchronous = FULL: a commit (an audit batch, a
                        // key) survives power loss, not just a crash of
                        // asapd; group commit pays one fsync per batch.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let listen_url = (backend == Backend::Postgres).then(|| url.as_str().into());
        Ok(Self {
            pool,
            backend,
            listen_url,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A dedicated connection that hears every replica's changes; `None`
    /// on SQLite, which has no other replica.
    pub async fn change_listener(&self) -> Option<StoreResult<changes::ChangeListener>> {
        let url = self.listen_url.as_ref()?;
        Some(changes::ChangeListener::connect(url).await)
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies pending migrations; each runs in its own transaction.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Ready when the database answers and every migration is applied.
    pub async fn is_ready(&self) -> StoreResult<bool> {
        let latest = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::from)?;
        Ok(applied.unwrap_or(0) >= latest)
    }

    /// Fails unless a write commits now. Issuing a token commits its audit
    /// record, so a database that answers reads but refuses writes (disk
    /// full, read-only) leaves the replica unable to do its work.
    pub async fn check_writable(&self, now_ms: i64) -> StoreResult<()> {
        let mut conn = self.acquire().await?;
        meta::put(&mut conn, "readiness_probe", &now_ms.to_string()).await
    }

    /// A write transaction. Failing to get a connection means the database
    /// is unreachable, whatever the driver's error code: callers answer 503.
    ///
    /// On SQLite it starts as a writer (`BEGIN IMMEDIATE`). A deferred
    /// transaction that reads first and then writes fails with
    /// `SQLITE_BUSY_SNAPSHOT` (517) as soon as another writer (the audit
    /// writer, another admin change) committed in between, and
    /// `busy_timeout` cannot retry that; taking the write lock up front
    /// makes concurrent changes wait their turn instead.
    pub async fn begin(&self) -> StoreResult<Tx> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(StoreError::Unavailable)
    }

    pub async fn acquire(&self) -> StoreResult<sqlx::pool::PoolConnection<Any>> {
        self.pool.acquire().await.map_err(StoreError::Unavailable)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Connections in use and idle, for metrics.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }
}

/// Lists are stored as JSON text so both databases share one schema.
pub(crate) fn to_json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).expect("serialising a list of strings cannot fail")
}

pub(crate) fn from_json_list(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("list column: {e}")))
}

/// A cluster-wide lock for a background job. On PostgreSQL it is a session
/// advisory lock held by one pooled connection, so only one replica runs
/// the job at a time; SQLite has a single replica by construction.
pub struct JobLock {
    conn: Option<sqlx::pool::PoolConnection<Any>>,
    key: i64,
}

impl Store {
    /// Takes the lock for job `key` if no other replica holds it.
    pub async fn try_job_lock(&self, key: i64) -> StoreResult<Option<JobLock>> {
        if self.backend == Backend::Sqlite {
            return Ok(Some(JobLock { conn: None, key }));
        }
        let mut conn = self.pool.acquire().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        Ok(got.then_some(JobLock {
            conn: Some(conn),
            key,
        }))
    }
}

impl JobLock {
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let released = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .fetch_one(&mut *conn)
                .await;
            if !matches!(released, Ok(true)) {
                // A connection that may still hold the lock must not go
                // back to the pool.
                conn.detach();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_storage_fault;

    #[test]
    fn storage_faults_are_told_from_bad_statements() {
        // SQLite: busy, busy snapshot, read-only, read-only directory,
        // fsync failed, disk full, cannot open.
        for code in ["5", "517", "6", "8", "1544", "10", "1034", "13", "14"] {
            assert!(is_storage_fault(code), "{code}");
        }
        // PostgreSQL: connection lost, disk full, too many connections,
        // read-only standby, shutting down.
        for code in ["08006", "53100", "53300", "25006", "57P01"] {
            assert!(is_storage_fault(code), "{code}");
        }
        // Constraint violations and syntax errors are not.
        for code in ["19", "2067", "1", "23505", "42601", "22021"] {
            assert!(!is_storage_fault(code), "{code}");
        }
    }
}
