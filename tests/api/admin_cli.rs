//! `asapd callers|groups|keys|secrets|audit|settings`: the admin CLI
//! against a running server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use asapd::crypto::MasterKey;
use serde_json::Value;

use crate::helpers::fresh_database_url;
use crate::process::{asapd_bare, init_admin, output_within, Server};

/// `asapd args… --url <server>` as the admin, credentials in the
/// environment.
fn cli(server: &Server, secret: &str, args: &[&str]) -> Command {
    let mut cmd = asapd_bare(args);
    cmd.arg("--url")
        .arg(server.url(""))
        .env("ASAPD_CLIENT_ID", "admin")
        .env("ASAPD_CLIENT_SECRET", secret);
    cmd
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(server: &Server, secret: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let text = ok(output_within(cli(server, secret, &args)));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

#[tokio::test]
async fn admin_cli_round_trips_and_carries_problem_details() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let secret = init_admin(dir.path(), &db, &key);
    let server = Server::start(dir.path(), &db, &key).await;
    let s = &server;

    let group = json(
        s,
        &secret,
        &[
            "groups",
            "create",
            "g-cli",
            "--set",
            r#"audiences=["b"]"#,
            "--set",
            "max_lifetime=600",
        ],
    );
    assert_eq!(group["name"], "g-cli");
    let created = json(
        s,
        &secret,
        &[
            "callers",
            "create",
            "svc-cli",
            "--set",
            r#"groups=["g-cli"]"#,
        ],
    );
    assert!(created["client_secret"].as_str().is_some(), "{created}");
    let got = json(s, &secret, &["callers", "get", "svc-cli"]);
    assert_eq!(got["name"], "svc-cli");
    assert_eq!(got["groups"], serde_json::json!(["g-cli"]));
    assert_eq!(got["enabled"], true);

    // The table: a header row, then one row per caller.
    let table = ok(output_within(cli(s, &secret, &["callers", "list"])));
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    assert!(lines.any(|l| l.starts_with("svc-cli ")), "{table}");

    // A refusal: exit 1 and the server's status and problem detail.
    let out = output_within(cli(
        s,
        &secret,
        &["groups", "create", "g-cli", "--set", r#"audiences=["b"]"#],
    ));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: 409 Conflict: "), "{stderr}");
    assert!(stderr.contains("g-cli"), "{stderr}");

    let disabled = json(s, &secret, &["callers", "disable", "svc-cli"]);
    assert_eq!(disabled["enabled"], false, "{disabled}");
    let keys = json(s, &secret, &["keys", "list", "svc-cli"]);
    let old_kid = keys.as_array().or(keys["keys"].as_array()).unwrap()[0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    json(s, &secret, &["keys", "rotate", "svc-cli"]);
    let old = json(s, &secret, &["keys", "get", &old_kid]);
    assert_eq!(old["state"], "retired", "{old}");
    let added = json(s, &secret, &["secrets", "add", "svc-cli"]);
    assert!(added["client_secret"].as_str().is_some(), "{added}");

    json(
        s,
        &secret,
        &[
            "settings",
            "set",
            "audit-retention",
            "--set",
            "max_age_days=30",
            "--set",
            "max_entries=null",
        ],
    );
    let retention = json(s, &secret, &["settings", "get", "audit-retention"]);
    assert_eq!(retention["max_age_days"], 30, "{retention}");

    let page = json(
        s,
        &secret,
        &["audit", "query", "--action", "caller.created"],
    );
    let events = page["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["target"] == "caller:svc-cli"),
        "{page}"
    );
    let ndjson = ok(output_within(cli(
        s,
        &secret,
        &["audit", "export", "--action", "key.rotated"],
    )));
    let exported: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(exported.len(), 1, "{ndjson}");
    assert_eq!(exported[0]["action"], "key.rotated");

    let deleted = output_within(cli(s, &secret, &["callers", "delete", "svc-cli"]));
    ok(deleted);
    let out = output_within(cli(s, &secret, &["callers", "get", "svc-cli"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: 404 Not Found: "));
}

#[tokio::test]
async fn admin_cli_takes_no_secret_from_argv() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let secret = init_admin(dir.path(), &db, &key);
    let server = Server::start(dir.path(), &db, &key).await;

    // Even the right secret is refused on the command line.
    let mut cmd = asapd_bare(&[
        "callers",
        "list",
        "--url",
        &server.url(""),
        "--client-secret",
        &secret,
    ]);
    cmd.env("ASAPD_CLIENT_ID", "admin");
    let out = output_within(cmd);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not accepted on the command line")
            && stderr.contains("ASAPD_CLIENT_SECRET"),
        "{stderr}"
    );

    let out = output_within(asapd_bare(&["callers", "list", "--url", &server.url("")]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no admin credentials"));

    // A token in ASAPD_TOKEN is a way in.
    let res = crate::helpers::http()
        .post(server.url("/v1/tokens"))
        .basic_auth("admin", Some(&secret))
        .json(&serde_json::json!({"audience": "asapd"}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap_or_else(|| panic!("{body}"));
    let mut cmd = asapd_bare(&["groups", "list", "--json", "--url", &server.url("")]);
    cmd.env("ASAPD_TOKEN", token);
    let listed: Value = serde_json::from_str(&ok(output_within(cmd))).unwrap();
    assert!(listed.to_string().contains("admin"), "{listed}");
}

/// `audit tail` prints events recorded after it started, as they come.
#[tokio::test]
async fn audit_tail_follows_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let secret = init_admin(dir.path(), &db, &key);
    let server = Server::start(dir.path(), &db, &key).await;
    let mut tail = cli(
        &server,
        &secret,
        &[
            "audit",
            "tail",
            "--json",
            "--action",
            "group.created",
            "--interval-ms",
            "50",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // Groups are created until tail (which starts from the newest event it
    // first sees) prints one of them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    let line = loop {
        assert!(Instant::now() < deadline, "audit tail printed nothing");
        n += 1;
        json(
            &server,
            &secret,
            &[
                "groups",
                "create",
                &format!("g-tail-{n}"),
                "--set",
                r#"audiences=["b"]"#,
            ],
        );
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
    };
    let _ = tail.kill();
    let _ = tail.wait();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["action"], "group.created");
    assert!(
        event["target"]
            .as_str()
            .unwrap()
            .starts_with("group:g-tail-"),
        "{event}"
    );
}

#[tokio::test]
async fn admin_cli_manages_trusted_issuers() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let secret = init_admin(dir.path(), &db, &key);
    let server = Server::start(dir.path(), &db, &key).await;
    let s = &server;
    let created = json(
        s,
        &secret,
        &[
            "issuers",
            "create",
            "k8s",
            "--set",
            "issuer=https://kubernetes.default.svc",
            "--set",
            r#"audiences=["asapd"]"#,
        ],
    );
    assert_eq!(created["max_token_age_secs"], 3600);
    // `update` changes only what it names; the rest stays as it was.
    let updated = json(
        s,
        &secret,
        &[
            "issuers",
            "update",
            "k8s",
            "--set",
            "max_token_age_secs=600",
        ],
    );
    assert_eq!(updated["max_token_age_secs"], 600);
    assert_eq!(updated["audiences"], serde_json::json!(["asapd"]));
    let shown = json(s, &secret, &["issuers", "show", "k8s"]);
    assert_eq!(shown["issuer"], "https://kubernetes.default.svc");
    let listed = json(s, &secret, &["issuers", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let bad = output_within(cli(
        s,
        &secret,
        &["issuers", "create", "gh", "--set", "issuer=https://x"],
    ));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("audiences"));
    json(s, &secret, &["issuers", "delete", "k8s"]);
    assert_eq!(
        json(s, &secret, &["issuers", "list"]),
        serde_json::json!([])
    );
}
