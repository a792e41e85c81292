//! Where fragment blocks end: packing small files so that a local change
//! moves only a few fragment-block boundaries.
//!
//! Plain tail packing (mksquashfs's) fills each fragment block in order, so
//! adding, removing or resizing one small file shifts every later file and
//! changes every later fragment block: a block cache would miss on all of them.
//! Here the sequence of small files is cut into *runs* at content-defined
//! anchors, and runs are packed greedily on their own: a run always starts a
//! new fragment block. A file is an anchor when its content hash falls below a
//! threshold proportional to its size, so anchors come on average every
//! `RUN_BLOCKS` block sizes of small files whatever the size distribution, and
//! they depend only on each file's own content. A change then alters the
//! fragment blocks from the changed file to the end of its run, and no others.
//!
//! The price is one partly filled fragment block per run (see BENCHMARKS.md
//! for the measured size cost).

/// The average length of a run, in block sizes.
pub(crate) const RUN_BLOCKS: u64 = 4;

/// Decides fragment-block boundaries for a sequence of small files.
#[derive(Debug, Clone)]
pub(crate) struct Packer {
    block_size: usize,
    fill: usize,
}

impl Packer {
    pub(crate) fn new(block_size: usize) -> Packer {
        Packer {
            block_size,
            fill: 0,
        }
    }

    /// Whether the open block must be closed before a file of `size` bytes is added.
    pub(crate) fn full_before(&self, size: usize) -> bool {
        self.fill > 0 && self.fill + size > self.block_size
    }

    /// Adds a file; returns whether the open block must be closed after it
    /// (the file ends a run).
    pub(crate) fn add(&mut self, size: usize, hash: &[u8; 32]) -> bool {
        if self.full_before(size) {
            self.fill = 0;
        }
        self.fill += size;
        if is_anchor(size as u64, self.block_size as u64, hash) {
            self.fill = 0;
            return true;
        }
        false
    }

    /// Forgets the open block (it was closed).
    pub(crate) fn closed(&mut self) {
        self.fill = 0;
    }
}

/// Whether a file of `size` bytes with content hash `hash` ends a run: with
/// probability `size / (RUN_BLOCKS * block_size)`.
fn is_anchor(size: u64, block_size: u64, hash: &[u8; 32]) -> bool {
    let draw = u64::from_le_bytes(hash[24..32].try_into().expect("8 bytes"));
    u128::from(draw) * u128::from(RUN_BLOCKS * block_size) < u128::from(size) << 64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs `files` (size, hash) and returns the fragment blocks as lists of file indexes.
    fn pack(block_size: usize, files: &[(usize, [u8; 32])]) -> Vec<Vec<usize>> {
        let mut packer = Packer::new(block_size);
        let mut blocks: Vec<Vec<usize>> = vec![];
        let mut open: Vec<usize> = vec![];
        for (i, (size, hash)) in files.iter().enumerate() {
            if packer.full_before(*size) {
                blocks.push(std::mem::take(&mut open));
                packer.closed();
            }
            open.push(i);
            if packer.add(*size, hash) {
                blocks.push(std::mem::take(&mut open));
            }
        }
        if !open.is_empty() {
            blocks.push(open);
        }
        blocks
    }

    fn files(n: usize, seed: u64) -> Vec<(usize, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let h = blake3::hash(format!("{seed}-{i}").as_bytes());
                let size =
                    50 + (u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) as usize % 3000);
                (size, format!("file {seed} {i}").into_bytes())
            })
            .collect()
    }

    fn with_hashes(files: &[(usize, Vec<u8>)]) -> Vec<(usize, [u8; 32])> {
        files
            .iter()
            .map(|(size, id)| (*size, *blake3::hash(id).as_bytes()))
            .collect()
    }

    /// The blocks of `b` not in `a`, as contents (lists of file ids).
    fn changed(a: &[(usize, Vec<u8>)], b: &[(usize, Vec<u8>)], block_size: usize) -> usize {
        let contents =
            |files: &[(usize, Vec<u8>)]| -> std::collections::HashSet<Vec<(usize, Vec<u8>)>> {
                pack(block_size, &with_hashes(files))
                    .into_iter()
                    .map(|block| block.into_iter().map(|i| files[i].clone()).collect())
                    .collect()
            };
        let before = contents(a);
        contents(b).difference(&before).count()
    }

    #[test]
    fn blocks_never_overflow() {
        let block_size = 4096;
        let fs = with_hashes(&files(5000, 1));
        for block in pack(block_size, &fs) {
            let total: usize = block.iter().map(|&i| fs[i].0).sum();
            assert!(total <= block_size, "{total}");
        }
    }

    #[test]
    fn a_local_change_moves_few_blocks() {
        let block_size = 16 * 1024;
        let base = files(4000, 7);
        let n_blocks = pack(block_size, &with_hashes(&base)).len();
        assert!(n_blocks > 300, "{n_blocks} blocks");
        let mut worst = 0;
        let mut total = 0;
        let mut cases = 0;
        for at in (0..base.len()).step_by(97) {
            let mut grown = base.clone();
            grown[at].0 += 10;
            grown[at].1.push(b'!');
            let mut removed = base.clone();
            removed.remove(at);
            let mut added = base.clone();
            added.insert(at, (700, b"new".to_vec()));
            for edited in [grown, removed, added] {
                let n = changed(&base, &edited, block_size);
                worst = worst.max(n);
                total += n;
                cases += 1;
            }
        }
        let mean = total as f64 / cases as f64;
        // Runs average RUN_BLOCKS blocks; a change rewrites the rest of its run.
        assert!(mean <= 1.0 + RUN_BLOCKS as f64, "mean {mean}");
        assert!(worst <= 6 * RUN_BLOCKS as usize, "worst {worst}");
    }

    #[test]
    fn blocks_stay_nearly_full() {
        let block_size = 16 * 1024;
        let fs = with_hashes(&files(20_000, 3));
        let bytes: usize = fs.iter().map(|f| f.0).sum();
        let blocks = pack(block_size, &fs).len();
        let tight = bytes.div_ceil(block_size);
        // One partly filled block per run of about RUN_BLOCKS blocks.
        let bound = tight as f64 * (1.0 + 1.0 / RUN_BLOCKS as f64);
        assert!(
            (blocks as f64) < bound,
            "{blocks} blocks for {tight} full ones"
        );
    }
}
