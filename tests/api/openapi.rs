//! The committed spec matches the code; regenerate with `make openapi`.

use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app;

#[test]
fn committed_spec_is_current() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json exists; run `make openapi`");
    let generated = asapd::http::openapi::spec_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `make openapi` and commit the result"
    );
}

#[tokio::test]
async fn served_spec_lists_every_route() {
    let app = spawn_app().await;
    let res = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let spec: serde_json::Value = res.json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/v1/keys/{kid}",
        "/.well-known/jwks.json",
        "/v1/admin/callers",
        "/v1/admin/keys/{kid}/revoke",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} in spec: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
}
