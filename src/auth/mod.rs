//! Who is calling: API-key authentication with a read-through cache, so the per-request check
//! makes no database round trip and no write. `lastUsedAt` is collected in memory and flushed in
//! batches by [`Authenticator::flush`]. The cache is emptied whenever the control store changes
//! (in-process mutations call [`Authenticator::invalidate`]; commits by other processes, such as
//! `trex api-key revoke`, are noticed by a watcher polling `PRAGMA data_version`), so a revoked,
//! expired, banned or demoted key is refused on its next request.

pub mod keys;
pub mod limiter;
pub mod password;
pub mod scopes;
pub mod secrets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::store::{Store, api_keys};
use crate::util::{ms_rfc3339, now_ms, rfc3339_ms};

/// How a caller came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An API key (`Authorization: Bearer trex_…`), with its scopes.
    Key,
    /// A web session cookie (the admin page), same-origin only; this is its session id.
    Web { session_id: String },
}

impl Via {
    /// `mcp` or `web`, as audit rows say it.
    pub fn audit_name(&self) -> &'static str {
        match self {
            Via::Key => "mcp",
            Via::Web { .. } => "web",
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
    pub key_id: String,
    pub key_name: String,
    /// Key scopes; `None` = unrestricted.
    pub scopes: Option<scopes::Scopes>,
    /// SHA-256 hex of the key (or of the web session token), to look it up again
    /// ([`Authenticator::recheck`]).
    pub key_hash: Arc<str>,
    /// API key or web session.
    pub via: Via,
    /// The authenticator's invalidation count when this was read from the store: while it has
    /// not moved, nothing that could refuse the key has changed.
    pub generation: u64,
    /// Key expiry (ms since the epoch), for the per-operation recheck.
    pub expires_ms: Option<i64>,
}

/// Why a request was not authenticated. Every variant is a 401 with the same message, so a
/// caller learns nothing about which keys exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header, or not `Bearer trex_<48 hex>`.
    Missing,
    /// Unknown, revoked or expired key, or a user who is not an active admin.
    Rejected,
}

impl AuthFailure {
    /// The message clients see (trexsql's wording).
    pub const MESSAGE: &'static str = "Invalid or missing API key";
}

struct CachedKey {
    principal: Arc<Principal>,
    /// The key id, shared with the usage map (no per-request allocation).
    key_id: Arc<str>,
    /// Key expiry in ms since the epoch.
    expires_ms: Option<i64>,
    /// A ban that ends later (ms); until then the key is refused.
    banned_until_ms: Option<i64>,
}

/// Authenticates bearer keys against the control store.
pub struct Authenticator {
    store: Store,
    cache: RwLock<HashMap<String, Arc<CachedKey>>>,
    /// Bumped by every invalidation: a lookup that raced with one is not cached.
    generation: std::sync::atomic::AtomicU64,
    last_used: Mutex<HashMap<Arc<str>, i64>>,
}

impl Authenticator {
    /// A new authenticator over `store`.
    pub fn new(store: Store) -> Self {
        Authenticator {
            store,
            cache: RwLock::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            last_used: Mutex::new(HashMap::new()),
        }
    }

    /// Checks an `Authorization` header value.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
    ) -> std::result::Result<Arc<Principal>, AuthFailure> {
        let key = header
            .and_then(keys::from_bearer)
            .ok_or(AuthFailure::Missing)?;
        self.by_hash(keys::hash(key)).await
    }

    /// Checks again, before one operation, that the key a request came with still admits its
    /// user: free while nothing changed since the key was cached (one atomic load), a cache
    /// lookup — or a store read — after any revocation, ban, demotion or deletion.
    pub async fn recheck(&self, p: &Principal) -> std::result::Result<(), AuthFailure> {
        if let Via::Web { .. } = p.via {
            return self.web_by_hash(p.key_hash.to_string()).await.map(|_| ());
        }
        // nothing was invalidated since the key was read, and it has not expired: still valid
        if self.generation.load(std::sync::atomic::Ordering::Acquire) == p.generation
            && p.expires_ms.is_none_or(|e| e > now_ms())
        {
            return Ok(());
        }
        let cached = self.cache.read().unwrap().get(&*p.key_hash).cloned();
        match cached {
            Some(e) if e.principal.key_id == p.key_id => {
                let now = now_ms();
                if e.expires_ms.is_some_and(|x| x <= now)
                    || e.banned_until_ms.is_some_and(|b| b > now)
                {
                    return Err(AuthFailure::Rejected);
                }
                Ok(())
            }
            _ => self.by_hash(p.key_hash.to_string()).await.map(|_| ()),
        }
    }

    /// Checks a web session cookie's token: a live web session of an active admin (not banned,
    /// not deleted). The admin page calls the admin MCP server this way.
    pub async fn web(&self, token: &str) -> std::result::Result<Arc<Principal>, AuthFailure> {
        self.web_by_hash(keys::hash(token)).await
    }

    async fn web_by_hash(&self, hash: String) -> std::result::Result<Arc<Principal>, AuthFailure> {
        let h = hash.clone();
        let found = self
            .store
            .run(move |c| {
                let Some((sid, uid, _)) = crate::store::web_sessions::find(c, &h)? else {
                    return Ok(None);
                };
                Ok(crate::store::users::get(c, &uid)?.map(|u| (sid, u)))
            })
            .await
            .map_err(|e| {
                tracing::error!("web session lookup failed: {e}");
                AuthFailure::Rejected
            })?;
        let Some((sid, u)) = found else {
            return Err(AuthFailure::Rejected);
        };
        if u.role != "admin" || u.deleted_at.is_some() || u.is_banned_now() {
            return Err(AuthFailure::Rejected);
        }
        Ok(Arc::new(Principal {
            user_id: u.id,
            user_name: u.name,
            user_email: u.email,
            key_id: format!("web:{sid}"),
            key_name: "web session".into(),
            scopes: None,
            key_hash: Arc::from(hash.as_str()),
            via: Via::Web { session_id: sid },
            generation: 0,
            expires_ms: None,
        }))
    }

    async fn by_hash(&self, hash: String) -> std::result::Result<Arc<Principal>, AuthFailure> {
        let now = now_ms();
        let cached = self.cache.read().unwrap().get(&hash).cloned();
        let entry = match cached {
            Some(e) => e,
            None => {
                let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
                let store = self.store.clone();
                let h = hash.clone();
                let owner = store
                    .run(move |c| api_keys::lookup(c, &h))
                    .await
                    .map_err(|e| {
                        tracing::error!("key lookup failed: {e}");
                        AuthFailure::Rejected
                    })?
                    .ok_or(AuthFailure::Rejected)?;
                let entry = Arc::new(admit(owner, &hash, generation).ok_or(AuthFailure::Rejected)?);
                let mut cache = self.cache.write().unwrap();
                // an invalidation since the read may have changed what was read: use, don't keep
                if self.generation.load(std::sync::atomic::Ordering::Acquire) == generation {
                    cache.insert(hash, entry.clone());
                }
                entry
            }
        };
        if entry.expires_ms.is_some_and(|e| e <= now)
            || entry.banned_until_ms.is_some_and(|b| b > now)
        {
            return Err(AuthFailure::Rejected);
        }
        self.last_used
            .lock()
            .unwrap()
            .insert(entry.key_id.clone(), now);
        Ok(entry.principal.clone())
    }

    /// Forgets every cached key; the next request of each key reads the store again.
    pub fn invalidate(&self) {
        let mut cache = self.cache.write().unwrap();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        cache.clear();
    }

    /// Writes the collected `lastUsedAt` times.
    pub async fn flush(&self) -> Result<()> {
        let batch: Vec<(String, String)> = {
            let mut m = self.last_used.lock().unwrap();
            m.drain()
                .map(|(k, ms)| (k.to_string(), ms_rfc3339(ms)))
                .collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.store.run(move |c| api_keys::touch(c, &batch)).await
    }

    /// Polls the store's [`DataVersion`](crate::store::DataVersion) every `every` on a dedicated
    /// thread (SQLite: another connection or process committed; PostgreSQL: a node changed who
    /// may do what) and then empties the cache and calls `on_change`. Stops when `stop` is
    /// cancelled.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        every: Duration,
        stop: CancellationToken,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<()> {
        let watch = self.store.data_version()?;
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("trex-auth-watch".into())
            .spawn(move || {
                let mut seen = watch.current();
                while !stop.is_cancelled() {
                    std::thread::sleep(every);
                    let v = watch.current();
                    if v != seen {
                        seen = v;
                        match me.upgrade() {
                            Some(a) => {
                                a.invalidate();
                                on_change();
                            }
                            None => return,
                        }
                    }
                }
            })
            .map_err(|e| crate::error::Error::io("cannot start the key watcher", e))?;
        Ok(())
    }
}

/// Turns a stored key into a cache entry, or `None` when it can never be admitted as it stands.
fn admit(o: api_keys::KeyOwner, hash: &str, generation: u64) -> Option<CachedKey> {
    if o.revoked_at.is_some() || o.role != "admin" || o.deleted_at.is_some() {
        return None;
    }
    // A ban with an end date refuses the key until then; a ban without one, for good.
    let banned_until_ms = if o.banned {
        Some(o.ban_expires.as_deref().and_then(rfc3339_ms)?)
    } else {
        None
    };
    // An unreadable expiry counts as already expired.
    let expires_ms = o.expires_at.as_deref().map(|s| rfc3339_ms(s).unwrap_or(0));
    Some(CachedKey {
        key_id: Arc::from(o.key_id.as_str()),
        principal: Arc::new(Principal {
            user_id: o.user_id,
            user_name: o.user_name,
            user_email: o.user_email,
            key_id: o.key_id,
            key_name: o.key_name,
            // unreadable scopes admit nothing rather than everything
            scopes: match o.scopes.as_deref() {
                None => None,
                Some(s) => Some(serde_json::from_str(s).ok()?),
            },
            key_hash: Arc::from(hash),
            via: Via::Key,
            generation,
            expires_ms,
        }),
        expires_ms,
        banned_until_ms,
    })
}
