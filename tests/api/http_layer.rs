//! The HTTP layer's own answers, spoken to in raw HTTP/1.1 over TCP and
//! TLS: a request head the server cannot parse gets problem+json like any
//! other error, and ordinary keep-alive traffic is left as it was.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use asapd::config::Settings;

use crate::helpers::{fresh_database_url, spawn_app_with, TestApp};
use crate::process;

/// actix-http's fixed limit on a request head.
const MAX_HEAD: usize = asapd::http::raw_errors::MAX_HEAD_BYTES;
/// Generous: the server answers in milliseconds, or when its head timeout
/// (short here) runs out for a 408.
const DEADLINE: Duration = Duration::from_secs(30);

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// An app served over plain HTTP, or over TLS with a certificate that
/// `ca` holds.
struct Server {
    app: TestApp,
    ca: Option<PathBuf>,
    _certs: Option<tempfile::TempDir>,
}

/// Changes to a test server's settings.
type Customise = fn(&mut Settings);

impl Server {
    async fn plain(customise: Customise) -> Self {
        Self {
            app: spawn_app_with(customise).await,
            ca: None,
            _certs: None,
        }
    }

    /// With a certificate of the operator's (`--tls-cert`/`--tls-key`),
    /// the path `serve --dev` takes too.
    async fn tls(customise: Customise) -> Self {
        let certs = tempfile::tempdir().unwrap();
        let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
        asapd::crypto::tls::ensure_dev_certificate(&cert, &key).unwrap();
        let app = spawn_app_with(|s| {
            customise(s);
            s.tls_cert = Some(cert.clone());
            s.tls_key = Some(key);
        })
        .await;
        Self {
            app,
            ca: Some(cert),
            _certs: Some(certs),
        }
    }

    async fn both() -> [Self; 2] {
        Self::both_with(|_| {}).await
    }

    async fn both_with(customise: Customise) -> [Self; 2] {
        [Self::plain(customise).await, Self::tls(customise).await]
    }

    fn name(&self) -> &'static str {
        if self.ca.is_some() {
            "tls"
        } else {
            "plain"
        }
    }

    async fn connect(&self) -> Box<dyn Conn> {
        let port = self.app.address.rsplit(':').next().unwrap();
        let tcp = TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let Some(ca) = &self.ca else {
            return Box::new(tcp);
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        Box::new(tls)
    }
}

/// One response read off a connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A connection and what has been read off it but not yet parsed.
struct Client {
    conn: Box<dyn Conn>,
    pending: Vec<u8>,
}

impl Client {
    async fn new(server: &Server) -> Self {
        Self::over(server.connect().await)
    }

    fn over(conn: Box<dyn Conn>) -> Self {
        Self {
            conn,
            pending: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).await.unwrap();
        self.conn.flush().await.unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.conn.read(&mut chunk).await.unwrap();
        self.pending.extend_from_slice(&chunk[..n]);
        n
    }

    /// The next response, framed by its `content-length`.
    async fn response(&mut self) -> Raw {
        tokio::time::timeout(DEADLINE, async {
            let end = loop {
                if let Some(at) = find(&self.pending, b"\r\n\r\n") {
                    break at;
                }
                let n = self.fill().await;
                assert!(n > 0, "closed before a response: {:?}", self.text());
            };
            let head = String::from_utf8(self.pending[..end].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap()[9..12].parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (n, v) = l.split_once(':').unwrap();
                    (n.to_owned(), v.trim().to_owned())
                })
                .collect();
            let mut raw = Raw {
                status,
                headers,
                body: Vec::new(),
            };
            let len: usize = raw.header("content-length").unwrap().parse().unwrap();
            while self.pending.len() < end + 4 + len {
                assert!(self.fill().await > 0, "closed inside a body");
            }
            raw.body = self.pending[end + 4..end + 4 + len].to_vec();
            self.pending.drain(..end + 4 + len);
            raw
        })
        .await
        .expect("an answer before the deadline")
    }

    /// The server closes the connection, with nothing more to say.
    async fn assert_closed(&mut self) {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let mut chunk = [0u8; 1024];
                match self.conn.read(&mut chunk).await {
                    Ok(0) => break,
                    Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                    // A TLS peer may close without close_notify; a
                    // plain one may reset once it has answered.
                    Err(_) => break,
                }
            }
        })
        .await
        .expect("the connection closes before the deadline");
        assert!(self.pending.is_empty(), "more after: {:?}", self.text());
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Asserts a problem+json answer of `status` whose detail mentions
/// `detail`, closing the connection; returns the document.
fn assert_problem(raw: &Raw, status: u16, slug: &str, detail: &str) -> Value {
    assert_eq!(raw.status, status, "{raw:?}");
    assert_eq!(raw.header("content-type"), Some("application/problem+json"));
    assert_eq!(raw.header("connection"), Some("close"));
    assert!(raw.header("date").is_some(), "{raw:?}");
    let id = raw.header("x-request-id").expect("x-request-id");
    let body: Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(body["type"], format!("urn:asapd:problem:{slug}"));
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], id);
    assert!(!body["title"].as_str().unwrap().is_empty());
    let text = body["detail"].as_str().unwrap();
    assert!(text.contains(detail), "{text}");
    body
}

/// Sends `request` on a fresh connection to each server; expects one
/// problem answer, then the close.
async fn expect_problem(request: &[u8], status: u16, slug: &str, detail: &str) {
    expect_problem_on(&Server::both().await, request, status, slug, detail).await;
}

async fn expect_problem_on(
    servers: &[Server],
    request: &[u8],
    status: u16,
    slug: &str,
    detail: &str,
) {
    // At once: the 408 takes the server's whole wait on each.
    futures_util::future::join_all(servers.iter().map(|server| async move {
        let mut client = Client::new(server).await;
        client.send(request).await;
        let raw = client.response().await;
        assert_problem(&raw, status, slug, detail);
        client.assert_closed().await;
    }))
    .await;
}

const NOT_HTTP: &str = "not valid HTTP/1.1";
const TOO_LARGE: &str = "at most 131072 bytes and 96 header fields";

#[tokio::test]
async fn a_nul_in_a_header_is_a_400_problem() {
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Trace: a\0b\r\n\r\n";
    expect_problem(request, 400, "bad-request", NOT_HTTP).await;
}

#[tokio::test]
async fn a_malformed_request_line_is_a_400_problem() {
    expect_problem(b"GET /healthz HTTP/9\r\n\r\n", 400, "bad-request", NOT_HTTP).await;
}

/// The head is sent up to the limit exactly: the server reads all of it
/// before it answers, so the close cannot turn into a reset that loses
/// the answer.
#[tokio::test]
async fn an_over_long_url_is_a_431_problem() {
    let mut request = b"GET /v1/keys/".to_vec();
    request.resize(MAX_HEAD, b'a');
    expect_problem(&request, 431, "request-header-fields-too-large", TOO_LARGE).await;
}

#[tokio::test]
async fn a_header_block_over_the_limit_is_a_431_problem() {
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    // Forty fields of 4 KiB: within the field count, over the bytes.
    for i in 0..40 {
        request.extend_from_slice(format!("X-Filler-{i}: ").as_bytes());
        request.resize(request.len() + 4096, b'f');
        request.extend_from_slice(b"\r\n");
    }
    request.truncate(MAX_HEAD);
    expect_problem(&request, 431, "request-header-fields-too-large", TOO_LARGE).await;
}

#[tokio::test]
async fn too_many_header_fields_is_a_431_problem() {
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..100 {
        request.extend_from_slice(format!("X-Field-{i}: 1\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    expect_problem(&request, 431, "request-header-fields-too-large", TOO_LARGE).await;
}

const HALF_A_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";

/// A head that stops half-way is answered when the server stops waiting
/// for it: after `http.request_head_timeout_ms`, not before.
#[tokio::test]
async fn a_head_that_never_ends_is_a_408_problem() {
    let servers = Server::both_with(|s| s.http.request_head_timeout_ms = 300).await;
    let started = std::time::Instant::now();
    expect_problem_on(
        &servers,
        HALF_A_HEAD,
        408,
        "request-timeout",
        "did not arrive within 300 ms",
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// The setting from the environment, as operators give it, in whole
/// seconds; the binary knows the variable (no "unknown" warning).
#[tokio::test]
async fn the_head_timeout_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = asapd::crypto::MasterKey::generate_base64();
    let port = process::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = process::asapd(&["serve", "--listen", &listen], dir.path(), &db, Some(&key));
    cmd.env("ASAPD_HTTP__REQUEST_HEAD_TIMEOUT_MS", "1000");
    let server = process::Server::spawn(cmd, port).healthy().await;
    let tcp = TcpStream::connect(&listen).await.unwrap();
    let mut client = Client::over(Box::new(tcp));
    client.send(HALF_A_HEAD).await;
    let raw = client.response().await;
    assert_problem(&raw, 408, "request-timeout", "within 1 second");
    let output = server.stop();
    assert!(!output.contains("unknown environment variable"), "{output}");
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

fn assert_healthy(raw: &Raw) {
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(raw.header("content-type"), Some("application/json"));
    assert!(raw.header("x-request-id").is_some());
    assert_eq!(raw.header("connection"), None, "kept alive");
    assert_eq!(raw.body, br#"{"status":"ok"}"#);
}

/// Several requests in a row on one connection, one after the other and
/// pipelined, each answered in full and the connection kept; an app error
/// on it is the app's own problem+json, and keeps it too.
#[tokio::test]
async fn a_keep_alive_connection_serves_requests_in_a_row() {
    for server in Server::both().await {
        let mut client = Client::new(&server).await;
        for _ in 0..3 {
            client.send(HEALTHZ).await;
            assert_healthy(&client.response().await);
        }
        client.send(&[HEALTHZ, HEALTHZ, HEALTHZ].concat()).await;
        for _ in 0..3 {
            assert_healthy(&client.response().await);
        }
        client
            .send(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let missing = client.response().await;
        assert_eq!(missing.status, 404, "{}", server.name());
        assert_eq!(missing.header("connection"), None);
        client.send(HEALTHZ).await;
        assert_healthy(&client.response().await);
    }
}

/// A bad head after good requests on a kept-alive connection: the good
/// ones are answered as usual, then the bad one with problem+json, whether
/// it came after the answers or in the same write as a good request.
#[tokio::test]
async fn a_bad_head_on_a_kept_alive_connection_is_a_problem() {
    let bad = b"GET /healthz HTTP/1.1\r\nX-Trace: a\0b\r\n\r\n";
    for server in Server::both().await {
        let mut client = Client::new(&server).await;
        client.send(HEALTHZ).await;
        assert_healthy(&client.response().await);
        client.send(bad).await;
        assert_problem(&client.response().await, 400, "bad-request", NOT_HTTP);
        client.assert_closed().await;

        let mut client = Client::new(&server).await;
        client.send(&[HEALTHZ, bad].concat()).await;
        assert_healthy(&client.response().await);
        assert_problem(&client.response().await, 400, "bad-request", NOT_HTTP);
        client.assert_closed().await;
    }
}

/// Bodies sent slower than `http.body_timeout_secs` (1 s here), fifty at
/// once, each get a 408 problem once the time is up, and every connection
/// is closed.
#[tokio::test]
async fn a_body_that_trickles_is_a_408_problem_and_the_connection_closes() {
    use base64::Engine;
    let server = Server {
        app: spawn_app_with(|s| s.http.body_timeout_secs = 1).await,
        ca: None,
        _certs: None,
    };
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("admin:{}", server.app.admin_secret));
    let head = format!(
        "POST /v1/admin/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let started = std::time::Instant::now();
    futures_util::future::join_all((0..50).map(|_| async {
        let mut client = Client::new(&server).await;
        client.send(head.as_bytes()).await;
        client.send(b"{\"name\":").await;
        let raw = client.response().await;
        assert_problem(&raw, 408, "request-timeout", "within 1 seconds");
        client.assert_closed().await;
    }))
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// A body the handler never reads (the caller is refused first) does not
/// keep the connection open while it trickles in: answered, then closed.
#[tokio::test]
async fn an_unread_body_does_not_hold_the_connection() {
    let server = Server::plain(|_| {}).await;
    let mut client = Client::new(&server).await;
    client
        .send(
            b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Basic bm86bm8=\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await;
    let raw = client.response().await;
    assert_eq!(raw.status, 401, "{raw:?}");
    assert_eq!(raw.header("connection"), Some("close"), "{raw:?}");
    client.assert_closed().await;
}

/// Malformed request heads, which anyone can send, leave no ERROR line in
/// the log: one WARN line counts them.
#[tokio::test]
async fn malformed_heads_are_not_logged_as_errors() {
    use crate::process::Server as Process;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::fresh_database_url(dir.path()).await;
    let key = asapd::crypto::MasterKey::generate_base64();
    crate::process::init_admin(dir.path(), &db, &key);
    let server = Process::start(dir.path(), &db, &key).await;
    for request in [
        &b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Trace: a\0b\r\n\r\n"[..],
        b"GET /healthz HTTP/9\r\n\r\n",
    ] {
        let mut conn = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        conn.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, conn.read_to_end(&mut answer))
            .await
            .expect("answered and closed")
            .ok();
        assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    }
    server.wait_for_output("refused request heads");
    let log = server.stop();
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(log.matches("refused request heads").count(), 1, "{log}");
}
