//! Counting what a thread allocates, for the query engine's memory backstop.
//!
//! [`Tracking`] wraps the process's global allocator. A thread tagged with a [`Tracker`] ([`Tag`]) adds
//! every allocation it makes to that tracker and takes every free it makes off it; an untagged thread
//! pays one thread-local read. The query engine tags the threads of each query with the query's tracker
//! (`tacet-query`'s `budget.rs`) and stops a query whose tracker passes its budget.
//!
//! This is the one crate of the workspace with `unsafe` code: a global allocator cannot be written
//! without it. Every call goes to the wrapped allocator unchanged.

#![deny(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

/// Bytes a query's threads hold now, and the most they held.
#[derive(Debug, Default)]
pub struct Tracker {
    used: AtomicIsize,
    peak: AtomicIsize,
}

impl Tracker {
    fn charge(&self, delta: isize) {
        let now = self.used.fetch_add(delta, Ordering::Relaxed) + delta;
        if delta > 0 {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Bytes held now (allocated on the query's threads and not freed there).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed).max(0) as usize
    }

    /// The most bytes held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed).max(0) as usize
    }
}

thread_local! {
    /// The tracker of the query this thread works for; null on every other thread. A raw pointer from
    /// `Arc::into_raw`, so that the allocator reads it without touching reference counts.
    static CURRENT: Cell<*const Tracker> = const { Cell::new(std::ptr::null()) };
}

#[allow(unsafe_code)]
fn charge(delta: isize) {
    let _ = CURRENT.try_with(|c| {
        let t = c.get();
        if !t.is_null() {
            // SAFETY: the pointer holds a strong count (see `Tag`), released only after it is cleared.
            unsafe { (*t).charge(delta) }
        }
    });
}

/// A global allocator that counts allocations of tagged threads into their query's [`Tracker`]. The
/// binary installs it around its allocator: `#[global_allocator] static A: Tracking<MiMalloc> = ...`.
/// Without it the backstop counts nothing (`is_counting` says so).
#[derive(Debug)]
pub struct Tracking<A>(pub A);

// SAFETY: every call is passed to the inner allocator unchanged; only counters are added.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for Tracking<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            charge(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            charge(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { self.0.dealloc(ptr, layout) };
        charge(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            charge(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Tags the current thread with `tracker` until dropped.
pub struct Tag;

impl Tag {
    /// Tags the current thread with `tracker`, replacing any tag it had.
    pub fn new(tracker: &Arc<Tracker>) -> Self {
        let raw = Arc::into_raw(Arc::clone(tracker));
        let old = CURRENT.with(|c| c.replace(raw));
        release(old);
        Tag
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        untag();
    }
}

/// Removes the current thread's tag (for threads whose tag was leaked with `mem::forget`).
pub fn untag() {
    let old = CURRENT
        .try_with(|c| c.replace(std::ptr::null()))
        .unwrap_or(std::ptr::null());
    release(old);
}

#[allow(unsafe_code)]
fn release(raw: *const Tracker) {
    if !raw.is_null() {
        // SAFETY: `raw` came from `Arc::into_raw` in `Tag::new` and is no longer reachable from CURRENT.
        drop(unsafe { Arc::from_raw(raw) });
    }
}

/// Whether the global allocator counts into trackers (the binary installs [`Tracking`]; a test binary
/// may not).
pub fn is_counting() -> bool {
    let tracker = Arc::new(Tracker::default());
    {
        let _tag = Tag::new(&tracker);
        let v: Vec<u8> = Vec::with_capacity(4096);
        std::hint::black_box(&v);
    }
    tracker.peak() >= 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: Tracking<std::alloc::System> = Tracking(std::alloc::System);

    #[test]
    fn a_tagged_thread_counts_and_frees() {
        assert!(is_counting());
        let t = Arc::new(Tracker::default());
        let v = {
            let _tag = Tag::new(&t);
            let v = vec![7u8; 1 << 20];
            assert!(t.used() >= 1 << 20);
            v
        };
        // Freed on an untagged thread: the tracker keeps it (it ends with its query anyway).
        drop(v);
        assert!(t.used() >= 1 << 20);
        {
            let _tag = Tag::new(&t);
            let w = vec![1u8; 2 << 20];
            drop(w);
        }
        assert!(t.peak() >= 3 << 20);
        assert!(t.used() < 2 << 20 && t.used() >= 1 << 20);
    }
}
