//! The data path's threads: one current-thread runtime per worker, as
//! HAProxy runs one event loop per thread. A listener has a socket per
//! worker (`SO_REUSEPORT`: the kernel spreads new connections), and a
//! connection lives and ends on the worker that accepted it, with the
//! upstream connections it opens, so its wake-ups never cross threads.
//! The cluster, health checks and the admin API run on the process's own
//! runtime beside them.
//!
//! At `threads = 1` there are no workers: everything runs on the one
//! current-thread runtime, as before.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The process's workers, when it has them (set once, at start).
static WORKERS: OnceLock<Workers> = OnceLock::new();

thread_local! {
    /// This thread's worker number, from 1; 0 on any other thread.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// The worker threads' runtimes.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
}

impl Workers {
    /// Starts `n` worker threads, each running its own current-thread
    /// runtime until the process ends.
    fn start(n: usize) -> std::io::Result<Workers> {
        let mut handles = Vec::with_capacity(n);
        for i in 1..=n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            std::thread::Builder::new()
                .name(format!("raftlb-worker-{i}"))
                .spawn(move || {
                    SLOT.with(|s| s.set(i));
                    // Runs the tasks spawned on it until the process exits.
                    rt.block_on(std::future::pending::<()>());
                })?;
        }
        Ok(Workers { handles })
    }

    /// The worker runtimes.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

/// Starts the process's `n` workers (once; `n` ≥ 2). Later calls keep the
/// first set.
pub fn start(n: usize) -> std::io::Result<&'static Workers> {
    if let Some(w) = WORKERS.get() {
        return Ok(w);
    }
    let w = Workers::start(n)?;
    Ok(WORKERS.get_or_init(|| w))
}

/// The process's workers, if it has any.
pub fn get() -> Option<&'static Workers> {
    WORKERS.get()
}

/// How many per-thread slots a structure kept per worker needs: one per
/// worker, and one for every other thread (slot 0).
pub fn slots() -> usize {
    WORKERS.get().map_or(1, |w| w.handles.len() + 1)
}

/// This thread's slot: its worker number, or 0.
pub fn slot() -> usize {
    SLOT.with(Cell::get)
}

/// Spawns `fut` on each worker (`make` builds one per worker, given its
/// index from 0), or once on the current runtime without workers.
pub fn spawn_each<F, Fut>(mut make: F) -> Vec<JoinHandle<()>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    match WORKERS.get() {
        Some(w) => w
            .handles
            .iter()
            .enumerate()
            .map(|(i, h)| h.spawn(make(i)))
            .collect(),
        None => vec![tokio::spawn(make(0))],
    }
}

/// How many sockets a listener binds: one per worker, else one.
pub fn sockets() -> usize {
    WORKERS.get().map_or(1, |w| w.handles.len())
}
