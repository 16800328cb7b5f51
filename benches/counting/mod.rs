//! A counting global allocator: every allocation made on the current thread is counted (calls
//! and bytes), and the live heap's peak is tracked. On the current_thread runtime the scheduler
//! and every actor run on the thread that calls `run`, so a run's allocations are all counted.
//!
//! Include it with `#[path]` and declare `#[global_allocator] static A: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn on_alloc(size: usize) {
    // `try_with`: a thread being torn down has no counters left; its allocations go uncounted.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + size as u64));
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size as i64;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn on_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - size as i64));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A reallocation is counted as one allocation of the new size (what a copy would cost).
        on_free(layout.size());
        on_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What the current thread allocated while `f` ran.
#[derive(Debug, Clone, Copy)]
pub struct Allocated {
    pub allocations: u64,
    pub bytes: u64,
    /// The most the live heap grew above where it stood when `f` began.
    pub peak_live_bytes: u64,
}

/// Runs `f` and counts what this thread allocated meanwhile.
pub fn counting<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
    let (allocations, bytes, live) = (ALLOCATIONS.get(), BYTES.get(), LIVE.get());
    PEAK.set(live);
    let value = f();
    let allocated = Allocated {
        allocations: ALLOCATIONS.get() - allocations,
        bytes: BYTES.get() - bytes,
        peak_live_bytes: (PEAK.get() - live).max(0) as u64,
    };
    (value, allocated)
}
