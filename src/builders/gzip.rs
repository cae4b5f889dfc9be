//! Deterministic parallel gzip, the technique of pigz: the input is cut into fixed-size blocks,
//! each compressed on its own thread as raw deflate primed with the previous block's last 32 KiB
//! (so matches across block boundaries are not lost) and ended with a sync flush (the last block
//! with the final flush). The pieces concatenate into one deflate stream in a single gzip member
//! with a fixed header (no file name, mtime 0). Block boundaries depend only on the input, so the
//! bytes never depend on the number of threads.
use flate2::{Compress, Compression, FlushCompress, Status};

/// Uncompressed bytes per block.
pub const BLOCK_BYTES: usize = 1 << 20;
/// deflate's window: how much of the previous block primes the next.
const WINDOW_BYTES: usize = 32 * 1024;
/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Compresses `data` as one gzip member using up to `threads` threads.
pub fn gzip(data: &[u8], level: Compression, threads: usize) -> Vec<u8> {
    gzip_with_blocks(data, level, threads, BLOCK_BYTES)
}

/// As [`gzip`], with all available cores.
pub fn gzip_all_cores(data: &[u8], level: Compression) -> Vec<u8> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    gzip(data, level, threads)
}

pub(crate) fn gzip_with_blocks(
    data: &[u8],
    level: Compression,
    threads: usize,
    block_bytes: usize,
) -> Vec<u8> {
    let block_bytes = block_bytes.max(1);
    let blocks = data.len().div_ceil(block_bytes).max(1);
    let threads = threads.clamp(1, blocks);
    let compress = |index: usize| {
        let start = index * block_bytes;
        let end = (start + block_bytes).min(data.len());
        let dictionary = &data[start.saturating_sub(WINDOW_BYTES)..start];
        let mut crc = crc32fast::Hasher::new();
        crc.update(&data[start..end]);
        let deflated = deflate_block(dictionary, &data[start..end], level, index + 1 == blocks);
        (deflated, crc)
    };
    let mut pieces: Vec<(usize, (Vec<u8>, crc32fast::Hasher))> = if threads == 1 {
        (0..blocks).map(|index| (index, compress(index))).collect()
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|worker| {
                    let compress = &compress;
                    scope.spawn(move || {
                        (worker..blocks)
                            .step_by(threads)
                            .map(|index| (index, compress(index)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| match worker.join() {
                    Ok(pieces) => pieces,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    };
    pieces.sort_by_key(|(index, _)| *index);
    let body: usize = pieces.iter().map(|(_, (bytes, _))| bytes.len()).sum();
    let mut out = Vec::with_capacity(HEADER.len() + body + 8);
    out.extend_from_slice(&HEADER);
    let mut crc = crc32fast::Hasher::new();
    for (_, (bytes, block_crc)) in &pieces {
        out.extend_from_slice(bytes);
        crc.combine(block_crc);
    }
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE is the input length modulo 2^32 by definition.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn deflate_block(dictionary: &[u8], input: &[u8], level: Compression, last: bool) -> Vec<u8> {
    let mut compress = Compress::new(level, false);
    if !dictionary.is_empty() {
        compress
            .set_dictionary(dictionary)
            .expect("a fresh raw deflate stream accepts a dictionary");
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 16 * 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before = compress.total_in();
        let status = compress
            .compress_vec(&input[consumed..], &mut out, flush)
            .expect("deflate cannot fail on in-memory input");
        consumed += (compress.total_in() - before) as usize;
        let drained = consumed == input.len() && out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            _ if !last && drained => break,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if i % 7 < 4 {
                    b"chaincode"[i % 9]
                } else {
                    (state % 26) as u8 + b'a'
                }
            })
            .collect()
    }

    #[test]
    fn output_is_one_valid_member_whatever_the_block_boundaries() {
        for len in [0, 1, 99, 100, 101, 1000, 32 * 1024 + 5] {
            let data = sample(len);
            let zipped = gzip_with_blocks(&data, Compression::default(), 3, 100);
            assert_eq!(gunzip(&zipped), data, "len {len}");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_the_thread_count() {
        let data = sample(3 * BLOCK_BYTES + 12345);
        let one = gzip(&data, Compression::default(), 1);
        let many = gzip(&data, Compression::default(), 5);
        assert_eq!(one, many);
        assert_eq!(gunzip(&many), data);
    }

    #[test]
    fn priming_keeps_the_size_close_to_a_single_stream() {
        let data = sample(4 * BLOCK_BYTES);
        let blocks = gzip_with_blocks(&data, Compression::default(), 2, 64 * 1024);
        let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        std::io::Write::write_all(&mut single, &data).unwrap();
        let single = single.finish().unwrap();
        // 64 blocks cost only their sync-flush markers and a little matching at the seams.
        assert!(
            blocks.len() <= single.len() + single.len() / 100,
            "{} vs {}",
            blocks.len(),
            single.len()
        );
    }
}
