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
    /// A write failed: the file may end in a torn record, so the next store rewrites it.
    damaged: bool,
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
        let mut w = Writer::open(path)?;
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

/// Refuses a state file whose directory does not exist.
pub(crate) fn check_directory(path: &Path) -> Result<(), String> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "cannot use the state file {}: the directory {} does not exist",
            path.display(),
            dir.display()
        ))
    }
}

/// Proves that a state file can be written beside `path` (before anything is served,
/// rather than at the first store).
pub(crate) fn check_writable(path: &Path) -> Result<(), String> {
    let probe = temp_path(path);
    File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| format!("cannot write the state file {}: {e}", path.display()))
}

/// Writes `bytes` as the whole of `path`: a temporary file, synced, renamed over the
/// old one, the directory synced so the rename itself survives a crash. A crash leaves
/// one version or the other.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Writer {
    /// Opens the state file (see [`StateFile::open`]).
    fn open(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        check_directory(path)?;
        let mut w = Writer {
            path: path.to_path_buf(),
            file: None,
            stored: None,
            copy_bytes: 0,
            log_bytes: 0,
            damaged: false,
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
                check_writable(path)?;
            }
            Err(e) => return Err(format!("cannot read the state file {shown}: {e}")),
        }
        Ok(w)
    }

    /// Stores one batch durably: appended as a record and synced, or — for a batch that
    /// brings its copy, when the records outgrow the copy, or after a failed write — as a
    /// fresh file. The copy in memory takes the batch in place (no copy of the tree per
    /// store); if the file then fails to take it, the next store rewrites the whole file
    /// from memory, so a record torn by a failed write is never followed by others (the
    /// ship retries the batch, and changes already held are skipped).
    fn store(&mut self, batch: StoreBatch) -> Result<(), String> {
        let stored = match (&mut self.stored, &batch.base) {
            (Some(st), _) => st,
            (None, Some(base)) => self.stored.insert((**base).clone()),
            (None, None) => return Err("nothing stored to append to".to_string()),
        };
        stored.apply(&batch).map_err(|e| e.to_string())?;
        let compact = batch.base.is_some()
            || self.file.is_none()
            || self.damaged
            || self.log_bytes > COMPACT_AT_LEAST.max(self.copy_bytes);
        let written = if compact {
            self.rewrite()
        } else {
            self.append(&batch.encode_record())
        };
        self.damaged = written.is_err();
        written.map_err(|e| format!("cannot write the state file {}: {e}", self.path.display()))
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
    fn rewrite(&mut self) -> io::Result<()> {
        let copy = self
            .stored
            .as_ref()
            .ok_or(io::ErrorKind::NotFound)?
            .encode();
        replace_file(&self.path, &copy)?;
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

#[cfg(test)]
mod tests {

    use flotilla_core::ship::tree::{Change, ConfigTree};

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flotilla-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn batch(first: u64, n: u64, base: bool) -> StoreBatch {
        StoreBatch {
            epoch: 5,
            first,
            changes: (first..first + n)
                .map(|v| Change::Set {
                    node: String::new(),
                    key: format!("k{v}"),
                    value: format!("v{v}"),
                })
                .collect(),
            decided: vec![],
            base: base.then(|| {
                Box::new(Stored {
                    epoch: 5,
                    version: first - 1,
                    tree: ConfigTree::parse("(:param mode fast)").unwrap(),
                    decided: vec![],
                })
            }),
        }
    }

    /// Opens the file as the daemon does, without the thread.
    fn writer(path: &Path) -> (Option<Stored>, Writer) {
        let w = Writer::open(path).unwrap();
        (w.stored.clone(), w)
    }

    fn read(path: &Path) -> Stored {
        let bytes = Bytes::from(std::fs::read(path).unwrap());
        Stored::decode_log(&bytes).unwrap().0
    }

    /// After a restart, records follow the ones already there: the header and the copy
    /// are never overwritten (they once were, by a writer opened at offset 0).
    #[test]
    fn appends_after_a_restart_follow_the_log() {
        let path = dir("restart").join("s.state");
        let (none, mut w) = writer(&path);
        assert!(none.is_none());
        w.store(batch(1, 2, true)).unwrap();
        w.store(batch(3, 1, false)).unwrap();
        drop(w);
        let (restored, mut w) = writer(&path);
        assert_eq!(restored.unwrap().version, 3);
        w.store(batch(4, 2, false)).unwrap();
        drop(w);
        let st = read(&path);
        assert_eq!(st.version, 5);
        assert_eq!(st.tree.get("k4").unwrap(), "v4");
    }

    /// A record torn by a crash is cut at startup, and what comes next decodes.
    #[test]
    fn a_torn_tail_is_cut_and_the_log_goes_on() {
        let path = dir("torn").join("s.state");
        let (_, mut w) = writer(&path);
        w.store(batch(1, 1, true)).unwrap();
        w.store(batch(2, 1, false)).unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&batch(3, 1, false).encode_record()[..9])
            .unwrap();
        drop(f);
        let (restored, mut w) = writer(&path);
        assert_eq!(restored.unwrap().version, 2);
        w.store(batch(3, 2, false)).unwrap();
        assert_eq!(read(&path).version, 4);
    }

    /// After a failed write, the next store rewrites the file whole from memory, so
    /// nothing is appended after a record the failure may have torn.
    #[test]
    fn after_a_failed_write_the_file_is_rewritten_whole() {
        let path = dir("damaged").join("s.state");
        let (_, mut w) = writer(&path);
        w.store(batch(1, 1, true)).unwrap();
        w.store(batch(2, 1, false)).unwrap();
        assert!(w.log_bytes > 0);
        // What a failed append leaves: part of a record.
        let torn = batch(3, 1, false).encode_record();
        w.file.as_mut().unwrap().write_all(&torn[..5]).unwrap();
        w.damaged = true;
        w.store(batch(3, 2, false)).unwrap();
        assert_eq!(w.log_bytes, 0, "rewritten as a fresh copy");
        let st = read(&path);
        assert_eq!((st.version, st.tree.get("k4").unwrap().as_str()), (4, "v4"));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            st.encode().len() as u64
        );
    }

    /// A file that is not a state file stops the daemon with a clear message, and so does
    /// a directory that does not exist.
    #[test]
    fn bad_files_and_missing_directories_are_refused() {
        let d = dir("bad");
        let path = d.join("s.state");
        std::fs::write(&path, b"hello, world").unwrap();
        let e = StateFile::open(&path).err().unwrap();
        assert!(e.contains("not a flotilla state file"), "{e}");
        let e = StateFile::open(&d.join("nowhere").join("s.state"))
            .err()
            .unwrap();
        assert!(e.contains("does not exist"), "{e}");
    }
}
