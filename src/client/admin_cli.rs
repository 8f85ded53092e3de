//! `asapd callers|groups|issuers|keys|secrets|audit|settings <verb>`: each verb is
//! one admin API call (or a loop of them for `audit tail`), so the CLI can
//! do nothing the API would not let the same admin do.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::admin::{print, segment, AdminClient, Credentials};
use super::tail::Tail;

/// The admin resources, flattened into `asapd`'s own commands.
#[derive(Subcommand)]
pub enum AdminResource {
    /// Callers: list, get, create, update, disable, delete.
    Callers {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        verb: CallerVerb,
    },
    /// Groups (audiences and grants): list, get, create, update, delete.
    Groups {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        verb: CrudVerb,
    },
    /// Trusted issuers of workload identity tokens (Kubernetes, GitHub
    /// Actions, OIDC, another asapd): list, show, create, update, delete.
    Issuers {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        verb: CrudVerb,
    },
    /// Signing keys: list, get, generate, import, rotate, revoke.
    Keys {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        verb: KeyVerb,
    },
    /// Client secrets: list, add, revoke.
    Secrets {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        verb: SecretVerb,
    },
    /// The audit log: query, tail, export.
    Audit {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        verb: AuditVerb,
    },
    /// Settings: get, set.
    Settings {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        verb: SettingsVerb,
    },
}

/// Where the server is and how to print. Credentials come from the
/// environment (ASAPD_CLIENT_ID / ASAPD_CLIENT_SECRET, or ASAPD_TOKEN).
#[derive(Args)]
pub struct Common {
    /// Base URL of the asapd.
    #[arg(long, global = true, default_value = "https://127.0.0.1:8443")]
    url: String,
    /// Extra CA certificate to trust (PEM), e.g. data/dev-cert.pem.
    #[arg(long, global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Refused: a secret on the command line shows in `ps` and in shell
    /// history. Use ASAPD_CLIENT_SECRET.
    #[arg(long, global = true, hide = true, value_name = "SECRET")]
    client_secret: Option<String>,
    /// Refused, as --client-secret. Use ASAPD_TOKEN.
    #[arg(long, global = true, hide = true, value_name = "TOKEN")]
    token: Option<String>,
}

/// A request body: `--data JSON` (or `@FILE`), then `--set key=value`
/// (the value as JSON if it parses, else as a string).
#[derive(Args, Default)]
pub struct Body {
    /// The JSON body, or @FILE to read it from a file.
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
    /// One field: key=value, e.g. --set enabled=false --set 'groups=["g"]'.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    fields: Vec<String>,
}

/// The verbs callers and groups share.
#[derive(Subcommand)]
pub enum CrudVerb {
    /// All of them.
    List,
    /// One, by name.
    #[command(alias = "show")]
    Get { name: String },
    /// Create one (a caller's first secret is printed once).
    Create {
        name: String,
        #[command(flatten)]
        body: Body,
    },
    /// Change the fields given (PATCH).
    Update {
        name: String,
        #[command(flatten)]
        body: Body,
    },
    /// Delete one.
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum CallerVerb {
    #[command(flatten)]
    Crud(CrudVerb),
    Disable {
        name: String,
    },
    /// Public keys a caller signs its own client assertions with
    /// (RFC 7523 private_key_jwt): list, add, delete.
    #[command(subcommand)]
    ClientKeys(ClientKeyVerb),
}

#[derive(Subcommand)]
pub enum ClientKeyVerb {
    /// A caller's client keys.
    List { caller: String },
    /// Register a public key: a PEM file (-----BEGIN PUBLIC KEY-----) or a
    /// JSON file holding one public JWK.
    Add {
        caller: String,
        #[arg(long, value_name = "FILE")]
        public_key_file: PathBuf,
    },
    /// Delete a client key by its id.
    Delete { caller: String, id: String },
}

#[derive(Subcommand)]
pub enum KeyVerb {
    /// A caller's keys.
    List {
        caller: String,
    },
    Get {
        kid: String,
    },
    /// A new key for a caller (pending unless --set activate=true).
    Generate {
        caller: String,
        #[command(flatten)]
        body: Body,
    },
    /// Import a PEM private key for a caller.
    Import {
        caller: String,
        /// PEM private key file (PKCS#8 or PKCS#1/SEC1).
        #[arg(long, value_name = "FILE")]
        private_key_file: PathBuf,
        #[command(flatten)]
        body: Body,
    },
    Rotate {
        caller: String,
    },
    Revoke {
        kid: String,
    },
}

#[derive(Subcommand)]
pub enum SecretVerb {
    List {
        caller: String,
    },
    /// A new secret for a caller, printed once.
    Add {
        caller: String,
    },
    Revoke {
        caller: String,
        id: String,
    },
}

/// Filters on an event's fields, each an exact match.
#[derive(Args)]
pub struct EventFilter {
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    outcome: Option<String>,
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    target: Option<String>,
}

/// Filters of the audit query.
#[derive(Args)]
pub struct AuditFilter {
    #[command(flatten)]
    event: EventFilter,
    /// RFC 3339 time, inclusive.
    #[arg(long)]
    from: Option<String>,
    /// RFC 3339 time, exclusive.
    #[arg(long)]
    to: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditVerb {
    /// One page of events, newest first.
    Query {
        #[command(flatten)]
        filter: AuditFilter,
        #[arg(long)]
        limit: Option<i64>,
        /// next_cursor of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Print every new event once, oldest first, until stopped.
    Tail {
        #[command(flatten)]
        filter: EventFilter,
        /// How often to ask, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// How long to wait for an event whose id is below one already
        /// seen (PostgreSQL commits out of id order) before saying on
        /// standard error that it was not shown, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        grace_ms: u64,
    },
    /// Every matching event as NDJSON on standard output.
    Export {
        #[command(flatten)]
        filter: AuditFilter,
    },
}

#[derive(Subcommand)]
pub enum SettingsVerb {
    Get {
        name: SettingName,
    },
    /// e.g. `settings set audit-retention --set max_age_days=90`.
    Set {
        name: SettingName,
        #[command(flatten)]
        body: Body,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SettingName {
    AuditRetention,
}

/// Runs one admin command.
pub async fn run(resource: AdminResource) -> anyhow::Result<()> {
    let (common, call) = plan(resource)?;
    if common.client_secret.is_some() || common.token.is_some() {
        anyhow::bail!(
            "secrets are not accepted on the command line (they would show in `ps` and in \
             shell history); set ASAPD_CLIENT_ID and ASAPD_CLIENT_SECRET, or ASAPD_TOKEN"
        );
    }
    let client = AdminClient::new(
        &common.url,
        common.cacert.as_deref(),
        Credentials::from_env()?,
    )?;
    match call {
        Call::Once(method, path, body) => {
            let answer = client.call(method, &path, body.as_ref()).await?;
            print(&answer, common.json);
        }
        Call::Tail(mut tail) => {
            tail.json = common.json;
            super::tail::run(&client, &tail).await?
        }
        Call::Export(query) => export(&client, &query).await?,
        Call::Replace(path, changes) => {
            let answer = replace(&client, &path, changes).await?;
            print(&answer, common.json);
        }
    }
    Ok(())
}

enum Call {
    Once(Method, String, Option<Value>),
    /// GET the resource, overlay the fields given, PUT the whole of it.
    Replace(String, Value),
    Tail(Tail),
    Export(String),
}

/// Maps a command to the request it makes.
fn plan(resource: AdminResource) -> anyhow::Result<(Common, Call)> {
    Ok(match resource {
        AdminResource::Callers { common, verb } => (common, callers(verb)?),
        AdminResource::Groups { common, verb } => (common, crud("/groups", verb)?),
        AdminResource::Issuers { common, verb } => (common, issuers(verb)?),
        AdminResource::Keys { common, verb } => (common, keys(verb)?),
        AdminResource::Secrets { common, verb } => (common, secrets(verb)),
        AdminResource::Audit { common, verb } => (common, audit(verb)),
        AdminResource::Settings { common, verb } => (common, settings(verb)?),
    })
}

fn callers(verb: CallerVerb) -> anyhow::Result<Call> {
    Ok(match verb {
        CallerVerb::Crud(verb) => crud("/callers", verb)?,
        CallerVerb::Disable { name } => Call::Once(
            Method::PATCH,
            format!("/callers/{}", segment(&name)),
            Some(json!({"enabled": false})),
        ),
        CallerVerb::ClientKeys(verb) => client_keys(verb)?,
    })
}

fn client_keys(verb: ClientKeyVerb) -> anyhow::Result<Call> {
    let keys_of = |caller: &str| format!("/callers/{}/client-keys", segment(caller));
    Ok(match verb {
        ClientKeyVerb::List { caller } => Call::Once(Method::GET, keys_of(&caller), None),
        ClientKeyVerb::Add {
            caller,
            public_key_file,
        } => {
            let text = std::fs::read_to_string(&public_key_file)
                .with_context(|| format!("reading the public key {}", public_key_file.display()))?;
            // A JWK file is sent as the object it holds, anything else as PEM.
            let public_key = match serde_json::from_str::<Value>(&text) {
                Ok(jwk @ Value::Object(_)) => jwk,
                _ => Value::String(text),
            };
            let body = json!({ "public_key": public_key });
            Call::Once(Method::POST, keys_of(&caller), Some(body))
        }
        ClientKeyVerb::Delete { caller, id } => Call::Once(
            Method::DELETE,
            format!("{}/{}", keys_of(&caller), segment(&id)),
            None,
        ),
    })
}

fn keys(verb: KeyVerb) -> anyhow::Result<Call> {
    let keys_of = |caller: &str| format!("/callers/{}/keys", segment(caller));
    let key = |kid: &str| format!("/keys/{}", segment(kid));
    Ok(match verb {
        KeyVerb::List { caller } => Call::Once(Method::GET, keys_of(&caller), None),
        KeyVerb::Get { kid } => Call::Once(Method::GET, key(&kid), None),
        KeyVerb::Generate { caller, body } => {
            Call::Once(Method::POST, keys_of(&caller), Some(body.build()?))
        }
        KeyVerb::Import {
            caller,
            private_key_file,
            body,
        } => {
            let pem = std::fs::read_to_string(&private_key_file).with_context(|| {
                format!("reading the private key {}", private_key_file.display())
            })?;
            let mut body = body.build()?;
            body["private_key"] = Value::String(pem);
            let path = format!("{}/import", keys_of(&caller));
            Call::Once(Method::POST, path, Some(body))
        }
        KeyVerb::Rotate { caller } => {
            Call::Once(Method::POST, format!("{}/rotate", keys_of(&caller)), None)
        }
        KeyVerb::Revoke { kid } => Call::Once(Method::POST, format!("{}/revoke", key(&kid)), None),
    })
}

fn secrets(verb: SecretVerb) -> Call {
    let secrets_of = |caller: &str| format!("/callers/{}/secrets", segment(caller));
    match verb {
        SecretVerb::List { caller } => Call::Once(Method::GET, secrets_of(&caller), None),
        SecretVerb::Add { caller } => Call::Once(Method::POST, secrets_of(&caller), None),
        SecretVerb::Revoke { caller, id } => Call::Once(
            Method::DELETE,
            format!("{}/{}", secrets_of(&caller), segment(&id)),
            None,
        ),
    }
}

fn audit(verb: AuditVerb) -> Call {
    match verb {
        AuditVerb::Query {
            filter,
            limit,
            cursor,
        } => {
            let mut query = filter.pairs();
            query.extend(limit.map(|l| ("limit", l.to_string())));
            query.extend(cursor.map(|c| ("cursor", c)));
            Call::Once(Method::GET, format!("/audit?{}", encode(&query)), None)
        }
        AuditVerb::Tail {
            filter,
            interval_ms,
            grace_ms,
        } => Call::Tail(Tail {
            filter: filter.pairs(),
            interval: Duration::from_millis(interval_ms),
            grace: Duration::from_millis(grace_ms),
            json: false,
        }),
        AuditVerb::Export { filter } => Call::Export(encode(&filter.pairs())),
    }
}

fn settings(verb: SettingsVerb) -> anyhow::Result<Call> {
    Ok(match verb {
        SettingsVerb::Get { name } => Call::Once(Method::GET, name.path().into(), None),
        SettingsVerb::Set { name, body } => {
            Call::Once(Method::PUT, name.path().into(), Some(body.build()?))
        }
    })
}

/// Issuers are replaced whole (PUT): `update` changes only the fields
/// given, the others as they are on the server.
fn issuers(verb: CrudVerb) -> anyhow::Result<Call> {
    match verb {
        CrudVerb::Update { name, body } => Ok(Call::Replace(
            format!("/issuers/{}", segment(&name)),
            body.build()?,
        )),
        other => crud("/issuers", other),
    }
}

async fn replace(client: &AdminClient, path: &str, changes: Value) -> anyhow::Result<Value> {
    let mut current = client.call(Method::GET, path, None).await?;
    let map = current
        .as_object_mut()
        .context("the server's answer is not a JSON object")?;
    // What the server keeps itself; the PUT body has only settings.
    for own in ["name", "created_at", "updated_at"] {
        map.remove(own);
    }
    map.retain(|_, v| !v.is_null());
    if let Value::Object(changes) = changes {
        map.extend(changes);
    }
    client.call(Method::PUT, path, Some(&current)).await
}

/// The request of a verb on `base` (`/callers`, `/groups`).
fn crud(base: &str, verb: CrudVerb) -> anyhow::Result<Call> {
    let one = |name: &str| format!("{base}/{}", segment(name));
    Ok(match verb {
        CrudVerb::List => Call::Once(Method::GET, base.into(), None),
        CrudVerb::Get { name } => Call::Once(Method::GET, one(&name), None),
        CrudVerb::Create { name, body } => {
            Call::Once(Method::POST, base.into(), Some(body.named(&name)?))
        }
        CrudVerb::Update { name, body } => {
            Call::Once(Method::PATCH, one(&name), Some(body.build()?))
        }
        CrudVerb::Delete { name } => Call::Once(Method::DELETE, one(&name), None),
    })
}

impl SettingName {
    fn path(self) -> &'static str {
        match self {
            SettingName::AuditRetention => "/settings/audit-retention",
        }
    }
}

impl Body {
    fn build(&self) -> anyhow::Result<Value> {
        let mut body = match &self.data {
            None => Map::new(),
            Some(text) => {
                let text = match text.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("reading --data file {path}"))?,
                    None => text.clone(),
                };
                match serde_json::from_str(&text).context("--data is not JSON")? {
                    Value::Object(map) => map,
                    _ => anyhow::bail!("--data must be a JSON object"),
                }
            }
        };
        for field in &self.fields {
            let (key, value) = field
                .split_once('=')
                .with_context(|| format!("--set {field:?}: expected KEY=VALUE"))?;
            let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
            body.insert(key.to_owned(), value);
        }
        Ok(Value::Object(body))
    }

    fn named(&self, name: &str) -> anyhow::Result<Value> {
        let mut body = self.build()?;
        body["name"] = json!(name);
        Ok(body)
    }
}

impl EventFilter {
    fn pairs(self) -> Vec<(&'static str, String)> {
        [
            ("action", self.action),
            ("outcome", self.outcome),
            ("actor", self.actor),
            ("target", self.target),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

impl AuditFilter {
    fn pairs(self) -> Vec<(&'static str, String)> {
        let mut pairs = self.event.pairs();
        pairs.extend(self.from.map(|v| ("from", v)));
        pairs.extend(self.to.map(|v| ("to", v)));
        pairs
    }
}

pub(super) fn encode(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).expect("string pairs always encode")
}

/// Streams the export to standard output as it arrives, with a line count
/// on standard error when a person watches it.
async fn export(client: &AdminClient, query: &str) -> anyhow::Result<()> {
    let mut res = client
        .send(Method::GET, &format!("/audit/export?{query}"), None)
        .await?;
    let progress = std::io::stderr().is_terminal();
    let mut stdout = std::io::stdout().lock();
    let mut lines = 0u64;
    while let Some(chunk) = res.chunk().await.context("reading the export")? {
        stdout.write_all(&chunk)?;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        if progress {
            eprint!("\r{lines} events");
        }
    }
    stdout.flush()?;
    if progress {
        eprintln!("\r{lines} events exported");
    }
    Ok(())
}
