//! Catching a child up (SPEC.md §5.3): deltas when the parent's log reaches back to the
//! child's version, else the whole configuration as a snapshot sent in pieces. A parent
//! encodes a snapshot once per `(epoch, version)` and keeps it while children pull it; a
//! child pulls a window at a time with `Hello` (which says how much it holds), so a lost
//! piece costs a resend from where it stopped, never the whole copy, and a configuration
//! of any size up to the limit fits in frames far below the frame limit.

use super::*;
use crate::ship::msg::{CHUNK_BYTES, DELTAS_BYTES, WINDOW_CHUNKS};

/// Snapshots a parent keeps encoded at once: the current one, and one a child may still
/// be pulling while the configuration moves on.
const KEPT_SNAPSHOTS: usize = 2;

/// A snapshot encoded once and kept while children pull it.
#[derive(Debug)]
pub(super) struct SnapshotCache {
    epoch: u64,
    version: u64,
    bytes: Bytes,
    used: Instant,
}

/// A snapshot being received from the parent.
#[derive(Debug)]
pub(super) struct Receiving {
    pub(super) epoch: u64,
    pub(super) version: u64,
    pub(super) total: u64,
    pub(super) buf: Vec<u8>,
}

impl Ship {
    pub(super) fn sync_child(&mut self, now: Instant, addr: PeerAddr) {
        let Some(child) = self.children.get(&addr) else {
            return;
        };
        if self.epoch == 0 {
            return;
        }
        // A snapshot the child is pulling goes on from where the child is.
        if let Some((e, v, off)) = child.receiving
            && self
                .snapshots
                .iter()
                .any(|c| (c.epoch, c.version) == (e, v))
        {
            self.send_window(now, addr, e, v, off);
            return;
        }
        if child.epoch != self.epoch
            || child.version + 1 < self.log_first
            || child.version > self.version
        {
            let (e, v) = self.current_snapshot(now);
            self.send_window(now, addr, e, v, 0);
        } else if child.version < self.version {
            let skip = (child.version + 1 - self.log_first) as usize;
            let mut bytes = 0;
            let changes: Vec<Change> = self
                .log
                .iter()
                .skip(skip)
                .take_while(|c| {
                    bytes += c.size();
                    bytes <= DELTAS_BYTES || bytes == c.size()
                })
                .take(MAX_DELTAS)
                .cloned()
                .collect();
            let msg = ShipMsg::Deltas {
                epoch: self.epoch,
                first: child.version + 1,
                changes,
                latest: self.version,
            };
            self.send(Hop::Child(addr), &msg);
        }
    }

    /// The snapshot of the copy as it is now, encoding it if no child pulled it yet.
    fn current_snapshot(&mut self, now: Instant) -> (u64, u64) {
        let key = (self.epoch, self.version);
        if let Some(c) = self
            .snapshots
            .iter_mut()
            .find(|c| (c.epoch, c.version) == key)
        {
            c.used = now;
            return key;
        }
        let mut w = Writer::new();
        self.tree.encode(&mut w);
        if self.snapshots.len() >= KEPT_SNAPSHOTS
            && let Some(oldest) = (0..self.snapshots.len()).min_by_key(|&i| self.snapshots[i].used)
        {
            self.snapshots.swap_remove(oldest);
        }
        self.snapshots.push(SnapshotCache {
            epoch: key.0,
            version: key.1,
            bytes: w.finish(),
            used: now,
        });
        key
    }

    /// Sends the window of pieces of snapshot `(epoch, version)` that starts at `from`.
    fn send_window(&mut self, now: Instant, addr: PeerAddr, epoch: u64, version: u64, from: u64) {
        let Some(c) = self
            .snapshots
            .iter_mut()
            .find(|c| (c.epoch, c.version) == (epoch, version))
        else {
            return;
        };
        c.used = now;
        let bytes = c.bytes.clone();
        let total = bytes.len() as u64;
        for k in 0..WINDOW_CHUNKS {
            let start = from + k * CHUNK_BYTES as u64;
            if start >= total {
                break;
            }
            let end = (start + CHUNK_BYTES as u64).min(total);
            let msg = ShipMsg::SnapshotChunk {
                epoch,
                version,
                total,
                offset: start,
                data: bytes.slice(start as usize..end as usize),
                last: k + 1 == WINDOW_CHUNKS || end == total,
            };
            self.stats.snapshot_pieces += 1;
            self.send(Hop::Child(addr), &msg);
        }
    }

    /// A piece of a snapshot from the parent.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_snapshot_chunk(
        &mut self,
        now: Instant,
        epoch: u64,
        version: u64,
        total: u64,
        offset: u64,
        data: &Bytes,
        last: bool,
    ) {
        if epoch == self.epoch && version <= self.version {
            return; // we hold this copy or a newer one
        }
        let current = self
            .receiving
            .as_ref()
            .is_some_and(|r| (r.epoch, r.version, r.total) == (epoch, version, total));
        if !current {
            if offset != 0 {
                // A piece of a copy we are not receiving: say where we are.
                self.send_hello();
                return;
            }
            self.receiving = Some(Receiving {
                epoch,
                version,
                total,
                buf: Vec::with_capacity(total.min((CHUNK_BYTES as u64) * WINDOW_CHUNKS) as usize),
            });
        }
        let r = self.receiving.as_mut().expect("set above");
        if offset != r.buf.len() as u64 {
            return; // out of order: the next pull resends it
        }
        r.buf.extend_from_slice(data);
        if r.buf.len() as u64 == total {
            let r = self.receiving.take().expect("checked");
            let bytes = Bytes::from(r.buf);
            let mut rd = Reader::new(&bytes);
            match ConfigTree::decode(&mut rd).and_then(|t| rd.finish().map(|()| t)) {
                Ok(tree) => self.install(now, epoch, version, tree),
                // A copy that does not decode is dropped; the next Hello starts afresh.
                Err(_) => self.stats.bad_snapshots += 1,
            }
            self.send_hello();
            return;
        }
        if last {
            self.send_hello();
        }
        // Pieces that stop coming are pulled again after `retry`, not a whole keepalive.
        self.timers.set(Timer::Hello, now + self.cfg.timings.retry);
    }

    /// Takes a whole copy from the parent.
    fn install(&mut self, now: Instant, epoch: u64, version: u64, tree: ConfigTree) {
        let _ = now;
        self.epoch = epoch;
        self.version = version;
        self.tree = tree;
        self.log.clear();
        self.log_first = version + 1;
        self.stats.snapshots += 1;
        self.outbox.event(ShipEvent::Synced { epoch, version });
        let kids: Vec<PeerAddr> = self.children.keys().copied().collect();
        for k in kids {
            self.sync_child(now, k);
        }
        self.release_config_waiters();
    }

    pub(super) fn check_snapshots(&self) -> Result<(), String> {
        if self.snapshots.len() > KEPT_SNAPSHOTS {
            return Err(format!(
                "{} snapshots kept, more than {KEPT_SNAPSHOTS}",
                self.snapshots.len()
            ));
        }
        if let Some(r) = &self.receiving
            && r.buf.len() as u64 >= r.total
        {
            return Err("a snapshot fully received but not installed".to_string());
        }
        Ok(())
    }
}
