//! Log lines as a log collector reads them.

use asapd::crypto::MasterKey;

use crate::helpers::fresh_database_url;
use crate::process::Server;

/// Standard error is a pipe here, as under systemd, docker or a file
/// redirect: no ANSI colour codes in the lines.
#[tokio::test]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    let key = MasterKey::generate_base64();
    let server = Server::start(dir.path(), &db, &key).await;
    server.wait_for_output("asapd listening");
    let stderr = server.stop();
    assert!(stderr.contains("asapd listening"), "{stderr}");
    assert!(!stderr.contains("\x1b["), "colour codes in: {stderr:?}");
}
