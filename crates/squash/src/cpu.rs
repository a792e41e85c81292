//! On-CPU time of the writer's thread pools, for the report: each thread
//! reads its own `/proc/thread-self/schedstat`, whose first field is the
//! nanoseconds it spent running (not waiting for a CPU, so a busy machine does
//! not inflate it), and a pool's time is the sum over a broadcast to its
//! threads. It says where a build's CPU went (compressing, or reading) without
//! a profiler; it never reaches the image.

use std::time::Duration;

/// On-CPU time of the writer's two thread pools, each `None` where the
/// kernel does not report it (no schedstat, or not Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadCpu {
    /// The compressing pool (`mkp-compress-N`): data, fragment and metadata
    /// blocks, and what a pool job does around them (hashing a large file's
    /// blocks, the cache's lookups).
    pub compress: Option<Duration>,
    /// The reading pool (`mkp-read-N`): small files read and hashed ahead.
    pub read: Option<Duration>,
}

/// The calling thread's on-CPU time so far.
fn this_thread() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_ascii_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The on-CPU time of `pool`'s threads so far, summed.
pub(crate) fn pool_time(pool: &rayon::ThreadPool) -> Option<Duration> {
    pool.broadcast(|_| this_thread()).into_iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_reports_the_time_its_threads_spent_running() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let before = pool_time(&pool).expect("this kernel reports schedstat");
        // Each thread runs until its own count says 100 ms more: on CPU time,
        // not wall time, so a busy machine only makes this take longer.
        pool.broadcast(|_| {
            let start = this_thread().unwrap();
            while this_thread().unwrap() - start < Duration::from_millis(100) {}
        });
        let spent = pool_time(&pool).unwrap() - before;
        assert!(
            spent >= Duration::from_millis(200) && spent < Duration::from_secs(60),
            "two threads that each ran 100 ms more add up to {spent:?}"
        );
    }
}
