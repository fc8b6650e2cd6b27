//! The memory backstop: what each query's threads allocate, counted at the allocator.
//!
//! DataFusion's memory pool sees what operators reserve, not what scalar functions, windows or buffers
//! build (`repeat('x', 1e9)` once took a 512 MiB-pool server to 3.9 GiB). So every query runs on threads
//! of its own (`run_on_own_threads`: one thread for the query plus a small tokio runtime whose workers and
//! blocking threads are its own), and each of those threads is tagged with the query's [`Tracker`]. The
//! binary's global allocator is [`Tracking`]: on a tagged thread it adds every allocation to the tracker
//! and takes every free off it (a thread-local read and an atomic add; untagged threads pay the read only).
//! A watcher beside the query compares the trackers of all running queries with
//! `query.memory_backstop_bytes` every few milliseconds and stops the query holding the most once the
//! total passes it; dropping the query and its runtime gives the memory back.
//!
//! What it cannot do: interrupt one computation that never yields (a single kernel call building one huge
//! value). Those are refused before they start by the caps on value-building functions (`capped.rs`).

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tacet_alloc::{Tag, untag};
pub use tacet_alloc::{Tracker, Tracking, is_counting};

use crate::{Error, Result};

/// The trackers of the queries running now, for the backstop's total.
#[derive(Debug, Default)]
pub(crate) struct Running(Mutex<Vec<Weak<Tracker>>>);

impl Running {
    fn add(&self, t: &Arc<Tracker>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(t));
    }

    /// The total held by running queries, and whether `me` holds the most of them.
    fn total(&self, me: &Arc<Tracker>) -> (usize, bool) {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mine = me.used();
        let (mut total, mut largest) = (0usize, true);
        for t in all.iter().filter_map(Weak::upgrade) {
            let used = t.used();
            total += used;
            if !Arc::ptr_eq(&t, me) && used > mine {
                largest = false;
            }
        }
        (total, largest)
    }
}

/// How often the watcher looks at the trackers.
const WATCH_EVERY: Duration = Duration::from_millis(5);

/// Stack of each query thread: planning and (for Ballista) serialising a report's plan recurse deeply.
pub(crate) const QUERY_STACK_BYTES: usize = 16 << 20;

/// Runs the future `make()` builds on threads of its own, all tagged with one fresh tracker: the calling
/// thread runs it on a tokio runtime with `workers` worker threads. Stopped (and its memory given back)
/// when the running queries together hold more than `backstop` bytes and it holds the most, or when
/// `stop` fires (its time ran out: the caller has answered already).
pub(crate) fn run_on_own_threads<T, F>(
    workers: usize,
    backstop: usize,
    running: Arc<Running>,
    stop: tokio::sync::oneshot::Receiver<()>,
    make: impl FnOnce() -> F + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<(Result<T>, usize)>>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tacet-query".into())
        .stack_size(QUERY_STACK_BYTES)
        .spawn(move || {
            let tracker = Arc::new(Tracker::default());
            running.add(&tracker);
            let tag = Tag::new(&tracker);
            let runtime = {
                let start = Arc::clone(&tracker);
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers.max(1))
                    .thread_name("tacet-query-worker")
                    .thread_stack_size(QUERY_STACK_BYTES)
                    .on_thread_start(move || std::mem::forget(Tag::new(&start)))
                    .on_thread_stop(untag)
                    .enable_all()
                    .build()
            };
            let answer = match runtime {
                Err(e) => Err(Error::Internal(format!(
                    "cannot start the query's threads: {e}"
                ))),
                Ok(runtime) => {
                    let answer = runtime.block_on(async {
                        tokio::select! {
                            biased;
                            _ = stop => Err(Error::Internal("the query was stopped".into())),
                            over = watch(&tracker, backstop, &running) => Err(over),
                            answer = make() => answer,
                        }
                    });
                    // Whatever the query left on its worker threads ends with them.
                    runtime.shutdown_timeout(Duration::from_secs(1));
                    answer
                }
            };
            let peak = tracker.peak();
            drop(tag);
            let _ = tx.send((answer, peak));
        })
        .map_err(|e| Error::Internal(format!("cannot start a query thread: {e}")))?;
    Ok(rx)
}

/// Resolves when the running queries together hold more than `backstop` and `me` holds the most.
async fn watch(me: &Arc<Tracker>, backstop: usize, running: &Running) -> Error {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if me.used() <= backstop / 8 {
            continue;
        }
        let (total, largest) = running.total(me);
        if total > backstop && largest {
            return Error::Resources(format!(
                "the query needs more memory than its limit: it held {} MiB when the running queries \
                 together passed query.memory_backstop_bytes ({} MiB); narrow the date range, aggregate \
                 more, or raise the setting",
                me.used() >> 20,
                backstop >> 20
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: Tracking<std::alloc::System> = Tracking(std::alloc::System);

    #[tokio::test]
    async fn a_query_past_the_backstop_is_stopped_and_gives_its_memory_back() {
        let running = Arc::new(Running::default());
        let (_stop, stop) = tokio::sync::oneshot::channel();
        let rx = run_on_own_threads(1, 64 << 20, running, stop, || async {
            let mut held = Vec::new();
            loop {
                held.push(vec![1u8; 1 << 20]);
                tokio::task::yield_now().await;
                if held.len() > 4096 {
                    return Ok(held.len());
                }
            }
        })
        .unwrap();
        let (answer, peak) = rx.await.unwrap();
        let e = answer.unwrap_err();
        assert!(
            matches!(e, Error::Resources(ref m) if m.contains("query.memory_backstop_bytes (64 MiB)")),
            "{e:?}"
        );
        assert!(peak > 64 << 20 && peak < 128 << 20, "peak {peak}");
    }
}
