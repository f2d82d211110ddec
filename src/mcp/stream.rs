//! SSE event streams of one session, kept for `Last-Event-ID` replay. Each stream (the reply to
//! one POST, or the standalone GET stream) numbers its events; an event id is
//! `<stream>-<seq>`, unique across the session and naming the stream it belongs to, so a resume
//! replays that stream's events only. A stream outlives its HTTP connection: work that is still
//! running keeps buffering, and a GET with `Last-Event-ID` picks the stream up where it broke.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// One SSE stream.
pub struct EventStream {
    id: u64,
    cap: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    buf: VecDeque<Frame>,
    seq: u64,
    live: Option<mpsc::UnboundedSender<Frame>>,
    done: bool,
}

impl EventStream {
    fn new(id: u64, cap: usize) -> Self {
        EventStream {
            id,
            cap,
            inner: Mutex::new(Inner {
                buf: VecDeque::new(),
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

    /// Appends a JSON-RPC message: buffered for replay and sent to the attached connection.
    pub fn push(&self, msg: Json) {
        let data: Arc<str> = Arc::from(msg.into_string());
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
        g.buf.push_back(frame);
        if g.buf.len() > self.cap {
            g.buf.pop_front();
        }
    }

    /// Ends the stream: the attached connection closes once it has sent what is queued.
    pub fn finish(&self) {
        let mut g = self.inner.lock().unwrap();
        g.done = true;
        g.live = None;
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

/// Parses a `Last-Event-ID` of the form `<stream>-<seq>`.
pub fn parse_event_id(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The streams of one session.
pub struct StreamHub {
    cap: usize,
    next: AtomicU64,
    inner: Mutex<HubInner>,
}

struct HubInner {
    streams: HashMap<u64, Arc<EventStream>>,
    standalone: Option<Arc<EventStream>>,
}

impl StreamHub {
    /// A hub whose streams keep `cap` events each for replay.
    pub fn new(cap: usize) -> Self {
        StreamHub {
            cap,
            next: AtomicU64::new(1),
            inner: Mutex::new(HubInner {
                streams: HashMap::new(),
                standalone: None,
            }),
        }
    }

    /// Opens a new stream (for a POST reply).
    pub fn open(&self) -> Arc<EventStream> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let s = Arc::new(EventStream::new(id, self.cap));
        let mut g = self.inner.lock().unwrap();
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
                g.streams.remove(&k);
            }
        }
        g.streams.insert(id, s.clone());
        s
    }

    /// Opens the standalone GET stream; `None` while another connection holds it open.
    pub fn open_standalone(&self) -> Option<Arc<EventStream>> {
        {
            let g = self.inner.lock().unwrap();
            if g.standalone.as_ref().is_some_and(|s| s.is_attached()) {
                return None;
            }
        }
        let s = self.open();
        let mut g = self.inner.lock().unwrap();
        if let Some(old) = g.standalone.replace(s.clone()) {
            old.finish();
        }
        Some(s)
    }

    /// A stream by number.
    pub fn get(&self, id: u64) -> Option<Arc<EventStream>> {
        self.inner.lock().unwrap().streams.get(&id).cloned()
    }

    /// Sends a message on the standalone stream, if one is open; false otherwise.
    pub fn push_standalone(&self, msg: Json) -> bool {
        let s = self.inner.lock().unwrap().standalone.clone();
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
        let g = self.inner.lock().unwrap();
        for s in g.streams.values() {
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
        let hub = StreamHub::new(16);
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
    fn second_standalone_stream_is_refused_while_first_is_open() {
        let hub = StreamHub::new(4);
        let s = hub.open_standalone().unwrap();
        let rx = s.attach(0);
        assert!(hub.open_standalone().is_none());
        drop(rx);
        assert!(hub.open_standalone().is_some());
    }
}
