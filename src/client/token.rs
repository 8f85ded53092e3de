//! `asapd token`: a token from a running asapd, as a caller gets one.

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// What to ask for, and as whom.
pub struct TokenRequest<'a> {
    /// Base URL of the asapd, e.g. `https://127.0.0.1:8443`.
    pub url: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub audiences: &'a [String],
    pub lifetime: Option<u32>,
    pub subject: Option<&'a str>,
}

/// `POST /v1/tokens`; the whole JSON answer on success. A refusal becomes
/// an error carrying the server's problem detail (never the secret).
pub async fn request(client: &reqwest::Client, req: &TokenRequest<'_>) -> anyhow::Result<Value> {
    let mut body = json!({ "audience": req.audiences });
    if let Some(lifetime) = req.lifetime {
        body["lifetime"] = json!(lifetime);
    }
    if let Some(subject) = req.subject {
        body["subject"] = json!(subject);
    }
    let url = format!("{}/v1/tokens", req.url.trim_end_matches('/'));
    let res = client
        .post(&url)
        .basic_auth(req.client_id, Some(req.client_secret))
        .json(&body)
        .send()
        .await
        .map_err(|e| super::request_failed(e, format!("POST {url}")))?;
    let status = res.status();
    let text = res.text().await.context("reading the answer")?;
    if !status.is_success() {
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|p| p["detail"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("asapd refused the token ({status}): {detail}");
    }
    serde_json::from_str(&text).context("the answer is not JSON")
}
