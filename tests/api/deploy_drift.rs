//! deploy/ cannot drift from the binary: the compose file, the Kubernetes
//! manifests, the Dockerfile, the nginx and Prometheus configs, the alert
//! rules and the Grafana dashboard name probe paths, ports, `ASAPD_*`
//! variables and metric names that a running asapd must answer to.

use std::collections::BTreeSet;
use std::path::PathBuf;

use asapd::clock::Clock;
use reqwest::{Method, StatusCode};
use serde_json::json;
use serde_norway::Value;

use crate::helpers::{spawn_app, spawn_app_with_clock, TestApp};
use crate::token_support::Caller;

fn deploy_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy_path(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

/// A YAML file with its merge keys (`<<: *anchor`) applied.
fn yaml(rel: &str) -> Value {
    let mut v: Value =
        serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"));
    v.apply_merge().unwrap();
    v
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

fn map_keys(v: &Value) -> Vec<String> {
    v.as_mapping()
        .map(|m| m.keys().map(|k| str_of(k, "key").to_owned()).collect())
        .unwrap_or_default()
}

/// Every name must be an `ASAPD_*` variable asapd reads.
fn assert_known_env<'a>(where_: &str, names: impl IntoIterator<Item = &'a str>) {
    let mut seen = 0;
    for name in names {
        seen += 1;
        let known = name
            .strip_prefix(asapd::config::ENV_PREFIX)
            .is_some_and(|rest| asapd::config::KNOWN_ENV.contains(&rest));
        assert!(known, "{where_}: {name} is not a variable asapd reads");
    }
    assert!(seen > 0, "{where_}: no variables found");
}

/// The port of an `ip:port` listen address.
fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listen}"))
}

/// `http://host:port/path` → (port, path).
fn url_parts(url: &str) -> (u16, String) {
    let url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    (url.port_or_known_default().unwrap(), url.path().to_owned())
}

async fn assert_answers_200(app: &TestApp, path: &str) {
    let res = app.request(Method::GET, path).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "GET {path}");
}

#[tokio::test]
async fn kubernetes_manifests_match_the_binary() {
    let app = spawn_app().await;
    let config = yaml("k8s/configmap.yaml");
    let deployment = yaml("k8s/deployment.yaml");
    let secret = yaml("k8s/secret.yaml");
    let service = yaml("k8s/service.yaml");
    let pdb = yaml("k8s/pdb.yaml");
    let kustomization = yaml("k8s/kustomization.yaml");
    for file in kustomization["resources"].as_sequence().unwrap() {
        assert!(deploy_path(&format!("k8s/{}", str_of(file, "resource"))).exists());
    }

    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let data = &config["data"];
    assert_known_env("configmap.yaml", map_keys(data).iter().map(String::as_str));
    let env = container["env"].as_sequence().unwrap();
    assert_known_env(
        "deployment.yaml env",
        env.iter().map(|e| str_of(&e["name"], "env name")),
    );
    assert_eq!(
        str_of(
            &container["envFrom"][0]["configMapRef"]["name"],
            "configmap"
        ),
        str_of(&config["metadata"]["name"], "configmap name")
    );
    let secret_keys = map_keys(&secret["stringData"]);
    let secret_name = str_of(&secret["metadata"]["name"], "secret name");
    let refs = env
        .iter()
        .filter_map(|e| e["valueFrom"]["secretKeyRef"].as_mapping())
        .map(|r| Value::Mapping(r.clone()));
    let volume_refs = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|v| !v["secret"].is_null())
        .flat_map(|v| {
            assert_eq!(
                str_of(&v["secret"]["secretName"], "secretName"),
                secret_name
            );
            v["secret"]["items"].as_sequence().unwrap().clone()
        });
    for r in refs {
        assert_eq!(str_of(&r["name"], "secret ref"), secret_name);
        assert!(secret_keys.contains(&str_of(&r["key"], "key").to_owned()));
    }
    for item in volume_refs {
        assert!(secret_keys.contains(&str_of(&item["key"], "key").to_owned()));
    }

    // Probes: the right route each, on the port asapd listens on.
    let port = port_of(str_of(&data["ASAPD_LISTEN"], "ASAPD_LISTEN"));
    let ports = container["ports"].as_sequence().unwrap();
    let named = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}"))
    };
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(str_of(&get["path"], probe), path, "{probe}");
        assert_eq!(
            named(str_of(&get["port"], probe)),
            u64::from(port),
            "{probe}"
        );
        assert_answers_200(&app, path).await;
    }
    let requests = &container["resources"]["requests"];
    assert!(requests["cpu"].is_string() && requests["memory"].is_string());

    // Service and PodDisruptionBudget select these pods, on that port.
    let labels = &pod["metadata"]["labels"];
    for selector in [
        &service["spec"]["selector"],
        &pdb["spec"]["selector"]["matchLabels"],
    ] {
        for (k, v) in selector.as_mapping().unwrap() {
            assert_eq!(&labels[str_of(k, "label")], v, "selector {k:?}");
        }
    }
    named(str_of(
        &service["spec"]["ports"][0]["targetPort"],
        "targetPort",
    ));
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
    let scrape = &pod["metadata"]["annotations"];
    assert_eq!(
        str_of(&scrape["prometheus.io/port"], "port"),
        port.to_string()
    );
    assert_answers_200(&app, str_of(&scrape["prometheus.io/path"], "path")).await;
}

/// `KEY=value` pairs of the Dockerfile's `ENV` instruction (one, with
/// continuation lines).
fn dockerfile_env(dockerfile: &str) -> Vec<(String, String)> {
    let joined = dockerfile.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with("ENV "))
        .expect("an ENV line");
    line["ENV ".len()..]
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("ENV KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The URL given to `asapd healthcheck --url` in a command line, as words
/// or as the JSON-ish exec form (`["asapd", "healthcheck", …]`).
fn healthcheck_url<'a>(argv: impl IntoIterator<Item = &'a str>) -> String {
    let argv: Vec<&str> = argv
        .into_iter()
        .map(|a| a.trim_matches(['"', ',', '[', ']']))
        .collect();
    let at = argv
        .iter()
        .position(|a| *a == "healthcheck")
        .expect("asapd healthcheck");
    assert_eq!(argv[at + 1], "--url");
    argv[at + 2].to_owned()
}

#[tokio::test]
async fn compose_dockerfile_nginx_and_prometheus_match_the_binary() {
    let app = spawn_app().await;

    let dockerfile = read("Dockerfile");
    let env = dockerfile_env(&dockerfile);
    assert_known_env("Dockerfile ENV", env.iter().map(|(k, _)| k.as_str()));
    let listen = &env.iter().find(|(k, _)| k == "ASAPD_LISTEN").unwrap().1;
    let port = port_of(listen);
    assert!(dockerfile.contains(&format!("\nEXPOSE {port}\n")));
    let healthcheck = dockerfile
        .replace("\\\n", " ")
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK")
        .to_owned();
    let (hc_port, hc_path) = url_parts(&healthcheck_url(healthcheck.split_whitespace()));
    assert_eq!((hc_port, hc_path.as_str()), (port, "/healthz"));
    assert!(dockerfile.contains("\nUSER 65532"), "a non-root user");

    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    let replicas: Vec<String> = map_keys(services)
        .into_iter()
        .filter(|name| name.starts_with("asapd-"))
        .collect();
    assert_eq!(replicas.len(), 2, "two asapd replicas: {replicas:?}");
    for name in &replicas {
        let svc = &services[name.as_str()];
        let env = &svc["environment"];
        assert_known_env(name, map_keys(env).iter().map(String::as_str));
        let listen = port_of(str_of(&env["ASAPD_LISTEN"], "ASAPD_LISTEN"));
        let test: Vec<&str> = svc["healthcheck"]["test"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| str_of(a, "test"))
            .collect();
        let (hc_port, hc_path) = url_parts(&healthcheck_url(test));
        assert_eq!(hc_port, listen, "{name}'s healthcheck port");
        assert_answers_200(&app, &hc_path).await;
        assert!(svc["expose"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == Some(&listen.to_string())));
        // The secret it reads is one compose provides.
        let key_file = str_of(&env["ASAPD_MASTER_KEY_FILE"], "master key file");
        let secret = key_file
            .strip_prefix("/run/secrets/")
            .expect("a compose secret");
        assert!(!compose["secrets"][secret].is_null(), "secret {secret}");
    }
    for name in ["postgres", "nginx", "prometheus"] {
        assert!(!services[name].is_null(), "compose service {name}");
    }
    let expected: BTreeSet<String> = replicas
        .iter()
        .map(|r| {
            let env = &services[r.as_str()]["environment"];
            format!("{r}:{}", port_of(str_of(&env["ASAPD_LISTEN"], "listen")))
        })
        .collect();

    // nginx balances over exactly the replicas, on their port.
    let nginx = read("nginx/nginx.conf");
    let upstream = nginx.split("upstream ").nth(1).expect("an upstream block");
    let upstream = &upstream[..upstream.find('}').unwrap()];
    let upstreams: BTreeSet<String> = upstream
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .map(|l| {
            l.split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(';')
                .to_owned()
        })
        .collect();
    assert_eq!(upstreams, expected, "nginx upstream");
    for mount in services["nginx"]["volumes"].as_sequence().unwrap() {
        let source = str_of(mount, "volume").split(':').next().unwrap();
        // The TLS files are the operator's (README); the config is ours.
        if source.ends_with(".conf") {
            assert!(deploy_path(source).exists(), "{source}");
        }
    }

    // Prometheus scrapes each replica at a path asapd serves.
    let prometheus = yaml("prometheus/prometheus.yml");
    let job = &prometheus["scrape_configs"][0];
    let targets: BTreeSet<String> = job["static_configs"][0]["targets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| str_of(t, "target").to_owned())
        .collect();
    assert_eq!(targets, expected, "prometheus targets");
    assert_answers_200(&app, str_of(&job["metrics_path"], "metrics_path")).await;
    for mount in services["prometheus"]["volumes"].as_sequence().unwrap() {
        let (source, target) = str_of(mount, "volume").split_once(':').unwrap();
        assert!(deploy_path(source).exists(), "{source}");
        let target = target.trim_end_matches(":ro");
        let named = prometheus["rule_files"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|f| f.as_str() == Some(target));
        assert!(named || target.ends_with("prometheus.yml"), "{target}");
    }
}

/// Every `asapd_…` identifier in a PromQL expression.
fn asapd_series(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("asapd_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The values a `route="…"` or `route=~"a|b"` matcher names.
fn route_matchers(expr: &str) -> Vec<String> {
    expr.split("route")
        .skip(1)
        .filter_map(|s| s.strip_prefix("=~\"").or_else(|| s.strip_prefix("=\"")))
        .flat_map(|s| s[..s.find('"').unwrap()].split('|'))
        .map(str::to_owned)
        .collect()
}

/// The PromQL of every alert rule and every dashboard panel.
fn deploy_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules = yaml("prometheus/alerts.yml");
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = str_of(&rule["alert"], "alert").to_owned();
            out.push((name, str_of(&rule["expr"], "expr").to_owned()));
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(&read("grafana/asapd.json")).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let title = format!("panel {}", panel["title"]);
            out.push((title, target["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

#[tokio::test]
async fn alert_rules_and_dashboard_use_series_asapd_exports() {
    // A still clock: the rate limit below cannot refill mid-test.
    let app = spawn_app_with_clock(Clock::manual(crate::token_support::now()), |s| {
        s.tokens.rate_limit_per_second = 1;
        s.tokens.rate_limit_burst = 2;
    })
    .await;
    // Traffic that makes every labelled series appear: tokens, a denial,
    // a rate-limited request, a failed login.
    let a = app.caller_granted("svc-a", &["svc-b"]).await;
    app.token(&a, "svc-b").await;
    let denied = app.token_request(&a, json!({"audience": "svc-z"})).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let limited = app.token_request(&a, json!({"audience": "svc-b"})).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let impostor = Caller {
        secret: "wrong".into(),
        ..a
    };
    let refused = app
        .token_request(&impostor, json!({"audience": "svc-b"}))
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // A trusted issuer's keys fetched once (its token binds no caller).
    let issuer = crate::oidc_issuer::OidcIssuer::start().await;
    let trusted = app
        .admin_json(
            reqwest::Method::POST,
            "/v1/admin/issuers",
            json!({"name": "k8s", "issuer": issuer.url, "ca_pem": issuer.ca_pem, "audiences": ["asapd"]}),
        )
        .await;
    assert_eq!(trusted.status(), StatusCode::CREATED);
    let token = issuer.sign(&issuer.kubernetes_claims("ns", "sa", "asapd"));
    let unbound = app
        .request(reqwest::Method::POST, "/v1/tokens")
        .bearer_auth(token)
        .json(&json!({"audience": "svc-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unbound.status(), StatusCode::UNAUTHORIZED);

    let text = crate::metrics::scrape(&app).await;
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let spec = asapd::http::openapi::spec();
    let queries = deploy_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    for (what, expr) in &queries {
        for series in asapd_series(expr) {
            assert!(
                exported.contains(series.as_str()),
                "{what}: {series} is not in /metrics; asapd exports {exported:?}"
            );
        }
        for route in route_matchers(expr) {
            assert!(
                spec.paths.paths.contains_key(&route),
                "{what}: route {route}"
            );
        }
    }
}

#[tokio::test]
async fn the_healthcheck_subcommand_probes_a_running_asapd() {
    let app = spawn_app().await;
    let probe = |url: String| {
        crate::process::asapd_bare(&["healthcheck", "--url", &url])
            .output()
            .unwrap()
    };
    let up = tokio::task::spawn_blocking({
        let url = app.url("/healthz");
        move || probe(url)
    })
    .await
    .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let nobody = format!("http://127.0.0.1:{}/healthz", crate::process::free_port());
    let down = tokio::task::spawn_blocking(move || probe(nobody))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy: GET"));

    // A non-2xx answer is unhealthy too, with the status in the message.
    let url = app.url("/no-such-probe");
    let missing = tokio::task::spawn_blocking(move || probe(url))
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}
