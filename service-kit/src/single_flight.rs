//! At most one call of a blocking check in flight, however many requests ask for it.
//!
//! `/readyz` and `/pings` read the volume on the blocking pool. On a volume that hangs (a hung
//! network filesystem, a stopped FUSE daemon) each such read blocks a thread until the volume
//! answers: a kubelet probing every 2 s, or a client polling, would pile up one stuck thread
//! per request until tokio's cap of 512, and the service would stay unable to answer long after
//! the volume came back. So the call goes through a [`SingleFlight`]: while one call runs, the
//! requests that arrive wait for the *next* call, which starts when the running one returns and
//! whose answer they all share. At most one call is ever in flight, so at most one thread is
//! ever stuck; every answer was computed after its request arrived, so it is never older than
//! the request; and each waiting request still gives up at its own timeout.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

/// The call: a blocking check run off the async workers by the caller's future.
type Call<T> = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = T> + Send>> + Send + Sync>;

/// Runs `call` at most once at a time; see the module docs. Cheap to clone: clones share it.
pub struct SingleFlight<T> {
    call: Call<T>,
    state: Arc<Mutex<State<T>>>,
}

impl<T> Clone for SingleFlight<T> {
    fn clone(&self) -> Self {
        SingleFlight {
            call: self.call.clone(),
            state: self.state.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SingleFlight<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

struct State<T> {
    /// Whether a call is running (its driver task alive).
    running: bool,
    /// Who waits for the next call.
    next: Vec<oneshot::Sender<T>>,
}

impl<T: Clone + Send + 'static> SingleFlight<T> {
    pub fn new<F, Fut>(call: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        SingleFlight {
            call: Arc::new(move || Box::pin(call())),
            state: Arc::new(Mutex::new(State {
                running: false,
                next: Vec::new(),
            })),
        }
    }

    /// The answer of a call that starts after this one was asked; `None` only if the runtime
    /// is shutting down.
    pub async fn get(&self) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            // Requests that gave up (timed out) while a call hung are not kept waiting for.
            state.next.retain(|waiter| !waiter.is_closed());
            state.next.push(reply);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            tokio::spawn(drive(self.call.clone(), self.state.clone()));
        }
        answer.await.ok()
    }
}

/// Runs calls one after the other while anyone waits for the next one.
async fn drive<T: Clone>(call: Call<T>, state: Arc<Mutex<State<T>>>) {
    loop {
        let waiting = {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            if state.next.is_empty() {
                state.running = false;
                return;
            }
            std::mem::take(&mut state.next)
        };
        let answer = call().await;
        for waiter in waiting {
            let _ = waiter.send(answer.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use tokio::sync::Notify;

    use super::*;

    #[tokio::test]
    async fn while_a_call_hangs_no_second_one_starts_and_every_waiter_shares_the_next() {
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let flight = {
            let (calls, release) = (calls.clone(), release.clone());
            SingleFlight::new(move || {
                let (calls, release) = (calls.clone(), release.clone());
                async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    if n == 0 {
                        release.notified().await; // the first call hangs
                    }
                    n
                }
            })
        };
        let first = tokio::spawn({
            let flight = flight.clone();
            async move { flight.get().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // 100 requests while the first call hangs: some give up, the rest wait.
        let waiting: Vec<_> = (0..100)
            .map(|i| {
                let flight = flight.clone();
                tokio::spawn(async move {
                    let patience = Duration::from_millis(if i % 2 == 0 { 10 } else { 5_000 });
                    tokio::time::timeout(patience, flight.get()).await.ok()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a second call started");
        release.notify_one();
        assert_eq!(first.await.unwrap(), Some(0));
        for (i, waiter) in waiting.into_iter().enumerate() {
            let answer = waiter.await.unwrap();
            if i % 2 == 0 {
                assert_eq!(answer, None, "waiter {i} gave up");
            } else {
                assert_eq!(answer, Some(Some(1)), "waiter {i} shares the second call");
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
