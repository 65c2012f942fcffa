//! Digests and the hourly cap: how a storm of bounces becomes a handful of mails.
//!
//! Per (cause, addressee) there is a *window*. The first advice opens it and goes out
//! at once; advice arriving while it is open is collected; when it closes, everything
//! collected goes out as one digest and a fresh window opens (so a continuous storm
//! yields one mail per window, and a quiet spell resets to "send at once").
//!
//! On top, each addressee may receive at most `hourly_cap` mails an hour, across all
//! causes. Advice over the cap is not dropped: it is collected into its window like a
//! digest item, and a due digest over the cap waits until the hour frees a slot.
//!
//! All of this is persisted (`state/digest.json`, plus the held bounces under
//! `state/raw/`) before [`DigestBook::offer`] returns, so a restart loses no pending
//! digest and does not reset the cap. Times are passed in (ms since the epoch), which
//! keeps the policy testable without clocks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::route::{Addressee, Advice, Item, Why};
use super::store;
use crate::error::{Error, ErrorKind, Result};

const HOUR_MS: u64 = 3600 * 1000;
/// Items listed in one digest; recipients beyond are counted, not listed.
pub const MAX_ITEMS: usize = 100;
/// Bounces attached to one digest.
pub const MAX_ATTACHED: usize = 10;
/// When writing a due digest fails, try again this much later.
const RETRY_MS: u64 = 30 * 1000;

/// What happened to an offered advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// It went out at once (the `send` callback succeeded).
    Sent,
    /// A window is open: it waits for the digest.
    Collected,
    /// The addressee reached the hourly cap: it waits for the digest.
    Capped,
}

/// A digest whose window closed, ready to compose.
#[derive(Debug, Clone)]
pub struct DueDigest {
    pub to: Addressee,
    pub why: Why,
    pub items: Vec<Item>,
    /// Recipients collected beyond [`MAX_ITEMS`] items.
    pub more: u64,
    /// The held bounces (at most [`MAX_ATTACHED`]).
    pub attachments: Vec<Arc<[u8]>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    windows: BTreeMap<String, Window>,
    /// Per addressee key: when mails went out in the last hour.
    sent: BTreeMap<String, Vec<u64>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Window {
    to: Addressee,
    why: Why,
    closes_at: u64,
    items: Vec<Held>,
    more: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Held {
    item: Item,
    /// File under `state/raw/` holding the bounce, if it is to be attached.
    raw: Option<String>,
}

/// The persisted digest windows and hourly counts.
pub struct DigestBook {
    state_file: PathBuf,
    raw_dir: PathBuf,
    tmp_dir: PathBuf,
    window_ms: u64,
    cap: usize,
    state: State,
}

impl DigestBook {
    /// Loads the state under `dir` (creating it). A state file that cannot be read is
    /// moved aside (kept for the admin) and logged, and an empty state is used.
    pub fn open(dir: &Path, tmp_dir: &Path, window_ms: u64, cap: u32) -> Result<DigestBook> {
        let raw_dir = dir.join("raw");
        store::ensure_dir(&raw_dir)?;
        let state_file = dir.join("digest.json");
        let state = match std::fs::read(&state_file) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    let aside = dir.join(format!("digest.json.corrupt-{}", store::now_ms()));
                    tracing::error!(file = %state_file.display(), error = %e, aside = %aside.display(),
                        "digest state unreadable; moved aside, starting with no pending digests");
                    store::move_durable(&state_file, &aside)?;
                    State::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(Error::io(
                    ErrorKind::Advice,
                    "cannot read digest state",
                    &state_file,
                    e,
                ))
            }
        };
        Ok(DigestBook {
            state_file,
            raw_dir,
            tmp_dir: tmp_dir.to_path_buf(),
            window_ms,
            cap: cap as usize,
            state,
        })
    }

    /// Decides what happens to `advice` at time `now`: sent at once through `send`, or
    /// collected for a digest. Returns once the decision is on disk. If `send` fails
    /// the advice is collected instead, so it is not lost.
    pub fn offer(
        &mut self,
        advice: &Advice,
        now: u64,
        send: impl FnOnce() -> Result<()>,
    ) -> Result<Offer> {
        let key = window_key(&advice.why.cause.id, &advice.to);
        let addr = advice.to.key();
        let outcome = if self.state.windows.contains_key(&key) {
            Offer::Collected
        } else if self.sent_last_hour(&addr, now) >= self.cap {
            Offer::Capped
        } else {
            match send() {
                Ok(()) => {
                    self.record_sent(&addr, now);
                    self.state.windows.insert(
                        key,
                        Window {
                            to: advice.to.clone(),
                            why: advice.why.clone(),
                            closes_at: now + self.window_ms,
                            items: Vec::new(),
                            more: 0,
                        },
                    );
                    self.save(now)?;
                    return Ok(Offer::Sent);
                }
                Err(e) => {
                    tracing::error!(error = %e, to = %addr, "cannot send advice now; holding it for a digest");
                    Offer::Collected
                }
            }
        };
        self.collect(key, advice, now)?;
        Ok(outcome)
    }

    fn collect(&mut self, key: String, advice: &Advice, now: u64) -> Result<()> {
        let window_ms = self.window_ms;
        let w = self.state.windows.entry(key).or_insert_with(|| Window {
            to: advice.to.clone(),
            why: advice.why.clone(),
            closes_at: now + window_ms,
            items: Vec::new(),
            more: 0,
        });
        w.why = advice.why.clone();
        if w.items.len() >= MAX_ITEMS {
            w.more += advice.item.recipients.len().max(1) as u64;
        } else {
            let raw = if w.items.len() < MAX_ATTACHED {
                let name = format!("{}.eml", store::unique_id());
                store::write_atomic(&self.tmp_dir, &self.raw_dir.join(&name), &advice.raw)?;
                Some(name)
            } else {
                None
            };
            w.items.push(Held {
                item: advice.item.clone(),
                raw,
            });
        }
        self.save(now)
    }

    /// When the next window closes (ms since the epoch), if any is open.
    pub fn next_deadline(&self) -> Option<u64> {
        self.state.windows.values().map(|w| w.closes_at).min()
    }

    /// Sends every digest whose window has closed by `now` through `send`, then
    /// forgets it (state saved, held bounces removed) and opens a fresh window. A
    /// digest whose addressee is over the cap waits for a free slot; one whose `send`
    /// fails is retried later. Returns how many digests were sent.
    pub fn flush_due(
        &mut self,
        now: u64,
        mut send: impl FnMut(&DueDigest) -> Result<()>,
    ) -> Result<usize> {
        let due: Vec<String> = self
            .state
            .windows
            .iter()
            .filter(|(_, w)| w.closes_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut sent = 0;
        for key in due {
            let w = &self.state.windows[&key];
            if w.items.is_empty() {
                self.state.windows.remove(&key);
                continue;
            }
            let addr = w.to.key();
            if self.sent_last_hour(&addr, now) >= self.cap {
                let free_at = self.state.sent[&addr]
                    .iter()
                    .min()
                    .map_or(now, |t| t + HOUR_MS);
                self.window_mut(&key).closes_at = free_at.max(now + 1);
                continue;
            }
            let digest = self.due_digest(&self.state.windows[&key]);
            if let Err(e) = send(&digest) {
                tracing::error!(error = %e, to = %addr, "cannot send digest; will retry");
                self.window_mut(&key).closes_at = now + RETRY_MS;
                continue;
            }
            self.record_sent(&addr, now);
            let window_ms = self.window_ms;
            let w = self.window_mut(&key);
            let held = std::mem::take(&mut w.items);
            w.more = 0;
            w.closes_at = now + window_ms;
            self.save(now)?;
            for name in held.into_iter().filter_map(|h| h.raw) {
                store::remove_durable(&self.raw_dir.join(name))?;
            }
            sent += 1;
        }
        self.save(now)?;
        Ok(sent)
    }

    fn window_mut(&mut self, key: &str) -> &mut Window {
        self.state
            .windows
            .get_mut(key)
            .expect("key taken from the map")
    }

    fn due_digest(&self, w: &Window) -> DueDigest {
        let attachments = w
            .items
            .iter()
            .filter_map(|h| h.raw.as_ref())
            .filter_map(|name| {
                let path = self.raw_dir.join(name);
                std::fs::read(&path)
                    .map_err(|e| tracing::error!(file = %path.display(), error = %e, "held bounce unreadable; digest goes without it"))
                    .ok()
            })
            .map(Arc::from)
            .collect();
        DueDigest {
            to: w.to.clone(),
            why: w.why.clone(),
            items: w.items.iter().map(|h| h.item.clone()).collect(),
            more: w.more,
            attachments,
        }
    }

    fn sent_last_hour(&mut self, addr: &str, now: u64) -> usize {
        match self.state.sent.get_mut(addr) {
            Some(times) => {
                times.retain(|&t| t + HOUR_MS > now);
                times.len()
            }
            None => 0,
        }
    }

    fn record_sent(&mut self, addr: &str, now: u64) {
        self.state
            .sent
            .entry(addr.to_string())
            .or_default()
            .push(now);
    }

    fn save(&mut self, now: u64) -> Result<()> {
        self.state.sent.retain(|_, times| {
            times.retain(|&t| t + HOUR_MS > now);
            !times.is_empty()
        });
        let bytes = serde_json::to_vec(&self.state)
            .map_err(|e| Error::with_source(ErrorKind::Advice, "cannot encode digest state", e))?;
        store::write_atomic(&self.tmp_dir, &self.state_file, &bytes)
    }
}

fn window_key(cause_id: &str, to: &Addressee) -> String {
    format!("{cause_id}|{}", to.key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advice::route::AudienceKind;
    use crate::model::{Cause, FixBy, OriginalMessage, Reason, Row};

    const MIN: u64 = 60 * 1000;

    fn advice(to: &str, cause: &str, rcpt: &str) -> Advice {
        Advice {
            to: Addressee {
                kind: AudienceKind::Sender,
                to: vec![to.into()],
            },
            why: Why {
                cause: Cause {
                    id: cause.into(),
                    fix_by: FixBy::Sender,
                    title: "t".into(),
                    advice: "a".into(),
                    reference: None,
                },
                steps: vec![],
            },
            item: Item {
                queue_id: "q".into(),
                received_at: "r".into(),
                sender: Some(to.into()),
                original: OriginalMessage::default(),
                recipients: vec![Row {
                    source: "q".into(),
                    message_index: 0,
                    recipient: Some(rcpt.into()),
                    action: Some("failed".into()),
                    status: Some("5.1.1".into()),
                    reply_code: None,
                    reason: Reason::Userunknown,
                    permanent: Some(true),
                    hard_bounce: Some(true),
                    diagnostic: None,
                    remote_mta: None,
                    reporting_mta: None,
                    format: "rfc3464".into(),
                    feedback_type: None,
                    cause: None,
                    original: OriginalMessage::default(),
                }],
            },
            raw: Arc::from(&b"bounce"[..]),
        }
    }

    fn book(dir: &Path, cap: u32) -> DigestBook {
        let tmp = dir.join("tmp");
        store::ensure_dir(&tmp).unwrap();
        DigestBook::open(&dir.join("state"), &tmp, 15 * MIN, cap).unwrap()
    }

    fn flush(b: &mut DigestBook, now: u64) -> Vec<DueDigest> {
        let mut out = Vec::new();
        b.flush_due(now, |d| {
            out.push(d.clone());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn first_goes_at_once_then_collects_until_the_window_closes() {
        let d = tempfile::tempdir().unwrap();
        let mut b = book(d.path(), 100);
        let t0 = 1_000 * MIN;
        let ok = || Ok(());
        assert_eq!(
            b.offer(&advice("a@x.org", "c1", "r1"), t0, ok).unwrap(),
            Offer::Sent
        );
        assert_eq!(
            b.offer(&advice("a@x.org", "c1", "r2"), t0 + MIN, ok)
                .unwrap(),
            Offer::Collected
        );
        assert_eq!(
            b.offer(&advice("a@x.org", "c1", "r3"), t0 + 2 * MIN, ok)
                .unwrap(),
            Offer::Collected
        );
        // Another cause and another addressee have their own windows.
        assert_eq!(
            b.offer(&advice("a@x.org", "c2", "r4"), t0, ok).unwrap(),
            Offer::Sent
        );
        assert_eq!(
            b.offer(&advice("b@x.org", "c1", "r5"), t0, ok).unwrap(),
            Offer::Sent
        );
        assert!(flush(&mut b, t0 + 14 * MIN).is_empty());
        let due = flush(&mut b, t0 + 15 * MIN);
        assert_eq!(due.len(), 1);
        let rcpts: Vec<_> = due[0]
            .items
            .iter()
            .map(|i| i.recipients[0].recipient.clone().unwrap())
            .collect();
        assert_eq!(rcpts, ["r2", "r3"]);
        assert_eq!(due[0].attachments.len(), 2);
        // The storm continues: collected into the next window, not sent at once.
        assert_eq!(
            b.offer(&advice("a@x.org", "c1", "r6"), t0 + 16 * MIN, ok)
                .unwrap(),
            Offer::Collected
        );
        assert_eq!(flush(&mut b, t0 + 30 * MIN).len(), 1);
        // A quiet window closes empty; then advice goes out at once again.
        assert!(flush(&mut b, t0 + 45 * MIN).is_empty());
        assert_eq!(
            b.offer(&advice("a@x.org", "c1", "r7"), t0 + 46 * MIN, ok)
                .unwrap(),
            Offer::Sent
        );
        assert_eq!(
            std::fs::read_dir(d.path().join("state/raw"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn pending_digest_and_cap_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let t0 = 1_000 * MIN;
        {
            let mut b = book(d.path(), 1);
            b.offer(&advice("a@x.org", "c1", "r1"), t0, || Ok(()))
                .unwrap();
            b.offer(&advice("a@x.org", "c1", "r2"), t0 + MIN, || Ok(()))
                .unwrap();
        }
        let mut b = book(d.path(), 1);
        // The cap (1/hour) remembers the first mail: another cause is held, not sent.
        assert_eq!(
            b.offer(&advice("a@x.org", "c2", "r3"), t0 + 2 * MIN, || Ok(()))
                .unwrap(),
            Offer::Capped
        );
        // At window close the digest is over the cap too: it waits for the hour.
        assert!(flush(&mut b, t0 + 20 * MIN).is_empty());
        let due = flush(&mut b, t0 + 60 * MIN);
        assert_eq!(due.len(), 1, "one slot frees after an hour");
        let due2 = flush(&mut b, t0 + 121 * MIN);
        assert_eq!(due.len() + due2.len(), 2);
        let mut all: Vec<_> = due
            .iter()
            .chain(&due2)
            .flat_map(|d| {
                d.items
                    .iter()
                    .map(|i| i.recipients[0].recipient.clone().unwrap())
            })
            .collect();
        all.sort();
        assert_eq!(all, ["r2", "r3"]);
    }

    #[test]
    fn failed_send_is_held_not_lost() {
        let d = tempfile::tempdir().unwrap();
        let mut b = book(d.path(), 10);
        let t0 = 1_000 * MIN;
        let r = b.offer(&advice("a@x.org", "c1", "r1"), t0, || {
            Err(Error::new(ErrorKind::Advice, "disk full"))
        });
        assert_eq!(r.unwrap(), Offer::Collected);
        let mut failing = true;
        b.flush_due(t0 + 15 * MIN, |_| {
            if failing {
                failing = false;
                Err(Error::new(ErrorKind::Advice, "still full"))
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(flush(&mut b, t0 + 16 * MIN).len(), 1);
    }

    #[test]
    fn items_beyond_the_limit_are_counted() {
        let d = tempfile::tempdir().unwrap();
        let mut b = book(d.path(), 10);
        let t0 = 1_000 * MIN;
        for i in 0..=MAX_ITEMS + 5 {
            b.offer(&advice("a@x.org", "c1", &format!("r{i}")), t0, || Ok(()))
                .unwrap();
        }
        let due = flush(&mut b, t0 + 15 * MIN);
        assert_eq!(due[0].items.len(), MAX_ITEMS);
        assert_eq!(due[0].more, 5);
        assert_eq!(due[0].attachments.len(), MAX_ATTACHED);
    }
}
