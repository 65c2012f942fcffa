//! Start-up recovery: read every segment, find the messages that were acknowledged but
//! never marked done, and cut torn tails left by a crash.
//!
//! Only the fixed part of each record is kept in memory (sequence number, segment,
//! offset); the message bytes are read again, one at a time, when the pipeline is
//! ready for them. So a large backlog after a crash costs disk reads, not RAM.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use tracing::{error, warn};

use super::segment::{self, Scanner, Step, Summary};
use crate::error::{Error, ErrorKind, Result};

/// Per-segment bookkeeping, used to decide when a segment can be deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegStats {
    /// Message records in the segment.
    pub messages: u32,
    /// Of those, how many are done (processed or quarantined).
    pub done: u32,
    /// When the last of its messages was marked done (µs since the epoch).
    pub last_done_micros: u64,
}

/// A message that still has to be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub segment: u64,
    pub offset: u64,
    /// How often recovery already tried to process it (each try that did not finish
    /// means the daemon died while processing).
    pub attempts: u32,
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub segments: BTreeMap<u64, SegStats>,
    /// Unfinished messages, in arrival order.
    pub pending: Vec<Pending>,
    /// Highest sequence number seen (queue ids continue above it).
    pub max_seq: u64,
    /// Bytes cut from torn tails.
    pub truncated_bytes: u64,
    /// Bytes skipped over damage in the middle of a segment.
    pub damaged_bytes: u64,
}

/// Segment file name for a segment number.
pub fn segment_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!("{no:010}.seg"))
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::io(ErrorKind::Spool, "cannot list spool directory", dir, e))?;
    let mut out: Vec<u64> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Scans every segment in `dir`.
pub fn recover(dir: &Path) -> Result<Recovered> {
    let mut rec = Recovered::default();
    // seq -> (segment, offset, attempts) for messages not (yet) seen done.
    let mut open: HashMap<u64, Pending> = HashMap::new();
    let mut buf = Vec::new();
    for no in list_segments(dir)? {
        let path = segment_path(dir, no);
        let io_err = |e| Error::io(ErrorKind::Spool, "cannot read spool segment", &path, e);
        let mut scan = Scanner::open(&path).map_err(io_err)?;
        rec.segments.insert(no, SegStats::default());
        loop {
            match scan.next(&mut buf).map_err(io_err)? {
                Step::End => break,
                Step::Record { offset, kind } => match segment::summarize(kind, &buf) {
                    Some(Summary::Message { seq, .. }) => {
                        rec.segments.get_mut(&no).expect("inserted").messages += 1;
                        rec.max_seq = rec.max_seq.max(seq);
                        open.insert(
                            seq,
                            Pending {
                                seq,
                                segment: no,
                                offset,
                                attempts: 0,
                            },
                        );
                    }
                    Some(Summary::Done { seq, at_micros }) => {
                        if let Some(p) = open.remove(&seq) {
                            let s = rec.segments.get_mut(&p.segment).expect("seen earlier");
                            s.done += 1;
                            s.last_done_micros = s.last_done_micros.max(at_micros);
                        }
                    }
                    Some(Summary::Attempt { seq }) => {
                        if let Some(p) = open.get_mut(&seq) {
                            p.attempts += 1;
                        }
                    }
                    None => {
                        warn!(segment = %path.display(), offset, "malformed spool record skipped")
                    }
                },
                Step::Damaged { offset } => match scan.resync(offset, &mut buf).map_err(io_err)? {
                    Some(next) => {
                        error!(
                            segment = %path.display(), offset, skipped = next - offset,
                            "damaged spool record skipped; messages in it may be lost"
                        );
                        rec.damaged_bytes += next - offset;
                    }
                    None => {
                        let len = std::fs::metadata(&path).map_err(io_err)?.len();
                        warn!(
                            segment = %path.display(), offset, bytes = len - offset,
                            "torn tail after a crash cut off (these bytes were never acknowledged)"
                        );
                        let f = OpenOptions::new().write(true).open(&path).map_err(io_err)?;
                        f.set_len(offset).map_err(io_err)?;
                        f.sync_all().map_err(io_err)?;
                        rec.truncated_bytes += len - offset;
                        break;
                    }
                },
            }
        }
    }
    rec.pending = open.into_values().collect();
    rec.pending.sort_unstable_by_key(|p| p.seq);
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Envelope;
    use crate::spool::segment::{encode_attempt, encode_done, encode_message, Outcome};

    #[test]
    fn pending_attempts_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let env = Envelope::default();
        let m1 = encode_message(10, 0, &env, b"a");
        let m2 = encode_message(11, 0, &env, b"b");
        let seg0 = [m1.clone(), m2.clone(), encode_attempt(11)].concat();
        std::fs::write(segment_path(dir.path(), 0), &seg0).unwrap();
        let m3 = encode_message(12, 0, &env, b"c");
        let seg1 = [
            encode_done(10, 99, Outcome::Processed),
            m3.clone(),
            m3[..m3.len() / 2].to_vec(),
        ]
        .concat();
        std::fs::write(segment_path(dir.path(), 1), &seg1).unwrap();

        let r = recover(dir.path()).unwrap();
        assert_eq!(r.max_seq, 12);
        let ids: Vec<(u64, u32)> = r.pending.iter().map(|p| (p.seq, p.attempts)).collect();
        assert_eq!(ids, vec![(11, 1), (12, 0)]);
        assert_eq!(r.pending[0].offset, m1.len() as u64);
        assert_eq!(
            r.segments[&0],
            SegStats {
                messages: 2,
                done: 1,
                last_done_micros: 99
            }
        );
        assert_eq!(r.truncated_bytes, (m3.len() / 2) as u64);
        let len1 = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len();
        assert_eq!(len1, (seg1.len() - m3.len() / 2) as u64);
        // A second recovery finds the same state and nothing left to cut.
        let again = recover(dir.path()).unwrap();
        assert_eq!(again.pending, r.pending);
        assert_eq!(again.truncated_bytes, 0);
    }
}
