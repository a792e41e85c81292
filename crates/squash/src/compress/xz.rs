//! xz streams from a reused encoder: one liblzma encoder per thread and
//! settings, re-initialized for every block instead of built anew.
//!
//! Why unsafe: the safe `liblzma` crate only creates a fresh `lzma_stream`
//! per stream, and a fresh encoder with a 1 MiB dictionary allocates (and
//! zero-fills) about 13 MiB of match-finder tables. Freed after every block,
//! those tables churn the allocator: glibc raises its mmap threshold after
//! the first free and then keeps the freed tables in per-thread arenas, which
//! is most of the difference between 34 MB of live memory and 60 MB of peak
//! RSS on a small-file corpus. liblzma is built for reuse:
//! `lzma_stream_encoder` on a stream that was used before resets it and keeps
//! its buffers when the filter chain is the same (liblzma's `lz_encoder.c`),
//! so this module calls liblzma-sys directly. Reuse does not change a byte:
//! every stream starts from a full reset with the same options (the tests in
//! `compress` compare against the safe crate's fresh encoder).
//!
//! The match finder's tables (about 10 MiB of hash chains and binary trees
//! for a 1 MiB dictionary, read at random) go on transparent huge pages:
//! the encoders allocate through [`huge`] (see there why).
//!
//! The unsafe surface is four calls, each with the invariant it relies on
//! next to it: a zeroed `lzma_stream` (liblzma's `LZMA_STREAM_INIT`), a
//! zeroed options struct filled by `lzma_lzma_preset`, `lzma_code` writing
//! only into the spare capacity it is given, and `lzma_end` once on drop.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr;

use liblzma_sys as sys;

use super::huge;

/// What an encoder is set up for: the LZMA2 dictionary size and the BCJ
/// filter in front, if any (its liblzma filter id).
type Settings = (u32, Option<sys::lzma_vli>);

thread_local! {
    /// This thread's encoders. At most one per setting used on the thread:
    /// data blocks, metadata blocks, and one per BCJ filter tried.
    static ENCODERS: RefCell<Vec<(Settings, Encoder)>> = const { RefCell::new(Vec::new()) };
}

/// An `.xz` stream of `input` (CRC32 check, `preset` with an LZMA2
/// dictionary of `dict_size` bytes, the BCJ filter `bcj` in front), if it is
/// shorter than `limit` bytes.
pub(super) fn compress(
    input: &[u8],
    preset: u32,
    dict_size: u32,
    bcj: Option<sys::lzma_vli>,
    limit: usize,
) -> Option<Vec<u8>> {
    ENCODERS.with_borrow_mut(|encoders| {
        let settings = (dict_size, bcj);
        let index = match encoders.iter().position(|(s, _)| *s == settings) {
            Some(index) => index,
            None => {
                encoders.push((settings, Encoder::new()));
                encoders.len() - 1
            }
        };
        encoders[index].1.encode(input, preset, settings, limit)
    })
}

/// A liblzma stream, kept between blocks so its buffers are reused, and the
/// buffer its streams are written to: each is then copied to a vector of its
/// exact size, as a fresh block-sized output per block would churn the
/// allocator the same way fresh encoders did.
struct Encoder {
    raw: sys::lzma_stream,
    scratch: Vec<u8>,
}

impl Encoder {
    fn new() -> Encoder {
        // SAFETY: `LZMA_STREAM_INIT` is all zeros (null pointers, zero
        // counters, reserved fields zero); every field is an integer or a raw
        // pointer, for which zero is a valid value.
        let mut raw: sys::lzma_stream = unsafe { std::mem::zeroed() };
        // liblzma allocates and frees through this for the stream's life; a
        // static outlives every stream.
        raw.allocator = &HUGE_PAGES.0;
        Encoder {
            raw,
            scratch: Vec::new(),
        }
    }

    /// Re-initializes the stream for `settings` and encodes `input` whole.
    fn encode(
        &mut self,
        input: &[u8],
        preset: u32,
        (dict_size, bcj): Settings,
        limit: usize,
    ) -> Option<Vec<u8>> {
        // SAFETY: zero is valid for every field (integers, enums as integers,
        // raw pointers); `lzma_lzma_preset` then sets every public field.
        let mut lzma2: sys::lzma_options_lzma = unsafe { std::mem::zeroed() };
        // SAFETY: `lzma2` is a valid, exclusively borrowed options struct.
        let failed = unsafe { sys::lzma_lzma_preset(&mut lzma2, preset) };
        assert_eq!(failed, 0, "xz preset {preset} exists");
        lzma2.dict_size = dict_size;
        let mut chain = Vec::with_capacity(3);
        if let Some(id) = bcj {
            chain.push(sys::lzma_filter {
                id,
                options: ptr::null_mut(),
            });
        }
        chain.push(sys::lzma_filter {
            id: sys::LZMA_FILTER_LZMA2,
            options: ptr::addr_of_mut!(lzma2).cast::<c_void>(),
        });
        chain.push(sys::lzma_filter {
            id: sys::LZMA_VLI_UNKNOWN,
            options: ptr::null_mut(),
        });
        // SAFETY: `raw` is a zeroed or previously initialized stream;
        // `chain` is terminated by LZMA_VLI_UNKNOWN and its options outlive
        // the call (liblzma copies them). Re-initializing a stream in any
        // state, even mid-stream, resets it.
        let ret = unsafe {
            sys::lzma_stream_encoder(&mut self.raw, chain.as_ptr(), sys::LZMA_CHECK_CRC32)
        };
        assert_eq!(
            ret,
            sys::LZMA_OK,
            "BCJ then LZMA2 with a dictionary of at least 4 KiB is a valid xz encoder"
        );
        // Room for one byte less than the limit: a stream that does not fit
        // is abandoned (the next block re-initializes the encoder).
        let room = limit.saturating_sub(1);
        let output = &mut self.scratch;
        output.clear();
        output.reserve(room);
        self.raw.next_in = input.as_ptr();
        self.raw.avail_in = input.len();
        self.raw.next_out = output.as_mut_ptr();
        self.raw.avail_out = room;
        let ret = loop {
            // SAFETY: `next_in` points at `avail_in` readable bytes of
            // `input`, `next_out` at `avail_out` writable bytes of `output`'s
            // spare capacity; both outlive the call.
            let ret = unsafe { sys::lzma_code(&mut self.raw, sys::LZMA_FINISH) };
            if ret != sys::LZMA_OK || self.raw.avail_out == 0 {
                break ret;
            }
        };
        let written = room - self.raw.avail_out;
        // Do not leave pointers into buffers that are about to go away.
        self.raw.next_in = ptr::null();
        self.raw.avail_in = 0;
        self.raw.next_out = ptr::null_mut();
        self.raw.avail_out = 0;
        match ret {
            sys::LZMA_STREAM_END => {
                // SAFETY: liblzma wrote exactly `written` bytes (room minus
                // what is left of avail_out) at the start of the spare capacity.
                unsafe { output.set_len(written) };
                Some(output.to_vec())
            }
            // Out of room: the stream would not be shorter than `limit`.
            sys::LZMA_OK | sys::LZMA_BUF_ERROR => None,
            other => panic!("xz encoding failed (liblzma error {other})"),
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: `raw` is zeroed or initialized by liblzma, and ended once.
        unsafe { sys::lzma_end(&mut self.raw) };
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

/// liblzma's allocator for the encoders: large blocks on huge pages ([`huge`]).
struct Allocator(sys::lzma_allocator);

// SAFETY: the struct holds two function pointers and a null `opaque`, none of
// which is ever written; liblzma only reads it, from any thread.
unsafe impl Sync for Allocator {}

static HUGE_PAGES: Allocator = Allocator(sys::lzma_allocator {
    alloc: Some(lzma_alloc),
    free: Some(lzma_free),
    opaque: ptr::null_mut(),
});

/// `nmemb * size` bytes (liblzma passes `nmemb` = 1), or null.
extern "C" fn lzma_alloc(_opaque: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        Some(bytes) => huge::alloc(bytes),
        None => ptr::null_mut(),
    }
}

extern "C" fn lzma_free(_opaque: *mut c_void, ptr: *mut c_void) {
    // SAFETY: liblzma frees only what `lzma_alloc` returned, once each.
    unsafe { huge::free(ptr) }
}
