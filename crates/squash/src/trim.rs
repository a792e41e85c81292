//! Handing back to the system the heap memory that other threads freed.
//!
//! The host walk (`host`) lists and inspects every file on rayon's threads,
//! and the grafting thread frees those descriptions once the tree holds them.
//! glibc keeps such frees in the allocating thread's arena, and an arena
//! rarely shrinks by itself: without this, about 20 MB of free memory (104k
//! files) stayed resident for the whole write and counted in its peak.
//! [`release_free_memory`] asks glibc to return the free pages of every
//! arena; it takes milliseconds and changes no result. What it cannot return
//! is the free space at the top of another thread's arena: about 3 MB more
//! than a walk on one thread left on that corpus (BENCHMARKS.md).
//!
//! Why unsafe: `malloc_trim` is a C function of glibc; calling it is sound
//! at any time, from any thread.
#![allow(unsafe_code)]

/// Returns free heap pages of every malloc arena to the system (glibc only;
/// elsewhere it does nothing).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers and only releases memory that
    // is free; glibc locks each arena while it trims it.
    unsafe {
        libc::malloc_trim(0);
    }
}
