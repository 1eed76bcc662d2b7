//! File plumbing shared by the log and the state machine: checksummed
//! frames (`[u32 len][u32 crc32][payload]`, little-endian), bincode 2
//! encoding, atomic file replacement (tmp, fsync, rename, fsync dir), and
//! the in-process lock of a log directory.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Bytes before a frame's payload: its length, then its CRC-32.
pub(crate) const HEADER: usize = 8;

/// The bincode configuration of every file the store writes.
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` with bincode 2 (serde, standard config).
pub(crate) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| io::Error::other(e.to_string()))
}

/// Decodes a whole buffer; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if read != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} trailing bytes after the value", bytes.len() - read),
        ));
    }
    Ok(value)
}

/// Wraps a payload in a frame.
pub(crate) fn frame(payload: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::other(format!("record of {} bytes is too big", payload.len())))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Encodes `value` and frames it.
pub(crate) fn encode_frame<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    frame(&encode(value)?)
}

/// What [`next_frame`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<'a> {
    /// A whole frame with a good checksum: its payload, and its total size.
    Frame(&'a [u8], usize),
    /// Nothing left.
    End,
    /// A short header, a short payload or a bad checksum.
    Torn(&'static str),
}

/// Reads the frame at the start of `buf`.
pub(crate) fn next_frame(buf: &[u8]) -> Next<'_> {
    if buf.is_empty() {
        return Next::End;
    }
    if buf.len() < HEADER {
        return Next::Torn("short header");
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let Some(payload) = buf.get(HEADER..HEADER + len) else {
        return Next::Torn("short payload");
    };
    if crc32fast::hash(payload) != crc {
        return Next::Torn("bad checksum");
    }
    Next::Frame(payload, HEADER + len)
}

/// Decodes a file that holds exactly one frame (the vote, the snapshot).
pub(crate) fn decode_single<T: DeserializeOwned>(buf: &[u8]) -> io::Result<T> {
    match next_frame(buf) {
        Next::Frame(payload, n) if n == buf.len() => decode(payload),
        Next::Frame(..) => Err(io::Error::new(io::ErrorKind::InvalidData, "trailing bytes")),
        Next::End => Err(io::Error::new(io::ErrorKind::InvalidData, "empty file")),
        Next::Torn(why) => Err(io::Error::new(io::ErrorKind::InvalidData, why)),
    }
}

/// `path` with `.tmp` appended to its file name.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Fsyncs a directory, so that a rename or a new file in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically and durably: a crash leaves
/// either the old content or the new, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Reads a file, `None` if it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes a leftover temporary file, if any.
pub(crate) fn remove_tmp(path: &Path) -> io::Result<()> {
    match fs::remove_file(tmp_path(path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Adds the path to an error's message.
pub(crate) fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Directories whose writer thread is running in this process.
static OPEN_DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Marks a directory as in use by a log writer (in this process) until
/// dropped, so a reopened store never writes alongside the last one.
pub(crate) struct DirLock(PathBuf);

impl DirLock {
    /// Waits (a bounded time) for an earlier store on `dir` to finish writing.
    pub(crate) async fn acquire(dir: PathBuf) -> io::Result<DirLock> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if OPEN_DIRS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(dir.clone())
            {
                return Ok(DirLock(dir));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "the Raft log in {} is already open in this process",
                        dir.display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        OPEN_DIRS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}
