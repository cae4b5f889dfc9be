//! Bounds on what a package may contain, so a hostile archive cannot exhaust memory or disk.

/// Limits applied while reading a package or a source directory. Every rejection names the entry
/// that crossed the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest package file accepted (compressed bytes).
    pub max_package_bytes: u64,
    /// Largest total of uncompressed file contents across all entries of one archive.
    pub max_total_bytes: u64,
    /// Largest uncompressed size of one entry.
    pub max_entry_bytes: u64,
    /// Most entries (files, directories, links) in one archive.
    pub max_entries: usize,
    /// Largest ratio of decompressed to compressed bytes for one gzip stream.
    pub max_compression_ratio: u64,
    /// Decompressed bytes always allowed regardless of the ratio (tiny archives compress well).
    pub ratio_allowance_bytes: u64,
    /// Longest entry path in bytes.
    pub max_path_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_package_bytes: 100 * 1024 * 1024,
            max_total_bytes: 100 * 1024 * 1024,
            max_entry_bytes: 50 * 1024 * 1024,
            max_entries: 20_000,
            max_compression_ratio: 200,
            ratio_allowance_bytes: 4 * 1024 * 1024,
            max_path_bytes: 1024,
        }
    }
}

impl Limits {
    /// Decompressed bytes allowed for a gzip stream of `compressed_len` bytes.
    pub fn decompressed_budget(&self, compressed_len: u64) -> u64 {
        compressed_len
            .saturating_mul(self.max_compression_ratio)
            .max(self.ratio_allowance_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_streams_get_the_allowance_large_ones_the_ratio() {
        let limits = Limits::default();
        assert_eq!(limits.decompressed_budget(10), 4 * 1024 * 1024);
        assert_eq!(limits.decompressed_budget(1_000_000), 200_000_000);
    }
}
