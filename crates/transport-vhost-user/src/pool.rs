//! Where requests run when not on their queue's own worker thread: a fixed thread pool, and
//! one-off threads for requests that may block for long.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

/// A unit of work: serve one request and complete it on its queue.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads taking jobs from a shared channel. Dropping the pool lets the
/// threads finish the queued jobs and exit; they are not joined.
pub(crate) struct ThreadPool {
    tx: Mutex<Sender<Job>>,
}

impl ThreadPool {
    /// Starts `size` threads named `name`.
    pub(crate) fn new(size: usize, name: &str) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..size {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || worker(&rx))?;
        }
        Ok(Self { tx: Mutex::new(tx) })
    }

    /// Queues `job`; gives it back if the pool has shut down.
    pub(crate) fn execute(&self, job: Job) -> Result<(), Job> {
        let tx = match self.tx.lock() {
            Ok(tx) => tx,
            Err(poisoned) => poisoned.into_inner(),
        };
        tx.send(job).map_err(|e| e.0)
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = match rx.lock() {
                Ok(rx) => rx,
                Err(poisoned) => poisoned.into_inner(),
            };
            rx.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Runs jobs that may block for long (SETLKW) on threads of their own, so that they never
/// hold up a queue or the pool. At most `limit` such threads exist at once; beyond that the
/// job is handed back and the caller runs it itself.
pub(crate) struct BlockingRunner {
    in_flight: Arc<AtomicUsize>,
    limit: usize,
}

impl BlockingRunner {
    /// A runner allowing `limit` concurrent threads.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Starts `job` on a new thread, or gives it back when the limit is reached or the thread
    /// cannot be created.
    pub(crate) fn spawn(&self, job: Job) -> Result<(), Job> {
        let prev = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if prev >= self.limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(job);
        }
        // Hand the job over through a slot so that it can be given back if spawning fails.
        let slot = Arc::new(Mutex::new(Some(job)));
        let thread_slot = Arc::clone(&slot);
        let in_flight = Arc::clone(&self.in_flight);
        let spawned = thread::Builder::new()
            .name("vhostfs-blocking".into())
            .spawn(move || {
                let job = match thread_slot.lock() {
                    Ok(mut s) => s.take(),
                    Err(poisoned) => poisoned.into_inner().take(),
                };
                if let Some(job) = job {
                    job();
                }
                in_flight.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            let job = match slot.lock() {
                Ok(mut s) => s.take(),
                Err(poisoned) => poisoned.into_inner().take(),
            };
            if let Some(job) = job {
                return Err(job);
            }
        }
        Ok(())
    }

    /// Threads running right now.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn pool_runs_jobs() {
        let pool = ThreadPool::new(2, "test").unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 0..10 {
            let tx = tx.clone();
            assert!(pool.execute(Box::new(move || tx.send(i).unwrap())).is_ok());
        }
        let mut got: Vec<i32> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn blocking_runner_limits_threads() {
        let runner = BlockingRunner::new(1);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let d = done_tx.clone();
        assert!(runner
            .spawn(Box::new(move || {
                release_rx.recv().unwrap();
                d.send(1).unwrap();
            }))
            .is_ok());
        // The limit is reached: the second job comes back to the caller.
        let back = runner.spawn(Box::new(move || done_tx.send(2).unwrap()));
        let job = back.expect_err("job handed back");
        job();
        assert_eq!(done_rx.recv().unwrap(), 2);
        release_tx.send(()).unwrap();
        assert_eq!(done_rx.recv().unwrap(), 1);
        for _ in 0..100 {
            if runner.in_flight() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("in-flight count not released");
    }
}
