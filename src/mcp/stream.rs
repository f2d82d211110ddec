//! SSE event streams of one session, kept for `Last-Event-ID` replay. Each stream (the reply to
//! one POST, or the standalone GET stream) numbers its events; an event id is
//! `<stream>-<seq>`, unique across the session and naming the stream it belongs to, so a resume
//! replays that stream's events only. A stream outlives its HTTP connection: work that is still
//! running keeps buffering, and a GET with `Last-Event-ID` picks the stream up where it broke.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::protocol::Json;
use tokio::sync::mpsc;

/// One event on the wire: its id and its JSON data.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: String,
    pub data: Arc<str>,
}

/// Receives the frames of a stream attached to one HTTP connection.
pub type FrameRx = mpsc::UnboundedReceiver<Frame>;

/// Streams kept per session before the oldest finished ones are dropped.
const KEEP_STREAMS: usize = 32;

/// What the streams of one session share: the replay byte budget and the stream table.
struct Shared {
    /// Events kept per stream.
    cap: usize,
    /// Bytes of buffered events the session may keep for replay.
    budget: usize,
    /// Bytes buffered now, over every stream of the session.
    used: AtomicUsize,
    next: AtomicU64,
    inner: Mutex<HubInner>,
}

/// One SSE stream.
pub struct EventStream {
    id: u64,
    shared: Weak<Shared>,
    inner: Mutex<Inner>,
}

struct Inner {
    buf: VecDeque<Frame>,
    /// Bytes of `buf`.
    bytes: usize,
    seq: u64,
    live: Option<mpsc::UnboundedSender<Frame>>,
    done: bool,
}

impl Inner {
    fn pop_front(&mut self) -> usize {
        match self.buf.pop_front() {
            Some(f) => {
                self.bytes -= f.data.len();
                f.data.len()
            }
            None => 0,
        }
    }

    fn clear(&mut self) -> usize {
        let n = self.bytes;
        self.buf.clear();
        self.bytes = 0;
        n
    }
}

impl EventStream {
    fn new(id: u64, shared: Weak<Shared>) -> Self {
        EventStream {
            id,
            shared,
            inner: Mutex::new(Inner {
                buf: VecDeque::new(),
                bytes: 0,
                seq: 0,
                live: None,
                done: false,
            }),
        }
    }

    /// The stream's number within its session.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The id of the priming event (before any message).
    pub fn priming_id(&self) -> String {
        format!("{}-0", self.id)
    }

    /// Appends a JSON-RPC message: sent to the attached connection and buffered for replay
    /// within the session's byte budget (an event larger than the whole budget is sent live only).
    pub fn push(&self, msg: Json) {
        let data: Arc<str> = Arc::from(msg.into_string());
        let shared = self.shared.upgrade();
        let (cap, budget) = shared.as_ref().map_or((0, 0), |s| (s.cap, s.budget));
        let mut freed = 0;
        let added;
        {
            let mut g = self.inner.lock().unwrap();
            if g.done {
                return;
            }
            g.seq += 1;
            let frame = Frame {
                id: format!("{}-{}", self.id, g.seq),
                data,
            };
            if let Some(tx) = &g.live
                && tx.send(frame.clone()).is_err()
            {
                g.live = None;
            }
            if frame.data.len() <= budget {
                added = frame.data.len();
                g.bytes += added;
                g.buf.push_back(frame);
            } else {
                added = 0;
            }
            while g.buf.len() > cap {
                freed += g.pop_front();
            }
        }
        if let Some(s) = shared {
            s.used.fetch_add(added, Ordering::AcqRel);
            s.used.fetch_sub(freed, Ordering::AcqRel);
            if s.used.load(Ordering::Acquire) > s.budget {
                evict(&s);
            }
        }
    }

    /// Ends the stream. When a connection is attached and open, its events were handed to it:
    /// the replay buffer is let go at once (delivered and closed). Otherwise the events stay for
    /// a `Last-Event-ID` resume, within the session's budget.
    pub fn finish(&self) {
        let freed = {
            let mut g = self.inner.lock().unwrap();
            g.done = true;
            let delivered = g.live.as_ref().is_some_and(|tx| !tx.is_closed());
            g.live = None;
            if delivered { g.clear() } else { 0 }
        };
        if let Some(s) = self.shared.upgrade() {
            s.used.fetch_sub(freed, Ordering::AcqRel);
        }
    }

    /// Closes the attached connection without ending the stream (SSE polling): events keep
    /// buffering until the client resumes with `Last-Event-ID`.
    pub fn detach(&self) {
        self.inner.lock().unwrap().live = None;
    }

    /// True once [`finish`](Self::finish) was called.
    pub fn is_done(&self) -> bool {
        self.inner.lock().unwrap().done
    }

    /// True while a connection is attached and still open.
    pub fn is_attached(&self) -> bool {
        let g = self.inner.lock().unwrap();
        g.live.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Bytes this stream keeps for replay.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.lock().unwrap().bytes
    }

    /// Attaches a new connection: the buffered events after `after_seq` first, then live ones
    /// (unless the stream is already done). A previous connection is detached.
    pub fn attach(&self, after_seq: u64) -> FrameRx {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut g = self.inner.lock().unwrap();
        for f in &g.buf {
            let seq =
                f.id.rsplit('-')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
            if seq > after_seq {
                let _ = tx.send(f.clone());
            }
        }
        if !g.done {
            g.live = Some(tx);
        }
        rx
    }
}

/// Brings a session's buffered bytes back under its budget: the oldest finished streams' buffers
/// go first, then the oldest events of the streams still running. Takes no stream lock while it
/// holds the table lock.
fn evict(s: &Shared) {
    let mut streams: Vec<Arc<EventStream>> =
        s.inner.lock().unwrap().streams.values().cloned().collect();
    streams.sort_by_key(|x| (!x.is_done(), x.id));
    for st in streams {
        if s.used.load(Ordering::Acquire) <= s.budget {
            return;
        }
        let mut g = st.inner.lock().unwrap();
        while !g.buf.is_empty() && s.used.load(Ordering::Acquire) > s.budget {
            let n = g.pop_front();
            s.used.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// Parses a `Last-Event-ID` of the form `<stream>-<seq>`.
pub fn parse_event_id(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The streams of one session.
pub struct StreamHub {
    shared: Arc<Shared>,
}

struct HubInner {
    streams: HashMap<u64, Arc<EventStream>>,
    standalone: Option<Arc<EventStream>>,
}

impl StreamHub {
    /// A hub whose streams keep `cap` events each and `budget` bytes in all for replay.
    pub fn new(cap: usize, budget: usize) -> Self {
        StreamHub {
            shared: Arc::new(Shared {
                cap,
                budget,
                used: AtomicUsize::new(0),
                next: AtomicU64::new(1),
                inner: Mutex::new(HubInner {
                    streams: HashMap::new(),
                    standalone: None,
                }),
            }),
        }
    }

    /// Bytes buffered for replay over every stream of the session.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.used.load(Ordering::Acquire)
    }

    /// Opens a new stream (for a POST reply).
    pub fn open(&self) -> Arc<EventStream> {
        let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let s = Arc::new(EventStream::new(id, Arc::downgrade(&self.shared)));
        let mut g = self.shared.inner.lock().unwrap();
        // streams that ended with nothing left to replay are gone for good
        let empty: Vec<u64> = g
            .streams
            .iter()
            .filter(|(_, s)| s.is_done() && s.buffered_bytes() == 0)
            .map(|(k, _)| *k)
            .collect();
        for k in empty {
            g.streams.remove(&k);
        }
        if g.streams.len() >= KEEP_STREAMS {
            let mut done: Vec<u64> = g
                .streams
                .iter()
                .filter(|(_, s)| s.is_done())
                .map(|(k, _)| *k)
                .collect();
            done.sort_unstable();
            let excess = g.streams.len() + 1 - KEEP_STREAMS;
            for k in done.into_iter().take(excess) {
                if let Some(gone) = g.streams.remove(&k) {
                    let n = gone.inner.lock().unwrap().clear();
                    self.shared.used.fetch_sub(n, Ordering::AcqRel);
                }
            }
        }
        g.streams.insert(id, s.clone());
        s
    }

    /// Opens the standalone GET stream; `None` while another connection holds it open.
    pub fn open_standalone(&self) -> Option<Arc<EventStream>> {
        {
            let g = self.shared.inner.lock().unwrap();
            if g.standalone.as_ref().is_some_and(|s| s.is_attached()) {
                return None;
            }
        }
        let s = self.open();
        let old = self
            .shared
            .inner
            .lock()
            .unwrap()
            .standalone
            .replace(s.clone());
        if let Some(old) = old {
            old.finish();
        }
        Some(s)
    }

    /// A stream by number.
    pub fn get(&self, id: u64) -> Option<Arc<EventStream>> {
        self.shared.inner.lock().unwrap().streams.get(&id).cloned()
    }

    /// Sends a message on the standalone stream, if one is open; false otherwise.
    pub fn push_standalone(&self, msg: Json) -> bool {
        let s = self.shared.inner.lock().unwrap().standalone.clone();
        match s {
            Some(s) if !s.is_done() => {
                s.push(msg);
                true
            }
            _ => false,
        }
    }

    /// Ends every stream (session closed or server stopping).
    pub fn close_all(&self) {
        let streams: Vec<Arc<EventStream>> = self
            .shared
            .inner
            .lock()
            .unwrap()
            .streams
            .values()
            .cloned()
            .collect();
        for s in streams {
            s.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replay_after_disconnect_gives_only_that_streams_later_events() {
        let hub = StreamHub::new(16, 1 << 20);
        let a = hub.open();
        let b = hub.open();
        let rx = a.attach(0);
        a.push(Json::of(&json!({"n": 1})));
        drop(rx); // the client went away
        a.push(Json::of(&json!({"n": 2})));
        b.push(Json::of(&json!({"other": true})));
        a.push(Json::of(&json!({"n": 3})));
        a.finish();
        let mut rx = hub.get(a.id()).unwrap().attach(1);
        let mut got = Vec::new();
        while let Ok(f) = rx.try_recv() {
            got.push(f.data.to_string());
        }
        assert_eq!(got, vec![r#"{"n":2}"#, r#"{"n":3}"#]);
        assert_eq!(parse_event_id(&format!("{}-7", a.id())), Some((a.id(), 7)));
    }

    #[test]
    fn replay_buffers_keep_to_the_session_budget_and_let_go_of_delivered_streams() {
        let hub = StreamHub::new(1000, 10_000);
        let big = || Json::of(&json!({"x": "y".repeat(3000)}));
        // delivered and closed: nothing kept
        let a = hub.open();
        let rx = a.attach(0);
        a.push(big());
        a.finish();
        assert_eq!(hub.buffered_bytes(), 0);
        drop(rx);
        // undelivered (client gone): kept within the budget, oldest finished first
        for _ in 0..10 {
            let s = hub.open();
            s.push(big());
            s.push(big());
            s.finish();
        }
        assert!(hub.buffered_bytes() <= 10_000, "{}", hub.buffered_bytes());
        // an event larger than the whole budget is sent live but never kept
        let s = hub.open();
        let mut rx = s.attach(0);
        s.push(Json::of(&json!({"x": "z".repeat(20_000)})));
        assert!(rx.try_recv().is_ok());
        assert!(hub.buffered_bytes() <= 10_000);
    }

    #[test]
    fn second_standalone_stream_is_refused_while_first_is_open() {
        let hub = StreamHub::new(4, 1 << 20);
        let s = hub.open_standalone().unwrap();
        let rx = s.attach(0);
        assert!(hub.open_standalone().is_none());
        drop(rx);
        assert!(hub.open_standalone().is_some());
    }
}
