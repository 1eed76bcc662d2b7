//! A connection limit (`maxconn`) that a reload changes in place: the
//! accept loops keep waiting on the same semaphore, so raising the limit at
//! saturation lets waiting clients in at once, and lowering it takes the
//! permits back as connections end.

use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A resizable connection limit.
#[derive(Debug)]
pub struct Limiter {
    sem: Arc<Semaphore>,
    limit: Mutex<u32>,
}

impl Limiter {
    /// A limit of `n` connections.
    pub fn new(n: u32) -> Limiter {
        Limiter {
            sem: Arc::new(Semaphore::new(n as usize)),
            limit: Mutex::new(n),
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        *self.limit.lock().expect("limit lock")
    }

    /// Waits for a slot (none when the limiter is closed).
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.sem.clone().acquire_owned().await.ok()
    }

    /// Changes the limit to `n`. Raising it frees waiters at once;
    /// lowering it removes free slots now and, for the connections above
    /// the new limit, one slot as each of them ends (a task holds the claim:
    /// it must run inside a tokio runtime).
    pub fn resize(&self, n: u32) {
        let mut cur = self.limit.lock().expect("limit lock");
        if n > *cur {
            self.sem.add_permits((n - *cur) as usize);
        } else if n < *cur {
            let want = (*cur - n) as usize;
            let gone = self.sem.forget_permits(want);
            if gone < want {
                let (sem, rest) = (self.sem.clone(), (want - gone) as u32);
                tokio::spawn(async move {
                    if let Ok(p) = sem.acquire_many_owned(rest).await {
                        p.forget();
                    }
                });
            }
        }
        *cur = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn raising_frees_a_waiter_and_lowering_takes_slots_back_as_they_end() {
        let l = Arc::new(Limiter::new(1));
        let held = l.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.acquire().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        l.resize(2);
        waiter.await.unwrap().expect("let in by the raise");
        // Down to 1 while one is held: nothing free until it ends.
        let second = l.acquire().await.unwrap();
        l.resize(1);
        drop(second);
        tokio::task::yield_now().await;
        assert!(
            l.sem.available_permits() == 0,
            "the freed slot went to the lower limit"
        );
        drop(held);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), l.acquire()).await;
        assert!(got.unwrap().is_some(), "one slot under the new limit");
        assert_eq!(l.limit(), 1);
    }
}
