//! Memory for the compressors' match-finder tables, on transparent huge pages.
//!
//! xz's and zstd's encoders spend much of their time in tables of 10 MiB or
//! more (hash heads, chains, binary trees) that they read at random: with
//! 4 KiB pages nearly every probe misses the TLB. Most kernels back memory
//! with 2 MiB pages only when asked (`transparent_hugepage=madvise`), so
//! [`alloc`] aligns every allocation of 2 MiB or more to 2 MiB and advises
//! its whole 2 MiB pages with `MADV_HUGEPAGE`. On this kind of machine that
//! makes xz and zstd 5-10 % faster (BENCHMARKS.md). Compressed bytes do not
//! change, and neither does memory much: the tables are touched whole
//! anyway, and the tail of an allocation (under 2 MiB) stays on small pages,
//! so no huge page is faulted in for a few bytes. The advice is a hint: where
//! the kernel has no THP, or on another OS, it changes nothing.
//!
//! Why unsafe: the libraries call these through C function pointers
//! (`lzma_allocator`, `ZSTD_customMem`), and they are libc's allocator.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr;

/// The alignment, and the unit of advice, of large allocations: a
/// transparent huge page on x86-64 (and arm64 with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// `bytes` bytes from libc's allocator, 2 MiB-aligned and advised as huge
/// pages when at least [`HUGE_PAGE`]; null when out of memory, as the C
/// libraries expect. Release with [`free`].
pub(super) fn alloc(bytes: usize) -> *mut c_void {
    if bytes < HUGE_PAGE {
        // SAFETY: plain malloc; a null result is passed on.
        return unsafe { libc::malloc(bytes) };
    }
    let mut out = ptr::null_mut();
    // SAFETY: `out` is a valid place for the pointer; the alignment is a
    // power of two and a multiple of the pointer size. On failure `out` is
    // left alone and null is returned.
    if unsafe { libc::posix_memalign(&mut out, HUGE_PAGE, bytes) } != 0 {
        return ptr::null_mut();
    }
    advise(out, bytes);
    out
}

/// Frees what [`alloc`] returned (`malloc`'s and `posix_memalign`'s memory
/// both go back through `free`), or nothing for null.
///
/// # Safety
///
/// `ptr` is null or came from [`alloc`] and has not been freed.
pub(super) unsafe fn free(ptr: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { libc::free(ptr) }
}

/// Asks the kernel to back the whole 2 MiB pages of the `bytes` bytes at
/// `start` (2 MiB-aligned) with huge pages; failure changes only speed.
#[cfg(target_os = "linux")]
fn advise(start: *mut c_void, bytes: usize) {
    let whole = bytes & !(HUGE_PAGE - 1);
    // SAFETY: `start..start + whole` lies within one live allocation and
    // `start` is page-aligned; MADV_HUGEPAGE changes no contents.
    unsafe { libc::madvise(start, whole, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise(_start: *mut c_void, _bytes: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_allocations_are_huge_page_aligned_and_usable() {
        for bytes in [1, 4096, HUGE_PAGE - 1, HUGE_PAGE, 10 * HUGE_PAGE + 8] {
            let ptr = alloc(bytes);
            assert!(!ptr.is_null(), "{bytes} bytes");
            if bytes >= HUGE_PAGE {
                assert_eq!(ptr as usize % HUGE_PAGE, 0, "{bytes} bytes");
            }
            // SAFETY: `ptr` points at `bytes` writable bytes until freed.
            let memory = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), bytes) };
            memory.fill(0xa5);
            assert!(memory.iter().all(|&b| b == 0xa5));
            // SAFETY: from `alloc`, freed once.
            unsafe { free(ptr) };
        }
        // SAFETY: null is allowed.
        unsafe { free(ptr::null_mut()) };
    }

    #[test]
    fn an_impossible_request_gets_null() {
        assert!(alloc(usize::MAX - HUGE_PAGE).is_null());
    }
}
