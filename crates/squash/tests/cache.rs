//! The persistent block cache, through the public API: it never changes the
//! bytes, warm builds compress nothing, trusted fingerprints skip reads, and
//! a one-file change misses on few fragment blocks.

use std::path::Path;
use std::sync::Arc;

use mkportable_squash::{write_to, Cache, CacheConfig, CacheReport, Compression, Options, Tree};

/// Reproducible text-like bytes (compressible, distinct per seed).
fn text(n: usize, seed: u64) -> Vec<u8> {
    let words = [
        "alpha ", "beta ", "gamma ", "delta\n", "epsilon ", "zeta ", "eta\n",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 7) as usize].as_bytes());
        out.extend_from_slice(&(x as u16).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A source tree: `small` small files (`min` to `min + spread` bytes), a few large ones, a duplicate.
fn populate_with(dir: &Path, small: usize, min: usize, spread: usize) {
    std::fs::create_dir_all(dir.join("small")).unwrap();
    for i in 0..small {
        let size = min + (i * 7919) % spread;
        std::fs::write(dir.join(format!("small/{i:05}")), text(size, i as u64)).unwrap();
    }
    std::fs::create_dir_all(dir.join("large")).unwrap();
    for i in 0..3u64 {
        std::fs::write(
            dir.join(format!("large/{i}")),
            text(300_000 + i as usize * 4099, 1000 + i),
        )
        .unwrap();
    }
    std::fs::write(dir.join("large/copy"), text(300_000, 1000)).unwrap();
    let mut sparse = vec![0u8; 64 * 1024];
    sparse.extend(text(5000, 77));
    std::fs::write(dir.join("large/sparse"), sparse).unwrap();
}

fn options(block_size: u32, cache: Option<Arc<Cache>>, threads: usize) -> Options {
    Options {
        compression: Compression::parse("xz").unwrap(),
        block_size,
        all_root: true,
        threads,
        cache,
        ..Options::default()
    }
}

fn build(src: &Path, options: &Options) -> (Vec<u8>, Option<CacheReport>) {
    let tree = Tree::from_sources(&[src], false, 0, true).unwrap();
    let mut image = std::io::Cursor::new(Vec::new());
    let report = write_to(&tree, options, &mut image).unwrap();
    (image.into_inner(), report.cache)
}

fn open(dir: &Path, trust_stat: bool) -> Arc<Cache> {
    let cache = Cache::open(CacheConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        trust_stat,
    });
    assert_eq!(cache.warning(), None);
    Arc::new(cache)
}

fn populate(dir: &Path, small: usize) {
    populate_with(dir, small, 100, 2900);
}

#[test]
fn warm_equals_cold_at_any_thread_count() {
    let src = tempfile::tempdir().unwrap();
    populate(src.path(), 300);
    let cache_dir = tempfile::tempdir().unwrap();
    let (cold, none) = build(src.path(), &options(16 * 1024, None, 2));
    assert!(none.is_none());
    let (first, report) = build(
        src.path(),
        &options(16 * 1024, Some(open(cache_dir.path(), false)), 2),
    );
    assert!(
        first == cold,
        "a cold build with a cache differs from one without"
    );
    let report = report.unwrap();
    assert_eq!(
        (report.block_hits, report.fragment_hits),
        (0, 0),
        "{report:?}"
    );
    assert!(
        report.entries_written > 0 && report.fragment_misses > 10 && report.meta_misses > 1,
        "{report:?}"
    );
    for threads in [1, 2, 8] {
        let (warm, report) = build(
            src.path(),
            &options(16 * 1024, Some(open(cache_dir.path(), false)), threads),
        );
        assert!(warm == cold, "warm build at {threads} threads differs");
        let report = report.unwrap();
        assert_eq!(
            (
                report.block_misses,
                report.fragment_misses,
                report.meta_misses
            ),
            (0, 0, 0),
            "{report:?}"
        );
        assert!(
            report.block_hits > 0 && report.fragment_hits > 10 && report.meta_hits > 1,
            "{report:?}"
        );
        assert_eq!(report.entries_written, 0, "{report:?}");
    }
}

#[test]
fn one_small_file_changed_added_or_removed_misses_few_fragment_blocks() {
    let src = tempfile::tempdir().unwrap();
    // Tiny files, many to a block: with plain tail packing a change would
    // shift every later fragment block.
    populate_with(src.path(), 16_000, 20, 380);
    let cache_dir = tempfile::tempdir().unwrap();
    let bs = 32 * 1024;
    let (_, first) = build(
        src.path(),
        &options(bs, Some(open(cache_dir.path(), false)), 2),
    );
    let fragments = first.unwrap().fragment_misses;
    assert!(fragments > 90, "{fragments} fragment blocks");
    let edits: [(&str, fn(&Path)); 3] = [
        ("changed", |dir| {
            std::fs::write(dir.join("small/00500"), text(1500, 4242)).unwrap()
        }),
        ("added", |dir| {
            std::fs::write(dir.join("small/08000a"), text(1800, 4343)).unwrap()
        }),
        ("removed", |dir| {
            std::fs::remove_file(dir.join("small/12000")).unwrap()
        }),
    ];
    for (what, edit) in edits {
        edit(src.path());
        let (cold, _) = build(src.path(), &options(bs, None, 2));
        let (warm, report) = build(
            src.path(),
            &options(bs, Some(open(cache_dir.path(), false)), 2),
        );
        assert!(warm == cold, "{what}: warm differs from cold");
        let report = report.unwrap();
        eprintln!(
            "{what}: {} of {fragments} fragment blocks missed",
            report.fragment_misses
        );
        assert_eq!(report.block_misses, 0, "{what}: {report:?}");
        assert!(
            (1..=8).contains(&report.fragment_misses),
            "{what}: {} of {fragments} fragment blocks missed",
            report.fragment_misses
        );
    }
}

#[test]
fn trusted_fingerprints_skip_reads_until_a_file_changes() {
    let src = tempfile::tempdir().unwrap();
    populate(src.path(), 200);
    // Files changed in the last two seconds are not recorded (coarse file times).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let cache_dir = tempfile::tempdir().unwrap();
    let (cold, _) = build(src.path(), &options(16 * 1024, None, 2));
    let (_, first) = build(
        src.path(),
        &options(16 * 1024, Some(open(cache_dir.path(), true)), 2),
    );
    assert_eq!(first.unwrap().files_not_read, 0);
    let (warm, report) = build(
        src.path(),
        &options(16 * 1024, Some(open(cache_dir.path(), true)), 2),
    );
    assert!(warm == cold);
    let report = report.unwrap();
    let files = 200 + 5;
    assert_eq!(report.files_not_read, files, "{report:?}");
    assert_eq!(
        (report.block_misses, report.fragment_misses),
        (0, 0),
        "{report:?}"
    );

    // Rewriting a file with the same size changes its ctime: it is read again.
    let path = src.path().join("small/00010");
    let size = std::fs::metadata(&path).unwrap().len() as usize;
    std::fs::write(&path, text(size, 99_999)).unwrap();
    let (cold, _) = build(src.path(), &options(16 * 1024, None, 2));
    let (warm, report) = build(
        src.path(),
        &options(16 * 1024, Some(open(cache_dir.path(), true)), 2),
    );
    assert!(warm == cold, "a changed file was not read again");
    let report = report.unwrap();
    assert_eq!(report.files_not_read, files - 1, "{report:?}");
    assert_eq!(report.fragment_misses, 1, "{report:?}");

    // Without trust, everything is read again.
    let (warm, report) = build(
        src.path(),
        &options(16 * 1024, Some(open(cache_dir.path(), false)), 2),
    );
    assert!(warm == cold);
    assert_eq!(report.unwrap().files_not_read, 0);
}

#[test]
fn small_files_recorded_by_tag_are_told_apart_and_deduplicated_like_cold_builds() {
    let src = tempfile::tempdir().unwrap();
    populate(src.path(), 300);
    let small = src.path().join("small");
    std::fs::write(small.join("dup-a"), text(700, 5)).unwrap();
    std::fs::write(small.join("dup-b"), text(700, 5)).unwrap();
    std::fs::write(small.join("lonely"), text(900, 6)).unwrap();
    let files = 300 + 5 + 3;
    let sleep = || std::thread::sleep(std::time::Duration::from_millis(2100));
    let cold = |src: &Path| build(src, &options(16 * 1024, None, 2)).0;
    let trusted = |cache: &Path| options(16 * 1024, Some(open(cache, true)), 2);
    sleep();
    let cache_dir = tempfile::tempdir().unwrap();
    let (first, report) = build(src.path(), &trusted(cache_dir.path()));
    assert!(first == cold(src.path()));
    let report = report.unwrap();
    assert_eq!(report.files_not_read, 0);
    // A small file's record is its tag (23 bytes), with its whole hash (55)
    // only for the two files that share size and tag; a large file's is 19
    // bytes and 32 per block; a fragment block's recipe 50; the file's
    // header and checksum 56.
    let large_blocks: u64 = std::fs::read_dir(src.path().join("large"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len().div_ceil(16 * 1024))
        .sum();
    let expect = 301 * 23 + 2 * 55 + 5 * 19 + large_blocks * 32 + report.fragment_misses * 50 + 56;
    let records = Cache::stats(cache_dir.path()).unwrap().record_bytes;
    assert_eq!(records, expect, "bytes of --trust-stat records");

    let (warm, report) = build(src.path(), &trusted(cache_dir.path()));
    assert!(warm == first);
    let report = report.unwrap();
    assert_eq!(report.files_not_read, files, "{report:?}");
    assert_eq!((report.block_misses, report.fragment_misses), (0, 0));

    // A new copy of a file recorded by its tag alone: the two are told apart
    // by reading, and the copy is stored once, as a cold build does.
    std::fs::write(small.join("lonely-copy"), text(900, 6)).unwrap();
    sleep();
    let want = cold(src.path());
    let (warm, report) = build(src.path(), &trusted(cache_dir.path()));
    assert!(
        warm == want,
        "the copy was not deduplicated as in a cold build"
    );
    let report = report.unwrap();
    assert_eq!(report.files_not_read, files, "{report:?}");
    assert_eq!(report.fragment_misses, 0, "{report:?}");

    // A file rewritten with the same bytes has a new fingerprint: its fragment
    // block has no recipe, so its members are read and hashed, and the block
    // is found by content.
    let touched = small.join("00020");
    std::fs::write(&touched, std::fs::read(&touched).unwrap()).unwrap();
    sleep();
    // (Its mtime changed, which the image keeps.)
    let want = cold(src.path());
    let (warm, report) = build(src.path(), &trusted(cache_dir.path()));
    assert!(warm == want);
    let report = report.unwrap();
    assert_eq!(report.files_not_read, files, "{report:?}");
    assert_eq!((report.block_misses, report.fragment_misses), (0, 0));
    // That build recorded the block's new recipe: nothing is read now.
    let (warm, report) = build(src.path(), &trusted(cache_dir.path()));
    assert!(warm == want);
    let report = report.unwrap();
    assert_eq!(report.files_not_read, files + 1, "{report:?}");
    assert_eq!((report.block_misses, report.fragment_misses), (0, 0));
}

#[test]
fn a_read_only_cache_still_serves_hits_and_warns_once() {
    let src = tempfile::tempdir().unwrap();
    populate(src.path(), 100);
    let cache_dir = tempfile::tempdir().unwrap();
    build(
        src.path(),
        &options(16 * 1024, Some(open(cache_dir.path(), false)), 2),
    );
    // Change a large file so the next build must store, and make storing
    // fail: root ignores permission bits, so put a file where the folder of
    // packs being written goes.
    std::fs::write(src.path().join("large/2"), text(310_000, 4242)).unwrap();
    let (cold, _) = build(src.path(), &options(16 * 1024, None, 2));
    let tmp = cache_dir.path().join("packs-v1/tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a folder").unwrap();
    let (warm, report) = build(
        src.path(),
        &options(16 * 1024, Some(open(cache_dir.path(), false)), 2),
    );
    assert!(warm == cold);
    let report = report.unwrap();
    assert!(report.block_hits + report.fragment_hits > 0, "{report:?}");
    assert!(report.block_misses > 0, "{report:?}");
    let warning = report.warning.expect("a warning");
    assert!(warning.contains("cannot write to cache"), "{warning}");
}
