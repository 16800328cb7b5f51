//! The completion mailbox: every actor posts its turn's [`super::Completion`] here and the
//! scheduler alone receives them, in the order they were posted.
//!
//! One turn is in flight at a time, so the mailbox holds one item almost always. A lock over a
//! queue and the waiting scheduler's waker is all it needs: no permits, no block list, no
//! cooperative budget. It never reports "closed": the scheduler keeps a [`Poster`] for the
//! actors it spawns later, so a receive could not end that way anyway.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

struct State<T> {
    queue: VecDeque<T>,
    /// The scheduler's waker while it waits on an empty mailbox.
    waker: Option<Waker>,
}

type Shared<T> = Arc<Mutex<State<T>>>;

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, State<T>> {
    // Nothing panics while the lock is held; a poisoned lock still holds a consistent queue.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sending side; cloned into every actor.
pub struct Poster<T>(Shared<T>);

/// The receiving side, held by the scheduler.
pub struct Mailbox<T>(Shared<T>);

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
    let shared = Arc::new(Mutex::new(State {
        queue: VecDeque::with_capacity(4),
        waker: None,
    }));
    (Poster(shared.clone()), Mailbox(shared))
}

impl<T> Poster<T> {
    /// Queues an item and wakes the scheduler if it is waiting.
    pub fn post(&self, item: T) {
        let waker = {
            let mut state = lock(&self.0);
            state.queue.push_back(item);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Mailbox<T> {
    /// The oldest item, waiting for one if the mailbox is empty.
    pub fn recv(&mut self) -> impl Future<Output = T> + '_ {
        poll_fn(|cx| {
            let mut state = lock(&self.0);
            if let Some(item) = state.queue.pop_front() {
                return Poll::Ready(item);
            }
            match &state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
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
        for round in 0..1_000u32 {
            let poster = poster.clone();
            let sender = tokio::spawn(async move {
                tokio::task::yield_now().await;
                poster.post(round);
            });
            assert_eq!(mailbox.recv().await, round);
            sender.await.unwrap();
        }
    }
}
