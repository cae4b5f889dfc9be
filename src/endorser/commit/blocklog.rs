//! The durable, append-only block log of one channel: Fabric `common.Block`s, one per frame.
//!
//! A frame is `u32 length (LE) || u32 crc32 of the block bytes (LE) || block bytes`. An append is
//! acknowledged only after the frame is written and `fsync`ed. A crash can leave at most the last
//! frame incomplete; [`ChannelLog::open`] keeps every complete block (length, checksum, decoding
//! and the block number must all be right) and truncates the rest. Blocks are chained like
//! Fabric's: `data_hash = sha256(concatenation of the envelopes)`, `previous_hash =
//! sha256(ASN.1 DER of the previous header)`, `metadata[LAST_CONFIG]` names block 0 (the channel's
//! config block) and `metadata[TRANSACTIONS_FILTER]` holds one validation code byte per
//! transaction.
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};

use crate::proto::common::{
    Block, BlockData, BlockHeader, BlockMetadata, BlockMetadataIndex, LastConfig, Metadata,
};
use crate::proto::protos::TxValidationCode;

/// Frame header: length and checksum.
const FRAME_HEADER: usize = 8;
/// Largest block accepted when reading a frame; a larger length can only be a torn or corrupt
/// header (Fabric's default maximum block size is far below this).
const MAX_BLOCK_BYTES: usize = 1 << 30;
/// Metadata slots of a Fabric block (SIGNATURES .. COMMIT_HASH).
const METADATA_SLOTS: usize = 5;

/// Failures of the block log.
#[derive(Debug, thiserror::Error)]
pub enum BlockLogError {
    #[error("block log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("block log {path}: block at offset {offset} has number {found}, expected {expected}")]
    OutOfSequence {
        path: PathBuf,
        offset: u64,
        found: u64,
        expected: u64,
    },
    #[error("block log {path}: cannot append block {found}, the next block is {expected}")]
    WrongNumber {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("block log {path}: stored block {number} is corrupt: {reason}")]
    Corrupt {
        path: PathBuf,
        number: u64,
        reason: String,
    },
    #[error(
        "block log {path}: an earlier append failed and could not be undone; reopen the log to recover"
    )]
    Poisoned { path: PathBuf },
}

/// Fabric's block data hash: sha256 over the concatenated envelopes.
pub fn block_data_hash(data: &BlockData) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for envelope in &data.data {
        hasher.update(envelope);
    }
    hasher.finalize().to_vec()
}

fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der_element(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    der_length(content.len(), out);
    out.extend_from_slice(content);
}

/// Fabric's `BlockHeaderBytes`: ASN.1 DER `SEQUENCE { INTEGER number, OCTET STRING
/// previous_hash, OCTET STRING data_hash }` (Go's `asn1.Marshal` with a big.Int number).
pub fn block_header_bytes(header: &BlockHeader) -> Vec<u8> {
    let number = header.number.to_be_bytes();
    let skip = number.iter().take_while(|b| **b == 0).count().min(7);
    let mut integer = Vec::with_capacity(9);
    // A positive INTEGER whose top bit is set needs a leading zero byte.
    if number[skip] & 0x80 != 0 {
        integer.push(0);
    }
    integer.extend_from_slice(&number[skip..]);
    let mut content = Vec::with_capacity(80);
    der_element(0x02, &integer, &mut content);
    der_element(0x04, &header.previous_hash, &mut content);
    der_element(0x04, &header.data_hash, &mut content);
    let mut out = Vec::with_capacity(content.len() + 4);
    der_element(0x30, &content, &mut out);
    out
}

/// Fabric's block hash: sha256 of [`block_header_bytes`]; the next block's `previous_hash`.
pub fn block_header_hash(header: &BlockHeader) -> Vec<u8> {
    Sha256::digest(block_header_bytes(header)).to_vec()
}

/// The validation codes of a block's transactions (`metadata[TRANSACTIONS_FILTER]`).
pub fn transactions_filter(block: &Block) -> Vec<TxValidationCode> {
    block
        .metadata
        .as_ref()
        .and_then(|m| {
            m.metadata
                .get(BlockMetadataIndex::TransactionsFilter as usize)
        })
        .map(|filter| {
            filter
                .iter()
                .map(|code| {
                    TxValidationCode::try_from(i32::from(*code))
                        .unwrap_or(TxValidationCode::InvalidOtherReason)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Builds block `number` after the block whose header hash is `previous_hash`, holding the
/// encoded `envelopes` with their validation `codes`.
pub fn new_block(
    number: u64,
    previous_hash: Vec<u8>,
    envelopes: Vec<Vec<u8>>,
    codes: &[TxValidationCode],
) -> Block {
    let data = BlockData { data: envelopes };
    let mut metadata = vec![Vec::new(); METADATA_SLOTS];
    metadata[BlockMetadataIndex::TransactionsFilter as usize] =
        codes.iter().map(|code| *code as i32 as u8).collect();
    // Like every Fabric block, it names the channel's latest config block: block 0, the only one
    // (there are no config updates).
    metadata[BlockMetadataIndex::LastConfig as usize] = Metadata {
        value: LastConfig { index: 0 }.encode_to_vec(),
        signatures: Vec::new(),
    }
    .encode_to_vec();
    Block {
        header: Some(BlockHeader {
            number,
            previous_hash,
            data_hash: block_data_hash(&data),
        }),
        data: Some(data),
        metadata: Some(BlockMetadata { metadata }),
    }
}

/// Every `SPARSE_EVERY`th block's offset is kept for older blocks; reading one of them skips
/// frame headers from there (at most 63 small reads).
const SPARSE_EVERY: u64 = 64;
/// The newest blocks' offsets are all kept: readers (Deliver, commit status) follow the tail.
const RECENT_EXACT: usize = 1024;

/// Where the blocks' frames start in the file, in memory that grows by 8 bytes per 64 blocks
/// (one offset per block was 8 MB per million blocks, for as long as the node runs).
#[derive(Debug, Default)]
struct BlockOffsets {
    /// The offset of block `k * SPARSE_EVERY`, for every `k` up to the height.
    sparse: Vec<u64>,
    /// The offsets of the last `recent.len()` blocks, in order.
    recent: VecDeque<u64>,
    height: u64,
}

impl BlockOffsets {
    fn push(&mut self, offset: u64) {
        if self.height.is_multiple_of(SPARSE_EVERY) {
            self.sparse.push(offset);
        }
        if self.recent.len() == RECENT_EXACT {
            self.recent.pop_front();
        }
        self.recent.push_back(offset);
        self.height += 1;
    }

    /// A known frame offset at or before block `number` (< height), and how many frames lie
    /// between it and that block's frame.
    fn locate(&self, number: u64) -> Option<(u64, u64)> {
        if number >= self.height {
            return None;
        }
        let first_recent = self.height - self.recent.len() as u64;
        if number >= first_recent {
            let index = usize::try_from(number - first_recent).ok()?;
            return self.recent.get(index).map(|&offset| (offset, 0));
        }
        let index = usize::try_from(number / SPARSE_EVERY).ok()?;
        self.sparse
            .get(index)
            .map(|&offset| (offset, number % SPARSE_EVERY))
    }
}

/// The block log of one channel, open for appending.
#[derive(Debug)]
pub struct ChannelLog {
    path: PathBuf,
    file: File,
    /// Where blocks start; its height is the log's.
    offsets: BlockOffsets,
    end: u64,
    last_hash: Vec<u8>,
    poisoned: bool,
}

/// What opening a log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes after the last complete block that were cut off (a torn append).
    pub truncated_bytes: u64,
}

enum Frame {
    Block(Block, u64),
    /// End of file, or an incomplete / corrupt frame: the torn tail.
    End,
}

fn read_frame(reader: &mut impl Read) -> std::io::Result<Frame> {
    let mut head = [0u8; FRAME_HEADER];
    if let Err(e) = reader.read_exact(&mut head) {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Ok(Frame::End),
            _ => Err(e),
        };
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_BLOCK_BYTES {
        return Ok(Frame::End);
    }
    let mut bytes = vec![0u8; len];
    if let Err(e) = reader.read_exact(&mut bytes) {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Ok(Frame::End),
            _ => Err(e),
        };
    }
    if crc32fast::hash(&bytes) != crc {
        return Ok(Frame::End);
    }
    match Block::decode(bytes.as_slice()) {
        Ok(block) => Ok(Frame::Block(block, (FRAME_HEADER + len) as u64)),
        Err(_) => Ok(Frame::End),
    }
}

impl ChannelLog {
    fn io(&self, source: std::io::Error) -> BlockLogError {
        BlockLogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens (or creates) the log at `path`, keeping every complete block and truncating a torn
    /// tail. Blocks must be numbered 0, 1, 2, ... in order.
    pub fn open(path: &Path) -> Result<(Self, Recovery), BlockLogError> {
        let io = |source| BlockLogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        if !existed {
            // The new file's directory entry must be durable too, before any block is in it.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
        }
        let file_len = file.metadata().map_err(io)?.len();
        let mut reader = BufReader::new(file.try_clone().map_err(io)?);
        let mut offsets = BlockOffsets::default();
        let mut end = 0u64;
        let mut last_hash = Vec::new();
        while let Frame::Block(block, frame_len) = read_frame(&mut reader).map_err(io)? {
            let expected = offsets.height;
            let found = block.header.as_ref().map(|h| h.number).unwrap_or(u64::MAX);
            if found != expected {
                return Err(BlockLogError::OutOfSequence {
                    path: path.to_path_buf(),
                    offset: end,
                    found,
                    expected,
                });
            }
            last_hash = block
                .header
                .as_ref()
                .map(block_header_hash)
                .unwrap_or_default();
            offsets.push(end);
            end += frame_len;
        }
        let truncated_bytes = file_len - end.min(file_len);
        if truncated_bytes > 0 {
            file.set_len(end).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let mut log = Self {
            path: path.to_path_buf(),
            file,
            offsets,
            end,
            last_hash,
            poisoned: false,
        };
        log.file.seek(SeekFrom::Start(end)).map_err(|e| log.io(e))?;
        Ok((log, Recovery { truncated_bytes }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of blocks in the log (the next block number).
    pub fn height(&self) -> u64 {
        self.offsets.height
    }

    /// Header hash of the last block (empty before the first): the next block's previous hash.
    pub fn last_hash(&self) -> &[u8] {
        &self.last_hash
    }

    /// Appends the next block and makes it durable (fsync) before returning. On failure the log
    /// is cut back to its previous end and refuses further appends until it is reopened: after a
    /// failed write or fsync what the file holds is unknown, and reopening re-reads it.
    pub fn append(&mut self, block: &Block) -> Result<(), BlockLogError> {
        if self.poisoned {
            return Err(BlockLogError::Poisoned {
                path: self.path.clone(),
            });
        }
        let found = block.header.as_ref().map(|h| h.number).unwrap_or(u64::MAX);
        if found != self.height() {
            return Err(BlockLogError::WrongNumber {
                path: self.path.clone(),
                found,
                expected: self.height(),
            });
        }
        let bytes = block.encode_to_vec();
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|len| (*len as usize) <= MAX_BLOCK_BYTES)
            .ok_or_else(|| {
                self.io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("block of {} bytes is too large", bytes.len()),
                ))
            })?;
        let mut frame = Vec::with_capacity(FRAME_HEADER + bytes.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        frame.extend_from_slice(&bytes);
        let written = self
            .file
            .write_all(&frame)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            let undone = self
                .file
                .set_len(self.end)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.end)).map(|_| ()))
                .and_then(|()| self.file.sync_all());
            self.poisoned = true;
            if let Err(error) = undone {
                tracing::error!(path = %self.path.display(), %error, "cannot undo a failed block append");
            }
            return Err(self.io(source));
        }
        self.offsets.push(self.end);
        self.end += frame.len() as u64;
        self.last_hash = block
            .header
            .as_ref()
            .map(block_header_hash)
            .unwrap_or_default();
        Ok(())
    }

    /// Whether an append failed and the log refuses appends until [`ChannelLog::recover`].
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Makes a poisoned log usable again once the cause (a full or read-only disk) is gone: cuts
    /// the file back to the last block that was durably appended (the failed append's submitters
    /// were told it failed, so it must never turn up later), then reopens it and checks it holds
    /// exactly the blocks it held before. Fails, leaving the log poisoned, while the cause lasts.
    pub fn recover(&mut self) -> Result<(), BlockLogError> {
        if !self.poisoned {
            return Ok(());
        }
        self.file
            .set_len(self.end)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| self.io(e))?;
        let (fresh, _) = ChannelLog::open(&self.path)?;
        if fresh.height() != self.height() || fresh.last_hash != self.last_hash {
            return Err(BlockLogError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(format!(
                    "after a failed append the log holds {} blocks, expected {}",
                    fresh.height(),
                    self.height()
                )),
            });
        }
        *self = fresh;
        Ok(())
    }

    /// The blocks from number `start` to the end of the log.
    pub fn read_from(&self, start: u64) -> Result<Vec<Block>, BlockLogError> {
        self.read_range(start, u64::MAX)
    }

    /// Up to `limit` blocks from number `start` on.
    pub fn read_range(&self, start: u64, limit: u64) -> Result<Vec<Block>, BlockLogError> {
        self.range(start, limit).read()
    }

    /// Where up to `limit` blocks from number `start` on lie in the file, to be read later
    /// without holding the log: blocks already written never move (appends only add after them).
    pub fn range(&self, start: u64, limit: u64) -> LogRange {
        let count = limit.min(self.height().saturating_sub(start));
        let (offset, skip) = self.offsets.locate(start).unwrap_or((self.end, 0));
        LogRange {
            path: self.path.clone(),
            start,
            count,
            offset,
            skip,
            end: self.end,
        }
    }
}

/// A run of complete blocks of a log, readable without the [`ChannelLog`].
#[derive(Debug, Clone)]
pub struct LogRange {
    path: PathBuf,
    start: u64,
    count: u64,
    /// A frame at or before block `start`'s, and the frames to skip from it.
    offset: u64,
    skip: u64,
    end: u64,
}

impl LogRange {
    /// Reads the blocks of the range.
    pub fn read(&self) -> Result<Vec<Block>, BlockLogError> {
        if self.count == 0 {
            return Ok(Vec::new());
        }
        let io = |source| BlockLogError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(io)?;
        let offset = self.first_offset(&file)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut reader = BufReader::new(file.take(self.end.saturating_sub(offset)));
        let mut blocks = Vec::new();
        for number in self.start..self.start + self.count {
            match read_frame(&mut reader).map_err(io)? {
                Frame::Block(block, _) => blocks.push(block),
                Frame::End => {
                    return Err(BlockLogError::Corrupt {
                        path: self.path.clone(),
                        number,
                        reason: "incomplete or failing its checksum".into(),
                    });
                }
            }
        }
        Ok(blocks)
    }

    /// Block `start`'s frame offset: the known offset, then one header read per skipped frame
    /// (their lengths were checked when they were appended or the log was opened).
    fn first_offset(&self, file: &File) -> Result<u64, BlockLogError> {
        let mut offset = self.offset;
        for skipped in 0..self.skip {
            let number = self.start - self.skip + skipped;
            let corrupt = |reason: &str| BlockLogError::Corrupt {
                path: self.path.clone(),
                number,
                reason: reason.into(),
            };
            let mut head = [0u8; FRAME_HEADER];
            file.read_exact_at(&mut head, offset)
                .map_err(|_| corrupt("its frame header cannot be read"))?;
            let len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
            offset += FRAME_HEADER as u64 + len;
            if offset > self.end {
                return Err(corrupt("its frame runs past the log's end"));
            }
        }
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 256 KiB tmpfs mounted at a fresh directory (root only), unmounted on drop.
    struct SmallDisk(tempfile::TempDir);

    impl SmallDisk {
        fn mount() -> Option<SmallDisk> {
            let dir = tempfile::tempdir().ok()?;
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            mounted.then_some(SmallDisk(dir))
        }
    }

    impl Drop for SmallDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    /// ENOSPC during an append: that append fails and poisons the log; once space is freed the
    /// log recovers without a restart, the failed block never appears, and the next one follows.
    #[test]
    fn a_log_recovers_from_a_full_disk_once_space_is_freed() {
        let Some(disk) = SmallDisk::mount() else {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        };
        let path = disk.0.path().join("ch.log");
        let (mut log, _) = ChannelLog::open(&path).unwrap();
        log.append(&block_after(&log, &[b"first"])).unwrap();
        // Fill the disk up, leaving less than a block.
        let filler = disk.0.path().join("filler");
        let mut file = File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while file
            .write_all(&chunk)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
        drop(file);
        let big = vec![7u8; 64 * 1024];
        let failed = log.append(&block_after(&log, &[&big]));
        assert!(failed.is_err(), "the disk is full");
        assert!(log.is_poisoned());
        assert!(
            log.append(&block_after(&log, &[b"again"])).is_err(),
            "poisoned: refuses appends until recovered"
        );

        std::fs::remove_file(&filler).unwrap();
        log.recover().expect("recovers once space is freed");
        assert!(!log.is_poisoned());
        assert_eq!(log.height(), 1, "the failed block is not in the log");
        log.append(&block_after(&log, &[b"second"])).unwrap();
        drop(log);
        let (reopened, recovery) = ChannelLog::open(&path).unwrap();
        assert_eq!(reopened.height(), 2);
        assert_eq!(recovery.truncated_bytes, 0);
        let blocks = reopened.read_from(0).unwrap();
        assert_eq!(blocks[1].data.as_ref().unwrap().data[0], b"second");
    }

    fn block_after(log: &ChannelLog, txs: &[&[u8]]) -> Block {
        let codes = vec![TxValidationCode::Valid; txs.len()];
        new_block(
            log.height(),
            log.last_hash().to_vec(),
            txs.iter().map(|t| t.to_vec()).collect(),
            &codes,
        )
    }

    #[test]
    fn the_header_is_encoded_as_go_asn1_marshals_it() {
        let header = BlockHeader {
            number: 0,
            previous_hash: Vec::new(),
            data_hash: vec![0xaa; 2],
        };
        assert_eq!(
            block_header_bytes(&header),
            [
                0x30, 0x09, 0x02, 0x01, 0x00, 0x04, 0x00, 0x04, 0x02, 0xaa, 0xaa
            ]
        );
        let header = BlockHeader {
            number: 128,
            previous_hash: vec![1; 32],
            data_hash: vec![2; 32],
        };
        let bytes = block_header_bytes(&header);
        assert_eq!(&bytes[..6], [0x30, 0x48, 0x02, 0x02, 0x00, 0x80]);
        assert_eq!(bytes.len(), 2 + 0x48);
    }

    #[test]
    fn blocks_are_chained_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ch.blocks");
        let (mut log, _) = ChannelLog::open(&path).unwrap();
        let first = block_after(&log, &[b"tx0", b"tx1"]);
        log.append(&first).unwrap();
        let second = block_after(&log, &[b"tx2"]);
        log.append(&second).unwrap();
        assert_eq!(
            second.header.as_ref().unwrap().previous_hash,
            block_header_hash(first.header.as_ref().unwrap())
        );
        assert_eq!(
            first.header.as_ref().unwrap().data_hash,
            Sha256::digest(b"tx0tx1").to_vec()
        );
        drop(log);
        let (log, recovery) = ChannelLog::open(&path).unwrap();
        assert_eq!(recovery.truncated_bytes, 0);
        assert_eq!(log.height(), 2);
        assert_eq!(
            log.read_from(0).unwrap(),
            vec![first.clone(), second.clone()]
        );
        assert_eq!(log.read_from(1).unwrap(), vec![second]);
        assert!(log.read_from(2).unwrap().is_empty());
        assert_eq!(log.read_range(0, 1).unwrap(), vec![first]);
    }

    #[test]
    fn any_run_of_a_long_log_reads_back_before_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ch.blocks");
        let (mut log, _) = ChannelLog::open(&path).unwrap();
        let total = RECENT_EXACT as u64 + 3 * SPARSE_EVERY + 5;
        let mut blocks = Vec::new();
        for i in 0..total {
            // Sizes vary, so a wrong skip lands inside a frame instead of on another one.
            let tx = vec![b'x'; 1 + (i as usize * 7) % 300];
            let block = block_after(&log, &[&tx]);
            log.append(&block).unwrap();
            blocks.push(block);
        }
        let starts = [0, 1, 63, 64, 65, 127, 200, total - RECENT_EXACT as u64 - 1];
        let tail = [total - RECENT_EXACT as u64, total - 2, total - 1];
        for log in [log, ChannelLog::open(&path).unwrap().0] {
            assert_eq!(log.height(), total);
            for start in starts.iter().chain(&tail).copied() {
                let end = (start + 3).min(total) as usize;
                assert_eq!(
                    log.read_range(start, 3).unwrap(),
                    blocks[start as usize..end],
                    "blocks from {start}"
                );
            }
            assert_eq!(log.read_from(0).unwrap(), blocks);
            assert!(log.read_range(total, 3).unwrap().is_empty());
        }
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_the_last_complete_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ch.blocks");
        let (mut log, _) = ChannelLog::open(&path).unwrap();
        let first = block_after(&log, &[b"tx0"]);
        log.append(&first).unwrap();
        let complete_len = std::fs::metadata(&path).unwrap().len();
        let second = block_after(&log, &[b"tx1"]);
        log.append(&second).unwrap();
        drop(log);
        // Cut the second frame in half, as a crash during the write would.
        let full = std::fs::metadata(&path).unwrap().len();
        let torn = complete_len + (full - complete_len) / 2;
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(torn)
            .unwrap();
        let (mut log, recovery) = ChannelLog::open(&path).unwrap();
        assert_eq!(recovery.truncated_bytes, torn - complete_len);
        assert_eq!(log.height(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), complete_len);
        // The next append continues the chain from the last complete block.
        let again = block_after(&log, &[b"tx1"]);
        log.append(&again).unwrap();
        assert_eq!(log.read_from(0).unwrap(), vec![first, again]);
    }

    #[test]
    fn a_flipped_byte_in_the_last_block_fails_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ch.blocks");
        let (mut log, _) = ChannelLog::open(&path).unwrap();
        log.append(&block_after(&log, &[b"tx0"])).unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (log, recovery) = ChannelLog::open(&path).unwrap();
        assert_eq!(log.height(), 0);
        assert_eq!(recovery.truncated_bytes, bytes.len() as u64);
    }

    #[test]
    fn only_the_next_block_number_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = ChannelLog::open(&dir.path().join("ch.blocks")).unwrap();
        let skipped = new_block(1, Vec::new(), Vec::new(), &[]);
        assert!(matches!(
            log.append(&skipped),
            Err(BlockLogError::WrongNumber {
                found: 1,
                expected: 0,
                ..
            })
        ));
        assert_eq!(log.height(), 0);
    }

    #[test]
    fn the_transactions_filter_holds_one_code_per_transaction() {
        let block = new_block(
            0,
            Vec::new(),
            vec![b"a".to_vec(), b"b".to_vec()],
            &[TxValidationCode::Valid, TxValidationCode::MvccReadConflict],
        );
        assert_eq!(block.metadata.as_ref().unwrap().metadata.len(), 5);
        assert_eq!(block.metadata.as_ref().unwrap().metadata[2], vec![0, 11]);
        let last_config =
            Metadata::decode(block.metadata.as_ref().unwrap().metadata[1].as_slice()).unwrap();
        assert_eq!(
            LastConfig::decode(last_config.value.as_slice())
                .unwrap()
                .index,
            0
        );
        assert_eq!(
            transactions_filter(&block),
            vec![TxValidationCode::Valid, TxValidationCode::MvccReadConflict]
        );
    }
}
