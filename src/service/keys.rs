//! Key lifecycle: generate, import, rotate, revoke.

use std::str::FromStr;

use rand::RngCore;
use serde_json::json;
use zeroize::Zeroizing;

use crate::audit::{self, action, AuditEvent, Origin, Outcome};

use crate::crypto::keypair::KeyError;
use crate::crypto::signer::{Held, MadeKey};
use crate::crypto::{KeyPair, PublicKey};
use crate::domain::algorithm::Algorithm;
use crate::domain::key::KeyState;
use crate::domain::kid::Kid;
use crate::domain::names::{CallerName, KeyName};
use crate::service::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::store::keys::{self, KeyRow};
use crate::store::{callers, Conn, StoreError};

/// A key as admins see it: never the private half.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub kid: String,
    pub caller: String,
    pub algorithm: Algorithm,
    pub state: KeyState,
    pub public_key_pem: String,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TryFrom<&KeyRow> for KeyInfo {
    type Error = ServiceError;
    fn try_from(row: &KeyRow) -> ServiceResult<Self> {
        let corrupt = |m: String| ServiceError::internal(StoreError::Corrupt(m));
        let algorithm = Algorithm::from_str(&row.algorithm).map_err(corrupt)?;
        let public = PublicKey::from_spki_der(algorithm, row.public_der.clone())
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(Self {
            kid: row.kid.clone(),
            caller: row.caller.clone(),
            algorithm,
            state: KeyState::from_str(&row.state).map_err(corrupt)?,
            public_key_pem: public.pem,
            created_at: row.created_at,
            activated_at: row.activated_at,
            retired_at: row.retired_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// Where a new key goes.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub algorithm: Option<Algorithm>,
    pub name: Option<KeyName>,
    /// Active at once (the current active key retires), or pending.
    pub activate: bool,
}

/// Generates the key `kid` where the key backend puts new keys, on a
/// blocking thread: RSA-4096 takes seconds. A token that cannot be
/// reached is a 503: nothing was changed.
pub async fn make_key(state: &AppState, kid: &Kid, algorithm: Algorithm) -> ServiceResult<MadeKey> {
    let backend = state.keyring.backend().clone();
    let kid = kid.to_string();
    tokio::task::spawn_blocking(move || backend.generate(&kid, algorithm))
        .await
        .map_err(ServiceError::internal)?
        .map_err(|e| match e {
            KeyError::Unavailable(detail) => ServiceError::Unavailable(detail),
            KeyError::Refused(detail) => ServiceError::Conflict(detail),
            e => ServiceError::internal(e),
        })
}

/// A time-ordered, unique key name: `20261122T061500Z-1a2b3c4d`.
pub fn new_key_name(now: i64) -> KeyName {
    let stamp = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| now.to_string());
    let mut suffix = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    KeyName::parse(format!("{stamp}-{}", hex::encode(suffix)))
        .expect("generated key names fit the grammar")
}

/// Stores the key `kid` made by [`make_key`] (or imported); retires the
/// active key first when the new one is to be active. Runs inside the
/// caller's transaction.
#[allow(clippy::too_many_arguments)]
pub async fn store_key(
    conn: &mut Conn,
    state: &AppState,
    origin: &Origin,
    how: &'static str,
    kid: &Kid,
    made: &MadeKey,
    activate: bool,
    now: i64,
) -> ServiceResult<KeyRow> {
    if activate {
        keys::retire_active(conn, kid.caller(), now).await?;
    }
    let (private_enc, token_object_id) = match &made.held {
        Held::Sealed(sealed) => (sealed.clone(), None),
        Held::Token { object_id } => (Vec::new(), Some(object_id.clone())),
    };
    let row = KeyRow {
        kid: kid.to_string(),
        caller: kid.caller().to_owned(),
        algorithm: made.algorithm.to_string(),
        state: if activate {
            KeyState::Active
        } else {
            KeyState::Pending
        }
        .to_string(),
        public_der: made.public.spki_der.clone(),
        private_enc,
        created_at: now,
        activated_at: activate.then_some(now),
        retired_at: None,
        revoked_at: None,
        backend: made.held.backend().as_str().to_owned(),
        token_object_id,
    };
    match keys::insert(conn, &row).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ServiceError::Conflict(format!(
                "key {kid} already exists; kids are never reused"
            )))
        }
        other => other?,
    }
    let event = AuditEvent::new(origin, state.clock.now_ms(), how, Outcome::Success)
        .target(format!("key:{kid}"))
        .detail(json!({"caller": row.caller, "algorithm": row.algorithm, "state": row.state}));
    audit::record_in(conn, event).await?;
    Ok(row)
}

async fn caller_algorithm(conn: &mut Conn, caller: &str) -> ServiceResult<Algorithm> {
    let row = callers::get(conn, caller)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no caller named {caller}")))?;
    Algorithm::from_str(&row.algorithm).map_err(|m| ServiceError::internal(StoreError::Corrupt(m)))
}

/// Generates a new key for `caller`, pending or active.
pub async fn generate(
    state: &AppState,
    origin: &Origin,
    caller: &CallerName,
    req: NewKey,
) -> ServiceResult<KeyInfo> {
    let algorithm = match req.algorithm {
        Some(a) => a,
        None => caller_algorithm(&mut *state.store.acquire().await?, caller.as_str()).await?,
    };
    let kid = Kid::new(caller, &key_name(state, &req));
    ensure_new(state, &kid).await?;
    let made = make_key(state, &kid, algorithm).await?;
    add(state, origin, action::KEY_CREATED, &kid, req.activate, made).await
}

/// Refuses a kid that exists, or a caller that does not, before a key is
/// made: a key made in a token for nothing would stay there, and one with
/// the kid of an existing key would share its `CKA_ID`.
async fn ensure_new(state: &AppState, kid: &Kid) -> ServiceResult<()> {
    let mut conn = state.store.acquire().await?;
    let caller = kid.caller();
    callers::get(&mut conn, caller)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no caller named {caller}")))?;
    if keys::get(&mut conn, kid.as_str()).await?.is_some() {
        return Err(ServiceError::Conflict(format!(
            "key {kid} already exists; kids are never reused"
        )));
    }
    Ok(())
}

/// The name of a new key: the one asked for, or a fresh one.
fn key_name(state: &AppState, req: &NewKey) -> KeyName {
    req.name
        .clone()
        .unwrap_or_else(|| new_key_name(state.clock.now()))
}

/// The name of an imported key: `name`, or the key name of `kid` (the kid
/// its service already uses), which must be `<caller>/<key-name>` for this
/// caller. Both at once are refused: they could disagree.
pub fn imported_key_name(
    caller: &CallerName,
    name: Option<KeyName>,
    kid: Option<&str>,
) -> ServiceResult<Option<KeyName>> {
    let Some(kid) = kid else { return Ok(name) };
    if name.is_some() {
        return Err(ServiceError::bad_field(
            "kid",
            "give kid or name, not both (the kid is <caller>/<name>)",
        ));
    }
    let parsed = Kid::parse(kid).map_err(|e| {
        ServiceError::bad_field(
            "kid",
            format!(
                "{kid:?} is not a kid asapd can serve: {}; asapd kids are <caller>/<key-name>",
                e.message
            ),
        )
    })?;
    if parsed.caller() != caller.as_str() {
        return Err(ServiceError::bad_field(
            "kid",
            format!(
                "{kid:?} must start with {caller}/: ASAP verifiers accept a kid only under its \
                 issuer's name"
            ),
        ));
    }
    let key_name = &parsed.as_str()[caller.as_str().len() + 1..];
    KeyName::parse(key_name)
        .map(Some)
        .map_err(|e| ServiceError::bad_field("kid", e.message))
}

/// Imports a private key (PKCS#8, or PKCS#1 for RSA; PEM or base64 DER)
/// for `caller`.
pub async fn import(
    state: &AppState,
    origin: &Origin,
    caller: &CallerName,
    req: NewKey,
    private_key: String,
) -> ServiceResult<KeyInfo> {
    let private_key = Zeroizing::new(private_key);
    let chosen = req.algorithm;
    let algorithm = match chosen {
        Some(a) => a,
        None => caller_algorithm(&mut *state.store.acquire().await?, caller.as_str()).await?,
    };
    let pair = tokio::task::spawn_blocking(move || KeyPair::import(algorithm, &private_key))
        .await
        .map_err(ServiceError::internal)?
        .map_err(|e| match e {
            // The caller's own algorithm was assumed: say which field picks
            // the family, rather than blame a key that is fine.
            KeyError::Mismatch { found, algorithm } if chosen.is_none() => ServiceError::bad_field(
                "algorithm",
                format!(
                    "this is {} but the caller signs with {algorithm}; pass \"algorithm\": {} \
                     to pick the family of this key",
                    found.describe(),
                    found.algorithms()
                ),
            ),
            e => ServiceError::bad_field("private_key", e.to_string()),
        })?;
    let kid = Kid::new(caller, &key_name(state, &req));
    ensure_new(state, &kid).await?;
    let made = take_in(state, &kid, pair).await?;
    add(
        state,
        origin,
        action::KEY_IMPORTED,
        &kid,
        req.activate,
        made,
    )
    .await
}

/// Hands an imported key pair to the key backend.
async fn take_in(state: &AppState, kid: &Kid, pair: KeyPair) -> ServiceResult<MadeKey> {
    let backend = state.keyring.backend().clone();
    let kid = kid.to_string();
    tokio::task::spawn_blocking(move || backend.import(&kid, pair))
        .await
        .map_err(ServiceError::internal)?
        .map_err(|e| match e {
            KeyError::Unavailable(detail) => ServiceError::Unavailable(detail),
            e => ServiceError::bad_field("private_key", e.to_string()),
        })
}

/// Destroys a key made by [`make_key`] that was not stored after all
/// (another replica got there first), so no orphan stays in a token.
/// Best effort: a failure is logged, never the caller's problem.
pub async fn discard(state: &AppState, made: MadeKey) {
    let backend = state.keyring.backend().clone();
    let done = tokio::task::spawn_blocking(move || backend.destroy(&made.held)).await;
    if let Ok(Err(e)) = done {
        tracing::warn!(error = %e, "a key made but not stored could not be destroyed");
    }
}

async fn add(
    state: &AppState,
    origin: &Origin,
    how: &'static str,
    kid: &Kid,
    activate: bool,
    made: MadeKey,
) -> ServiceResult<KeyInfo> {
    let stored = async {
        let now = state.clock.now();
        let caller = kid.caller();
        let mut tx = state.store.begin().await?;
        // Lock-free existence check; the foreign key catches a concurrent delete.
        callers::get(&mut tx, caller)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no caller named {caller}")))?;
        let row = store_key(&mut tx, state, origin, how, kid, &made, activate, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(row)
    }
    .await;
    let row = match stored {
        Ok(row) => row,
        Err(e) => {
            discard(state, made).await;
            return Err(e);
        }
    };
    refresh_after_commit(state, how).await;
    KeyInfo::try_from(&row)
}

/// Makes a new key active now: the oldest pending key if there is one,
/// otherwise a freshly generated one. The old active key retires.
pub async fn rotate(
    state: &AppState,
    origin: &Origin,
    caller: &CallerName,
) -> ServiceResult<KeyInfo> {
    let now = state.clock.now();
    let mut tx = state.store.begin().await?;
    let algorithm = caller_algorithm(&mut tx, caller.as_str()).await?;
    let pending = keys::list_for_caller(&mut tx, caller.as_str())
        .await?
        .into_iter()
        .filter(|k| k.state == KeyState::Pending.as_str())
        .min_by_key(|k| k.created_at);
    let row = match pending {
        Some(mut row) => {
            let retired = keys::retire_active(&mut tx, caller.as_str(), now).await?;
            keys::activate(&mut tx, &row.kid, now).await?;
            row.state = KeyState::Active.to_string();
            row.activated_at = Some(now);
            let event = AuditEvent::new(
                origin,
                state.clock.now_ms(),
                action::KEY_ROTATED,
                Outcome::Success,
            )
            .target(format!("key:{}", row.kid))
            .detail(json!({"caller": caller.as_str(), "activated": row.kid, "retired": retired}));
            audit::record_in(&mut tx, event).await?;
            tx.commit().await.map_err(StoreError::from)?;
            row
        }
        None => {
            drop(tx);
            let kid = Kid::new(caller, &new_key_name(now));
            let made = make_key(state, &kid, algorithm).await?;
            let mut tx = state.store.begin().await?;
            let how = action::KEY_ROTATED;
            let row = store_key(&mut tx, state, origin, how, &kid, &made, true, now).await?;
            tx.commit().await.map_err(StoreError::from)?;
            row
        }
    };
    refresh_after_commit(state, action::KEY_ROTATED).await;
    KeyInfo::try_from(&row)
}

/// Revokes a key: unpublished at once. Revoking the active key makes a
/// replacement active so the caller can keep getting tokens.
pub async fn revoke(
    state: &AppState,
    origin: &Origin,
    kid: &Kid,
) -> ServiceResult<(KeyInfo, Option<KeyInfo>)> {
    let existing = get(state, kid).await?;
    if existing.state == KeyState::Revoked {
        return Ok((existing, None));
    }
    // Generate the replacement before the transaction: RSA-4096 takes
    // seconds, and SQLite would hold its write lock all that time.
    let now = state.clock.now();
    let replacement_made = if existing.state == KeyState::Active {
        let algorithm = caller_algorithm(&mut *state.store.acquire().await?, kid.caller()).await?;
        let caller = CallerName::parse(kid.caller())?;
        let new_kid = Kid::new(&caller, &new_key_name(now));
        Some((make_key(state, &new_kid, algorithm).await?, new_kid))
    } else {
        None
    };
    let mut tx = state.store.begin().await?;
    let mut row = keys::get(&mut tx, kid.as_str())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no key with kid {kid}")))?;
    let was_active = row.state == KeyState::Active.as_str();
    keys::revoke(&mut tx, kid.as_str(), now).await?;
    row.state = KeyState::Revoked.to_string();
    row.revoked_at = Some(now);
    let replacement = match replacement_made.filter(|_| was_active) {
        Some((made, new_kid)) => {
            let how = action::KEY_CREATED;
            Some(store_key(&mut tx, state, origin, how, &new_kid, &made, true, now).await?)
        }
        None => None,
    };
    let event = AuditEvent::new(
        origin,
        state.clock.now_ms(),
        action::KEY_REVOKED,
        Outcome::Success,
    )
    .target(format!("key:{kid}"))
    .detail(json!({
        "caller": kid.caller(),
        "previous_state": existing.state,
        "replacement": replacement.as_ref().map(|r| r.kid.clone()),
    }));
    audit::record_in(&mut tx, event).await?;
    tx.commit().await.map_err(StoreError::from)?;
    refresh_after_commit(state, action::KEY_REVOKED).await;
    Ok((
        KeyInfo::try_from(&row)?,
        replacement.as_ref().map(KeyInfo::try_from).transpose()?,
    ))
}

pub async fn list(state: &AppState, caller: &CallerName) -> ServiceResult<Vec<KeyInfo>> {
    let mut conn = state.store.acquire().await?;
    callers::get(&mut conn, caller.as_str())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no caller named {caller}")))?;
    keys::list_for_caller(&mut conn, caller.as_str())
        .await?
        .iter()
        .map(KeyInfo::try_from)
        .collect()
}

pub async fn get(state: &AppState, kid: &Kid) -> ServiceResult<KeyInfo> {
    let mut conn = state.store.acquire().await?;
    let row = keys::get(&mut conn, kid.as_str())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no key with kid {kid}")))?;
    KeyInfo::try_from(&row)
}

/// Reloads the key ring after a committed change.
/// Reloads the ring after a key change has committed. A reload that fails
/// here (another replica sealed a key under a master key this one lacks)
/// must not answer 500 for a change that is made: the client would retry
/// it and make a second key or a second rotation. The change listener and
/// the periodic refresh load the ring again; this logs why it could not now.
pub async fn refresh_after_commit(state: &AppState, change: &'static str) {
    if let Err(err) = refresh(state).await {
        tracing::warn!(
            error = ?err,
            change,
            "key ring reload after a committed change failed; the periodic refresh retries"
        );
    }
}

pub async fn refresh(state: &AppState) -> ServiceResult<()> {
    state
        .keyring
        .reload(&state.store)
        .await
        .map_err(ServiceError::internal)
}

/// Refuses a change before it commits when this replica cannot load every
/// active signing key: another replica sealed one under a master key this
/// one does not hold (it was left on the old key during a rotation). The
/// reload after the commit would fail, and a caller's one-time secret
/// would be lost behind a 500.
pub async fn ensure_ring_loads(state: &AppState) -> ServiceResult<()> {
    let Err(err) = state.keyring.reload(&state.store).await else {
        return Ok(());
    };
    let err = match err.downcast::<StoreError>() {
        Ok(store) => return Err(store.into()),
        Err(other) => other,
    };
    tracing::warn!(
        error = format!("{err:#}"),
        "refused a change: this replica cannot open every signing key"
    );
    Err(ServiceError::Unavailable(
        "this replica cannot decrypt a signing key sealed under a master key it does not \
         hold (a master key rotation is under way); nothing was changed. Retry on another \
         replica, or restart this one with the current master key (and the old one in \
         previous_master_keys)"
            .into(),
    ))
}
