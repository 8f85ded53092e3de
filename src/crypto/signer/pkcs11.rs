//! The PKCS#11 signer: keys generated inside a token (an HSM, or SoftHSM2
//! in the tests), never readable outside it. asapd keeps the public key
//! and the object's `CKA_ID`; the token signs.
//!
//! Sessions: PKCS#11 logs in per application, not per session, so one
//! login covers every session; a session is used by one thread at a time
//! (cryptoki's `Session` is `Send`, not `Sync`). Idle sessions wait in a
//! pool; [`Token::permits`] bounds the signatures in flight to
//! `pkcs11.sessions`, so no more sessions than that are opened for signing.
//!
//! A token that goes away (`CKR_DEVICE_REMOVED`, a closed session, a
//! library that lost its state) marks the connection lost: signing and
//! readiness answer "unavailable" at once, and the next use after a short
//! pause finalises the library, initialises it again, finds the token by
//! its label and logs in, so asapd recovers when the token returns.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use sha2::Digest;
use zeroize::Zeroizing;

use crate::crypto::keypair::{KeyError, KeyPair, PublicKey};
use crate::domain::algorithm::{Algorithm, KeyType as AlgKeyType};

/// A token's user PIN. Its `Debug` never shows it.
pub struct Pin(AuthPin);

impl Pin {
    pub fn new(pin: String) -> Self {
        Pin(AuthPin::from(pin))
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Where the token is, and how to log in.
#[derive(Debug)]
pub struct TokenConfig {
    pub module: PathBuf,
    pub label: String,
    pub pin: Pin,
    /// The setting the PIN came from (`pkcs11.pin` or `pkcs11.pin_file`),
    /// named when the token refuses it.
    pub pin_setting: &'static str,
    pub sessions: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "pkcs11.module: the PKCS#11 library {module} cannot be loaded or initialised: {reason}"
    )]
    Module { module: String, reason: String },
    #[error("pkcs11.token_label: no token labelled {label:?} in {module} (tokens found: {found})")]
    NoToken {
        label: String,
        module: String,
        found: String,
    },
    #[error("{setting}: the token {label:?} refused the PIN ({reason}); the PIN is not shown")]
    Pin {
        setting: &'static str,
        label: String,
        reason: String,
    },
    #[error("the HSM (PKCS#11 token {label:?}) is unavailable: {reason}")]
    Unavailable { label: String, reason: String },
    #[error("the PKCS#11 token {label:?} refused: {reason}")]
    Refused { label: String, reason: String },
}

impl From<TokenError> for KeyError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Unavailable { .. } => KeyError::Unavailable(e.to_string()),
            TokenError::Refused { .. } => KeyError::Refused(e.to_string()),
            other => KeyError::Unavailable(other.to_string()),
        }
    }
}

/// How long after a failed reconnection the next one may be tried: a
/// token that is gone costs one attempt per pause, not one per request.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// The connection to the token: its slot, idle logged-in sessions, and
/// the private key handles found so far. `slot` is `None` while lost.
struct Connection {
    slot: Option<Slot>,
    idle: Vec<Session>,
    handles: HashMap<Vec<u8>, ObjectHandle>,
    /// Counts reconnections: a session of an older generation belongs to a
    /// finalised library and is never closed or reused.
    generation: u64,
    last_attempt: Option<Instant>,
}

/// One PKCS#11 token, shared by every key it holds.
pub struct Token {
    config: TokenConfig,
    ctx: Pkcs11,
    conn: Mutex<Connection>,
    permits: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.config.label)
            .finish()
    }
}

fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

impl Token {
    /// Loads the module, finds the token by label and logs in: every way
    /// this can fail names the setting to fix. Blocking.
    pub fn open(config: TokenConfig) -> Result<Self, TokenError> {
        let module_error = |e: CkError| TokenError::Module {
            module: config.module.display().to_string(),
            reason: e.to_string(),
        };
        let ctx = Pkcs11::new(&config.module).map_err(module_error)?;
        match ctx.initialize(init_args()) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(module_error(e)),
        }
        let token = Token {
            permits: tokio::sync::Semaphore::new(config.sessions),
            config,
            ctx,
            conn: Mutex::new(Connection {
                slot: None,
                idle: Vec::new(),
                handles: HashMap::new(),
                generation: 0,
                last_attempt: None,
            }),
        };
        let session = token.connect()?;
        let mut conn = token.conn.lock().expect("token lock poisoned");
        conn.slot = Some(session.0);
        conn.idle.push(session.1);
        drop(conn);
        Ok(token)
    }

    pub fn label(&self) -> &str {
        &self.config.label
    }

    /// Admits one signature per session.
    pub fn permits(&self) -> &tokio::sync::Semaphore {
        &self.permits
    }

    /// Finds the slot of the token and opens a logged-in session on it.
    fn connect(&self) -> Result<(Slot, Session), TokenError> {
        let slot = self.find_slot()?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| self.unavailable(&e))?;
        match session.login(UserType::User, Some(&self.config.pin.0)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok((slot, session)),
            Err(CkError::Pkcs11(
                rv @ (RvError::PinIncorrect
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::PinLocked
                | RvError::PinExpired),
                _,
            )) => Err(TokenError::Pin {
                setting: self.config.pin_setting,
                label: self.config.label.clone(),
                reason: format!("{rv:?}"),
            }),
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    fn find_slot(&self) -> Result<Slot, TokenError> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| self.unavailable(&e))?;
        let mut found = Vec::new();
        for slot in slots {
            let Ok(info) = self.ctx.get_token_info(slot) else {
                continue;
            };
            let label = info.label().trim_end().to_owned();
            if label == self.config.label {
                return Ok(slot);
            }
            found.push(format!("{label:?}"));
        }
        Err(TokenError::NoToken {
            label: self.config.label.clone(),
            module: self.config.module.display().to_string(),
            found: if found.is_empty() {
                "none".into()
            } else {
                found.join(", ")
            },
        })
    }

    fn unavailable(&self, e: &dyn std::fmt::Display) -> TokenError {
        TokenError::Unavailable {
            label: self.config.label.clone(),
            reason: e.to_string(),
        }
    }

    /// Whether a connection is up (it may still fail on its next use).
    pub fn is_connected(&self) -> bool {
        self.conn
            .lock()
            .expect("token lock poisoned")
            .slot
            .is_some()
    }

    /// Takes an idle session, or opens one; reconnects first if the
    /// connection was lost and the pause since the last attempt is over.
    fn checkout(&self) -> Result<(Session, u64), TokenError> {
        let mut conn = self.conn.lock().expect("token lock poisoned");
        if conn.slot.is_none() {
            self.reconnect(&mut conn)?;
        }
        let generation = conn.generation;
        if let Some(session) = conn.idle.pop() {
            return Ok((session, generation));
        }
        let slot = conn.slot.expect("connected");
        match self.ctx.open_rw_session(slot) {
            Ok(session) => Ok((session, generation)),
            Err(e) => {
                Self::mark_lost(&mut conn);
                Err(self.unavailable(&e))
            }
        }
    }

    fn reconnect(&self, conn: &mut Connection) -> Result<(), TokenError> {
        if conn
            .last_attempt
            .is_some_and(|at| at.elapsed() < RECONNECT_PAUSE)
        {
            return Err(self.unavailable(&"the token went away; retrying shortly"));
        }
        conn.last_attempt = Some(Instant::now());
        // A fresh start of the library: a module that lost its token (or
        // its device) keeps no usable state, and SoftHSM2 reads its token
        // directory again only on initialisation.
        let _ = self.ctx.clone().finalize();
        match self.ctx.initialize(init_args()) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(self.unavailable(&e)),
        }
        // Named settings were right at start; now the token is just gone.
        let (slot, session) = self.connect().map_err(|e| match e {
            TokenError::Unavailable { .. } => e,
            other => self.unavailable(&other),
        })?;
        conn.generation += 1;
        conn.slot = Some(slot);
        conn.idle.push(session);
        tracing::info!(token = %self.config.label, "reconnected to the PKCS#11 token");
        Ok(())
    }

    /// Forgets the connection. Its sessions belong to a library about to
    /// be finalised: closing them later could close a new session that
    /// got the same handle, so they are leaked instead (a few bytes each).
    fn mark_lost(conn: &mut Connection) {
        conn.slot = None;
        conn.handles.clear();
        for session in conn.idle.drain(..) {
            std::mem::forget(session);
        }
    }

    fn checkin(&self, session: Session, generation: u64) {
        let mut conn = self.conn.lock().expect("token lock poisoned");
        if conn.generation == generation && conn.slot.is_some() {
            conn.idle.push(session);
        } else {
            std::mem::forget(session);
        }
    }

    /// Runs `f` on a logged-in session. An error that means the token or
    /// the library went away marks the connection lost and answers
    /// `Unavailable`; any other is the token refusing this operation.
    fn with_session<R>(
        &self,
        f: impl FnOnce(&Self, &Session) -> cryptoki::error::Result<R>,
    ) -> Result<R, TokenError> {
        let (session, generation) = self.checkout()?;
        match f(self, &session) {
            Ok(r) => {
                self.checkin(session, generation);
                Ok(r)
            }
            Err(e) if is_lost(&e) => {
                let mut conn = self.conn.lock().expect("token lock poisoned");
                if conn.generation == generation && conn.slot.is_some() {
                    tracing::warn!(token = %self.config.label, error = %e, "lost the PKCS#11 token");
                    Self::mark_lost(&mut conn);
                }
                std::mem::forget(session);
                Err(self.unavailable(&e))
            }
            Err(e) => {
                self.checkin(session, generation);
                Err(TokenError::Refused {
                    label: self.config.label.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// The handle of the private key with `CKA_ID` `id`, found once.
    fn private_key(&self, session: &Session, id: &[u8]) -> cryptoki::error::Result<ObjectHandle> {
        if let Some(handle) = self.conn.lock().expect("lock").handles.get(id) {
            return Ok(*handle);
        }
        let template = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id.to_vec()),
        ];
        let handle = session
            .find_objects(&template)?
            .into_iter()
            .next()
            .ok_or(CkError::Pkcs11(
                RvError::KeyHandleInvalid,
                Function::FindObjects,
            ))?;
        let mut conn = self.conn.lock().expect("lock");
        conn.handles.insert(id.to_vec(), handle);
        Ok(handle)
    }

    /// Signs `message` with the private key `id`: the raw JWS signature.
    /// Blocking.
    pub fn sign(
        &self,
        id: &[u8],
        algorithm: Algorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        let (mechanism, data) = mechanism(algorithm, message);
        self.with_session(|token, session| {
            let key = token.private_key(session, id)?;
            session.sign(&mechanism, key, &data)
        })
    }

    /// Readiness: a session answers and sees the token's objects.
    pub fn probe(&self) -> Result<(), TokenError> {
        self.with_session(|token, session| {
            let slot = session.get_session_info()?.slot_id();
            token.ctx.get_token_info(slot)?;
            session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])?;
            Ok(())
        })
    }

    /// Generates a key pair for `kid` inside the token; its `CKA_ID` and
    /// public key. Blocking (RSA-4096 takes seconds).
    pub fn generate(
        &self,
        kid: &str,
        algorithm: Algorithm,
    ) -> Result<(Vec<u8>, PublicKey), KeyError> {
        let id = object_id(kid);
        let private = private_template(kid, &id);
        let mut public = vec![
            Attribute::Verify(true),
            Attribute::Private(false),
            Attribute::Token(true),
            Attribute::Label(kid.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let mechanism = match algorithm.key_type() {
            AlgKeyType::Rsa { bits } => {
                public.push(Attribute::ModulusBits((bits as u64).into()));
                public.push(Attribute::PublicExponent(vec![1, 0, 1]));
                Mechanism::RsaPkcsKeyPairGen
            }
            AlgKeyType::P256 | AlgKeyType::P384 => {
                public.push(Attribute::EcParams(curve_oid(algorithm)));
                Mechanism::EccKeyPairGen
            }
        };
        let spki = self.with_session(|_, session| {
            if !session
                .find_objects(&[Attribute::Id(id.clone())])?
                .is_empty()
            {
                return Ok(Err(taken(kid)));
            }
            let (public_handle, _) = session.generate_key_pair(&mechanism, &public, &private)?;
            read_public(session, public_handle, algorithm)
        })??;
        Ok((id, PublicKey::from_spki_der(algorithm, spki)?))
    }

    /// Puts an imported key pair in the token as a sensitive, not
    /// extractable private key for `kid`; refused if the token does not
    /// keep it so. Blocking.
    pub fn import(&self, kid: &str, pair: &KeyPair) -> Result<Vec<u8>, KeyError> {
        let id = object_id(kid);
        let mut template = private_template(kid, &id);
        template.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
        template.extend(private_attributes(pair)?);
        let attributes = self.with_session(|_, session| {
            if !session
                .find_objects(&[Attribute::Id(id.clone())])?
                .is_empty()
            {
                return Ok(None);
            }
            let handle = session.create_object(&template)?;
            let kept = session.get_attributes(
                handle,
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )?;
            let sensitive = kept.iter().any(|a| matches!(a, Attribute::Sensitive(true)));
            let extractable = kept
                .iter()
                .any(|a| matches!(a, Attribute::Extractable(true)));
            if !sensitive || extractable {
                session.destroy_object(handle)?;
            }
            Ok(Some((sensitive, extractable)))
        });
        match attributes {
            Ok(None) => Err(taken(kid)),
            Ok(Some((true, false))) => Ok(id),
            Ok(_) => Err(KeyError::Refused(format!(
                "the token {:?} does not keep an imported key sensitive and not extractable, \
                 so it was not imported; generate the key in the token instead",
                self.config.label
            ))),
            Err(TokenError::Refused { reason, .. }) => Err(KeyError::Refused(format!(
                "the token {:?} does not accept this key as a sensitive, not extractable \
                 private key ({reason}); generate the key in the token instead",
                self.config.label
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Destroys every object with `CKA_ID` `id` (the private and public
    /// key); how many there were. Blocking.
    pub fn destroy(&self, id: &[u8]) -> Result<usize, TokenError> {
        self.with_session(|token, session| {
            let objects = session.find_objects(&[Attribute::Id(id.to_vec())])?;
            for object in &objects {
                session.destroy_object(*object)?;
            }
            token.conn.lock().expect("lock").handles.remove(id);
            Ok(objects.len())
        })
    }
}

/// The token holds objects with the `CKA_ID` of `kid` already (left by a
/// key whose row was never written): a second would make the key to sign
/// with ambiguous.
fn taken(kid: &str) -> KeyError {
    KeyError::Refused(format!(
        "the token already holds an object for kid {kid}; choose another key name"
    ))
}

/// A private key of the token that only signs, and never leaves it.
fn private_template(kid: &str, id: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        // A signing key only: SoftHSM2 would allow decryption and
        // unwrapping by default.
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(kid.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

/// `CKA_ID` of the key `kid`: the first 16 bytes of its SHA-256, so the
/// same kid always finds the same object and ids fit every token.
pub fn object_id(kid: &str) -> Vec<u8> {
    sha2::Sha256::digest(kid.as_bytes())[..16].to_vec()
}

/// Errors after which the connection is not to be trusted again. A stale
/// handle counts (SoftHSM2 answers so when its token directory is gone),
/// but a key the token does not have (a search that found nothing) does
/// not: reconnecting would not bring it back, and every caller's requests
/// would pay for one caller's missing key.
fn is_lost(e: &CkError) -> bool {
    match e {
        CkError::Pkcs11(RvError::KeyHandleInvalid, Function::FindObjects) => false,
        CkError::Pkcs11(rv, _) => matches!(
            rv,
            RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::SessionCount
                | RvError::SlotIdInvalid
                | RvError::CryptokiNotInitialized
                | RvError::UserNotLoggedIn
                | RvError::GeneralError
                | RvError::FunctionFailed
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
        ),
        _ => true,
    }
}

/// The token's mechanism for `algorithm`, and what it signs: the message
/// itself where the mechanism hashes, its digest for ECDSA (CKM_ECDSA
/// signs a digest, and its `r || s` is already the JWS form).
fn mechanism(algorithm: Algorithm, message: &[u8]) -> (Mechanism<'static>, Vec<u8>) {
    let pss = |hash_alg, mgf, s_len: u64| PkcsPssParams {
        hash_alg,
        mgf,
        s_len: s_len.into(),
    };
    match algorithm {
        Algorithm::RS256 => (Mechanism::Sha256RsaPkcs, message.to_vec()),
        Algorithm::RS384 => (Mechanism::Sha384RsaPkcs, message.to_vec()),
        Algorithm::RS512 => (Mechanism::Sha512RsaPkcs, message.to_vec()),
        Algorithm::PS256 => (
            Mechanism::Sha256RsaPkcsPss(pss(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256, 32)),
            message.to_vec(),
        ),
        Algorithm::PS384 => (
            Mechanism::Sha384RsaPkcsPss(pss(MechanismType::SHA384, PkcsMgfType::MGF1_SHA384, 48)),
            message.to_vec(),
        ),
        Algorithm::PS512 => (
            Mechanism::Sha512RsaPkcsPss(pss(MechanismType::SHA512, PkcsMgfType::MGF1_SHA512, 64)),
            message.to_vec(),
        ),
        Algorithm::ES256 => (Mechanism::Ecdsa, sha2::Sha256::digest(message).to_vec()),
        Algorithm::ES384 => (Mechanism::Ecdsa, sha2::Sha384::digest(message).to_vec()),
    }
}

/// DER of the curve's OID, as `CKA_EC_PARAMS` wants it.
fn curve_oid(algorithm: Algorithm) -> Vec<u8> {
    match algorithm.key_type() {
        // 1.2.840.10045.3.1.7 (prime256v1)
        AlgKeyType::P256 => vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        // 1.3.132.0.34 (secp384r1)
        _ => vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
    }
}

/// The SPKI DER of a public key object.
fn read_public(
    session: &Session,
    handle: ObjectHandle,
    algorithm: Algorithm,
) -> cryptoki::error::Result<Result<Vec<u8>, KeyError>> {
    let enc = |e: &dyn std::fmt::Display| KeyError::Encoding(e.to_string());
    Ok(match algorithm.key_type() {
        AlgKeyType::Rsa { .. } => {
            let attrs = session.get_attributes(
                handle,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )?;
            let (mut n, mut e) = (None, None);
            for attr in attrs {
                match attr {
                    Attribute::Modulus(v) => n = Some(rsa::BigUint::from_bytes_be(&v)),
                    Attribute::PublicExponent(v) => e = Some(rsa::BigUint::from_bytes_be(&v)),
                    _ => {}
                }
            }
            match (n, e) {
                (Some(n), Some(e)) => rsa::RsaPublicKey::new(n, e)
                    .map_err(|e| enc(&e))
                    .and_then(|k| k.to_public_key_der().map_err(|e| enc(&e)))
                    .map(|d| d.into_vec()),
                _ => Err(KeyError::Encoding(
                    "the token gave no RSA public key".into(),
                )),
            }
        }
        AlgKeyType::P256 | AlgKeyType::P384 => {
            let attrs = session.get_attributes(handle, &[AttributeType::EcPoint])?;
            let point = attrs.into_iter().find_map(|a| match a {
                Attribute::EcPoint(v) => Some(v),
                _ => None,
            });
            match point {
                Some(point) => {
                    let point_len = if algorithm == Algorithm::ES256 {
                        65
                    } else {
                        97
                    };
                    ec_spki(algorithm, unwrap_octet_string(&point, point_len))
                }
                None => Err(KeyError::Encoding("the token gave no EC point".into())),
            }
        }
    })
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the uncompressed SEC1
/// point (`point_len` bytes) in the standard; some tokens give the bare
/// point. Both are read.
fn unwrap_octet_string(v: &[u8], point_len: usize) -> &[u8] {
    match v {
        _ if v.len() == point_len => v,
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => v,
    }
}

fn ec_spki(algorithm: Algorithm, point: &[u8]) -> Result<Vec<u8>, KeyError> {
    let enc = |e: &dyn std::fmt::Display| KeyError::Encoding(e.to_string());
    let der = match algorithm.key_type() {
        AlgKeyType::P256 => p256::PublicKey::from_sec1_bytes(point)
            .map_err(|e| enc(&e))?
            .to_public_key_der(),
        _ => p384::PublicKey::from_sec1_bytes(point)
            .map_err(|e| enc(&e))?
            .to_public_key_der(),
    };
    der.map(|d| d.into_vec()).map_err(|e| enc(&e))
}

/// The private key's parts as `C_CreateObject` takes them. They pass
/// through the library's own buffers; ours are zeroed on drop.
fn private_attributes(pair: &KeyPair) -> Result<Vec<Attribute>, KeyError> {
    let enc = |e: &dyn std::fmt::Display| KeyError::Encoding(e.to_string());
    let der = pair.pkcs8_der();
    let bytes = |n: &rsa::BigUint| Zeroizing::new(n.to_bytes_be());
    Ok(match pair.algorithm.key_type() {
        AlgKeyType::Rsa { .. } => {
            let mut key = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| enc(&e))?;
            key.precompute().map_err(|e| enc(&e))?;
            let primes = key.primes();
            let (dp, dq) = match (key.dp(), key.dq()) {
                (Some(dp), Some(dq)) => (bytes(dp), bytes(dq)),
                _ => return Err(KeyError::Encoding("RSA CRT values missing".into())),
            };
            let qinv = key
                .crt_coefficient()
                .ok_or_else(|| KeyError::Encoding("RSA CRT coefficient missing".into()))?;
            vec![
                Attribute::KeyType(KeyType::RSA),
                Attribute::Modulus(key.n().to_bytes_be()),
                Attribute::PublicExponent(key.e().to_bytes_be()),
                Attribute::PrivateExponent(bytes(key.d()).to_vec()),
                Attribute::Prime1(bytes(&primes[0]).to_vec()),
                Attribute::Prime2(bytes(&primes[1]).to_vec()),
                Attribute::Exponent1(dp.to_vec()),
                Attribute::Exponent2(dq.to_vec()),
                Attribute::Coefficient(bytes(&qinv).to_vec()),
            ]
        }
        AlgKeyType::P256 => {
            let key = p256::SecretKey::from_pkcs8_der(der).map_err(|e| enc(&e))?;
            vec![
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(curve_oid(pair.algorithm)),
                Attribute::Value(key.to_bytes().to_vec()),
            ]
        }
        AlgKeyType::P384 => {
            let key = p384::SecretKey::from_pkcs8_der(der).map_err(|e| enc(&e))?;
            vec![
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(curve_oid(pair.algorithm)),
                Attribute::Value(key.to_bytes().to_vec()),
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_never_prints() {
        let config = TokenConfig {
            module: "/x.so".into(),
            label: "t".into(),
            pin: Pin::new("123456-secret".into()),
            pin_setting: "pkcs11.pin",
            sessions: 1,
        };
        assert!(!format!("{config:?}").contains("123456-secret"));
    }

    #[test]
    fn a_missing_key_is_not_a_lost_token() {
        let missing = CkError::Pkcs11(RvError::KeyHandleInvalid, Function::FindObjects);
        assert!(!is_lost(&missing));
        assert!(is_lost(&CkError::Pkcs11(
            RvError::DeviceRemoved,
            Function::Sign
        )));
        assert!(is_lost(&CkError::Pkcs11(
            RvError::ObjectHandleInvalid,
            Function::SignInit
        )));
        assert!(!is_lost(&CkError::Pkcs11(
            RvError::MechanismInvalid,
            Function::SignInit
        )));
    }

    #[test]
    fn ec_points_are_read_wrapped_or_bare() {
        let bare = [0x04u8; 65];
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&bare);
        assert_eq!(unwrap_octet_string(&wrapped, 65), &bare[..]);
        let mut tricky = [0x04u8; 65];
        tricky[1] = 63;
        assert_eq!(unwrap_octet_string(&tricky, 65), &tricky[..]);
        let bare384 = [0x04u8; 97];
        let mut wrapped384 = vec![0x04, 97];
        wrapped384.extend_from_slice(&bare384);
        assert_eq!(unwrap_octet_string(&wrapped384, 97), &bare384[..]);
    }
}
