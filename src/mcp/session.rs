//! MCP sessions: issued at `initialize` with an id from the OS CSPRNG, bound to the user that
//! opened them and to one MCP server, capped in number, expired after an idle time. Each session
//! is a row in `trex.db` (so it survives a restart and any node can resume it) plus, while in use,
//! an in-memory [`Session`] holding what cannot be a row: its SSE streams, in-flight requests and
//! pending server→client requests. Activity times are flushed to the row in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::protocol::{LOG_LEVELS, log_level_index};
use super::stream::StreamHub;
use crate::auth::Principal;
use crate::error::Result;
use crate::store::{Store, sessions as rows};
use crate::util::{ms_rfc3339, now_ms, now_rfc3339, random_hex, rfc3339_ms};

/// A live session.
pub struct Session {
    pub id: String,
    /// The MCP server (by id) the session was opened on.
    pub server: String,
    pub user_id: String,
    pub key_id: String,
    pub protocol_version: Arc<str>,
    pub client_info: Value,
    /// Shared with every request's context (no per-request copy).
    pub client_capabilities: Arc<Value>,
    log_level: AtomicU8,
    initialized: AtomicBool,
    last_seen: AtomicI64,
    persisted_seen: AtomicI64,
    /// True once the row is in the store (then a missing row means the session was ended
    /// elsewhere: another node, the CLI).
    stored: AtomicBool,
    /// SSE streams for replay.
    pub streams: StreamHub,
    inflight: Mutex<HashMap<String, CancellationToken>>,
    pending: Mutex<HashMap<String, oneshot::Sender<std::result::Result<Value, Value>>>>,
    next_request: AtomicU64,
    /// Cancelled when the session ends; ends its streams and in-flight work.
    pub closed: CancellationToken,
}

impl Session {
    /// `replay`: events kept per stream and bytes kept per session for `Last-Event-ID`.
    fn from_row(r: rows::SessionRow, replay: (usize, usize)) -> Session {
        let seen = rfc3339_ms(&r.last_seen_at).unwrap_or(0);
        Session {
            id: r.id,
            server: r.server,
            user_id: r.user_id,
            key_id: r.key_id,
            protocol_version: Arc::from(r.protocol_version),
            client_info: serde_json::from_str(&r.client_info).unwrap_or(Value::Null),
            client_capabilities: Arc::new(
                serde_json::from_str(&r.client_capabilities).unwrap_or(Value::Null),
            ),
            log_level: AtomicU8::new(log_level_index(&r.log_level).unwrap_or(1)),
            initialized: AtomicBool::new(r.initialized),
            last_seen: AtomicI64::new(seen),
            persisted_seen: AtomicI64::new(seen),
            stored: AtomicBool::new(true),
            streams: StreamHub::new(replay.0, replay.1),
            inflight: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            closed: CancellationToken::new(),
        }
    }

    /// Records activity now.
    pub fn touch(&self) {
        self.last_seen.store(now_ms(), Ordering::Relaxed);
    }

    fn idle_since(&self) -> i64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    /// True once the client sent `notifications/initialized`.
    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Relaxed)
    }

    /// Marks the session initialized; true when it was not already.
    pub fn set_initialized(&self) -> bool {
        !self.initialized.swap(true, Ordering::Relaxed)
    }

    /// The minimum level of `notifications/message` this client wants.
    pub fn log_level(&self) -> u8 {
        self.log_level.load(Ordering::Relaxed)
    }

    /// Sets the minimum log level (an index into `LOG_LEVELS`).
    pub fn set_log_level(&self, level: u8) {
        self.log_level.store(level, Ordering::Relaxed);
    }

    /// The name of the current log level.
    pub fn log_level_name(&self) -> &'static str {
        LOG_LEVELS[self.log_level() as usize]
    }

    /// Registers an in-flight request so `notifications/cancelled` can stop it.
    pub fn begin_request(&self, id: &Value) -> CancellationToken {
        let t = CancellationToken::new();
        self.inflight
            .lock()
            .unwrap()
            .insert(id.to_string(), t.clone());
        t
    }

    /// Forgets an in-flight request.
    pub fn end_request(&self, id: &Value) {
        self.inflight.lock().unwrap().remove(&id.to_string());
    }

    /// Cancels an in-flight request; false when it is unknown or already done.
    pub fn cancel_request(&self, id: &Value) -> bool {
        match self.inflight.lock().unwrap().remove(&id.to_string()) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    /// Allocates an id for a server→client request and a receiver for its answer.
    pub fn register_client_request(
        &self,
    ) -> (Value, oneshot::Receiver<std::result::Result<Value, Value>>) {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        let id = format!("trex-{n}");
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id.clone(), tx);
        (Value::String(id), rx)
    }

    /// Delivers the client's answer to a server→client request; false when nobody waits for it.
    pub fn answer_client_request(
        &self,
        id: &Value,
        outcome: std::result::Result<Value, Value>,
    ) -> bool {
        let key = match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match self.pending.lock().unwrap().remove(&key) {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Forgets a server→client request that will not be answered.
    pub fn forget_client_request(&self, id: &Value) {
        if let Value::String(s) = id {
            self.pending.lock().unwrap().remove(s);
        }
    }

    fn close(&self) {
        self.closed.cancel();
        for t in self.inflight.lock().unwrap().values() {
            t.cancel();
        }
        self.streams.close_all();
    }
}

/// Why a session could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// At the configured maximum of live sessions.
    Full,
    /// The user is at the per-user maximum.
    UserFull,
    /// The store failed.
    Store(crate::error::Error),
}

/// All sessions of this process.
pub struct Sessions {
    store: Store,
    map: RwLock<HashMap<String, Arc<Session>>>,
    max: usize,
    max_per_user: usize,
    idle_ms: i64,
    replay: (usize, usize),
    /// Server-wide change notifications `(server id, method)` for the stateless era's
    /// `subscriptions/listen` streams (sessions get theirs on their standalone stream).
    changes: tokio::sync::broadcast::Sender<(Arc<str>, Arc<str>)>,
}

impl Sessions {
    /// A session table over `store`.
    pub fn new(
        store: Store,
        max: usize,
        max_per_user: usize,
        idle_secs: u64,
        replay: (usize, usize),
    ) -> Self {
        Sessions {
            changes: tokio::sync::broadcast::channel(64).0,
            store,
            map: RwLock::new(HashMap::new()),
            max,
            max_per_user,
            idle_ms: (idle_secs as i64).saturating_mul(1000),
            replay,
        }
    }

    fn expired(&self, s: &Session, now: i64) -> bool {
        now - s.idle_since() > self.idle_ms
    }

    /// Loads the live sessions of the store (at start-up, so the cap counts them).
    pub async fn load(&self) -> Result<usize> {
        let cutoff = ms_rfc3339(now_ms() - self.idle_ms);
        let live = self.store.run(move |c| rows::live(c, &cutoff)).await?;
        let mut m = self.map.write().unwrap();
        for r in live {
            m.insert(r.id.clone(), Arc::new(Session::from_row(r, self.replay)));
        }
        Ok(m.len())
    }

    /// Number of live sessions in memory.
    pub fn len(&self) -> usize {
        self.map.read().unwrap().len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens a session for `principal` on `server`.
    pub async fn create(
        &self,
        server: &str,
        principal: &Principal,
        protocol_version: &str,
        client_info: Value,
        client_capabilities: Value,
    ) -> std::result::Result<Arc<Session>, CreateError> {
        let now = now_rfc3339();
        let row = rows::SessionRow {
            id: random_hex(32),
            server: server.to_string(),
            user_id: principal.user_id.clone(),
            key_id: principal.key_id.clone(),
            protocol_version: protocol_version.to_string(),
            client_info: client_info.to_string(),
            client_capabilities: client_capabilities.to_string(),
            log_level: "info".into(),
            initialized: false,
            created_at: now.clone(),
            last_seen_at: now,
        };
        let session = Arc::new(Session::from_row(row.clone(), self.replay));
        session.stored.store(false, Ordering::Release);
        session.touch();
        // the caps are counted in the store, in the write that adds the row: they hold for all
        // nodes of a shared store together (activity reaches the rows within a flush interval)
        let (cutoff, max, per_user) = (
            ms_rfc3339(now_ms() - self.idle_ms),
            self.max,
            self.max_per_user,
        );
        match self
            .store
            .write(move |c| rows::insert_capped(c, &row, &cutoff, max, per_user))
            .await
        {
            Ok(rows::Capped::Inserted) => {}
            Ok(rows::Capped::Full) => return Err(CreateError::Full),
            Ok(rows::Capped::UserFull) => return Err(CreateError::UserFull),
            Err(e) => return Err(CreateError::Store(e)),
        }
        session.stored.store(true, Ordering::Release);
        self.map
            .write()
            .unwrap()
            .insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// A live session by id: from memory, else from the store (after a restart, or opened by
    /// another node). Expired sessions are removed and reported as absent.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<Session>>> {
        let now = now_ms();
        let found = self.map.read().unwrap().get(id).cloned();
        if let Some(s) = found {
            if self.expired(&s, now) {
                self.remove(id).await?;
                return Ok(None);
            }
            return Ok(Some(s));
        }
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let key = id.to_string();
        let Some(row) = self.store.run(move |c| rows::get(c, &key)).await? else {
            return Ok(None);
        };
        let s = Arc::new(Session::from_row(row, self.replay));
        if self.expired(&s, now) {
            self.remove(id).await?;
            return Ok(None);
        }
        let mut m = self.map.write().unwrap();
        Ok(Some(m.entry(id.to_string()).or_insert(s).clone()))
    }

    /// Ends a session: its streams close, its row goes. True when it existed.
    pub async fn remove(&self, id: &str) -> Result<bool> {
        let s = self.map.write().unwrap().remove(id);
        if let Some(s) = &s {
            s.close();
        }
        let key = id.to_string();
        let deleted = self.store.run(move |c| rows::delete(c, &key)).await?;
        Ok(s.is_some() || deleted)
    }

    /// Forgets the sessions held here whose rows are gone (ended on another node or by the
    /// CLI); called when the store reports a change. Returns how many.
    pub async fn revalidate(&self) -> Result<usize> {
        let held: Vec<String> = self
            .map
            .read()
            .unwrap()
            .values()
            .filter(|s| s.stored.load(Ordering::Acquire))
            .map(|s| s.id.clone())
            .collect();
        if held.is_empty() {
            return Ok(0);
        }
        let ask = held.clone();
        let kept: std::collections::HashSet<String> = self
            .store
            .run(move |c| rows::existing(c, &ask))
            .await?
            .into_iter()
            .collect();
        let gone: Vec<Arc<Session>> = {
            let mut m = self.map.write().unwrap();
            held.iter()
                .filter(|id| !kept.contains(*id))
                .filter_map(|id| m.remove(id))
                .collect()
        };
        for s in &gone {
            s.close();
        }
        Ok(gone.len())
    }

    /// Ends every session of a user (ban, delete, revocation).
    pub async fn remove_user(&self, user_id: &str) -> Result<usize> {
        let ids: Vec<String> = self
            .map
            .read()
            .unwrap()
            .values()
            .filter(|s| s.user_id == user_id)
            .map(|s| s.id.clone())
            .collect();
        for id in &ids {
            self.remove(id).await?;
        }
        Ok(ids.len())
    }

    /// Persists a session's log level.
    pub async fn save_log_level(&self, s: &Session) -> Result<()> {
        let (id, level) = (s.id.clone(), s.log_level_name());
        self.store
            .run(move |c| rows::set_log_level(c, &id, level))
            .await
    }

    /// Persists the `initialized` flag.
    pub async fn save_initialized(&self, s: &Session) -> Result<()> {
        let id = s.id.clone();
        self.store
            .run(move |c| rows::mark_initialized(c, &id))
            .await
    }

    /// Removes idle sessions from memory and store; returns how many went from memory.
    pub async fn reap(&self) -> Result<usize> {
        let now = now_ms();
        let dead: Vec<Arc<Session>> = {
            let mut m = self.map.write().unwrap();
            let ids: Vec<String> = m
                .iter()
                .filter(|(_, s)| self.expired(s, now))
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| m.remove(k)).collect()
        };
        for s in &dead {
            s.close();
        }
        let cutoff = ms_rfc3339(now - self.idle_ms);
        self.store
            .run(move |c| rows::delete_idle(c, &cutoff))
            .await?;
        Ok(dead.len())
    }

    /// Writes activity times that changed since the last flush.
    pub async fn flush(&self) -> Result<()> {
        let batch: Vec<(String, String)> = self
            .map
            .read()
            .unwrap()
            .values()
            .filter_map(|s| {
                let seen = s.last_seen.load(Ordering::Relaxed);
                let old = s.persisted_seen.swap(seen, Ordering::Relaxed);
                (seen > old).then(|| (s.id.clone(), ms_rfc3339(seen)))
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        self.store.run(move |c| rows::touch(c, &batch)).await
    }

    /// Sends notification `method` (no params) on the standalone stream of every session of
    /// server `server_id` that has one open; returns how many got it.
    /// Change notifications of every server from now on (for `subscriptions/listen`).
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<(Arc<str>, Arc<str>)> {
        self.changes.subscribe()
    }

    pub fn notify_server(&self, server_id: &str, method: &str) -> usize {
        let _ = self.changes.send((Arc::from(server_id), Arc::from(method)));
        let msg = super::protocol::Json::of(&super::protocol::notification(
            method,
            serde_json::json!({}),
        ));
        let sessions: Vec<Arc<Session>> = self
            .map
            .read()
            .unwrap()
            .values()
            .filter(|s| s.server == server_id)
            .cloned()
            .collect();
        sessions
            .iter()
            .filter(|s| s.streams.push_standalone(msg.clone()))
            .count()
    }

    /// Ends the streams of every session (shutdown); rows stay, so sessions resume after restart.
    pub fn close_streams(&self) {
        for s in self.map.read().unwrap().values() {
            s.close();
        }
    }
}
