//! Running the real `asapd` binary, for what only a process shows: its
//! logs, its exit on bad configuration, its restart, `serve --dev` and TLS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use asapd::crypto::MasterKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

pub const BIN: &str = env!("CARGO_BIN_EXE_asapd");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `asapd args…` with no `ASAPD_*` variable of the test's environment and
/// nothing added.
pub fn asapd_bare(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ASAPD_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args);
    cmd
}

/// A command with a clean `ASAPD_*` environment.
pub fn asapd(
    args: &[&str],
    data_dir: &Path,
    database_url: &str,
    master_key: Option<&str>,
) -> Command {
    let mut cmd = asapd_bare(args);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .arg("--database-url")
        .arg(database_url)
        .env("ASAPD_LOG", "debug");
    if let Some(key) = master_key {
        cmd.env("ASAPD_MASTER_KEY", key);
    }
    cmd
}

pub struct Server {
    child: Child,
    pub port: u16,
    /// stdout and stderr interleaved, stdout alone, stderr alone.
    output: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The threads copying stdout and stderr: joined once the process has
    /// exited, they have read everything it wrote.
    readers: Vec<JoinHandle<()>>,
}

fn capture(mut from: impl Read + Send + 'static, into: [Arc<Mutex<String>>; 2]) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            for sink in &into {
                sink.lock().unwrap().push_str(&text);
            }
        }
    })
}

const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Server {
    /// Starts `serve` and waits until /healthz answers.
    pub async fn start(data_dir: &Path, database_url: &str, master_key: &str) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let cmd = asapd(
            &["serve", "--listen", &listen],
            data_dir,
            database_url,
            Some(master_key),
        );
        Server::spawn(cmd, port).healthy().await
    }

    /// Spawns `cmd`, which is expected to listen on `port`, capturing its
    /// output. Wait for it with [`Server::healthy`] or [`Server::healthy_https`].
    pub fn spawn(mut cmd: Command, port: u16) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn asapd");
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            capture(
                child.stdout.take().unwrap(),
                [output.clone(), stdout.clone()],
            ),
            capture(
                child.stderr.take().unwrap(),
                [output.clone(), stderr.clone()],
            ),
        ];
        Server {
            child,
            port,
            output,
            stdout,
            stderr,
            readers,
        }
    }

    /// After the process has exited: waits until its output is all read
    /// (its pipes close with it).
    fn drain_output(&mut self) {
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader panicked");
        }
    }

    /// Waits until plain-HTTP /healthz answers on `port`; panics with the
    /// output if the process exits first or takes too long.
    pub async fn healthy(mut self) -> Server {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = self.url("/healthz");
        while Instant::now() < deadline {
            if crate::helpers::http()
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return self;
            }
            self.assert_running();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "asapd did not become healthy on port {}: {}",
            self.port,
            self.output()
        );
    }

    /// Waits until /healthz answers over HTTPS on `port`, trusting only the
    /// certificates in `ca` (blocking).
    pub fn healthy_https(mut self, ca: &Path) -> Server {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match https(self.port, ca, "GET", "/healthz", None, None) {
                Ok(res) if res.status == 200 => return self,
                Ok(res) => last = format!("status {}", res.status),
                Err(e) => last = e.to_string(),
            }
            self.assert_running();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "asapd did not answer HTTPS on port {} ({last}): {}",
            self.port,
            self.output()
        );
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.drain_output();
            panic!(
                "asapd exited ({status}) before answering: {}",
                self.output()
            );
        }
    }

    /// Waits until the interleaved output contains `needle` (what a
    /// process prints after it starts answering may lag behind).
    pub fn wait_for_output(&self, needle: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("asapd never printed {needle:?}: {}", self.output());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain_output();
                assert!(
                    status.success(),
                    "graceful shutdown exits 0: {status}: {}",
                    self.output()
                );
                return self.output();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("asapd did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `asapd init --json` → the admin secret.
pub fn init_admin(data_dir: &Path, database_url: &str, master_key: &str) -> String {
    let out = asapd(
        &["init", "--json"],
        data_dir,
        database_url,
        Some(master_key),
    )
    .output()
    .expect("run init");
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let creds: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("init --json prints JSON");
    assert_eq!(creds["client_id"], "admin");
    creds["client_secret"].as_str().unwrap().to_owned()
}

/// Runs `cmd` to its end, which must come within 30 s (a start that was
/// meant to fail but serves instead fails the test rather than hanging it).
pub fn output_within(mut cmd: Command) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn asapd");
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "asapd did not exit: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An answer from [`https`].
#[derive(Debug)]
pub struct HttpsResponse {
    pub status: u16,
    pub body: String,
}

/// A minimal HTTPS/1.1 client (the dev-dependency reqwest has no TLS):
/// one request on its own connection to 127.0.0.1:`port`, trusting only
/// the certificates in the PEM file `ca`, checked for the name 127.0.0.1.
pub fn https(
    port: u16,
    ca: &Path,
    method: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    json: Option<&str>,
) -> std::io::Result<HttpsResponse> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(std::io::Error::other)? {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);

    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some((user, password)) = basic {
        let creds = STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {creds}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tls.write_all(request.as_bytes())?;
    tls.flush()?;

    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify after a whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<HttpsResponse> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("truncated chunk"))?;
            let size = std::str::from_utf8(&rest[..eol])
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            let chunk = rest
                .get(eol + 2..eol + 2 + size)
                .ok_or_else(|| bad("truncated chunk"))?;
            body.extend_from_slice(chunk);
            rest = rest.get(eol + 4 + size..).unwrap_or_default();
        }
        body
    } else {
        rest.to_vec()
    };
    Ok(HttpsResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `serve --dev` alone on a fresh data dir: master key (0600), dev
/// certificate, HTTPS with it, the first admin printed once and working.
/// `serve --dev` on `data` and a free port, answering HTTPS with its own
/// certificate, past its last start-up line.
pub fn start_dev_server(data: &Path) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data_arg = data.to_str().unwrap();
    let args = [
        "serve",
        "--dev",
        "--data-dir",
        data_arg,
        "--listen",
        &listen,
    ];
    wait_for_dev_server(Server::spawn(asapd_bare(&args), port), data)
}

/// Waits for a `serve --dev` on `data` to serve HTTPS, past its last
/// start-up line.
pub fn wait_for_dev_server(server: Server, data: &Path) -> Server {
    // The certificate is written before the server listens; wait for it,
    // then for HTTPS that only it can vouch for.
    let cert = data.join("dev-cert.pem");
    let deadline = Instant::now() + START_TIMEOUT;
    while !cert.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = server.healthy_https(&cert);
    // Printed after the listener is up: the last line, on stderr.
    server.wait_for_output("asapd --dev: serving");
    server
}

#[test]
fn serve_dev_alone_bootstraps_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cert = data.join("dev-cert.pem");

    let server = start_dev_server(&data);
    let port = server.port;

    let stdout = server.stdout();
    let secret_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("client_secret:"))
        .collect();
    assert_eq!(secret_lines.len(), 1, "secret printed once: {stdout}");
    let secret = secret_lines[0]
        .trim_start_matches("client_secret:")
        .trim()
        .to_owned();
    assert!(secret.starts_with("asapd_"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("client_id:") && l.trim_end().ends_with(" admin")),
        "{stdout}"
    );
    let stderr = server.stderr();
    assert!(
        stderr.contains(&cert.display().to_string()),
        "dev certificate path on stderr: {stderr}"
    );
    assert!(!stderr.contains(&secret), "the secret only on stdout");

    let master_key = data.join("master.key");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&master_key).unwrap().permissions().mode()
    };
    assert_eq!(mode & 0o777, 0o600, "master.key is owner-only");
    MasterKey::from_base64(&std::fs::read_to_string(&master_key).unwrap())
        .expect("master.key holds a master key");

    let list_callers = |port: u16, secret: &str| {
        https(
            port,
            &cert,
            "GET",
            "/v1/admin/callers",
            Some(("admin", secret)),
            None,
        )
        .unwrap()
    };
    let callers = list_callers(port, &secret);
    assert_eq!(callers.status, 200, "{}", callers.body);
    assert!(callers.body.contains("\"admin\""), "{}", callers.body);
    let wrong = list_callers(port, "asapd_wrong");
    assert_eq!(wrong.status, 401);
    server.stop();

    // Second start on the same data dir: same certificate, same key, the
    // same admin, and no secret printed.
    let cert_before = std::fs::read(&cert).unwrap();
    let server = start_dev_server(&data);
    let callers = list_callers(server.port, &secret);
    assert_eq!(callers.status, 200, "{}", callers.body);
    let output = server.stop();
    assert!(!output.contains("client_secret"), "{output}");
    assert!(!output.contains(&secret), "{output}");
    assert_eq!(std::fs::read(&cert).unwrap(), cert_before);
}

/// A dev certificate pair with one half deleted by hand is made anew, and
/// the server starts and answers HTTPS with the new certificate.
#[test]
fn serve_dev_remakes_a_half_deleted_certificate_pair() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    start_dev_server(&data).stop();
    let cert = data.join("dev-cert.pem");
    let first = std::fs::read(&cert).unwrap();
    std::fs::remove_file(&cert).unwrap();
    // start_dev_server waits for HTTPS trusting only the new dev-cert.pem.
    let server = start_dev_server(&data);
    assert_ne!(std::fs::read(&cert).unwrap(), first, "a new certificate");
    server.stop();
}

/// A self-signed certificate for 127.0.0.1 written to `dir`; (cert, key).
fn operator_certificate(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// `--tls-cert`/`--tls-key`: HTTPS with exactly that certificate; one
/// without the other stops the start and names both flags.
#[tokio::test]
async fn operator_certificate_serves_https_and_half_a_pair_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::fresh_database_url(dir.path()).await;
    let master = MasterKey::generate_base64();
    let (cert, key) = operator_certificate(dir.path(), "op");
    let (other_cert, _) = operator_certificate(dir.path(), "other");
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let secret = init_admin(dir.path(), &db, &master);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "serve",
        "--listen",
        &listen,
        "--tls-cert",
        cert_arg,
        "--tls-key",
        key_arg,
    ];
    let cmd = asapd(&args, dir.path(), &db, Some(&master));
    // Blocking calls: this test's runtime has nothing else to run.
    let server = Server::spawn(cmd, port).healthy_https(&cert);
    let res = https(
        port,
        &cert,
        "GET",
        "/v1/admin/callers",
        Some(("admin", &secret)),
        None,
    );
    let other = https(port, &other_cert, "GET", "/healthz", None, None);
    let plain = https(port, &cert, "GET", "/healthz", None, None);
    let res = res.unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(plain.unwrap().status, 200);
    assert!(
        other.is_err(),
        "a client trusting another certificate must refuse: {other:?}"
    );
    assert!(
        crate::helpers::http()
            .get(server.url("/healthz"))
            .send()
            .await
            .is_err(),
        "no plain HTTP on the TLS port"
    );
    assert!(
        !dir.path().join("dev-cert.pem").exists(),
        "no dev certificate"
    );
    server.stop();

    for dev in [false, true] {
        for (flag, file) in [("--tls-cert", cert_arg), ("--tls-key", key_arg)] {
            let mut args = vec!["serve", "--listen", "127.0.0.1:0", flag, file];
            if dev {
                args.push("--dev");
            }
            let out = output_within(asapd(&args, dir.path(), &db, Some(&master)));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "only {flag} (dev: {dev}): {stderr}");
            assert!(
                stderr.contains("--tls-cert") && stderr.contains("--tls-key"),
                "only {flag} (dev: {dev}): {stderr}"
            );
        }
    }
}

/// `serve` without `--dev` on a database with no admin says so, and how to
/// make one; once `asapd init` has run, it does not.
#[tokio::test]
async fn serve_without_an_admin_warns_that_init_creates_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::fresh_database_url(dir.path()).await;
    let master = MasterKey::generate_base64();
    let server = Server::start(dir.path(), &db, &master).await;
    server.wait_for_output("no admin yet");
    let output = server.stop();
    let line = output.lines().find(|l| l.contains("no admin yet")).unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("asapd init"), "{line}");

    init_admin(dir.path(), &db, &master);
    let output = Server::start(dir.path(), &db, &master).await.stop();
    assert!(output.contains("asapd listening"), "{output}");
    assert!(!output.contains("no admin yet"), "{output}");
}

/// Every log line of a request carries its request id, through the
/// request's span: here a warning logged deep in the store layer when the
/// database is unavailable, in the JSON log format.
#[tokio::test]
async fn a_warning_inside_a_request_carries_its_request_id() {
    use sqlx::Connection;

    let dir = tempfile::tempdir().unwrap();
    // SQLite whatever the suite runs on: this is about logs, and an
    // exclusive lock makes the outage that provokes the warning.
    let db = format!("sqlite://{}", dir.path().join("asapd.db").display());
    let master = MasterKey::generate_base64();
    let secret = init_admin(dir.path(), &db, &master);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = asapd(
        &["serve", "--listen", &listen],
        dir.path(),
        &db,
        Some(&master),
    );
    // warn: the span must not depend on INFO lines being on.
    cmd.env("ASAPD_LOG_FORMAT", "json").env("ASAPD_LOG", "warn");
    let server = Server::spawn(cmd, port).healthy().await;

    let mut lock = sqlx::SqliteConnection::connect(&db).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    let res = crate::helpers::http()
        .post(server.url("/v1/admin/groups"))
        .basic_auth("admin", Some(&secret))
        .header("x-request-id", "req-span-1")
        .json(&serde_json::json!({"name": "g", "audiences": ["x"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();

    server.wait_for_output("database unavailable");
    let output = server.stop();
    let warning: serde_json::Value = output
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["level"] == "WARN" && l["fields"]["message"] == "database unavailable")
        .unwrap_or_else(|| panic!("no database warning: {output}"));
    assert_eq!(warning["span"]["name"], "request", "{warning}");
    assert_eq!(warning["span"]["request_id"], "req-span-1", "{warning}");
    assert_eq!(warning["span"]["method"], "POST", "{warning}");
    assert_eq!(warning["span"]["path"], "/v1/admin/groups", "{warning}");
    // The cause travels with it, not just "database unavailable".
    let error = warning["fields"]["error"].as_str().unwrap();
    assert!(error.contains("locked"), "{warning}");
}

/// `cmd` run by a shell that first sets the umask to 022, the common
/// default that leaves new files world-readable.
pub fn under_umask_022(cmd: &Command) -> Command {
    let mut sh = Command::new("sh");
    sh.args(["-c", "umask 022 && exec \"$@\"", "sh"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(name, value),
            None => sh.env_remove(name),
        };
    }
    sh
}
