//! Allocator tuning: with glibc, buffers of 128 KiB and more always come from
//! `mmap` and go back to the kernel when freed.
//!
//! Why unsafe: `mallopt` is a C function of glibc, with no safe wrapper in
//! std or `libc`. One call, first thing in `main`, before any other thread
//! exists.
//!
//! Why at all: glibc serves a large allocation from `mmap` only until the
//! first such block is freed; then it raises its threshold to that size and
//! serves later blocks from per-thread arenas, which keep what is freed. The
//! writer allocates a block buffer (1 MiB by default) per block read and per
//! block compressed, on the reading thread and on each pool thread, and frees
//! them on another thread, so every arena grows to its own peak of buffers.
//! Measured on the `rust-doc-x2` corpus (104 k files, xz, 2 threads): peak
//! RSS 99–101 MiB with the dynamic threshold, 87.5 MiB with a fixed one, for
//! 0.7 s more system time (page faults) in 65 s of CPU and the same wall time
//! (BENCHMARKS.md). Other C libraries are left as they are.
#![allow(unsafe_code)]

/// Allocations from this size up are served by `mmap` (glibc's default
/// threshold, made fixed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Applies the tuning; call once, before spawning any thread.
pub(crate) fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` sets an allocator parameter and has no
        // preconditions; no other thread exists yet to race with it. A
        // failure (0) leaves the default, which is only slower to give
        // memory back, so it is ignored.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    }
}
