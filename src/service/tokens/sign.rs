//! Step 7: the signature, with the key pair the key ring keeps parsed.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::Value;

use super::IssueError;
use crate::crypto::JwsSigner;
use crate::domain::algorithm::KeyType;
use crate::error::ApiError;

/// Signs with the cached, parsed key pair (DESIGN §8). RSA signatures take
/// long enough to stall an async worker, so they run on the blocking pool;
/// ECDSA is cheaper than the hop.
pub(super) async fn sign(signer: Arc<JwsSigner>, payload: Value) -> Result<String, IssueError> {
    let algorithm = signer.key.algorithm;
    let run = move || signer.sign(&payload);
    let signed = match algorithm.key_type() {
        KeyType::Rsa { .. } => tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| IssueError::Failed(ApiError::internal(e)))?,
        KeyType::P256 | KeyType::P384 => run(),
    };
    signed.map_err(|e| IssueError::Failed(ApiError::internal(e)))
}

/// 144 random bits, URL-safe: unique without coordination between replicas.
pub(super) fn new_jti() -> String {
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
