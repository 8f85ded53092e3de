//! Signing in a PKCS#11 token (SoftHSM2), raw and through asapd (`make
//! bench` runs this): what the PKCS#11 path costs beyond the token itself.
//!
//! For ES256 and RS256, one key made in a fresh SoftHSM2 token by asapd's
//! own `crypto::signer::pkcs11::Token`, then, each for a fixed time:
//!
//! - `{ALG}_pkcs11_raw`: `C_Sign` in a loop on one logged-in session with a
//!   cryptoki handle found once: the token's own rate, the floor of any
//!   caller (CKM_ECDSA over a 32-byte digest; CKM_SHA256_RSA_PKCS over a
//!   250-byte message, the size of a token's signing input);
//! - `{ALG}_pkcs11_asapd`: `JwsSigner::sign` of a token's claims with the
//!   key held in the token, one thread: the JSON, base64, digest, session
//!   pool and handle cache asapd adds around the same `C_Sign`;
//! - `{ALG}_pkcs11_asapd_sessions`: the same on `sessions` threads at once
//!   (each taking its own session from the pool), as the server signs.
//!
//! The raw and asapd variants run interleaved, five slices each, so a
//! neighbour's load weighs on both alike, and each is also measured in the
//! measuring thread's CPU time per signature (SoftHSM2 signs in the calling
//! thread), which neighbours disturb far less than wall time:
//! `{ALG}_pkcs11_overhead_us` = asapd's CPU µs per signature − raw's, the
//! time asapd adds to each signature on this path (`…_overhead_wall_us`:
//! the same from the wall-clock rates). Prints one JSON object. Needs
//! softhsm2-util and the module (`ASAPD_TEST_PKCS11_MODULE` or Debian's
//! path).
//!
//! Usage: cargo bench --bench pkcs11_sign [-- --secs 2]

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use asapd::crypto::signer::pkcs11::{object_id, Pin, Token, TokenConfig};
use asapd::crypto::signer::{Signer, TokenKey};
use asapd::crypto::JwsSigner;
use asapd::domain::algorithm::Algorithm;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use serde_json::json;

#[path = "support/common.rs"]
mod common;
use common::{secs_arg, thread_cpu_secs};

const LABEL: &str = "asapd-bench";
const PIN: &str = "0123456";

fn module() -> PathBuf {
    std::env::var("ASAPD_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into())
}

/// A fresh token in `dir`; sets `SOFTHSM2_CONF` for this process, which
/// has no other thread yet.
fn make_token(dir: &std::path::Path) {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let ok = std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--so-pin",
            "87654321",
            "--pin",
            PIN,
        ])
        .output()
        .expect("softhsm2-util (Debian softhsm2)")
        .status
        .success();
    assert!(ok, "softhsm2-util --init-token failed");
}

/// Calls `f` for `secs` after a 300 ms warm-up (and after every thread of
/// `start` has warmed up); calls per second.
fn rate(secs: f64, start: Option<&Barrier>, mut f: impl FnMut(u64)) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        f(0);
    }
    if let Some(barrier) = start {
        barrier.wait();
    }
    let budget = Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < budget {
        f(n);
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Calls made, wall seconds and this thread's CPU seconds.
#[derive(Default)]
struct Tally {
    count: u64,
    wall: f64,
    cpu: f64,
}

impl Tally {
    fn add(&mut self, secs: f64, n0: u64, f: &mut impl FnMut(u64)) {
        let (t0, c0) = (Instant::now(), thread_cpu_secs().unwrap_or(0.0));
        let budget = Duration::from_secs_f64(secs);
        let mut n = 0;
        while t0.elapsed() < budget {
            f(n0 + n);
            n += 1;
        }
        self.count += n;
        self.wall += t0.elapsed().as_secs_f64();
        self.cpu += thread_cpu_secs().unwrap_or(0.0) - c0;
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.wall
    }

    fn cpu_us(&self) -> f64 {
        self.cpu * 1e6 / self.count as f64
    }
}

/// `raw` and `asapd` alternately, `ROUNDS` slices each.
fn interleaved(secs: f64, mut raw: impl FnMut(u64), mut asapd: impl FnMut(u64)) -> (Tally, Tally) {
    const ROUNDS: u32 = 5;
    rate(0.0, None, &mut raw);
    rate(0.0, None, &mut asapd);
    let (mut r, mut a) = (Tally::default(), Tally::default());
    for round in 0..ROUNDS {
        let n0 = u64::from(round) << 32;
        r.add(secs / f64::from(ROUNDS), n0, &mut raw);
        a.add(secs / f64::from(ROUNDS), n0, &mut asapd);
    }
    (r, a)
}

/// `C_Sign` alone, on a session of a second handle on the same module
/// (already initialised and logged in by asapd's token): a closure that
/// signs once.
fn raw_signer(algorithm: Algorithm, kid: &str) -> impl FnMut(u64) {
    let ctx = Pkcs11::new(module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == LABEL)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let key = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(object_id(kid)),
        ])
        .unwrap()[0];
    let (mechanism, data) = match algorithm {
        Algorithm::ES256 => (Mechanism::Ecdsa, vec![7u8; 32]),
        _ => (Mechanism::Sha256RsaPkcs, vec![7u8; 250]),
    };
    move |_| {
        session.sign(&mechanism, key, &data).unwrap();
    }
}

fn main() {
    let secs = secs_arg(2.0);
    let dir = tempfile::tempdir().unwrap();
    make_token(dir.path());
    let sessions = std::thread::available_parallelism().map_or(2, |n| n.get());
    let token = Arc::new(
        Token::open(TokenConfig {
            module: module(),
            label: LABEL.into(),
            pin: Pin::new(PIN.into()),
            pin_setting: "pkcs11.pin",
            sessions,
        })
        .expect("open the token"),
    );
    let mut out = serde_json::Map::new();
    out.insert("secs_per_variant".into(), json!(secs));
    out.insert("sessions".into(), json!(sessions));
    for algorithm in [Algorithm::ES256, Algorithm::RS256] {
        let name = algorithm.as_str();
        let kid = format!("bench/{}", name.to_lowercase());
        let (id, public) = token
            .generate(&kid, algorithm)
            .expect("generate in the token");
        let signer = Arc::new(JwsSigner::new(
            kid.clone(),
            Signer::Pkcs11(TokenKey {
                token: token.clone(),
                object_id: id,
                algorithm,
                public,
            }),
        ));
        let claims = |n: u64| {
            json!({"iss": "bench", "sub": "bench", "aud": "svc-b",
            "jti": format!("{n:032x}"), "iat": 1_900_000_000u64, "exp": 1_900_000_060u64})
        };
        let (raw, one) = interleaved(secs, raw_signer(algorithm, &kid), |n| {
            signer.sign(&claims(n)).unwrap();
        });
        let start = Arc::new(Barrier::new(sessions));
        let all: f64 = (0..sessions)
            .map(|_| {
                let (signer, start) = (signer.clone(), start.clone());
                std::thread::spawn(move || {
                    rate(secs, Some(&start), |n| {
                        signer.sign(&claims(n)).unwrap();
                    })
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        let tenth = |x: f64| (x * 10.0).round() / 10.0;
        out.insert(format!("{name}_pkcs11_raw"), json!(raw.rate().round()));
        out.insert(format!("{name}_pkcs11_asapd"), json!(one.rate().round()));
        out.insert(format!("{name}_pkcs11_asapd_sessions"), json!(all.round()));
        out.insert(
            format!("{name}_pkcs11_raw_cpu_us"),
            json!(tenth(raw.cpu_us())),
        );
        out.insert(
            format!("{name}_pkcs11_asapd_cpu_us"),
            json!(tenth(one.cpu_us())),
        );
        let overhead = one.cpu_us() - raw.cpu_us();
        out.insert(format!("{name}_pkcs11_overhead_us"), json!(tenth(overhead)));
        let wall = 1e6 / one.rate() - 1e6 / raw.rate();
        out.insert(
            format!("{name}_pkcs11_overhead_wall_us"),
            json!(tenth(wall)),
        );
        eprintln!("pkcs11_sign: {name} done");
    }
    println!("{}", serde_json::Value::Object(out));
}
