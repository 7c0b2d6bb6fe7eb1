//! A counting global allocator for tests that assert a memory bound ("every parser of outside
//! input bounds what it allocates before allocating it", `docs/security.md`).
//!
//! A crate's test binary installs it with
//! `#[cfg(test)] #[global_allocator] static A: linli_core::alloc_meter::Metered = Metered;` and a
//! test wraps the parser call in [`measure`]. Bytes are counted per thread (the thread that
//! allocates), so tests running in parallel do not disturb each other; a reallocation counts the
//! old and the new block together, as a copying `realloc` holds both for a moment.
//!
//! [`measure`] also sets a cap: an allocation that would take the thread above it is refused
//! (the allocator returns null and Rust aborts the process with "memory allocation failed"). So
//! a parser that regresses into allocating a huge buffer kills its test binary at once instead of
//! eating the machine's memory first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator (a thin wrapper around the system allocator).
pub struct Metered;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static CAP: Cell<isize> = const { Cell::new(isize::MAX) };
}

/// Count `n` more bytes on this thread, unless that goes above the cap.
fn charge(n: usize) -> bool {
    let n = n as isize;
    LIVE.try_with(|live| {
        let now = live.get().saturating_add(n);
        if now > CAP.try_with(Cell::get).unwrap_or(isize::MAX) {
            return false;
        }
        live.set(now);
        let _ = PEAK.try_with(|p| {
            if now > p.get() {
                p.set(now);
            }
        });
        true
    })
    .unwrap_or(true)
}

fn release(n: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n as isize)));
}

// SAFETY: every method forwards to `System` with the same layout; the bookkeeping touches only
// const-initialised thread-locals without destructors (no allocation, no re-entry).
unsafe impl GlobalAlloc for Metered {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !charge(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !charge(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !charge(new_size) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            release(new_size);
        } else {
            release(layout.size());
        }
        p
    }
}

/// Run `f` on this thread and return its result with the peak of bytes it held at once (above
/// what the thread held before). An allocation that would take it above `cap` bytes aborts the
/// process (see the module documentation). Only meaningful in a binary that installed
/// [`Metered`]; elsewhere the peak reads 0.
pub fn measure<R>(cap: usize, f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    let old_cap = CAP.with(|c| c.replace(start.saturating_add(cap as isize)));
    let old_peak = PEAK.with(|p| p.replace(start));
    let r = f();
    let peak = PEAK.with(|p| p.replace(old_peak.max(p.get())));
    CAP.with(|c| c.set(old_cap));
    (r, (peak - start).max(0) as usize)
}

/// Whether this binary counts allocations (that is, installed [`Metered`]).
pub fn installed() -> bool {
    let (_, peak) = measure(usize::MAX / 4, || std::hint::black_box(vec![0u8; 4096]));
    peak >= 4096
}
