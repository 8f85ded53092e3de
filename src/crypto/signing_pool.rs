//! Token signatures, with the key pair the key ring keeps parsed, and the
//! pool that keeps large RSA signatures off the async workers.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::signer::Signer;
use super::JwsSigner;
use crate::domain::algorithm::KeyType;

/// Admits twice as many large-RSA signatures at a time as there are cores.
///
/// An RSA signature (0.5 ms for RS256, several for RS512) would stall an
/// async worker, so it runs on tokio's blocking pool; unbounded, 64
/// concurrent requests meant 64 blocking threads fighting over two cores
/// (and a heap each). Exactly one per core left the cores idle between a
/// signature and the wake-up of the next waiter (wrk -c64 RS256: 1.9k/s
/// against 2.2k-2.3k/s with two per core). A waiter holds no thread.
pub struct SigningPool {
    permits: Semaphore,
}

impl SigningPool {
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            permits: Semaphore::new(cores * 2),
        }
    }
}

impl Default for SigningPool {
    fn default() -> Self {
        Self::new()
    }
}

/// RSA keys up to this size sign in place, on the request's worker.
///
/// A 2048-bit signature (~0.25 ms here) costs what the RSA signature of a
/// TLS handshake costs, and actix workers already do those in place. The
/// hop to the blocking pool left cores idle between hand-offs: RS256 under
/// 64 connections used 1.69 of 2 cores that way, 1.88 in place, for ~9 %
/// more tokens/s at the same CPU per token (`bash benches/quick.sh RS256`).
/// 3072- and 4096-bit signatures (3-8x dearer) still leave the worker.
const RSA_IN_PLACE_MAX_BITS: usize = 2048;

/// Signs with the cached, parsed key pair (docs/ARCHITECTURE.md, "Invariants"). ECDSA and RSA-2048
/// are cheaper than a hop to another thread and sign in place; a key in a
/// PKCS#11 token signs on the blocking pool, one per token session.
pub async fn sign(
    pool: &SigningPool,
    signer: Arc<JwsSigner>,
    payload: Value,
) -> anyhow::Result<String> {
    let algorithm = signer.key.algorithm();
    if let Signer::Pkcs11(key) = &signer.key {
        // A token call blocks for as long as the token takes: never on an
        // async worker, and no more at once than there are sessions.
        let token = key.token.clone();
        let _permit = token.permits().acquire().await?;
        return Ok(tokio::task::spawn_blocking(move || signer.sign(&payload)).await??);
    }
    let run = move || signer.sign(&payload);
    let signed = match algorithm.key_type() {
        KeyType::Rsa { bits } if bits > RSA_IN_PLACE_MAX_BITS => {
            let _permit = pool.permits.acquire().await?;
            tokio::task::spawn_blocking(run).await?
        }
        KeyType::Rsa { .. } | KeyType::P256 | KeyType::P384 => run(),
    };
    Ok(signed?)
}

/// 144 random bits, URL-safe: unique without coordination between replicas.
/// From the thread-local CSPRNG (ChaCha12, seeded and reseeded from the OS),
/// not a `getrandom` syscall per token: the syscall was 1 % of the server's
/// CPU under ES256 load (`benches/profile.sh tokens`). A jti must be
/// unpredictable and unique, which a CSPRNG gives; it is no key.
pub fn new_jti() -> String {
    let mut bytes = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
