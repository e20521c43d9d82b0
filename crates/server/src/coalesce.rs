//! Wakes that arrive while a connection is being polled, absorbed into one more poll.
//!
//! hyper's HTTP/1 server wakes its own connection task whenever the service takes a chunk of
//! the request body (the body channel wakes its sender, the connection's dispatcher, which is
//! polled by the same task). The gateway reads every request body inside that task, so each
//! request woke the task while it ran. Tokio answers such a wake by putting the task at the back
//! of the run queue *and waking an idle worker thread* to come and steal it: a futex call on
//! the request path and the rest of the request moved to another core (two worker threads, one
//! request at a time: ~19 µs more added latency a request than with one thread; see
//! BENCHMARKS.md, session 12). [`Coalesce`] polls the connection with a waker of its own
//! that, while the connection is being polled, only notes the wake; the poll then simply
//! runs again at once, on the same thread. Outside a poll a wake goes to the task as usual.

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// The task is not polling the inner future: a wake goes to the task.
const IDLE: u8 = 0;
/// The inner future is being polled: a wake is noted.
const POLLING: u8 = 1;
/// Woken while being polled: the poll runs again before returning.
const WOKEN: u8 = 2;

/// Polls again in a row at most this many times before yielding to the scheduler (so one busy
/// connection cannot hold its thread); it yields at once when the task has used up tokio's
/// cooperative budget (then a wake during the poll is tokio asking it to yield).
const MAX_REPOLLS: usize = 8;

struct Shared {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            // Noted: the poll under way runs again.
            Ok(_) => {}
            Err(WOKEN) => {}
            Err(_) => self.task.wake(),
        }
    }
}

pin_project_lite::pin_project! {
    /// `inner`, polled with wakes during its own poll absorbed (see the module doc).
    pub struct Coalesce<F> {
        #[pin]
        inner: F,
        shared: Arc<Shared>,
        waker: Waker,
    }
}

impl<F: Future> Coalesce<F> {
    pub fn new(inner: F) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        Coalesce {
            inner,
            waker: Waker::from(shared.clone()),
            shared,
        }
    }

    /// The wrapped future.
    pub fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().inner
    }
}

impl<F: Future> Future for Coalesce<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        this.shared.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(this.waker);
        for _ in 0..MAX_REPOLLS {
            this.shared.state.store(POLLING, Ordering::Release);
            let polled = this.inner.as_mut().poll(&mut inner_cx);
            // Back to IDLE (a wake from now on goes to the task); WOKEN: poll again.
            let woken = this.shared.state.swap(IDLE, Ordering::AcqRel) == WOKEN;
            if polled.is_ready() || !woken {
                return polled;
            }
            if !tokio::task::coop::has_budget_remaining() {
                break;
            }
        }
        // Still being woken: let the scheduler run others first, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wakes its task gets.
    struct Counting(AtomicUsize);
    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A future that wakes itself during its first `n` polls, then finishes; it counts polls.
    struct SelfWaking {
        n: usize,
        polls: usize,
    }
    impl Future for SelfWaking {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls <= self.n {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(self.polls)
            }
        }
    }

    /// A wake during the poll runs the future again at once instead of waking the task; a
    /// future that keeps waking itself still yields to the task after a bounded run.
    #[test]
    fn a_wake_during_the_poll_polls_again_instead_of_waking_the_task() {
        let task = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(Coalesce::new(SelfWaking { n: 3, polls: 0 }));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(4));
        assert_eq!(task.0.load(Ordering::SeqCst), 0, "no wake reached the task");

        let mut busy = std::pin::pin!(Coalesce::new(SelfWaking { n: 1000, polls: 0 }));
        assert_eq!(busy.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(busy.as_mut().inner().polls, MAX_REPOLLS);
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "it yields, asking to be polled again"
        );
    }

    /// Spends the task's whole cooperative budget on every poll and wakes itself (as a busy
    /// connection's body channel does).
    struct Greedy {
        polls: usize,
    }
    impl Future for Greedy {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls += 1;
            loop {
                let mut spend = std::pin::pin!(tokio::task::coop::consume_budget());
                if spend.as_mut().poll(cx).is_pending() {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    }

    /// Out of tokio's budget, a wake during the poll is not absorbed: the connection yields
    /// after one poll instead of polling again to no purpose.
    #[tokio::test]
    async fn out_of_budget_it_yields_at_once() {
        let mut f = std::pin::pin!(Coalesce::new(Greedy { polls: 0 }));
        let first = std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        assert_eq!(f.as_mut().inner().polls, 1);
    }

    /// A wake while the future is not being polled (from elsewhere, later) reaches the task.
    #[test]
    fn a_wake_outside_the_poll_reaches_the_task() {
        let task = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut f = std::pin::pin!(Coalesce::new(rx));
        assert!(f.as_mut().poll(&mut cx).is_pending());
        std::thread::spawn(move || tx.send(7))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
    }
}
