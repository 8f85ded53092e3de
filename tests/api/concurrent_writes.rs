//! Admin changes made at the same time, while tokens are being issued, all
//! succeed: on SQLite, write transactions wait their turn instead of
//! failing with "database is locked".

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

const CLIENTS: usize = 8;
const WRITES_PER_CLIENT: usize = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_admin_writes_under_token_traffic_all_succeed() {
    let app = Arc::new(spawn_app().await);
    let issuer = app.caller_granted("busy", &["svc-b"]).await;
    app.admin_json(
        Method::PATCH,
        "/v1/admin/callers/busy",
        json!({"rate_limit": {"per_second": 100000, "burst": 100000}}),
    )
    .await;
    for i in 0..CLIENTS {
        app.caller(&format!("c{i}"), json!({})).await;
    }

    // Token traffic from four clients until the admin writes are done.
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(0));
    let traffic: Vec<_> = (0..4)
        .map(|_| {
            let (app, stop, issued) = (app.clone(), stop.clone(), issued.clone());
            let (name, secret) = (issuer.name.clone(), issuer.secret.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let res = app
                        .request(Method::POST, "/v1/tokens")
                        .basic_auth(&name, Some(&secret))
                        .json(&json!({"audience": "svc-b"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200, "token: {}", res.text().await.unwrap());
                    issued.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Let the traffic get going before the writes start.
    while issued.load(Ordering::Relaxed) < 20 {
        tokio::task::yield_now().await;
    }
    let before = issued.load(Ordering::Relaxed);

    let writers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (app, issued) = (app.clone(), issued.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for n in 0..WRITES_PER_CLIENT {
                    // Each write waits for a token issued since the last
                    // one, so the writes interleave with the traffic by
                    // construction rather than by the scheduler's luck; a
                    // token path starved by the writes fails at the deadline.
                    let seen = issued.load(Ordering::Relaxed);
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while issued.load(Ordering::Relaxed) == seen {
                        if Instant::now() > deadline {
                            failures.push(format!("no token issued for 30 s before write {n}"));
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    // Reads then writes in one transaction: the case SQLite
                    // refused with SQLITE_BUSY_SNAPSHOT.
                    let res = if n % 2 == 0 {
                        app.admin_json(
                            Method::PATCH,
                            &format!("/v1/admin/callers/c{i}"),
                            json!({"rate_limit": {"per_second": 10 + n, "burst": 20 + n}}),
                        )
                        .await
                    } else {
                        app.admin_json(
                            Method::POST,
                            "/v1/admin/groups",
                            json!({"name": format!("g{i}-{n}"), "audiences": ["x"]}),
                        )
                        .await
                    };
                    if !res.status().is_success() {
                        failures.push(format!("{}: {}", res.status(), res.text().await.unwrap()));
                    }
                }
                failures
            })
        })
        .collect();
    let mut failures = Vec::new();
    for writer in writers {
        failures.extend(writer.await.unwrap());
    }
    let during = issued.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in traffic {
        t.await.unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {} admin writes failed: {failures:?}",
        failures.len(),
        CLIENTS * WRITES_PER_CLIENT
    );
    assert!(during > before, "no token was issued while the writes ran");
    let groups = app.admin_get_json("/v1/admin/groups").await;
    // 8 clients × 3 groups each, plus g-busy and the reserved groups.
    let made = groups.as_array().unwrap().len();
    assert!(made > CLIENTS * (WRITES_PER_CLIENT / 2), "{groups}");
}
