//! In-process JWT signing rate, on one core and on all of them (`make bench`
//! runs this).
//!
//! One key per algorithm, a fixed time per variant; prints one JSON object
//! on stdout. Variants, for ES256 and RS256, each on one thread:
//!
//! - `jwt_cached`: `jsonwebtoken::encode` with an `EncodingKey` built once.
//! - `jwt_parse_per_call`: the `EncodingKey` rebuilt from DER inside the loop.
//! - `asapd_kept`: asapd's own signing path, `crypto::JwsSigner` (an
//!   aws-lc-rs key pair parsed once and kept, the header encoded once): the
//!   "signing keys are parsed once" of docs/ARCHITECTURE.md, "Invariants".
//!
//! and `asapd_kept_all_cores`: the same signer on N threads at once, N =
//! `available_parallelism()`, each thread holding its own `Arc` handle of
//! the one kept `JwsSigner` (as the server's workers do), all measured over
//! the same `--secs` window after a common start. Its aggregate rate is the
//! sign rate of the issuance ceiling, since the server signs on every core;
//! the one-thread rate understates it by up to N times.
//!
//! The first two are expected to be close: jsonwebtoken 11's aws_lc_rs
//! backend re-parses the private key inside every `encode` (EcdsaKeyPair::
//! from_pkcs8 in its signer factory, RsaKeyPair::from_der in its RSA signer);
//! an `EncodingKey` is only the DER bytes. That is why asapd signs through
//! aws-lc-rs directly. Every variant's last token (every thread's, for the
//! all-cores variant) is verified, so a variant that signs garbage fails the
//! bench instead of reporting a rate.
//!
//! Then ES256 verification (`ES256_verify_jwt`, `ES256_verify_kept`,
//! `ES256_verify_kept_all_cores`): the other half of introspection's
//! ceiling, see `verify_rates`.
//!
//! JSON keys: `{ALG}_{variant}` (calls per wall-clock second) and
//! `{ALG}_{variant}_per_cpu_s` (calls per second of the measuring threads'
//! own CPU time, summed over threads); `threads` (1, the one-thread
//! variants) and `all_cores_threads` (N).
//!
//! Usage: cargo bench --bench sign [-- --secs 2] [--verify-only]
//!
//! `--verify-only` measures the ES256 verification rates alone: `make
//! bench` takes them again right before each introspection load, so that
//! introspection's ceiling comes from the same minute as the load it
//! judges (this machine's speed drifts by ±15 % from minute to minute).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use asapd::crypto::jws::Jws;
use asapd::crypto::{JwsSigner, JwsVerifier, KeyPair};
use asapd::domain::algorithm::Algorithm;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[path = "support/common.rs"]
mod common;
use common::{secs_arg, thread_cpu_secs};

/// The claims asapd puts in a token (step 7 of docs/ARCHITECTURE.md, "The path of a token request").
#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    jti: String,
    iat: u64,
    exp: u64,
}

fn claims(n: u64) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Claims {
        iss: "bench-caller".into(),
        sub: "bench-caller".into(),
        aud: "svc-b".into(),
        // 128 bits written as hex, like a random jti; a counter keeps the
        // RNG out of the signing measurement.
        jti: format!("{n:032x}"),
        iat: now,
        exp: now + 60,
    }
}

/// What one variant measured (on one thread, or summed over threads).
struct Rate {
    /// Calls per wall-clock second.
    wall: f64,
    /// Calls per second of the measuring threads' CPU time: what an
    /// uncontended core does, whatever else the machine was running meanwhile.
    cpu: Option<f64>,
    count: u64,
    cpu_secs: Option<f64>,
    /// The last token of each measuring thread.
    last: Vec<String>,
}

/// Calls `f` for `secs` (after a short warm-up and, with `start`, after
/// every other thread of the barrier has warmed up too) and returns its
/// rates and the last token produced.
fn rate(secs: f64, start: Option<&Barrier>, mut f: impl FnMut(u64) -> String) -> Rate {
    let warm = Instant::now();
    let mut n = 0u64;
    while warm.elapsed() < Duration::from_millis(300) {
        f(n);
        n += 1;
    }
    if let Some(barrier) = start {
        barrier.wait();
    }
    let budget = Duration::from_secs_f64(secs);
    let cpu0 = thread_cpu_secs();
    let start = Instant::now();
    let mut count = 0u64;
    let mut last = String::new();
    while start.elapsed() < budget {
        last = f(n + count);
        count += 1;
    }
    let wall = count as f64 / start.elapsed().as_secs_f64();
    let cpu_secs = match (cpu0, thread_cpu_secs()) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    Rate {
        wall,
        cpu: cpu_secs.map(|c| count as f64 / c),
        count,
        cpu_secs,
        last: vec![last],
    }
}

/// `threads` threads calling `f` (each with its own handle of what it
/// holds, e.g. the same kept signer) over the same window: the summed rate
/// (calls per wall-clock second, and per second of the threads' summed CPU
/// time) and every thread's last token. `f` gets distinct numbers per
/// thread (distinct jtis, as the server's would be).
fn rate_all_cores(secs: f64, threads: usize, f: Arc<dyn Fn(u64) -> String + Send + Sync>) -> Rate {
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads as u64)
        .map(|t| {
            let f = Arc::clone(&f);
            let start = Arc::clone(&start);
            std::thread::spawn(move || rate(secs, Some(&start), |n| f((t << 48) + n)))
        })
        .collect();
    let rates: Vec<Rate> = handles
        .into_iter()
        .map(|h| h.join().expect("signing thread"))
        .collect();
    let count = rates.iter().map(|r| r.count).sum::<u64>();
    let cpu_secs = rates
        .iter()
        .map(|r| r.cpu_secs)
        .sum::<Option<f64>>()
        .filter(|&c| c > 0.0);
    Rate {
        // Every thread measured the same window: their rates add up.
        wall: rates.iter().map(|r| r.wall).sum(),
        cpu: cpu_secs.map(|c| count as f64 / c),
        count,
        cpu_secs,
        last: rates.into_iter().flat_map(|r| r.last).collect(),
    }
}

fn record(out: &mut serde_json::Map<String, serde_json::Value>, key: String, r: &Rate) {
    out.insert(key.clone(), json!(r.wall.round()));
    out.insert(format!("{key}_per_cpu_s"), json!(r.cpu.map(f64::round)));
}

fn verify_all(r: &Rate, alg: jsonwebtoken::Algorithm, pem: &str, variant: &str) {
    assert!(
        !r.last.is_empty() && r.count > 0,
        "{variant}: nothing signed"
    );
    for token in &r.last {
        verify(token, alg, pem, variant);
    }
}

fn verify(token: &str, alg: jsonwebtoken::Algorithm, pem: &str, variant: &str) {
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => DecodingKey::from_ec_pem(pem.as_bytes()),
        _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .expect("public PEM parses");
    let mut validation = Validation::new(alg);
    validation.set_audience(&["svc-b"]);
    if let Err(e) = jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        panic!("{variant}: the token it produced does not verify: {e}");
    }
}

/// ES256 verification, the other half of introspection's ceiling: with
/// jsonwebtoken's `decode` (the key re-parsed inside every call), and with
/// asapd's kept `JwsVerifier` (what introspection does: split once, verify
/// with the parsed key, then parse the claims) on one thread and on every
/// core at once (`ES256_verify_kept_all_cores`, the ceiling's verify rate).
fn verify_rates(
    out: &mut serde_json::Map<String, serde_json::Value>,
    secs: f64,
    cores: usize,
    signer: &JwsSigner,
    public: &asapd::crypto::PublicKey,
) {
    let token = signer.sign(&claims(1)).unwrap();
    let key = DecodingKey::from_ec_pem(public.pem.as_bytes()).unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["svc-b"]);
    let r = rate(secs, None, |_| {
        let data = jsonwebtoken::decode::<Claims>(&token, &key, &validation).unwrap();
        data.claims.jti
    });
    record(out, "ES256_verify_jwt".into(), &r);
    let verifier = JwsVerifier::new(Algorithm::ES256, public).unwrap();
    let kept = Arc::new(move |_| {
        let jws = Jws::parse(&token).expect("a compact JWS");
        let payload = jws.verify(&verifier).expect("it verifies");
        serde_json::from_slice::<Claims>(&payload).unwrap().jti
    });
    let r = rate(secs, None, |n| kept(n));
    assert_eq!(r.last, [format!("{:032x}", 1)], "verified claims");
    record(out, "ES256_verify_kept".into(), &r);
    let r = rate_all_cores(secs, cores, kept);
    record(out, "ES256_verify_kept_all_cores".into(), &r);
}

fn main() {
    let secs = secs_arg(2.0);

    let mut out = serde_json::Map::new();
    out.insert("secs_per_variant".into(), json!(secs));
    out.insert("threads".into(), json!(1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    out.insert("all_cores_threads".into(), json!(cores));
    if std::env::args().any(|a| a == "--verify-only") {
        let pair = KeyPair::generate(Algorithm::ES256).expect("key generation");
        let public = pair.public.clone();
        let signer = JwsSigner::new("bench-caller/es256-key".into(), pair);
        verify_rates(&mut out, secs, cores, &signer, &public);
        println!("{}", serde_json::Value::Object(out));
        return;
    }

    for algorithm in [Algorithm::ES256, Algorithm::RS256] {
        let pair = KeyPair::generate(algorithm).expect("key generation");
        let name = algorithm.as_str();
        let jwt_alg: jsonwebtoken::Algorithm = name.parse().unwrap();
        let mut header = Header::new(jwt_alg);
        header.kid = Some(format!("bench-caller/{}-key", name.to_lowercase()));
        header.typ = Some("JWT".into());
        let pem = pair.public.pem.clone();
        let pkcs8 = pair.pkcs8_der().to_vec();
        // What each jsonwebtoken constructor wants: PKCS#8 for EC, PKCS#1 for RSA.
        let jwt_der = match algorithm {
            Algorithm::ES256 => pkcs8.clone(),
            _ => rsa::RsaPrivateKey::from_pkcs8_der(&pkcs8)
                .unwrap()
                .to_pkcs1_der()
                .unwrap()
                .as_bytes()
                .to_vec(),
        };
        let build_key = |der: &[u8]| match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_der(der),
            _ => EncodingKey::from_rsa_der(der),
        };

        // 1. jsonwebtoken, EncodingKey built once.
        let cached = build_key(&jwt_der);
        let r = rate(secs, None, |n| {
            jsonwebtoken::encode(&header, &claims(n), &cached).unwrap()
        });
        verify_all(&r, jwt_alg, &pem, "jwt_cached");
        record(&mut out, format!("{name}_jwt_cached"), &r);

        // 2. jsonwebtoken, EncodingKey built from DER on every call.
        let r = rate(secs, None, |n| {
            jsonwebtoken::encode(&header, &claims(n), &build_key(&jwt_der)).unwrap()
        });
        verify_all(&r, jwt_alg, &pem, "jwt_parse_per_call");
        record(&mut out, format!("{name}_jwt_parse_per_call"), &r);

        // 3. asapd's signer: the key pair parsed once and kept.
        let kid = header.kid.clone().unwrap();
        let signer = Arc::new(JwsSigner::new(
            kid,
            KeyPair::from_pkcs8_der(algorithm, &pkcs8).unwrap(),
        ));
        let r = rate(secs, None, |n| signer.sign(&claims(n)).unwrap());
        verify_all(&r, jwt_alg, &pem, "asapd_kept");
        record(&mut out, format!("{name}_asapd_kept"), &r);

        // 4. The same signer on every core at once: the ceiling's sign rate.
        let kept = Arc::clone(&signer);
        let r = rate_all_cores(
            secs,
            cores,
            Arc::new(move |n| kept.sign(&claims(n)).unwrap()),
        );
        verify_all(&r, jwt_alg, &pem, "asapd_kept_all_cores");
        record(&mut out, format!("{name}_asapd_kept_all_cores"), &r);
        if algorithm == Algorithm::ES256 {
            verify_rates(&mut out, secs, cores, &signer, &pair.public);
        }
        eprintln!("sign: {name} done");
    }
    println!("{}", serde_json::Value::Object(out));
}
