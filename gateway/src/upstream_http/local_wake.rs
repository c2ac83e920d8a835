//! Wake-ups that stay inside the poll that caused them. hyper's connection future hands what
//! it reads to the reply through a oneshot (the head) and a channel (the body), and each hand-
//! over wakes whoever waits on the other side. Driven in the request's task, that is the
//! request's own task: every reply and every chunk would reschedule the whole server
//! connection (a full poll of the handler's future tree, at the back of the run queue) just to
//! take what is already there. Polled through [`LocalWake`], a wake that arrives while the
//! connection is being polled only asks for another turn of the loop here; one that arrives
//! from elsewhere (the socket became readable) wakes the task as usual.
//!
//! Written by hand: wakers that distinguish wakes during a poll from wakes between polls are
//! specific to driving a connection inline, which no crate offers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Turns of the loop before a wake is passed on to the task: a future that wakes itself
/// every time (tokio's cooperative budget, once spent, does) must not spin here.
const MAX_TURNS: usize = 4;

/// The waker of one connection's futures.
pub struct LocalWake {
    shared: Arc<Shared>,
    waker: Waker,
}

struct Shared {
    /// The request's task, woken for anything that arrives between polls.
    task: AtomicWaker,
    polling: AtomicBool,
    woken: AtomicBool,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Recorded first, so a poll that is just ending sees it (see `poll`).
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

impl LocalWake {
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            task: AtomicWaker::new(),
            polling: AtomicBool::new(false),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(Arc::clone(&shared));
        Self { shared, waker }
    }

    /// Polls `f` with this connection's waker, again while it was woken during the poll.
    pub fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let shared = &self.shared;
        shared.task.register(cx.waker());
        let mut inner = Context::from_waker(&self.waker);
        for _ in 0..MAX_TURNS {
            shared.woken.store(false, Ordering::SeqCst);
            shared.polling.store(true, Ordering::SeqCst);
            let result = f(&mut inner);
            shared.polling.store(false, Ordering::SeqCst);
            if result.is_ready() {
                return result;
            }
            if !shared.woken.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn a_wake_during_the_poll_runs_it_again_without_waking_the_task() {
        let (count, waker) = task();
        let local = LocalWake::new();
        let mut turns = 0;
        let result = local.poll(&mut Context::from_waker(&waker), |cx| {
            turns += 1;
            if turns == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(turns)
        });
        assert_eq!(result, Poll::Ready(2));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_wake_after_the_poll_wakes_the_task() {
        let (count, waker) = task();
        let local = LocalWake::new();
        let mut kept = None;
        let result: Poll<()> = local.poll(&mut Context::from_waker(&waker), |cx| {
            kept = Some(cx.waker().clone());
            Poll::Pending
        });
        assert!(result.is_pending());
        kept.unwrap().wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_future_that_always_wakes_itself_is_handed_back_to_the_task() {
        let (count, waker) = task();
        let local = LocalWake::new();
        let mut turns = 0;
        let result: Poll<()> = local.poll(&mut Context::from_waker(&waker), |cx| {
            turns += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert!(result.is_pending());
        assert_eq!(turns, MAX_TURNS);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
