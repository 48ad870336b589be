//! A durable mothership's state file (SPEC.md §5.3), and the effect runner that writes it.
//!
//! The file is a copy of the configuration followed by one record per stored batch
//! (`flotilla_core::ship::store`). Each batch is appended and synced once, so a change
//! costs the same on a small tree and a 64 MiB one, and changes that arrive together share
//! one sync (the ship batches what comes while a store is in flight). When the records
//! outgrow the copy, the writer compacts: it writes a fresh copy to a temporary file,
//! syncs it, and renames it over the old one, so a crash leaves one or the other.
//!
//! All of it runs on a writer thread of its own: the disk never blocks the ship's loop,
//! and batches land in the order asked — also when the ship gave up waiting on one (a
//! timeout) and asked again.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;
use flotilla_core::EffectError;
use flotilla_core::ship::{ShipEffect, StoreBatch, Stored};
use flotilla_tokio::EffectRunner;
use tokio::sync::oneshot;

/// Records are compacted away once they take more than this, or more than the copy.
const COMPACT_AT_LEAST: u64 = 1 << 20;

struct Job {
    batch: StoreBatch,
    done: oneshot::Sender<Result<(), String>>,
}

/// Runs a ship's store effects against its state file; without a file, refuses them (a
/// ship that is not durable never asks).
pub(crate) struct StateFile {
    jobs: Option<mpsc::Sender<Job>>,
}

/// The open state file, owned by the writer thread.
struct Writer {
    path: PathBuf,
    file: Option<File>,
    stored: Option<Stored>,
    /// Bytes of the copy at the head of the file, and of the records after it.
    copy_bytes: u64,
    log_bytes: u64,
}

impl StateFile {
    /// A runner that stores nothing (for ships that are not durable).
    pub(crate) fn none() -> Self {
        StateFile { jobs: None }
    }

    /// Opens `path` for a durable mothership, before anything is served, so that a file
    /// that cannot be written stops the daemon at once with a clear message rather than
    /// at its first change: reads what is stored (cutting a record torn by a crash), and
    /// checks that the file, or one beside it, can be written. Returns what to restart
    /// from, if anything.
    pub(crate) fn open(path: &Path) -> Result<(Option<Stored>, Self), String> {
        let shown = path.display();
        let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(d) => d.to_path_buf(),
            None => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(format!(
                "cannot use the state file {shown}: the directory {} does not exist",
                dir.display()
            ));
        }
        let mut w = Writer {
            path: path.to_path_buf(),
            file: None,
            stored: None,
            copy_bytes: 0,
            log_bytes: 0,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = Bytes::from(bytes);
                let (stored, good) = Stored::decode_log(&bytes)
                    .map_err(|e| format!("{shown}: not a flotilla state file: {e}"))?;
                // Append mode: every write lands at the end, after the cut below.
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot write the state file {shown}: {e}"))?;
                // A record torn by a crash is cut, so appends follow the last whole one.
                file.set_len(good as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| format!("cannot write the state file {shown}: {e}"))?;
                w.copy_bytes = stored.encode().len() as u64;
                w.log_bytes = (good as u64).saturating_sub(w.copy_bytes);
                w.file = Some(file);
                w.stored = Some(stored);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Nothing yet: the first store writes the copy. Prove now that it can.
                let probe = temp_path(path);
                File::create(&probe)
                    .and_then(|_| std::fs::remove_file(&probe))
                    .map_err(|e| format!("cannot write the state file {shown}: {e}"))?;
            }
            Err(e) => return Err(format!("cannot read the state file {shown}: {e}")),
        }
        let restore = w.stored.clone();
        let (tx, rx) = mpsc::channel::<Job>();
        // The one thread of the binary: a blocking writer that keeps stores in order.
        #[allow(clippy::disallowed_methods)]
        std::thread::spawn(move || {
            for job in rx {
                let _ = job.done.send(w.store(job.batch));
            }
        });
        Ok((restore, StateFile { jobs: Some(tx) }))
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

impl Writer {
    /// Stores one batch durably: appended as a record and synced, or — for a batch that
    /// brings its copy, or when the records outgrow the copy — as a fresh file.
    fn store(&mut self, batch: StoreBatch) -> Result<(), String> {
        let mut next = match (&self.stored, &batch.base) {
            (_, Some(base)) => (**base).clone(),
            (Some(st), None) => st.clone(),
            (None, None) => return Err("nothing stored to append to".to_string()),
        };
        next.apply(&batch).map_err(|e| e.to_string())?;
        let compact = batch.base.is_some()
            || self.file.is_none()
            || self.log_bytes > COMPACT_AT_LEAST.max(self.copy_bytes);
        let written = if compact {
            self.rewrite(&next)
        } else {
            self.append(&batch.encode_record())
        };
        written.map_err(|e| format!("cannot write the state file {}: {e}", self.path.display()))?;
        self.stored = Some(next);
        Ok(())
    }

    fn append(&mut self, record: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().ok_or(io::ErrorKind::NotFound)?;
        file.write_all(record)?;
        file.sync_data()?;
        self.log_bytes += record.len() as u64;
        Ok(())
    }

    /// Writes `stored` as the whole file: a temporary file, synced, renamed over the old
    /// one, the directory synced so the rename itself survives a crash.
    fn rewrite(&mut self, stored: &Stored) -> io::Result<()> {
        let tmp = temp_path(&self.path);
        let copy = stored.encode();
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&copy)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        self.file = Some(OpenOptions::new().append(true).open(&self.path)?);
        self.copy_bytes = copy.len() as u64;
        self.log_bytes = 0;
        Ok(())
    }
}

impl EffectRunner<ShipEffect, ()> for StateFile {
    fn run(
        &self,
        effect: ShipEffect,
    ) -> impl Future<Output = Result<(), EffectError>> + Send + 'static {
        let (done, result) = oneshot::channel();
        let queued = match (&self.jobs, effect) {
            (Some(jobs), ShipEffect::Store(batch)) => Some(jobs.send(Job { batch, done }).is_ok()),
            _ => None,
        };
        async move {
            match queued {
                None => return Err(EffectError::Unsupported),
                Some(false) => {
                    return Err(EffectError::Failed(
                        "the state file's writer stopped".into(),
                    ));
                }
                Some(true) => {}
            }
            match result.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(EffectError::Failed(e)),
                Err(_) => Err(EffectError::Failed(
                    "the state file's writer stopped".into(),
                )),
            }
        }
    }
}
