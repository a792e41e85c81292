//! zstd frames from a reused context whose workspace is on huge pages.
//!
//! One context per thread and level, reused: a level-15 context is several
//! MiB, and allocating one per block churns the allocator's per-thread arenas
//! (peak RSS). A reused context gives the same bytes: every frame starts from
//! a reset session with the same parameters.
//!
//! Why unsafe: the safe `zstd` crate creates contexts only with libc's
//! allocator, and the workspace (hash and chain tables read at random) is
//! faster on huge pages ([`huge`]); `ZSTD_createCCtx_advanced` takes an
//! allocator. The calls are the ones `zstd::bulk::Compressor` makes (set the
//! level, `ZSTD_compress2`, reset the session after an error), so the frames
//! are its frames, byte for byte (tested). Each call states what it relies on.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr::{self, NonNull};

use ::zstd::zstd_safe::zstd_sys as sys;

use super::huge;

thread_local! {
    /// This thread's context, for the last level used.
    static ENCODER: RefCell<Option<Encoder>> = const { RefCell::new(None) };
}

/// A zstd frame of `input` at `level`, if it is shorter than `limit` bytes.
///
/// The one-shot API pledges the source size, so the frame header records the
/// content size and zstd shrinks the window to fit the input. A frame from
/// the streaming API without a pledged size declares an 8 MiB window at high
/// levels, which the kernel refuses (format reference §3.2).
pub(super) fn compress(input: &[u8], level: i32, limit: usize) -> Option<Vec<u8>> {
    ENCODER.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|encoder| encoder.level != level) {
            *slot = Some(Encoder::new(level));
        }
        slot.as_mut().expect("just filled").encode(input, limit)
    })
}

/// A compression context set to `level`, and the buffer its frames are
/// written to before each is copied out at its exact size.
struct Encoder {
    level: i32,
    cctx: NonNull<sys::ZSTD_CCtx>,
    scratch: Vec<u8>,
}

impl Encoder {
    fn new(level: i32) -> Encoder {
        let memory = sys::ZSTD_customMem {
            customAlloc: Some(zstd_alloc),
            customFree: Some(zstd_free),
            opaque: ptr::null_mut(),
        };
        // SAFETY: both functions are set (zstd requires both or neither) and
        // `opaque` is unused by them.
        let cctx = unsafe { sys::ZSTD_createCCtx_advanced(memory) };
        let cctx = NonNull::new(cctx).expect("out of memory for a zstd context");
        // SAFETY: `cctx` is a live context; levels were checked by `Compressor::new`.
        let ret = unsafe {
            sys::ZSTD_CCtx_setParameter(
                cctx.as_ptr(),
                sys::ZSTD_cParameter::ZSTD_c_compressionLevel,
                level,
            )
        };
        // SAFETY: a pure function of the value.
        assert_eq!(unsafe { sys::ZSTD_isError(ret) }, 0, "zstd level {level}");
        Encoder {
            level,
            cctx,
            scratch: Vec::new(),
        }
    }

    fn encode(&mut self, input: &[u8], limit: usize) -> Option<Vec<u8>> {
        // Room for one byte less than the limit.
        let room = limit.saturating_sub(1);
        self.scratch.clear();
        self.scratch.reserve(room);
        // SAFETY: `cctx` is live; the destination is `room` bytes of the
        // scratch buffer's spare capacity, the source `input`; both outlive
        // the call, which writes at most `room` bytes.
        let written = unsafe {
            sys::ZSTD_compress2(
                self.cctx.as_ptr(),
                self.scratch.as_mut_ptr().cast::<c_void>(),
                room,
                input.as_ptr().cast::<c_void>(),
                input.len(),
            )
        };
        // SAFETY: a pure function of the value.
        if unsafe { sys::ZSTD_isError(written) } != 0 {
            // The only error left is "destination buffer is too small": the
            // frame would not be smaller than `limit`. zstd leaves the failed
            // frame open; resetting the session (never the parameters) readies
            // the context for the next one, as `zstd::bulk` does.
            // SAFETY: `cctx` is live.
            unsafe {
                sys::ZSTD_CCtx_reset(
                    self.cctx.as_ptr(),
                    sys::ZSTD_ResetDirective::ZSTD_reset_session_only,
                )
            };
            return None;
        }
        // SAFETY: zstd wrote exactly `written` (≤ room) bytes at the start of
        // the spare capacity.
        unsafe { self.scratch.set_len(written) };
        Some(self.scratch.clone())
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: `cctx` came from `ZSTD_createCCtx_advanced` and is freed once.
        unsafe { sys::ZSTD_freeCCtx(self.cctx.as_ptr()) };
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

extern "C" fn zstd_alloc(_opaque: *mut c_void, size: usize) -> *mut c_void {
    huge::alloc(size)
}

extern "C" fn zstd_free(_opaque: *mut c_void, address: *mut c_void) {
    // SAFETY: zstd frees only what `zstd_alloc` returned, once each (or null).
    unsafe { huge::free(address) }
}
