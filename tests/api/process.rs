//! Running the real `asapd` binary, for what only a process shows: its
//! logs, its exit on bad configuration, its restart.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_asapd");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command with a clean `ASAPD_*` environment.
pub fn asapd(
    args: &[&str],
    data_dir: &Path,
    database_url: &str,
    master_key: Option<&str>,
) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ASAPD_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .arg("--data-dir")
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
    output: Arc<Mutex<String>>,
}

fn capture(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl Server {
    /// Starts `serve` and waits until /healthz answers.
    pub async fn start(data_dir: &Path, database_url: &str, master_key: &str) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = asapd(
            &["serve", "--listen", &listen],
            data_dir,
            database_url,
            Some(master_key),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn asapd");
        let output = Arc::new(Mutex::new(String::new()));
        capture(child.stdout.take().unwrap(), output.clone());
        capture(child.stderr.take().unwrap(), output.clone());
        let server = Server {
            child,
            port,
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{port}/healthz");
        while Instant::now() < deadline {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("asapd did not become healthy: {}", server.output());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
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
                assert!(status.success(), "graceful shutdown exits 0: {status}");
                std::thread::sleep(Duration::from_millis(100));
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
