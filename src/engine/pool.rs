//! The engine's own place to run user SQL, apart from the control store: a fixed set of worker
//! threads (`engine.max_concurrent_queries`) for blocking SQLite work and the same number of
//! admission slots for every query (PostgreSQL ones hold a slot while they run on the async
//! runtime). A call that finds every slot taken waits at most `engine.queue_timeout_secs`, then
//! gets a clear "busy" error — so hundreds of queries in flight never take the blocking threads
//! that `user-list` and every other store operation need.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::EngineError;
use super::memory;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The engine's worker threads and admission slots.
pub struct EnginePool {
    slots: Arc<Semaphore>,
    size: usize,
    queue_timeout: Duration,
    memory_budget: usize,
    jobs: Mutex<mpsc::Sender<Job>>,
    /// Calls waiting for a slot.
    waiting: std::sync::atomic::AtomicUsize,
}

impl EnginePool {
    /// Starts `size` worker threads; each SQLite job may allocate `memory_budget` bytes.
    pub fn new(size: usize, queue_timeout: Duration, memory_budget: usize) -> EnginePool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..size {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("trex-engine-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock().unwrap().recv() {
                            Ok(j) => j,
                            Err(_) => return, // the pool was dropped
                        };
                        job();
                    }
                })
                .expect("cannot start an engine thread");
        }
        EnginePool {
            slots: Arc::new(Semaphore::new(size)),
            size,
            queue_timeout,
            memory_budget,
            jobs: Mutex::new(tx),
            waiting: Default::default(),
        }
    }

    /// Waits for a free slot (bounded by the queue timeout).
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, EngineError> {
        use std::sync::atomic::Ordering;
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let got =
            tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(EngineError::Internal("the engine pool is closed".into())),
            Err(_) => Err(EngineError::Busy(self.size, self.queue_timeout.as_secs())),
        }
    }

    /// `(running, waiting)`: queries holding a slot now, and calls waiting for one.
    pub fn load(&self) -> (usize, usize) {
        (
            self.size - self.slots.available_permits(),
            self.waiting.load(std::sync::atomic::Ordering::Acquire),
        )
    }

    /// Runs blocking SQLite work on an engine thread, under the per-query memory budget.
    pub async fn run<T, F>(&self, f: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, EngineError> + Send + 'static,
    {
        self.run_holding(f).await.map(|(t, _)| t)
    }

    /// [`run`](Self::run), and the slot it ran in, for the caller to keep while it still holds
    /// the (large) result.
    pub async fn run_holding<T, F>(&self, f: F) -> Result<(T, OwnedSemaphorePermit), EngineError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, EngineError> + Send + 'static,
    {
        let permit = self.admit().await?;
        let (tx, rx) = oneshot::channel();
        let budget = self.memory_budget;
        let job: Job = Box::new(move || {
            let r = memory::with_budget(budget, f);
            let _ = tx.send(r.map(|t| (t, permit)));
        });
        self.jobs
            .lock()
            .unwrap()
            .send(job)
            .map_err(|_| EngineError::Internal("the engine threads are gone".into()))?;
        rx.await
            .map_err(|_| EngineError::Internal("an engine job panicked".into()))?
    }
}
