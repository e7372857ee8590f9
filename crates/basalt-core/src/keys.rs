//! API keys: creation, lookup and revocation.
//!
//! A key has a public ID, a SigV4 access key ID and two secrets: the SigV4 secret
//! access key and a bearer token. Neither secret is stored. The SigV4 secret is derived
//! from the server's master key (`HMAC-SHA256(master, access_key_id)`), because the
//! server must recompute signatures with it; the bearer token is random and only its
//! SHA-256 is stored. A copy of the database alone therefore gives no usable secret.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub use basalt_store::{KeyLimits, KeyRecord};
use basalt_store::{KeyStore, StoreError};

use crate::CoreError;

/// The caller a request was authenticated as.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub key_id: String,
    pub key_name: String,
    pub is_admin: bool,
    /// The key's own quota overrides (read with the key, so a change made by
    /// `basalt keys update` is seen at the next request).
    pub limits: KeyLimits,
    /// A knowledge-base retrieval filter joined to every retrieval this key makes.
    pub retrieval_filter: Option<String>,
    /// The key's permissions (`None`: every action).
    pub policy: Option<std::sync::Arc<crate::policy::KeyPolicy>>,
}

impl Principal {
    /// A key with a mandatory retrieval filter is a tenant key: it reads, writes and
    /// deletes only inside its tenant (the documents its filter admits, its own
    /// sessions and batch jobs), and cannot change shared resources.
    pub fn is_tenant(&self) -> bool {
        self.retrieval_filter.is_some()
    }

    /// Refuses a change to a shared resource (knowledge bases, data sources,
    /// ingestion jobs, guardrails, provisioned throughput) by a tenant key.
    pub fn require_shared_write(&self, what: &str) -> Result<(), CoreError> {
        if self.is_tenant() {
            return Err(CoreError::AccessDenied(format!(
                "key {} is a tenant key (it has a mandatory retrieval filter): {what} needs a key without one",
                self.key_name
            )));
        }
        Ok(())
    }

    /// Whether this key may see or act on something owned by `owner_key_id` (a batch
    /// job): a tenant key only on its own; other keys on any.
    pub fn may_act_on(&self, owner_key_id: Option<&str>) -> bool {
        !self.is_tenant() || owner_key_id == Some(self.key_id.as_str())
    }
}

/// A newly created key with its secrets (shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedKey {
    pub id: String,
    pub name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub bearer_token: String,
}

/// The server's 32-byte master key, kept in `<data dir>/master.key` (mode 0600).
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Loads the master key, creating it on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, CoreError> {
        let fail =
            |e: std::io::Error| CoreError::Internal(format!("master key {}: {e}", path.display()));
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    CoreError::Internal(format!("master key {} is not 32 bytes", path.display()))
                })?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private(path, &key).map_err(fail)?;
                Ok(Self(key))
            }
            Err(e) => Err(fail(e)),
        }
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn derive_secret(&self, access_key_id: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"basalt-sigv4-secret:");
        mac.update(access_key_id.as_bytes());
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(mac.finalize().into_bytes())
            .replace(['+', '/'], "x")[..40]
            .to_string()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

fn store_err(e: StoreError) -> CoreError {
    crate::common::store_error("key")(e)
}

fn random_token(prefix: &str, bytes: usize, alphabet: &[u8]) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let body: String = raw
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect();
    format!("{prefix}{body}")
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Hex SHA-256 of a bearer token, as stored.
pub fn bearer_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Issues and resolves keys, caching lookups until the database changes.
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    master: MasterKey,
    cache: RwLock<KeyCache>,
    /// When the store's change marker was last read, in nanoseconds after `epoch`
    /// (0: never). It is read at most once per [`MARKER_INTERVAL`]: reading it starts a
    /// SQLite read transaction, which at proxy load was ~5 % of the server's CPU.
    epoch: Instant,
    marker_checked_ns: AtomicU64,
}

/// How stale the key cache may be with respect to other processes' writes (a key
/// revoked with the CLI stops working within this time of its commit). This process's
/// own writes clear the cache at once.
const MARKER_INTERVAL: Duration = Duration::from_millis(1);

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct KeyCache {
    marker: Option<i64>,
    by_access_key: HashMap<String, Option<KeyRecord>>,
    by_bearer: HashMap<String, Option<KeyRecord>>,
}

/// A key that authenticates SigV4 requests: who it is and the secret to verify with.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub principal: Principal,
    pub secret_access_key: String,
}

impl KeyService {
    pub fn new(store: Arc<dyn KeyStore>, master: MasterKey) -> Self {
        Self {
            store,
            master,
            cache: RwLock::new(KeyCache::default()),
            epoch: Instant::now(),
            marker_checked_ns: AtomicU64::new(0),
        }
    }

    /// Creates a key and returns its secrets, which are not kept.
    pub fn create(&self, name: &str, is_admin: bool, now: i64) -> Result<IssuedKey, CoreError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(CoreError::Validation(
                "a key name must have 1 to 64 characters".into(),
            ));
        }
        let id = random_token("key-", 12, b"abcdefghijklmnopqrstuvwxyz0123456789");
        let access_key_id = random_token("BSLT", 16, UPPER_ALNUM);
        let bearer_token = random_token("bsk-", 40, ALNUM);
        let record = KeyRecord {
            id: id.clone(),
            name: name.to_string(),
            access_key_id: access_key_id.clone(),
            bearer_sha256: bearer_hash(&bearer_token),
            is_admin,
            created_at: now,
            revoked_at: None,
            limits: KeyLimits::default(),
            retrieval_filter: None,
            policy: None,
        };
        self.store.insert_key(&record).map_err(store_err)?;
        if let Ok(mut cache) = self.cache.write() {
            *cache = KeyCache::default();
        }
        let secret_access_key = self.master.derive_secret(&access_key_id);
        Ok(IssuedKey {
            id,
            name: name.to_string(),
            access_key_id,
            secret_access_key,
            bearer_token,
        })
    }

    pub fn list(&self) -> Result<Vec<KeyRecord>, CoreError> {
        self.store.list_keys().map_err(store_err)
    }

    pub fn any_active(&self) -> Result<bool, CoreError> {
        Ok(self.list()?.iter().any(|k| k.revoked_at.is_none()))
    }

    /// After a write to key `id`: the cache is emptied (the change marker is read at
    /// most once a millisecond), and a key that did not exist is `NotFound`.
    fn key_changed(&self, found: bool, id: &str) -> Result<(), CoreError> {
        if let Ok(mut cache) = self.cache.write() {
            *cache = KeyCache::default();
        }
        if found {
            Ok(())
        } else {
            Err(CoreError::NotFound(format!("no key {id}")))
        }
    }

    /// Revokes by key ID or access key ID.
    pub fn revoke(&self, id: &str, now: i64) -> Result<(), CoreError> {
        let revoked = self.store.revoke_key(id, now).map_err(store_err)?;
        // The change marker is read at most once a millisecond: clear the cache now.
        if let Ok(mut cache) = self.cache.write() {
            *cache = KeyCache::default();
        }
        if revoked {
            Ok(())
        } else {
            Err(CoreError::NotFound(format!("no active key {id}")))
        }
    }

    /// Sets (or with `None` clears) a key's mandatory retrieval filter, a Bedrock
    /// `RetrievalFilter` in JSON (checked here).
    pub fn set_retrieval_filter(&self, id: &str, filter: Option<&str>) -> Result<(), CoreError> {
        if let Some(text) = filter {
            let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                CoreError::Validation(format!("the retrieval filter is not JSON: {e}"))
            })?;
            basalt_kb::filter::Filter::parse(&value)
                .map_err(|e| CoreError::Validation(e.to_string()))?;
        }
        let found = self
            .store
            .set_key_retrieval_filter(id, filter)
            .map_err(store_err)?;
        self.key_changed(found, id)
    }

    /// Replaces a key's permissions policy (by key ID or access key ID); `None` removes
    /// it (the key may do everything again). A policy is checked before it is stored.
    pub fn set_policy(&self, id: &str, policy: Option<&str>) -> Result<(), CoreError> {
        if let Some(text) = policy {
            crate::policy::KeyPolicy::parse(text)?;
        }
        let found = self.store.set_key_policy(id, policy).map_err(store_err)?;
        self.key_changed(found, id)
    }

    /// Replaces a key's quota overrides (by key ID or access key ID).
    pub fn set_limits(&self, id: &str, limits: KeyLimits) -> Result<(), CoreError> {
        for (name, value) in [
            (
                "requests per minute",
                limits.requests_per_minute.map(|v| v as f64),
            ),
            (
                "tokens per minute",
                limits.tokens_per_minute.map(|v| v as f64),
            ),
            ("monthly budget", limits.monthly_budget_usd),
        ] {
            if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(CoreError::Validation(format!(
                    "the {name} limit must be a non-negative number"
                )));
            }
        }
        let found = self.store.set_key_limits(id, &limits).map_err(store_err)?;
        self.key_changed(found, id)
    }

    /// One key by key ID or access key ID.
    pub fn get(&self, id: &str) -> Result<KeyRecord, CoreError> {
        self.list()?
            .into_iter()
            .find(|k| k.id == id || k.access_key_id == id)
            .ok_or_else(|| CoreError::NotFound(format!("no key {id}")))
    }

    fn refresh_cache(&self) -> Result<(), CoreError> {
        let now = (self.epoch.elapsed().as_nanos() as u64).max(1);
        let checked = self.marker_checked_ns.load(Ordering::Relaxed);
        if checked != 0 && now.saturating_sub(checked) < MARKER_INTERVAL.as_nanos() as u64 {
            return Ok(());
        }
        let marker = self.store.change_marker().map_err(store_err)?;
        self.marker_checked_ns.store(now, Ordering::Relaxed);
        let stale = self
            .cache
            .read()
            .map(|c| c.marker != Some(marker))
            .unwrap_or(true);
        if stale {
            if let Ok(mut cache) = self.cache.write() {
                *cache = KeyCache {
                    marker: Some(marker),
                    ..KeyCache::default()
                };
            }
        }
        Ok(())
    }

    fn cached(
        &self,
        lookup: impl Fn(&KeyCache) -> Option<Option<KeyRecord>>,
        load: impl FnOnce() -> Result<Option<KeyRecord>, StoreError>,
        remember: impl FnOnce(&mut KeyCache, Option<KeyRecord>),
    ) -> Result<Option<KeyRecord>, CoreError> {
        self.refresh_cache()?;
        if let Some(hit) = self.cache.read().ok().and_then(|c| lookup(&c)) {
            return Ok(hit);
        }
        let record = load().map_err(store_err)?;
        if let Ok(mut cache) = self.cache.write() {
            remember(&mut cache, record.clone());
        }
        Ok(record)
    }

    /// The active key with this access key ID and its SigV4 secret.
    pub fn signing_key(&self, access_key_id: &str) -> Result<Option<SigningKey>, CoreError> {
        let record = self.cached(
            |c| c.by_access_key.get(access_key_id).cloned(),
            || self.store.key_by_access_key_id(access_key_id),
            |c, r| {
                c.by_access_key.insert(access_key_id.to_string(), r);
            },
        )?;
        Ok(record
            .filter(|r| r.revoked_at.is_none())
            .map(|r| SigningKey {
                secret_access_key: self.master.derive_secret(&r.access_key_id),
                principal: principal(&r),
            }))
    }

    /// The active key this bearer token belongs to.
    pub fn bearer(&self, token: &str) -> Result<Option<Principal>, CoreError> {
        let hash = bearer_hash(token);
        let record = self.cached(
            |c| c.by_bearer.get(&hash).cloned(),
            || self.store.key_by_bearer_sha256(&hash),
            |c, r| {
                c.by_bearer.insert(hash.clone(), r);
            },
        )?;
        Ok(record
            .filter(|r| r.revoked_at.is_none())
            .map(|r| principal(&r)))
    }
}

/// The caller a key record authenticates as.
pub fn principal(r: &KeyRecord) -> Principal {
    Principal {
        key_id: r.id.clone(),
        key_name: r.name.clone(),
        is_admin: r.is_admin,
        limits: r.limits,
        retrieval_filter: r.retrieval_filter.clone(),
        policy: r.policy.as_deref().map(|text| {
            std::sync::Arc::new(crate::policy::KeyPolicy::parse(text).unwrap_or_else(|e| {
                // Policies are checked when set; one that no longer parses allows nothing.
                tracing::warn!(key = %r.name, error = %e, "a stored key policy does not parse; the key may do nothing");
                crate::policy::KeyPolicy::deny_all()
            }))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_store::SqliteStore;

    fn service() -> KeyService {
        KeyService::new(
            Arc::new(SqliteStore::open_in_memory().expect("store")),
            MasterKey::from_bytes([7; 32]),
        )
    }

    #[test]
    fn issued_secrets_authenticate_until_revoked() {
        let keys = service();
        let issued = keys.create("team-a", false, 1).expect("create");
        let signing = keys
            .signing_key(&issued.access_key_id)
            .expect("lookup")
            .expect("known");
        assert_eq!(signing.secret_access_key, issued.secret_access_key);
        assert_eq!(
            keys.bearer(&issued.bearer_token)
                .expect("lookup")
                .map(|p| p.key_name),
            Some("team-a".into())
        );
        keys.revoke(&issued.id, 2).expect("revoke");
        assert!(
            keys.signing_key(&issued.access_key_id)
                .expect("lookup")
                .is_none(),
            "revoked SigV4 key still works"
        );
        assert!(
            keys.bearer(&issued.bearer_token).expect("lookup").is_none(),
            "revoked bearer token still works"
        );
        assert!(matches!(
            keys.revoke(&issued.id, 3),
            Err(CoreError::NotFound(_))
        ));
    }

    /// The CLI revokes through its own connection: the server's cached key stops
    /// working once the change marker's interval has passed.
    #[test]
    fn a_revocation_by_another_process_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("basalt.db");
        let open = || {
            KeyService::new(
                Arc::new(SqliteStore::open(&path).expect("store")),
                MasterKey::from_bytes([7; 32]),
            )
        };
        let server = open();
        let issued = server.create("team-c", false, 1).expect("create");
        assert!(server
            .bearer(&issued.bearer_token)
            .expect("lookup")
            .is_some());
        open()
            .revoke(&issued.id, 2)
            .expect("revoke from the other process");
        std::thread::sleep(MARKER_INTERVAL * 2);
        assert!(
            server
                .bearer(&issued.bearer_token)
                .expect("lookup")
                .is_none(),
            "the server kept accepting a key another process revoked"
        );
    }

    #[test]
    fn unknown_credentials_are_rejected_and_nothing_secret_is_stored() {
        let keys = service();
        let issued = keys.create("team-b", false, 1).expect("create");
        assert!(keys.bearer("bsk-nope").expect("lookup").is_none());
        assert!(keys.signing_key("BSLTNOPE").expect("lookup").is_none());
        let stored = keys.list().expect("list");
        let row = format!("{:?}", stored);
        assert!(!row.contains(&issued.bearer_token) && !row.contains(&issued.secret_access_key));
    }

    #[test]
    fn secrets_depend_on_the_master_key() {
        let a = MasterKey::from_bytes([1; 32]).derive_secret("BSLTX");
        let b = MasterKey::from_bytes([2; 32]).derive_secret("BSLTX");
        assert_ne!(a, b);
        assert_eq!(a.len(), 40);
    }
}
