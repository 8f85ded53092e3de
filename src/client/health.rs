//! `asapd healthcheck`: the container image's probe. The runtime image
//! (deploy/Dockerfile) has no shell, curl or wget, so Docker's
//! `HEALTHCHECK` runs the binary itself against its own `/healthz`.

use std::time::Duration;

use anyhow::{bail, Context};

/// GETs `url` and succeeds on a 2xx answer within `timeout`.
pub async fn check(client: &reqwest::Client, url: &str, timeout: Duration) -> anyhow::Result<()> {
    let res = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| super::request_failed(e, format!("GET {url}")))?;
    let status = res.status();
    if !status.is_success() {
        let body = res.text().await.context("reading the answer")?;
        bail!("GET {url} answered {status}: {}", body.trim());
    }
    Ok(())
}
