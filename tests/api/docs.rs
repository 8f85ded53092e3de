//! `GET /docs`: Swagger UI served from the binary, over `/openapi.json`.
//! tests/docs/run.sh renders it in headless Chromium.

use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app;

async fn get(app: &crate::helpers::TestApp, path: &str) -> (StatusCode, String, String) {
    let res = app.request(Method::GET, path).send().await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, res.text().await.unwrap())
}

#[tokio::test]
async fn docs_serve_swagger_ui_over_the_servers_own_spec() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(res.headers()["location"], "/docs/");

    let (status, content_type, page) = get(&app, "/docs/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("swagger-ui"), "{page}");
    // Every script and stylesheet comes from this server: no CDN.
    for attr in ["src=\"", "href=\""] {
        for at in page.match_indices(attr).map(|(i, _)| i + attr.len()) {
            let url = &page[at..at + page[at..].find('"').unwrap()];
            assert!(!url.contains("//"), "{url} leaves the server");
        }
    }
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css"] {
        let (status, _, body) = get(&app, &format!("/docs/{asset}")).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(body.len() > 10_000, "{asset}");
    }
    let (status, _, init) = get(&app, "/docs/swagger-initializer.js").await;
    assert_eq!(status, StatusCode::OK);
    let config: String = init.split_whitespace().collect();
    assert!(config.contains(r#""url":"/openapi.json""#), "{init}");
    assert!(config.contains(r#""tryItOutEnabled":true"#), "{init}");

    let (status, _, _) = get(&app, "/docs/no-such-file.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
