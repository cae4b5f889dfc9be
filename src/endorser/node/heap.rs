//! The allocator's heap: glibc tuned so freed blocks go back to the OS, trims after large requests
//! and whenever the heap holds much free memory, and the heap's figures on /metrics.
//!
//! glibc keeps freed memory in its arenas. Under steady load the free part grows with
//! fragmentation (versus_fabric's 1-hour soak: 12 MiB free after a minute, about 40 MiB after an
//! hour) and RSS with it, although nothing live grew. [`MemoryTrimmer::check_periodically`]
//! returns it.
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Returning freed memory walks the allocator's heaps; not more often than this.
pub const MIN_TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// How often a running node checks its heap for free memory to return.
pub const HEAP_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Free heap memory kept without a trim: allocation churn reuses it at once, and returning it
/// would only fault the same pages back in.
pub const KEPT_FREE_BYTES: u64 = 16 * 1024 * 1024;

/// Returns freed memory to the OS: after large requests, at most once per [`MIN_TRIM_INTERVAL`] (a
/// request finishing meanwhile is covered by the trim already scheduled), and at periodic checks.
#[derive(Clone, Debug, Default)]
pub struct MemoryTrimmer {
    state: Arc<TrimState>,
}

#[derive(Debug, Default)]
struct TrimState {
    scheduled: AtomicBool,
    last: Mutex<Option<Instant>>,
    trims: AtomicUsize,
}

impl MemoryTrimmer {
    /// Trims done so far.
    pub fn trims(&self) -> usize {
        self.state.trims.load(Ordering::Acquire)
    }

    pub fn after_large_request(&self) {
        if self.state.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = self.state.clone();
        tokio::spawn(async move {
            let last = *state.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(last) = last {
                tokio::time::sleep_until((last + MIN_TRIM_INTERVAL).into()).await;
            }
            // Cleared before trimming, so a request that finishes after this point schedules
            // the next trim instead of relying on this one.
            state.scheduled.store(false, Ordering::Release);
            *state.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            let _ = tokio::task::spawn_blocking(release_freed_memory).await;
            state.trims.fetch_add(1, Ordering::AcqRel);
        });
    }

    /// Every `interval` until `shutdown`, returns the heap's free memory to the OS when it holds
    /// more than [`HeapStats::worth_trimming`] allows. Both the check and the trim walk the
    /// allocator's free lists under its locks, so they run on a blocking thread.
    pub async fn check_periodically(self, interval: Duration, shutdown: impl Future<Output = ()>) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            let trimmed = tokio::task::spawn_blocking(|| {
                let Some(stats) = heap_stats().filter(HeapStats::worth_trimming) else {
                    return false;
                };
                let before = resident_bytes();
                let started = Instant::now();
                release_freed_memory();
                tracing::debug!(
                    heap_in_use_bytes = stats.in_use_bytes,
                    heap_free_bytes = stats.free_bytes,
                    resident_before_bytes = before,
                    resident_after_bytes = resident_bytes(),
                    took_us = started.elapsed().as_micros(),
                    "returned the heap's free memory to the OS"
                );
                true
            })
            .await;
            if matches!(trimmed, Ok(true)) {
                *self.state.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                self.state.trims.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// Blocks of at least this size are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD_BYTES: usize = 4 * 1024 * 1024;

/// Free memory at the top of a heap beyond this is returned when a block is freed.
pub const TRIM_THRESHOLD_BYTES: usize = 8 * 1024 * 1024;

/// Most malloc arenas (glibc's default is 8 per core). Each thread that allocates while others
/// hold the arenas gets one, and an arena keeps the memory freed inside it: under submit load
/// (then a blocking thread per submit in flight) 16 arenas grew to 5–21 MiB each and RSS rose
/// with the hours (versus_fabric's soak). One per core: over that soak's hour RSS grew 1.23×
/// instead of 1.36× (two per core), and the arena lock waits it adds did not show in submit's CPU
/// per transaction (docs/performance.md, session 7).
pub const ARENAS_PER_CORE: usize = 1;

/// Fixes glibc's mmap and trim thresholds and the arena count for the whole process (once), except
/// those set in glibc's environment variables. By default glibc raises the thresholds after the
/// first large free, up to 32 MiB and 64 MiB, after which a thread's heap keeps up to 64 MiB free
/// at its top, which `malloc_trim` does not return (it trims only the main heap's top): measured,
/// 58 MiB stayed after 10–50 MB proposals despite the trim. Setting them turns the adjustment off,
/// so message-sized blocks go back to the OS when freed.
pub fn return_large_blocks_when_freed() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(set_allocator_thresholds);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_allocator_thresholds() {
    let to_c = |bytes: usize| libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // A value the operator set in glibc's own environment variable wins.
    let settings = [
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD_BYTES,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD_BYTES,
        ),
        (
            "MALLOC_ARENA_MAX",
            libc::M_ARENA_MAX,
            ARENAS_PER_CORE * cores,
        ),
    ];
    for (variable, parameter, value) in settings {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets one of the allocator's tuning parameters; it takes no
            // pointers.
            unsafe {
                libc::mallopt(parameter, to_c(value));
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_allocator_thresholds() {}

/// glibc keeps freed blocks below the mmap threshold in its heaps; `malloc_trim(0)` returns the
/// free pages inside every heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed_memory() {
    // SAFETY: malloc_trim only walks and trims the allocator's own free lists; it takes no
    // pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}

/// The allocator's own account of the heap: what live allocations hold, and what it keeps free
/// (freed but not returned to the OS). RSS alone cannot tell a growing cache from fragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in live allocations, mapped blocks included.
    pub in_use_bytes: u64,
    /// Bytes the allocator holds free in its heaps.
    pub free_bytes: u64,
}

/// This process's resident memory (VmRSS); None where /proc does not report it.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

impl HeapStats {
    /// Whether the free part is worth returning: more than [`KEPT_FREE_BYTES`] and more than a
    /// quarter of what is in use. glibc still counts trimmed chunks as free (only their pages went
    /// back), so a fragmented heap stays above this and is trimmed at each check.
    pub fn worth_trimming(&self) -> bool {
        self.free_bytes > KEPT_FREE_BYTES.max(self.in_use_bytes / 4)
    }
}

/// The heap as glibc sees it (all arenas); None with another allocator. It locks each arena
/// while it walks the free lists, so call it per scrape or periodic check, not per request.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn heap_stats() -> Option<HeapStats> {
    // SAFETY: mallinfo2 only reads the allocator's bookkeeping and returns it by value.
    let info = unsafe { libc::mallinfo2() };
    let bytes = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Some(HeapStats {
        in_use_bytes: bytes(info.uordblks).saturating_add(bytes(info.hblkhd)),
        free_bytes: bytes(info.fordblks),
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_stats() -> Option<HeapStats> {
    None
}

/// The allocator's heap on /metrics, read at each scrape: live bytes against bytes held free
/// tell a filling cache from fragmentation when RSS grows.
pub struct HeapGauges {
    in_use: prometheus_client::metrics::gauge::Gauge,
    free: prometheus_client::metrics::gauge::Gauge,
}

impl HeapGauges {
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let gauges = Self {
            in_use: Default::default(),
            free: Default::default(),
        };
        registry.register(
            "heap_in_use_bytes",
            "Bytes in live heap allocations (glibc's count, mapped blocks included)",
            gauges.in_use.clone(),
        );
        registry.register(
            "heap_free_bytes",
            "Bytes the allocator holds free in its heaps and has not returned to the OS",
            gauges.free.clone(),
        );
        gauges
    }

    pub fn refresh(&self) {
        if let Some(stats) = heap_stats() {
            let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.in_use.set(gauge(stats.in_use_bytes));
            self.free.set(gauge(stats.free_bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn until_trims(trimmer: &MemoryTrimmer, trims: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while trimmer.trims() < trims {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the trim runs");
    }

    #[tokio::test]
    async fn large_requests_in_quick_succession_get_one_trim_now_and_one_after_the_interval() {
        let trimmer = MemoryTrimmer::default();
        trimmer.after_large_request();
        until_trims(&trimmer, 1).await;
        trimmer.after_large_request();
        trimmer.after_large_request();
        tokio::time::sleep(MIN_TRIM_INTERVAL / 5).await;
        assert_eq!(trimmer.trims(), 1, "not again within the interval");
        until_trims(&trimmer, 2).await;
        tokio::time::sleep(MIN_TRIM_INTERVAL * 3 / 2).await;
        assert_eq!(trimmer.trims(), 2, "one trailing trim covers both requests");
    }

    #[test]
    fn a_heap_is_trimmed_only_when_its_free_part_is_large_for_its_size() {
        const MIB: u64 = 1024 * 1024;
        let heap = |in_use: u64, free: u64| HeapStats {
            in_use_bytes: in_use * MIB,
            free_bytes: free * MIB,
        };
        assert!(
            !heap(30, 12).worth_trimming(),
            "a small free part is reused"
        );
        assert!(heap(30, 40).worth_trimming());
        assert!(
            !heap(400, 90).worth_trimming(),
            "under a quarter of a large heap"
        );
        assert!(heap(400, 120).worth_trimming());
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[tokio::test]
    async fn the_periodic_check_returns_fragmented_free_memory_to_the_os() {
        // 256 MiB of 64 KiB blocks, each followed by a small block that stays: freeing the large
        // ones leaves holes the allocator cannot give back by shrinking its heap.
        const BLOCK: usize = 64 * 1024;
        const BLOCKS: usize = 4096;
        let mut large = Vec::with_capacity(BLOCKS);
        let mut pins = Vec::with_capacity(BLOCKS);
        for i in 0..BLOCKS {
            large.push(vec![1u8; BLOCK]);
            pins.push(vec![i as u8; 64]);
        }
        // Measured while the blocks are live: a trim by another test running in this process
        // between the drop and a later reading would otherwise hide ours.
        let before = resident_bytes().expect("Linux reports VmRSS");
        drop(std::hint::black_box(large));
        let trimmer = MemoryTrimmer::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let checks = tokio::spawn(trimmer.clone().check_periodically(
            Duration::from_millis(20),
            async move {
                let _ = stopped.await;
            },
        ));
        until_trims(&trimmer, 1).await;
        let after = resident_bytes().expect("Linux reports VmRSS");
        let _ = stop.send(());
        checks.await.expect("the check loop ends at shutdown");
        let half = (BLOCK * BLOCKS / 2) as u64;
        assert!(
            after + half <= before,
            "resident {} MiB with the blocks live, {} MiB after freeing them and the trim",
            before >> 20,
            after >> 20
        );
        drop(std::hint::black_box(pins));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn heap_stats_count_a_live_allocation_and_not_a_freed_one() {
        const SIZE: usize = 256 * 1024 * 1024;
        let before = heap_stats().expect("glibc reports its heap");
        let block = vec![1u8; SIZE];
        let during = heap_stats().expect("glibc reports its heap");
        assert!(
            during.in_use_bytes >= before.in_use_bytes + (SIZE as u64) / 2,
            "{before:?} -> {during:?}"
        );
        drop(std::hint::black_box(block));
        let after = heap_stats().expect("glibc reports its heap");
        assert!(
            after.in_use_bytes + (SIZE as u64) / 2 <= during.in_use_bytes,
            "{during:?} -> {after:?}"
        );
    }
}
