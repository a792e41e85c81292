//! Where fragment blocks end: packing small files so that a local change
//! moves only a few fragment-block boundaries.
//!
//! Plain tail packing (mksquashfs's) closes a fragment block when the next
//! file does not fit. Adding, removing or resizing one small file shifts every
//! later file, and with many files to a block the boundaries seldom fall back
//! into step: every later fragment block changes, and a block cache misses on
//! all of them. Two content-defined rules fix that at a small price in fill:
//!
//! - **Cuts.** When the next file does not fit, the block ends not after the
//!   last file that fits but after the file, among those ending in the last
//!   `1/WINDOW` of the block, with the smallest content-hash priority. Two
//!   packings that are out of step by less than the window mostly pick the
//!   same file, and are in step again from there.
//! - **Runs.** A file whose hash falls below a threshold proportional to its
//!   size ends a run (on average every `RUN_BLOCKS` blocks of small files) and
//!   always closes its block, so even where cuts do not resynchronise (very
//!   many tiny files), a change alters only the rest of its run.
//!
//! Both depend only on each file's own size and [`tag`], 64 bits of its
//! content hash (the run draw in its high half, the cut priority in its low
//! half): a `--trust-stat` record keeps that tag, not the whole hash, and a
//! rebuild packs files it does not read. Measured on the
//! Rust documentation (52 k files, 1 MiB blocks): 2.5 % more fragment blocks
//! than plain packing, and a one-file change rewrites 1.4 fragment blocks on
//! average (plain packing: 3.8, with a tail of dozens); see BENCHMARKS.md.

/// The average length of a run, in block sizes.
pub(crate) const RUN_BLOCKS: u64 = 32;
/// A cut lands in the last `1/WINDOW` of the block.
const WINDOW: u64 = 16;

/// The 64 bits of a content hash that packing (and a first look for
/// duplicates) uses: the run draw (bytes 28 to 31) in the high half and the
/// cut priority (bytes 20 to 23) in the low half, little-endian. These are the
/// high halves of the 64-bit draw and priority packing used before records
/// kept only a tag, so packing is unchanged but for ties below 2^-32.
pub(crate) fn tag(hash: &[u8; 32]) -> u64 {
    let word = |at: usize| u32::from_le_bytes(hash[at..at + 4].try_into().expect("4 bytes"));
    u64::from(word(28)) << 32 | u64::from(word(20))
}

/// Whether a file of `size` bytes with tag `tag` ends a run: with
/// probability `size / (RUN_BLOCKS * block_size)`, drawn from the high half.
pub(crate) fn ends_run(size: u64, block_size: u64, tag: u64) -> bool {
    let draw = tag >> 32;
    u128::from(draw) * u128::from(RUN_BLOCKS * block_size) < u128::from(size) << 32
}

/// Where to close a full block holding `members` (size, tag), in order: the
/// number of leading members that form the block (at least one). The
/// priority is the tag's low half; the first of equal priorities wins.
pub(crate) fn cut(members: &[(u64, u64)], block_size: u64) -> usize {
    let window_start = block_size - block_size / WINDOW;
    let priority = |tag: u64| tag as u32;
    let mut end = 0u64;
    let mut best: Option<(u32, usize)> = None;
    for (i, &(size, tag)) in members.iter().enumerate() {
        end += size;
        if end >= window_start && best.is_none_or(|(p, _)| priority(tag) < p) {
            best = Some((priority(tag), i));
        }
    }
    best.map_or(members.len(), |(_, i)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs `files` (size, hash) and returns the fragment blocks as lists of file indexes.
    /// Plain tail packing: a block ends when the next file does not fit.
    fn pack_plain(block_size: usize, files: &[(usize, [u8; 32])]) -> Vec<Vec<usize>> {
        let mut blocks: Vec<Vec<usize>> = vec![];
        let mut open: Vec<usize> = vec![];
        let mut fill = 0;
        for (i, (size, _)) in files.iter().enumerate() {
            if fill + size > block_size {
                blocks.push(std::mem::take(&mut open));
                fill = 0;
            }
            open.push(i);
            fill += size;
        }
        blocks.push(open);
        blocks
    }

    /// Packs as the data area does: cut when the next file does not fit, close at a run's end.
    fn pack(block_size: usize, files: &[(usize, [u8; 32])]) -> Vec<Vec<usize>> {
        let bs = block_size as u64;
        let mut blocks: Vec<Vec<usize>> = vec![];
        let mut open: Vec<usize> = vec![];
        let fill = |open: &[usize]| open.iter().map(|&i| files[i].0).sum::<usize>();
        for (i, (size, hash)) in files.iter().enumerate() {
            while !open.is_empty() && fill(&open) + size > block_size {
                let members: Vec<(u64, u64)> = open
                    .iter()
                    .map(|&j| (files[j].0 as u64, tag(&files[j].1)))
                    .collect();
                let n = cut(&members, bs);
                blocks.push(open.drain(..n).collect());
            }
            open.push(i);
            if ends_run(*size as u64, bs, tag(hash)) {
                blocks.push(std::mem::take(&mut open));
            }
        }
        if !open.is_empty() {
            blocks.push(open);
        }
        blocks
    }

    type Packing = fn(usize, &[(usize, [u8; 32])]) -> Vec<Vec<usize>>;

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
    fn changed(
        packer: Packing,
        a: &[(usize, Vec<u8>)],
        b: &[(usize, Vec<u8>)],
        block_size: usize,
    ) -> usize {
        let contents =
            |files: &[(usize, Vec<u8>)]| -> std::collections::HashSet<Vec<(usize, Vec<u8>)>> {
                packer(block_size, &with_hashes(files))
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

    /// (mean, worst) fragment blocks changed by one-file edits all along `base`.
    fn edits(packer: Packing, base: &[(usize, Vec<u8>)], block_size: usize) -> (f64, usize) {
        let mut worst = 0;
        let mut total = 0;
        let mut cases = 0;
        for at in (0..base.len()).step_by(base.len() / 40) {
            let mut grown = base.to_vec();
            grown[at].0 += 10;
            grown[at].1.push(b'!');
            let mut removed = base.to_vec();
            removed.remove(at);
            let mut added = base.to_vec();
            added.insert(at, (700, b"new".to_vec()));
            for edited in [grown, removed, added] {
                let n = changed(packer, base, &edited, block_size);
                worst = worst.max(n);
                total += n;
                cases += 1;
            }
        }
        (total as f64 / cases as f64, worst)
    }

    #[test]
    fn a_local_change_moves_few_blocks() {
        // (files, smallest, spread, block size): about 10 files to a block, and about 200.
        for (n, min, spread, block_size) in
            [(4000, 50, 3000, 16 * 1024), (40_000, 20, 380, 32 * 1024)]
        {
            let base: Vec<(usize, Vec<u8>)> = files(n, 7)
                .into_iter()
                .map(|(size, id)| (min + size % spread, id))
                .collect();
            let n_blocks = pack(block_size, &with_hashes(&base)).len();
            assert!(n_blocks > 150, "{n_blocks} blocks");
            let (mean, worst) = edits(pack, &base, block_size);
            let (plain_mean, plain_worst) = edits(pack_plain, &base, block_size);
            eprintln!(
                "{n_blocks} blocks: changed mean {mean:.1}, worst {worst}; plain packing: mean {plain_mean:.1}, worst {plain_worst}"
            );
            assert!(mean <= RUN_BLOCKS as f64 / 2.0, "mean {mean}");
            assert!(worst <= 3 * RUN_BLOCKS as usize, "worst {worst}");
        }
    }

    #[test]
    fn blocks_stay_nearly_full() {
        let block_size = 16 * 1024;
        let fs = with_hashes(&files(20_000, 3));
        let blocks = pack(block_size, &fs).len();
        let plain = pack_plain(block_size, &fs).len();
        eprintln!("{blocks} blocks for {plain} with plain packing");
        assert!(
            (blocks as f64) < plain as f64 * 1.05,
            "{blocks} blocks for {plain}"
        );
    }
}
