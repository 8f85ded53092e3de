//! Graceful shutdown loses no audit record: every token that left asapd
//! has its `token.issued` event after a SIGTERM in the middle of a burst.

use std::collections::HashSet;

use asapd::crypto::MasterKey;
use serde_json::{json, Value};

use crate::helpers::fresh_database_url;
use crate::process::{init_admin, Server};

#[tokio::test]
async fn every_issued_token_is_audited_across_a_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let admin = init_admin(dir.path(), &db, &key);
    let server = Server::start(dir.path(), &db, &key).await;
    let client = crate::helpers::http();
    let post = |path: &str, body: Value| {
        client
            .post(server.url(path))
            .basic_auth("admin", Some(&admin))
            .json(&body)
            .send()
    };
    post(
        "/v1/admin/groups",
        json!({"name": "g", "audiences": ["svc-b"]}),
    )
    .await
    .unwrap();
    let caller: Value = post(
        "/v1/admin/callers",
        json!({"name": "svc-a", "groups": ["g"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let secret = caller["client_secret"].as_str().unwrap().to_owned();

    // A burst of token requests, with SIGTERM sent while they are in flight.
    let url = server.url("/v1/tokens");
    let (first_tx, mut first) = tokio::sync::mpsc::channel::<()>(1);
    let mut burst = Vec::new();
    for _ in 0..200 {
        let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
        let first_tx = first_tx.clone();
        burst.push(tokio::spawn(async move {
            // A request the server never took is a connection error; one
            // it took must be answered in full: a 503 here would mean the
            // audit writer closed before the requests it owed were drained.
            let Ok(res) = client
                .post(&url)
                .basic_auth("svc-a", Some(&secret))
                .json(&json!({"audience": "svc-b"}))
                .send()
                .await
            else {
                return Ok(None);
            };
            let status = res.status();
            if !status.is_success() {
                return Err(status);
            }
            let Ok(body) = res.json::<Value>().await else {
                return Ok(None);
            };
            let _ = first_tx.try_send(());
            Ok(body["jti"].as_str().map(str::to_owned))
        }));
    }
    drop(first_tx);
    // Stop as soon as tokens flow: the rest of the burst is in flight.
    tokio::time::timeout(std::time::Duration::from_secs(30), first.recv())
        .await
        .expect("a first token within 30 s");
    let log = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    let mut issued = HashSet::new();
    for task in burst {
        match task.await.unwrap() {
            Ok(Some(jti)) => {
                issued.insert(jti);
            }
            Ok(None) => {}
            Err(status) => panic!("an accepted request got {status} during shutdown: {log}"),
        }
    }
    assert!(
        !issued.is_empty(),
        "some tokens were issued before the stop: {log}"
    );

    // Restart and read the audit log: every issued jti is there.
    let server = Server::start(dir.path(), &db, &key).await;
    let mut audited = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url("/v1/admin/audit?action=token.issued&limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .basic_auth("admin", Some(&admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for e in page["events"].as_array().unwrap() {
            audited.insert(e["detail"]["jti"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let missing: Vec<_> = issued.difference(&audited).collect();
    assert!(
        missing.is_empty(),
        "{} issued tokens have no audit record: {missing:?}",
        missing.len()
    );
}
