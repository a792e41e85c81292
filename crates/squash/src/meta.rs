//! Metadata blocks (§4 of the format notes) and the two-level lookup tables
//! built from them (§5): fragment, export, id and xattr-id tables.

use crate::compress::Compressor;

/// Uncompressed size of every metadata block but a table's last.
pub(crate) const METADATA_SIZE: usize = 8192;

/// A stream of metadata blocks written as it fills, so that the position of
/// the open block is always known (references point into it).
#[derive(Debug)]
pub(crate) struct MetaWriter<'c> {
    comp: &'c Compressor,
    out: Vec<u8>,
    open: Vec<u8>,
}

/// A position in a metadata stream: the open block's start (relative to the
/// table) and the offset inside its uncompressed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetaPos {
    pub(crate) block: u64,
    pub(crate) offset: u16,
}

impl MetaPos {
    /// `(block << 16) | offset`, the reference format of inodes and xattrs.
    pub(crate) fn to_ref(self) -> u64 {
        (self.block << 16) | u64::from(self.offset)
    }
}

impl<'c> MetaWriter<'c> {
    pub(crate) fn new(comp: &'c Compressor) -> MetaWriter<'c> {
        MetaWriter { comp, out: Vec::new(), open: Vec::with_capacity(METADATA_SIZE) }
    }

    pub(crate) fn pos(&self) -> MetaPos {
        MetaPos { block: self.out.len() as u64, offset: self.open.len() as u16 }
    }

    pub(crate) fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = METADATA_SIZE - self.open.len();
            let n = room.min(bytes.len());
            self.open.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.open.len() == METADATA_SIZE {
                encode_block(self.comp, &self.open, &mut self.out);
                self.open.clear();
            }
        }
    }

    /// The encoded blocks, the open one included.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if !self.open.is_empty() {
            encode_block(self.comp, &self.open, &mut self.out);
        }
        self.out
    }
}

/// Appends one metadata block: a u16 header (bit 15 = stored raw, low bits =
/// length) and the payload, compressed only when that is strictly smaller.
pub(crate) fn encode_block(comp: &Compressor, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty() && payload.len() <= METADATA_SIZE);
    match comp.compress_meta(payload) {
        Some(packed) => {
            out.extend_from_slice(&(packed.len() as u16).to_le_bytes());
            out.extend_from_slice(&packed);
        }
        None => {
            out.extend_from_slice(&(payload.len() as u16 | 0x8000).to_le_bytes());
            out.extend_from_slice(payload);
        }
    }
}

/// Encodes a lookup table whose blocks start at absolute position `start`:
/// the records cut into metadata blocks, followed by the index of their
/// absolute positions. Returns the bytes and the absolute position of the index.
pub(crate) fn lookup_table(comp: &Compressor, records: &[u8], start: u64) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let mut index = Vec::new();
    for chunk in records.chunks(METADATA_SIZE) {
        index.push(start + out.len() as u64);
        encode_block(comp, chunk, &mut out);
    }
    let index_pos = start + out.len() as u64;
    for pos in index {
        out.extend_from_slice(&pos.to_le_bytes());
    }
    (out, index_pos)
}
