//! The admin API as the CLI's commands see it: who to be, one request, and
//! how an answer is shown (a table for people, JSON for scripts).

use std::path::Path;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Credentials from the environment only: an argument would show in `ps`
/// and in shell history.
#[derive(Debug, Clone)]
pub enum Credentials {
    Basic { id: String, secret: String },
    Bearer(String),
}

impl Credentials {
    /// `ASAPD_TOKEN`, or else `ASAPD_CLIENT_ID` with `ASAPD_CLIENT_SECRET`.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(token) = var("ASAPD_TOKEN") {
            return Ok(Self::Bearer(token));
        }
        match (var("ASAPD_CLIENT_ID"), var("ASAPD_CLIENT_SECRET")) {
            (Some(id), Some(secret)) => Ok(Self::Basic { id, secret }),
            _ => anyhow::bail!(
                "no admin credentials: set ASAPD_CLIENT_ID and ASAPD_CLIENT_SECRET (an admin \
                 caller's), or ASAPD_TOKEN (a token of one); they are read from the environment \
                 only, never from the command line"
            ),
        }
    }
}

/// A failed admin call: the server's status and problem detail.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub detail: String,
}

/// Talks to one asapd's admin API.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
}

impl AdminClient {
    pub fn new(url: &str, cacert: Option<&Path>, credentials: Credentials) -> anyhow::Result<Self> {
        Ok(Self {
            http: super::http_client(cacert)?,
            base: url.trim_end_matches('/').to_owned(),
            credentials,
        })
    }

    /// Sends `method path` (under `/v1/admin`) with an optional JSON body;
    /// the raw successful response, or the problem detail as an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}/v1/admin{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        req = match &self.credentials {
            Credentials::Basic { id, secret } => req.basic_auth(id, Some(secret)),
            Credentials::Bearer(token) => req.bearer_auth(token),
        };
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req
            .send()
            .await
            .map_err(|e| super::request_failed(e, format!("{method} {url}")))?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let problem = serde_json::from_str::<Value>(&text).ok();
        let detail = problem
            .as_ref()
            .and_then(|p| p["detail"].as_str().or(p["title"].as_str()))
            .map(str::to_owned)
            .unwrap_or(text);
        Err(ApiFailure { status, detail }.into())
    }

    /// Like [`AdminClient::send`], reading a JSON answer (`null` for 204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let res = self.send(method, path, body).await?;
        let text = res.text().await.context("reading the answer")?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the answer is not JSON")
    }
}

/// Percent-encodes one path segment (a caller name, a kid with `/`).
pub fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Prints an answer: JSON as is, or a table of a list (the answer itself,
/// or its one array field), or `field: value` lines of an object.
pub fn print(answer: &Value, json: bool) {
    if json {
        println!("{answer}");
        return;
    }
    let rows = match answer {
        Value::Array(rows) => Some(rows.as_slice()),
        Value::Object(map) if map.len() <= 2 => {
            map.values().find_map(Value::as_array).map(Vec::as_slice)
        }
        _ => None,
    };
    match (rows, answer) {
        (Some(rows), _) => print!("{}", table(rows)),
        (None, Value::Object(map)) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in map {
                println!("{k:width$}  {}", cell(v));
            }
        }
        (None, Value::Null) => {}
        (None, other) => println!("{}", cell(other)),
    }
}

/// Columns are the first row's fields with short values; long ones (PEM
/// text) are left to `get` and `--json`.
fn table(rows: &[Value]) -> String {
    let Some(Value::Object(first)) = rows.first() else {
        return "(none)\n".into();
    };
    let mut columns: Vec<&String> = first
        .iter()
        .filter(|(_, v)| !matches!(v, Value::Object(_)) && cell(v).len() <= 60)
        .map(|(k, _)| k)
        .collect();
    // What names the row first; the rest alphabetically, as JSON has them.
    columns.sort_by_key(|c| !matches!(c.as_str(), "name" | "kid" | "id"));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(&row[c.as_str()])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].len()).fold(c.len(), usize::max))
        .collect();
    let line = |values: Vec<String>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_line_up_and_skip_long_fields() {
        let rows = [
            json!({"name": "svc-a", "groups": ["g1", "g2"], "pem": "x".repeat(100)}),
            json!({"name": "b", "groups": [], "pem": "y"}),
        ];
        assert_eq!(table(&rows), "NAME   GROUPS\nsvc-a  g1,g2\nb\n");
    }
}
