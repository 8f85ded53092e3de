//! Audit write throughput: group commit vs one commit per event .
//! `make bench` runs this; it prints one JSON object on stdout.
//!
//! For each database (SQLite always; PostgreSQL when `--postgres URL` or
//! `ASAPD_BENCH_POSTGRES_URL` is given), in one process, one after another:
//!
//! - `single`: one writer, one event per transaction
//!   (`begin` → `insert_batch(&[event])` → `commit`) in a loop.
//! - `naive64`: 64 concurrent writers each doing that (what asapd would do
//!   without a group-commit writer), errors counted.
//! - `group64`: 64 concurrent writers calling `Auditor::record` (the
//!   group-commit writer asapd uses); mean batch size read from the
//!   `audit_batch_size` histogram over the measured window.
//!
//! Each phase warms up briefly, then counts events acknowledged as
//! committed during a fixed window. At the end the table's row count must
//! equal every acknowledged event, or the bench fails.
//!
//! Usage: cargo bench --bench audit -- [--secs 3] [--writers 64]
//!        [--sqlite-dir DIR] [--postgres URL]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asapd::audit::{action, AuditEvent, Auditor, Origin, Outcome};
use asapd::metrics::Metrics;
use asapd::store::{audit as audit_store, Store};
use serde_json::{json, Value};

const WARMUP: Duration = Duration::from_millis(500);

fn event() -> AuditEvent {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Shaped like a real token.issued record (README, "Audit log"), so row size is
    // realistic rather than minimal.
    AuditEvent::new(
        &Origin::system(),
        now_ms,
        action::TOKEN_ISSUED,
        Outcome::Success,
    )
    .target("bench-caller")
    .detail(json!({
        "jti": "8f3c2a1e9b7d4c6f8a0e1d2c3b4a5f6e",
        "audiences": ["svc-b"],
        "kid": "bench-caller/20260101T000000Z-1a2b3c4d",
        "expires_at": now_ms / 1000 + 60,
        "lifetime": 60
    }))
}

async fn commit_one(store: &Store) -> anyhow::Result<()> {
    let mut tx = store.begin().await?;
    audit_store::insert_batch(&mut tx, &[event()]).await?;
    tx.commit().await?;
    Ok(())
}

/// What one phase measured.
struct Window {
    /// Events acknowledged as committed inside the measured window.
    ok: u64,
    errors: u64,
    secs: f64,
    /// Every event acknowledged in the phase, warm-up included (for the
    /// final row-count check).
    total: u64,
    /// `snap()` at the window's start and end.
    snap: [(f64, u64); 2],
    /// Why the first failed write failed.
    first_error: Option<String>,
}

/// Runs `writers` tasks calling `op` until stopped: a warm-up, then a
/// measured window of `secs`. `snap` is sampled at the window's edges
/// (used for the batch-size histogram).
async fn load<F, Fut>(writers: usize, secs: f64, op: F, snap: impl Fn() -> (f64, u64)) -> Window
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let ok = Arc::new(AtomicU64::new(0));
    let err = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (ok, err, stop, op) = (ok.clone(), err.clone(), stop.clone(), op.clone());
        let first_error = first_error.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match op().await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        // Say why once; the count goes into the results.
                        let mut first = first_error.lock().unwrap();
                        if first.is_none() {
                            eprintln!("audit: write failed: {e:#}");
                            *first = Some(format!("{e:#}"));
                        }
                        err.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(WARMUP).await;
    let (ok0, err0, snap0) = (
        ok.load(Ordering::Relaxed),
        err.load(Ordering::Relaxed),
        snap(),
    );
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (ok1, err1, snap1) = (
        ok.load(Ordering::Relaxed),
        err.load(Ordering::Relaxed),
        snap(),
    );
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let first_error = first_error.lock().unwrap().clone();
    Window {
        ok: ok1 - ok0,
        errors: err1 - err0,
        secs: elapsed,
        total: ok.load(Ordering::Relaxed),
        snap: [snap0, snap1],
        first_error,
    }
}

async fn bench_backend(url: &str, writers: usize, secs: f64) -> anyhow::Result<Value> {
    // 16 connections: the server's default pool (SQLite caps it at 8).
    let store = Store::connect(url, 16).await?;
    store.migrate().await?;
    let rows_before = audit_store::count(&mut *store.acquire().await?).await?;
    let mut acknowledged = 0u64;

    let none = || (0.0, 0);

    // One writer, one event per transaction.
    let s = store.clone();
    let single = load(
        1,
        secs,
        move || {
            let s = s.clone();
            async move { commit_one(&s).await }
        },
        none,
    )
    .await;
    acknowledged += single.total;
    eprintln!("audit: {}: single-commit done", store_name(url));

    // 64 writers, each its own transaction: the cost group commit avoids.
    let s = store.clone();
    let naive = load(
        writers,
        secs,
        move || {
            let s = s.clone();
            async move { commit_one(&s).await }
        },
        none,
    )
    .await;
    acknowledged += naive.total;
    eprintln!(
        "audit: {}: per-event commits x{writers} done",
        store_name(url)
    );

    // 64 writers through the group-commit writer asapd uses. Batch sizes
    // come from its own `audit_batch_size` histogram, sampled at the
    // measured window's edges (sum of sizes, number of commits).
    let metrics = Arc::new(Metrics::new());
    let pacing = asapd::config::audit::AuditSettings::default().pacing();
    let (auditor, writer) = Auditor::start(store.clone(), metrics.clone(), pacing);
    let a = auditor.clone();
    let m = metrics.clone();
    let group = load(
        writers,
        secs,
        move || {
            let a = a.clone();
            async move { a.record(event()).await.map_err(Into::into) }
        },
        move || {
            (
                m.audit_batch_size.get_sample_sum(),
                m.audit_batch_size.get_sample_count(),
            )
        },
    )
    .await;
    acknowledged += group.total;
    auditor.shutdown().await;
    drop(auditor);
    let _ = writer.await;
    let [(sum0, cnt0), (sum1, cnt1)] = group.snap;
    let (batch_sum, commits) = (sum1 - sum0, cnt1 - cnt0);
    let write_s = metrics.audit_write_seconds.get_sample_sum();
    let write_n = metrics.audit_write_seconds.get_sample_count();
    eprintln!("audit: {}: group commit x{writers} done", store_name(url));

    let rows_after = audit_store::count(&mut *store.acquire().await?).await?;
    let stored = (rows_after - rows_before) as u64;
    anyhow::ensure!(
        stored == acknowledged,
        "{url}: {acknowledged} events acknowledged but {stored} rows stored"
    );
    store.close().await;

    let per_s = |w: &Window| (w.ok as f64 / w.secs).round();
    Ok(json!({
        "single_per_s": per_s(&single),
        "single_errors": single.errors,
        "naive_per_s": per_s(&naive),
        "naive_errors": naive.errors,
        "group_per_s": per_s(&group),
        "group_errors": group.errors,
        "group_mean_batch": if commits > 0 { (batch_sum / commits as f64 * 10.0).round() / 10.0 } else { 0.0 },
        "group_commits_per_s": (commits as f64 / group.secs).round(),
        "group_mean_commit_ms": if write_n > 0 { (write_s / write_n as f64 * 1e5).round() / 100.0 } else { 0.0 },
        "rows_checked": stored,
        "first_error": single.first_error.or(naive.first_error).or(group.first_error),
    }))
}

/// The URL without credentials, for progress lines.
fn store_name(url: &str) -> &str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = arg(&args, "--secs").map_or(Ok(3.0), |s| s.parse())?;
    let writers: usize = arg(&args, "--writers").map_or(Ok(64), |s| s.parse())?;
    let tmp;
    let sqlite_dir = match arg(&args, "--sqlite-dir") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let postgres = arg(&args, "--postgres")
        .or_else(|| std::env::var("ASAPD_BENCH_POSTGRES_URL").ok())
        .filter(|s| !s.is_empty());

    let mut out = serde_json::Map::new();
    out.insert("secs".into(), json!(secs));
    out.insert("writers".into(), json!(writers));
    out.insert(
        "tokio_workers".into(),
        json!(std::thread::available_parallelism()?.get()),
    );
    let sqlite_url = format!("sqlite://{}/audit-bench.db", sqlite_dir.display());
    out.insert(
        "sqlite".into(),
        bench_backend(&sqlite_url, writers, secs).await?,
    );
    out.insert(
        "postgres".into(),
        match postgres {
            Some(url) => bench_backend(&url, writers, secs).await?,
            None => Value::Null,
        },
    );
    println!("{}", Value::Object(out));
    Ok(())
}
