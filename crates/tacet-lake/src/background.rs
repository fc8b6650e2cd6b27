//! CPU-heavy lake work (building Arrow columns, encoding and compressing Parquet) on threads of its own, at
//! a lower scheduling priority than the threads that answer requests.
//!
//! A flush encodes tens of thousands of events at once: done on an async worker, it held that worker for
//! tens of milliseconds, and every request queued behind it waited (the acknowledgement's p99 at half load).
//! Here the kernel shares the cores instead: the encoder threads run at `nice` [`NICE`] (Linux; elsewhere at
//! the normal priority), so a beacon's few microseconds go first and an idle machine still encodes at full
//! speed. Under saturation the flush gets a smaller share and falls behind; the buffer's bound
//! (`max_buffered_events`) then refuses new events with a 503, which is the back-pressure a sender expects.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, LazyLock, Mutex};

/// How much nicer than the process the encoder threads are (0 normal, 19 lowest): at 5, weight 335 against
/// 1,024 for a normal thread, so a busy request thread gets three times its share of a contended core.
pub const NICE: i32 = 5;

type Job = Box<dyn FnOnce() + Send>;

static DONE: AtomicU64 = AtomicU64::new(0);

/// How many jobs the encoder threads have finished since the process started (tests use it to show a
/// path goes through them).
pub fn jobs_done() -> u64 {
    DONE.load(Ordering::Relaxed)
}

/// The encoder threads' queue, started on first use (`Sender` is `Sync`: no lock to send).
static POOL: LazyLock<Sender<Job>> = LazyLock::new(|| {
    let (tx, rx) = channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    for i in 0..threads {
        let rx = Arc::clone(&rx);
        std::thread::Builder::new()
            .name(format!("tacet-encode-{i}"))
            .spawn(move || work(&rx))
            .expect("cannot start a lake encoder thread");
    }
    tx
});

fn work(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = match jobs.lock().expect("encoder queue").recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job();
        DONE.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux a thread's nice value is its own (`setpriority` on its thread id). Relative to the
    // process's, so that a server started with `nice` keeps its encoders below its requests. Best effort:
    // an encoder that cannot be lowered still encodes.
    use rustix::process::{getpriority_process, setpriority_process};
    let me = Some(rustix::thread::gettid());
    let now = getpriority_process(me).unwrap_or(0);
    let _ = setpriority_process(me, (now + NICE).min(19));
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Runs `f` on an encoder thread and waits for it without holding an async worker. A panic in `f` is
/// raised again here (the encoder thread lives on).
pub async fn encode<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    POOL.send(job).expect("the lake encoder threads are gone");
    match rx.await.expect("a lake encoder thread dropped its job") {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

/// The niceness of the calling thread (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
fn current_nice() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_the_job_off_the_runtime_and_gives_its_value_back() {
        let caller = std::thread::current().id();
        let (value, thread, name) = encode(|| {
            let t = std::thread::current();
            (6 * 7, t.id(), t.name().map(str::to_owned))
        })
        .await;
        assert_eq!(value, 42);
        assert_ne!(thread, caller);
        assert!(name.unwrap().starts_with("tacet-encode-"));
        let before = jobs_done();
        encode(|| ()).await;
        // Counted after the job's value is sent: wait for the count, not for the value.
        let waited = std::time::Instant::now();
        while jobs_done() == before {
            assert!(waited.elapsed() < std::time::Duration::from_secs(5));
            std::thread::yield_now();
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn encoder_threads_run_below_normal_priority() {
        let caller = current_nice();
        assert_eq!(encode(current_nice).await, (caller + NICE).min(19));
        assert_eq!(
            current_nice(),
            caller,
            "the caller's priority is left alone"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_panics_the_caller_and_the_pool_lives_on() {
        let caught = tokio::spawn(encode(|| -> u8 { panic!("bad batch") })).await;
        assert!(caught.unwrap_err().is_panic());
        for i in 0..8u8 {
            assert_eq!(encode(move || i + 1).await, i + 1);
        }
    }
}
