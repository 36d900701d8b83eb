//! Interrupting a SETLKW that waits for a lock.
//!
//! A SETLKW may wait forever in `fcntl(F_SETLKW)`/`flock`. When the guest gives up (the
//! waiting process got a signal) the kernel sends INTERRUPT naming the SETLKW's `unique`.
//! While a SETLKW is inside the file system, its `unique` and the OS thread id running it are
//! in a table. INTERRUPT looks the `unique` up and sends [`INTERRUPT_SIGNAL`] to that thread
//! with `tgkill`. The signal's handler does nothing and is installed without `SA_RESTART`, so
//! the blocking syscall fails with `EINTR`, which the file system returns and the server sends
//! to the guest, as the kernel expects for an interrupted request.
//!
//! Races:
//! - The entry is removed (under the table lock) before the SETLKW's reply is written, and the
//!   signal is sent under the same lock, so a signal only ever goes to a thread that is still
//!   inside that SETLKW's file-system call (or just leaving it; a stray signal there is
//!   harmless since the handler does nothing).
//! - An INTERRUPT that arrives before its SETLKW registered (different queues or threads) is
//!   remembered in a small bounded FIFO; the SETLKW then fails with `EINTR` at once.
//! - A signal that lands after registration but before the thread enters the blocking
//!   syscall would be lost (the kernel does not resend INTERRUPT). So after the first signal
//!   a short-lived helper thread re-sends it with growing pauses (1 ms doubling to 64 ms,
//!   for about [`REKICK_FOR`]) for as long as that same registration is still in the table.
//! - INTERRUPT for a `unique` that is not (yet) waiting is otherwise ignored; FUSE allows
//!   that (the kernel only needs a reply to the original request).
//!
//! The signal handler is installed process-wide when the first [`Server`](crate::Server) is
//! made (so before any seccomp filter is applied, normally), and the signal is unblocked in
//! the thread that waits (a daemon may block signals in its worker threads). A sandbox must
//! allow `tgkill`, `rt_sigprocmask` and thread creation for this to work.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, Once};

/// The signal used to kick a thread out of a blocking lock call.
pub const INTERRUPT_SIGNAL: libc::c_int = libc::SIGUSR2;

/// How many early INTERRUPTs (for requests not yet waiting) are remembered.
const EARLY_MAX: usize = 64;

/// How long an interrupted request keeps being signalled while it is still waiting.
pub(crate) const REKICK_FOR: std::time::Duration = std::time::Duration::from_secs(2);

static INSTALL: Once = Once::new();
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn noop_handler(_sig: libc::c_int) {}

/// Installs the no-op, non-restarting handler for [`INTERRUPT_SIGNAL`] once; true when it is
/// in place.
pub(crate) fn install_handler() -> bool {
    INSTALL.call_once(|| {
        // SAFETY: `sa` is fully initialised (zeroed, then handler and empty mask set); the
        // handler is async-signal-safe (it does nothing). No SA_RESTART, so blocking calls
        // return EINTR.
        let ok = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = noop_handler as *const () as libc::sighandler_t;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(INTERRUPT_SIGNAL, &sa, std::ptr::null_mut()) == 0
        };
        if !ok {
            tracing::warn!(
                "cannot install the SETLKW interrupt signal handler: {}",
                std::io::Error::last_os_error()
            );
        }
        INSTALLED.store(ok, std::sync::atomic::Ordering::Release);
    });
    INSTALLED.load(std::sync::atomic::Ordering::Acquire)
}

/// Makes sure the calling thread can receive [`INTERRUPT_SIGNAL`].
fn unblock_signal() {
    // SAFETY: `set` is initialised by sigemptyset before use; pthread_sigmask only changes
    // this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, INTERRUPT_SIGNAL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

fn current_tid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// One waiting request: the thread running it and a serial number that tells this
/// registration apart from a later one with the same `unique`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiter {
    tid: libc::pid_t,
    serial: u64,
}

#[derive(Default)]
struct State {
    waiting: HashMap<u64, Waiter>,
    early: VecDeque<u64>,
    next_serial: u64,
}

/// The table of waiting SETLKW requests.
#[derive(Default)]
pub(crate) struct Interrupts {
    state: std::sync::Arc<Mutex<State>>,
}

/// Registration of one waiting request; dropping it unregisters.
pub(crate) struct Registration<'a> {
    table: &'a Interrupts,
    unique: u64,
    waiter: Waiter,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut st = self.table.lock();
        if st.waiting.get(&self.unique) == Some(&self.waiter) {
            st.waiting.remove(&self.unique);
        }
    }
}

fn lock_state(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends the interrupt signal to thread `tid` of this process.
fn kick(tid: libc::pid_t) {
    // SAFETY: tgkill only sends a signal; the handler for it is installed (waiters exist only
    // after `install_handler` succeeded) and does nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            tid,
            INTERRUPT_SIGNAL as libc::c_long,
        )
    };
    if rc != 0 {
        tracing::debug!(
            "tgkill for INTERRUPT failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// What [`Interrupts::register`] found.
pub(crate) enum Registered<'a> {
    /// Waiting may start; keep the registration alive while waiting.
    Waiting(Option<Registration<'a>>),
    /// An INTERRUPT already came for this request: fail it with `EINTR`.
    AlreadyInterrupted,
}

impl Interrupts {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    /// Registers the calling thread as running the waiting request `unique`.
    pub(crate) fn register(&self, unique: u64) -> Registered<'_> {
        if !install_handler() {
            return Registered::Waiting(None);
        }
        unblock_signal();
        let tid = current_tid();
        let mut st = self.lock();
        if let Some(pos) = st.early.iter().position(|&u| u == unique) {
            st.early.remove(pos);
            return Registered::AlreadyInterrupted;
        }
        if st.waiting.contains_key(&unique) {
            // A duplicate unique (a misbehaving guest): the first one keeps the entry.
            return Registered::Waiting(None);
        }
        st.next_serial += 1;
        let waiter = Waiter {
            tid,
            serial: st.next_serial,
        };
        st.waiting.insert(unique, waiter);
        Registered::Waiting(Some(Registration {
            table: self,
            unique,
            waiter,
        }))
    }

    /// Handles INTERRUPT for `unique`: signals its thread if it is waiting, otherwise
    /// remembers it for a while in case the request has not started waiting yet.
    pub(crate) fn interrupt(&self, unique: u64) {
        let mut st = self.lock();
        if let Some(&waiter) = st.waiting.get(&unique) {
            kick(waiter.tid);
            drop(st);
            self.spawn_rekicker(unique, waiter);
            return;
        }
        if st.early.len() >= EARLY_MAX {
            st.early.pop_front();
        }
        st.early.push_back(unique);
    }

    /// Keeps signalling `waiter` while it is still registered for `unique`, in case the
    /// first signal arrived before it entered the blocking call.
    fn spawn_rekicker(&self, unique: u64, waiter: Waiter) {
        let state = std::sync::Arc::clone(&self.state);
        let spawned = std::thread::Builder::new()
            .name("setlkw-interrupt".into())
            .spawn(move || {
                let mut pause = std::time::Duration::from_millis(1);
                let mut waited = std::time::Duration::ZERO;
                while waited < REKICK_FOR {
                    std::thread::sleep(pause);
                    waited += pause;
                    pause = (pause * 2).min(std::time::Duration::from_millis(64));
                    let st = lock_state(&state);
                    if st.waiting.get(&unique) != Some(&waiter) {
                        return;
                    }
                    kick(waiter.tid);
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("cannot spawn the SETLKW interrupt helper: {e}");
        }
    }

    #[cfg(test)]
    pub(crate) fn waiting_len(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn early_interrupt_is_remembered_and_bounded() {
        let t = Interrupts::default();
        t.interrupt(5);
        assert!(matches!(t.register(5), Registered::AlreadyInterrupted));
        // Consumed: the next registration waits.
        match t.register(5) {
            Registered::Waiting(Some(r)) => drop(r),
            _ => panic!("expected a registration"),
        }
        assert_eq!(t.waiting_len(), 0);
        for u in 100..(100 + 2 * EARLY_MAX as u64) {
            t.interrupt(u);
        }
        assert!(t.lock().early.len() <= EARLY_MAX);
    }

    #[test]
    fn interrupt_wakes_blocked_thread() {
        let t = Arc::new(Interrupts::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let t2 = t.clone();
        let h = std::thread::spawn(move || {
            // Like a daemon worker that blocks every signal.
            // SAFETY: `all` is initialised by sigfillset; only this thread's mask changes.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
            }
            let reg = t2.register(7);
            assert!(matches!(reg, Registered::Waiting(Some(_))));
            tx.send(()).unwrap();
            // Dawdle so that the first signal surely lands before the blocking call.
            let spin = std::time::Instant::now();
            while spin.elapsed() < Duration::from_millis(3) {
                std::hint::spin_loop();
            }
            // Block in a syscall that the signal interrupts.
            let mut fds = [0; 2];
            // SAFETY: fds is a valid 2-int array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let mut b = [0u8; 1];
            // SAFETY: reading into a valid 1-byte buffer from our own pipe.
            let n = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
            let err = std::io::Error::last_os_error();
            // SAFETY: closing fds we own.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            drop(reg);
            (n, err.raw_os_error())
        });
        rx.recv().unwrap();
        // One INTERRUPT, most likely before the thread is inside read(): the helper's
        // re-sends still get it out.
        t.interrupt(7);
        let (n, errno) = h.join().unwrap();
        assert_eq!(n, -1);
        assert_eq!(errno, Some(libc::EINTR));
        assert_eq!(t.waiting_len(), 0);
    }
}
