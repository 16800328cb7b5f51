//! The completion mailbox: every actor posts its turn's [`super::Completion`] here and the
//! scheduler alone receives them, in the order they were posted.
//!
//! One turn is in flight at a time, so the mailbox holds one item almost always. A lock over a
//! queue and the scheduler's waker is all it needs: no permits, no block list, no cooperative
//! budget; and a flag lets the scheduler wait on an empty mailbox without taking the lock. It
//! never reports "closed": the scheduler keeps a [`Poster`] for the actors it spawns later, so a
//! receive could not end that way anyway.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

struct State<T> {
    queue: VecDeque<T>,
    /// The scheduler's waker, once it has waited: it stays registered, and every post wakes it.
    waker: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Whether `queue` holds anything; set and cleared under the lock. A receiver that finds it
    /// clear, with its waker already registered, waits without taking the lock: a post after
    /// that look wakes it.
    queued: AtomicBool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held; a poisoned lock still holds a consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side; cloned into every actor.
pub struct Poster<T>(Arc<Shared<T>>);

/// The receiving side, held by the scheduler.
pub struct Mailbox<T> {
    shared: Arc<Shared<T>>,
    /// The waker registered in the shared state (only the receiver registers one).
    registered: Option<Waker>,
}

impl<T> Clone for Poster<T> {
    fn clone(&self) -> Self {
        Poster(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Poster<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Poster")
    }
}

/// A new empty mailbox and its first poster.
pub fn mailbox<T>() -> (Poster<T>, Mailbox<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(4),
            waker: None,
        }),
        queued: AtomicBool::new(false),
    });
    (
        Poster(shared.clone()),
        Mailbox {
            shared,
            registered: None,
        },
    )
}

impl<T> Poster<T> {
    /// Queues an item and wakes the scheduler if it has waited.
    pub fn post(&self, item: T) {
        let mut state = self.0.lock();
        state.queue.push_back(item);
        self.0.queued.store(true, Ordering::Release);
        if let Some(waker) = &state.waker {
            waker.wake_by_ref();
        }
    }
}

impl<T> Mailbox<T> {
    /// The oldest item, waiting for one if the mailbox is empty.
    pub fn recv(&mut self) -> impl Future<Output = T> + '_ {
        poll_fn(|cx| {
            let registered = self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if registered && !self.shared.queued.load(Ordering::Acquire) {
                return Poll::Pending;
            }
            let mut state = self.shared.lock();
            if let Some(item) = state.queue.pop_front() {
                if state.queue.is_empty() {
                    self.shared.queued.store(false, Ordering::Relaxed);
                }
                return Poll::Ready(item);
            }
            if !registered {
                let waker = cx.waker().clone();
                state.waker = Some(waker.clone());
                self.registered = Some(waker);
            }
            Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn items_arrive_in_the_order_they_were_posted() {
        let (poster, mut mailbox) = mailbox();
        poster.post(1);
        poster.clone().post(2);
        assert_eq!(mailbox.recv().await, 1);
        assert_eq!(mailbox.recv().await, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_is_woken_by_a_post_from_another_task() {
        let (poster, mut mailbox) = mailbox();
        for round in 0..4_000u32 {
            let poster = poster.clone();
            let sender = tokio::spawn(async move {
                // Sometimes at once, sometimes after the receiver has waited (and waits again
                // without the lock) for a while.
                for _ in 0..round % 4 {
                    tokio::task::yield_now().await;
                }
                poster.post(round);
            });
            assert_eq!(mailbox.recv().await, round);
            sender.await.unwrap();
        }
    }
}
