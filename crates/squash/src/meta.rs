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
        MetaWriter {
            comp,
            out: Vec::new(),
            open: Vec::with_capacity(METADATA_SIZE),
        }
    }

    pub(crate) fn pos(&self) -> MetaPos {
        MetaPos {
            block: self.out.len() as u64,
            offset: self.open.len() as u16,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;
    use crate::Compression;

    fn gzip() -> Compressor {
        Compressor::new(&Compression::Gzip { level: 9 }, 4096).unwrap()
    }

    /// Splits the encoded stream back into (raw?, payload length) per block.
    fn headers(bytes: &[u8]) -> Vec<(bool, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let h = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
            let len = usize::from(h & 0x7fff);
            out.push((h & 0x8000 != 0, len));
            at += 2 + len;
        }
        out
    }

    #[test]
    fn metadata_blocks_hold_exactly_8k_but_the_last() {
        let comp = gzip();
        for (n, want) in [
            (1, vec![(true, 1)]),
            (8192, vec![(true, 8192)]),
            (8193, vec![(true, 8192), (true, 1)]),
            (20000, vec![(true, 8192), (true, 8192), (true, 3616)]),
        ] {
            let mut w = MetaWriter::new(&comp);
            // Written in odd pieces: blocks are cut by size, not by write.
            for chunk in noise(n, n as u64).chunks(1000) {
                w.write(chunk);
            }
            assert_eq!(headers(&w.finish()), want, "{n} bytes");
        }
        // Compressible payloads are stored compressed (bit 15 clear).
        let mut w = MetaWriter::new(&comp);
        w.write(&[0u8; 8192]);
        let (raw, len) = headers(&w.finish())[0];
        assert!(!raw && len < 100);
    }

    #[test]
    fn positions_point_at_the_open_block() {
        let comp = gzip();
        let mut w = MetaWriter::new(&comp);
        assert_eq!(
            w.pos(),
            MetaPos {
                block: 0,
                offset: 0
            }
        );
        w.write(&noise(8000, 1));
        assert_eq!(
            w.pos(),
            MetaPos {
                block: 0,
                offset: 8000
            }
        );
        w.write(&noise(200, 2));
        // The first block was cut at 8192 and stored raw: 2 + 8192 bytes.
        assert_eq!(
            w.pos(),
            MetaPos {
                block: 8194,
                offset: 8
            }
        );
        assert_eq!(w.pos().to_ref(), (8194 << 16) | 8);
    }

    #[test]
    fn lookup_tables_end_with_their_index() {
        let comp = gzip();
        for (records, want_blocks) in [(4usize, 1usize), (8192, 1), (8196, 2), (20000, 3)] {
            let data = noise(records, 7);
            let (bytes, index_pos) = lookup_table(&comp, &data, 1000);
            let blocks = headers(&bytes[..(index_pos - 1000) as usize]);
            assert_eq!(blocks.len(), want_blocks, "{records}");
            let index: Vec<u64> = bytes[(index_pos - 1000) as usize..]
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let mut at = 1000;
            let want: Vec<u64> = blocks
                .iter()
                .map(|(_, len)| {
                    let here = at;
                    at += 2 + *len as u64;
                    here
                })
                .collect();
            assert_eq!(index, want, "{records}");
            assert_eq!(at, index_pos, "the index follows the blocks directly");
        }
    }
}
