//! The vote, written in place: a file of two fixed slots, each a
//! checksummed frame of `(sequence, vote)`. A new vote goes into the slot
//! the latest one is not in, with one `fdatasync` (the file's size never
//! changes, so no metadata waits on the disk): a vote that a node waits on
//! before it answers a candidate costs one disk flush, not a file, a rename
//! and two fsyncs. A write torn by a crash spoils only the slot it wrote;
//! the other holds the vote before it, which was never answered as durable
//! after the torn one was begun.
//!
//! A store of the release before keeps its vote in `vote` (replaced
//! atomically): read once at open, written into the slots, then removed.

use super::fsio::{self, Next};
use crate::types::Vote;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The slots file's name in the store directory.
pub(crate) const SLOTS_FILE: &str = "vote.slots";
/// The file of the release before (one frame, replaced atomically).
pub(crate) const LEGACY_FILE: &str = "vote";
/// Bytes per slot: a vote's frame is well under it.
const SLOT: usize = 128;

/// The open slots file and the sequence number of the latest vote in it.
pub(crate) struct VoteFile {
    file: File,
    seq: u64,
}

/// What one slot holds.
#[derive(Debug, PartialEq)]
enum Slot {
    /// Never written (all zeros).
    Empty,
    /// A vote, with its sequence number.
    Vote(u64, Vote),
    /// Torn or corrupt.
    Bad(String),
}

fn read_slot(bytes: &[u8]) -> Slot {
    if bytes.iter().all(|b| *b == 0) {
        return Slot::Empty;
    }
    match fsio::next_frame(bytes) {
        Next::Frame(payload, _) => match fsio::decode::<(u64, Vote)>(payload) {
            Ok((seq, vote)) => Slot::Vote(seq, vote),
            Err(e) => Slot::Bad(e.to_string()),
        },
        Next::Torn(why) => Slot::Bad(why.to_string()),
        Next::End => Slot::Empty,
    }
}

impl VoteFile {
    /// Opens (or creates) the slots file under `dir`: the latest vote, if
    /// any. Both slots bad is an error (`InvalidData`): a crash tears one.
    pub(crate) fn open(dir: &Path) -> io::Result<(VoteFile, Option<Vote>)> {
        let path = dir.join(SLOTS_FILE);
        let legacy = dir.join(LEGACY_FILE);
        fsio::remove_tmp(&legacy)?;
        if !path.exists() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            file.write_all_at(&[0; 2 * SLOT], 0)?;
            file.sync_all()?;
            fsio::sync_dir(dir)?;
            let mut votes = VoteFile { file, seq: 0 };
            let vote = match fsio::read_if_exists(&legacy)? {
                Some(b) => {
                    let v: Vote = fsio::decode_single(&b).map_err(|e| fsio::at(&legacy, e))?;
                    votes.write(&v).map_err(|e| fsio::at(&path, e))?;
                    Some(v)
                }
                None => None,
            };
            if vote.is_some() {
                std::fs::remove_file(&legacy)?;
                fsio::sync_dir(dir)?;
            }
            return Ok((votes, vote));
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut buf = [0; 2 * SLOT];
        file.read_exact_at(&mut buf, 0)
            .map_err(|e| fsio::at(&path, e))?;
        let slots = [read_slot(&buf[..SLOT]), read_slot(&buf[SLOT..])];
        let latest = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Vote(seq, v) => Some((*seq, *v)),
                _ => None,
            })
            .max_by_key(|(seq, _)| *seq);
        match (latest, &slots) {
            (Some((seq, vote)), _) => Ok((VoteFile { file, seq }, Some(vote))),
            (None, [Slot::Bad(a), Slot::Bad(b)]) => Err(fsio::at(
                &path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("both vote slots are corrupt ({a}; {b})"),
                ),
            )),
            (None, _) => Ok((VoteFile { file, seq: 0 }, None)),
        }
    }

    /// Writes `vote` durably into the slot the latest vote is not in.
    pub(crate) fn write(&mut self, vote: &Vote) -> io::Result<()> {
        let seq = self.seq + 1;
        let frame = fsio::encode_frame(&(seq, *vote))?;
        if frame.len() > SLOT {
            return Err(io::Error::other(format!(
                "a vote of {} bytes does not fit a slot",
                frame.len()
            )));
        }
        let mut slot = [0u8; SLOT];
        slot[..frame.len()].copy_from_slice(&frame);
        self.file.write_all_at(&slot, (seq % 2) * SLOT as u64)?;
        self.file.sync_data()?;
        self.seq = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn vote(term: u64, node: u64) -> Vote {
        Vote::new(term, node)
    }

    #[test]
    fn the_latest_vote_is_read_back_after_each_write() {
        let tmp = TempDir::new().unwrap();
        let d = tmp.path();
        let (mut f, v) = VoteFile::open(d).unwrap();
        assert_eq!(v, None);
        for term in 1..=5 {
            f.write(&vote(term, term % 3)).unwrap();
            let (_, v) = VoteFile::open(d).unwrap();
            assert_eq!(v, Some(vote(term, term % 3)));
        }
        let committed = Vote::new_committed(6, 2);
        f.write(&committed).unwrap();
        drop(f);
        let (mut f, v) = VoteFile::open(d).unwrap();
        assert_eq!(v, Some(committed));
        // The sequence goes on from the file's, into the other slot.
        f.write(&vote(7, 1)).unwrap();
        assert_eq!(VoteFile::open(d).unwrap().1, Some(vote(7, 1)));
    }

    #[test]
    fn a_torn_write_leaves_the_vote_before_it() {
        let tmp = TempDir::new().unwrap();
        let d = tmp.path();
        let (mut f, _) = VoteFile::open(d).unwrap();
        f.write(&vote(3, 1)).unwrap();
        f.write(&vote(4, 2)).unwrap();
        drop(f);
        // The write of term 4 (seq 2, slot 0) torn half-way.
        let path = d.join(SLOTS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[10..SLOT] {
            *b = 0;
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(VoteFile::open(d).unwrap().1, Some(vote(3, 1)));
        // Both slots spoiled: an error, not a node that forgot its vote.
        for b in &mut bytes[SLOT + 10..] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let e = VoteFile::open(d).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }

    #[test]
    fn the_vote_file_of_the_release_before_is_taken_over() {
        let tmp = TempDir::new().unwrap();
        let d = tmp.path();
        let legacy = vote(9, 3);
        fsio::write_atomic(&d.join(LEGACY_FILE), &fsio::encode_frame(&legacy).unwrap()).unwrap();
        let (_, v) = VoteFile::open(d).unwrap();
        assert_eq!(v, Some(legacy));
        assert!(!d.join(LEGACY_FILE).exists());
        assert_eq!(VoteFile::open(d).unwrap().1, Some(legacy));
    }
}
