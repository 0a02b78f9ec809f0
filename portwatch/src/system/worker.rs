//! One named thread that serves requests in order, for the collectors whose
//! I/O may be slow (entering namespaces, walking /proc, reading container
//! runtimes' files, symbolizing stacks). The caller hands requests over
//! without blocking and polls the answers, so intake never waits on a disk.
//!
//! Each collector keeps its own bookkeeping (what is pending, what was
//! dropped) in a thin wrapper; the thread, channels and shutdown are here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Where a worker's answers go.
pub struct Answers<A>(mpsc::Sender<A>);

/// The caller is gone: a serving function returns this to end the thread.
#[derive(Debug)]
pub struct Gone;

impl<A> Answers<A> {
    pub fn send(&self, answer: A) -> Result<(), Gone> {
        self.0.send(answer).map_err(|_| Gone)
    }
}

/// A request the worker could not take: its queue was full, or the thread
/// has stopped. The request comes back to the caller.
pub struct Refused<R>(pub R);

enum Requests<R> {
    /// Bounded: a full queue refuses new requests instead of growing.
    Bounded(mpsc::SyncSender<R>),
    Unbounded(mpsc::Sender<R>),
}

pub struct Worker<R, A> {
    tx: Option<Requests<R>>,
    rx: mpsc::Receiver<A>,
    handle: Option<JoinHandle<()>>,
    /// Set when the worker is dropped: queued requests are left unserved.
    stop: Arc<AtomicBool>,
}

impl<R: Send + 'static, A: Send + 'static> Worker<R, A> {
    /// Starts thread `name`. `queue` bounds the requests waiting (None:
    /// unbounded, for callers that keep at most a few in flight). `start`
    /// runs on the new thread and returns the function that answers one
    /// request with any number of answers (so its state, e.g. a symbolizer,
    /// need not be `Send`).
    pub fn spawn<S, F>(name: &str, queue: Option<usize>, start: S) -> std::io::Result<Self>
    where
        S: FnOnce() -> F + Send + 'static,
        F: FnMut(R, &Answers<A>) -> Result<(), Gone>,
    {
        let (tx, req_rx) = match queue {
            Some(n) => {
                let (tx, rx) = mpsc::sync_channel(n);
                (Requests::Bounded(tx), rx)
            }
            None => {
                let (tx, rx) = mpsc::channel();
                (Requests::Unbounded(tx), rx)
            }
        };
        let (out_tx, rx) = mpsc::channel();
        let out_tx = Answers(out_tx);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut serve = start();
                for req in req_rx {
                    if stopped.load(Ordering::Relaxed) || serve(req, &out_tx).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Worker {
            tx: Some(tx),
            rx,
            handle: Some(handle),
            stop,
        })
    }

    /// Queues a request; never blocks.
    pub fn send(&self, req: R) -> Result<(), Refused<R>> {
        match &self.tx {
            Some(Requests::Bounded(tx)) => tx.try_send(req).map_err(|e| match e {
                mpsc::TrySendError::Full(r) | mpsc::TrySendError::Disconnected(r) => Refused(r),
            }),
            Some(Requests::Unbounded(tx)) => tx.send(req).map_err(|e| Refused(e.0)),
            None => Err(Refused(req)),
        }
    }

    /// Queues a request, waiting for room in a bounded queue (at the end of
    /// a run, for the last requests that must not be lost).
    pub fn send_waiting(&self, req: R) -> Result<(), Refused<R>> {
        match &self.tx {
            Some(Requests::Bounded(tx)) => tx.send(req).map_err(|e| Refused(e.0)),
            Some(Requests::Unbounded(tx)) => tx.send(req).map_err(|e| Refused(e.0)),
            None => Err(Refused(req)),
        }
    }

    /// The answers so far; never blocks.
    pub fn try_recv(&self) -> mpsc::TryIter<'_, A> {
        self.rx.try_iter()
    }

    /// Serves everything queued, then stops the thread: the answers not yet
    /// taken (end of a run).
    pub fn finish(&mut self) -> Vec<A> {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.rx.try_iter().collect()
    }
}

impl<R, A> Drop for Worker<R, A> {
    /// Stops after the request being served; queued ones are dropped, so
    /// Ctrl-C never waits for a queue of slow lookups.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn answers<R, A: Send + 'static>(w: &Worker<R, A>, n: usize) -> Vec<A>
    where
        R: Send + 'static,
    {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.len() < n && Instant::now() < deadline {
            out.extend(w.try_recv());
            std::thread::sleep(Duration::from_millis(1));
        }
        out
    }

    #[test]
    fn answers_come_back_in_order_and_a_request_may_have_several() {
        let w = Worker::spawn("pw-test", None, || {
            |n: u32, out: &Answers<u32>| {
                for i in 0..n {
                    out.send(n * 10 + i)?;
                }
                Ok(())
            }
        })
        .expect("spawn");
        for n in [1, 0, 3] {
            assert!(w.send(n).is_ok());
        }
        assert_eq!(answers(&w, 4), vec![10, 30, 31, 32]);
    }

    #[test]
    fn a_full_bounded_queue_refuses_and_returns_the_request() {
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let w = Worker::spawn("pw-test", Some(1), move || {
            move |n: u32, out: &Answers<u32>| {
                let _ = gate_rx.recv();
                out.send(n)
            }
        })
        .expect("spawn");
        assert!(w.send(1).is_ok());
        // The thread holds 1 (waiting at the gate) or the queue does; at
        // most one more fits, then requests are refused, not queued.
        let back: Vec<u32> = (2..5)
            .filter_map(|n| w.send(n).err())
            .map(|r| r.0)
            .collect();
        assert!(back.len() >= 2, "refused {back:?}");
        assert_eq!(back.last(), Some(&4), "the refused request comes back");
        for _ in 0..4 {
            let _ = gate_tx.send(());
        }
        let served = 4 - back.len();
        let got = answers(&w, served);
        assert_eq!(got.len(), served);
        assert_eq!(got[0], 1);
    }

    #[test]
    fn finish_serves_what_was_queued_and_drop_does_not_wait_for_the_queue() {
        let mut w = Worker::spawn("pw-test", None, || |n: u32, out: &Answers<u32>| out.send(n))
            .expect("spawn");
        for n in 0..100 {
            assert!(w.send(n).is_ok());
        }
        assert_eq!(w.finish(), (0..100).collect::<Vec<_>>());
        assert!(w.send(1).is_err(), "a finished worker refuses");

        let slow = Worker::spawn("pw-test", None, || {
            |n: u32, out: &Answers<u32>| {
                std::thread::sleep(Duration::from_millis(20));
                out.send(n)
            }
        })
        .expect("spawn");
        for n in 0..1000 {
            assert!(slow.send(n).is_ok());
        }
        let t = Instant::now();
        drop(slow);
        // Serving the whole queue would take 20 s.
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
