//! Connection deadlines without a timer per request: each connection keeps, in one atomic
//! word, what it is waiting for and since when (whole seconds of the monotonic clock),
//! and a sweeper closes, once a second, every connection past its deadline. A request
//! costs two reads of the clock (no system call) and a few atomic stores, and no wakeup;
//! a deadline is met up to a second late, never early.
//!
//! - A request (headers and body) must arrive within the header timeout of its first
//!   byte; a new connection's first request, within the header timeout of the accept.
//!   Bytes that keep trickling in do not extend it.
//! - A connection with no request in progress (keep-alive, or a client that stopped
//!   reading its answer) is closed after the idle timeout. So is one whose client sent a
//!   partial request in the same packet as a complete one: those bytes are read before the
//!   complete one is answered, and only hyper knows it holds them.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What a connection waits for; the top two bits of its state word.
const RECEIVING: u64 = 0;
const ANSWERING: u64 = 1;
const IDLE: u64 = 2;
const PHASE_SHIFT: u32 = 62;
const SINCE_MASK: u64 = (1 << PHASE_SHIFT) - 1;

pub(super) struct Deadlines {
    started: Instant,
    header_timeout: u64,
    idle_timeout: u64,
    watched: Mutex<Vec<Weak<Watch>>>,
}

/// One connection's phase, and how to close it.
pub(super) struct Watch {
    state: AtomicU64,
    closing: Notify,
}

impl Deadlines {
    pub(super) fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            header_timeout: header_timeout.as_secs(),
            idle_timeout: idle_timeout.as_secs(),
            watched: Mutex::new(Vec::new()),
        })
    }

    /// Whole seconds since the server started.
    fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Starts watching a new connection: its first request is due within the header
    /// timeout.
    pub(super) fn watch(&self) -> Arc<Watch> {
        let watch = Arc::new(Watch { state: AtomicU64::new(state(RECEIVING, self.now())), closing: Notify::new() });
        self.watched.lock().expect("never poisoned").push(Arc::downgrade(&watch));
        watch
    }

    /// Marks that the request being answered has fully arrived.
    pub(super) fn answering(&self, watch: &Watch) {
        watch.state.store(state(ANSWERING, 0), Ordering::Relaxed);
    }

    /// Marks that the connection's request is answered: it is idle until the next one.
    pub(super) fn answered(&self, watch: &Watch) {
        watch.state.store(state(IDLE, self.now()), Ordering::Relaxed);
    }

    /// Closes the connections past their deadline, once a second, forever.
    pub(super) async fn sweep(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.close_overdue(self.now());
        }
    }

    fn close_overdue(&self, now: u64) {
        self.watched.lock().expect("never poisoned").retain(|watched| {
            let Some(watch) = watched.upgrade() else { return false };
            let current = watch.state.load(Ordering::Relaxed);
            let waited = now.saturating_sub(current & SINCE_MASK);
            let overdue = match current >> PHASE_SHIFT {
                // Strictly more: both times are whole seconds, rounded down, so `waited`
                // may be up to a second more than the time that passed.
                RECEIVING => waited > self.header_timeout,
                IDLE => waited > self.idle_timeout,
                _ => false,
            };
            if overdue {
                // A permit is kept if the connection is not waiting on it yet.
                watch.closing.notify_one();
            }
            !overdue
        });
    }
}

impl Watch {
    /// Resolves when the sweeper closes the connection.
    pub(super) async fn closed(&self) {
        self.closing.notified().await;
    }
}

fn state(phase: u64, since: u64) -> u64 {
    (phase << PHASE_SHIFT) | (since & SINCE_MASK)
}

/// A client's stream that tells its [`Watch`] when a new request starts arriving.
pub(super) struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
    deadlines: Arc<Deadlines>,
}

impl Watched {
    pub(super) fn new(stream: TcpStream, watch: Arc<Watch>, deadlines: Arc<Deadlines>) -> Self {
        Self { stream, watch, deadlines }
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            let idle = self.watch.state.load(Ordering::Relaxed);
            if idle >> PHASE_SHIFT == IDLE {
                // The first bytes of the next request: its deadline starts now. A failed
                // exchange means the service moved the phase on meanwhile.
                let receiving = state(RECEIVING, self.deadlines.now());
                let _ = self.watch.state.compare_exchange(idle, receiving, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sweep at `second` (the watches were made in second 0).
    fn at(deadlines: &Deadlines, second: u64) {
        deadlines.close_overdue(second);
    }

    fn is_watched(deadlines: &Deadlines, watch: &Arc<Watch>) -> bool {
        deadlines.watched.lock().unwrap().iter().any(|watched| watched.ptr_eq(&Arc::downgrade(watch)))
    }

    #[test]
    fn a_new_connection_is_closed_when_its_first_request_is_late() {
        let deadlines = Deadlines::new(Duration::from_secs(10), Duration::from_secs(60));
        let watch = deadlines.watch();
        at(&deadlines, 10);
        assert!(is_watched(&deadlines, &watch), "made late in second 0, it may have waited 9.x s: not yet");
        at(&deadlines, 11);
        assert!(!is_watched(&deadlines, &watch), "closed past the header timeout");
    }

    #[test]
    fn a_request_being_answered_has_no_deadline_and_an_idle_connection_has_the_idle_timeout() {
        let deadlines = Deadlines::new(Duration::from_secs(10), Duration::from_secs(60));
        let watch = deadlines.watch();
        deadlines.answering(&watch);
        at(&deadlines, 500);
        assert!(is_watched(&deadlines, &watch), "answering takes what it takes");
        deadlines.answered(&watch);
        at(&deadlines, 60);
        assert!(is_watched(&deadlines, &watch));
        at(&deadlines, 61);
        assert!(!is_watched(&deadlines, &watch), "closed past 60 s idle");
    }

    #[test]
    fn a_connection_that_ended_is_no_longer_watched() {
        let deadlines = Deadlines::new(Duration::from_secs(10), Duration::from_secs(60));
        drop(deadlines.watch());
        at(&deadlines, 1);
        assert!(deadlines.watched.lock().unwrap().is_empty());
    }
}
