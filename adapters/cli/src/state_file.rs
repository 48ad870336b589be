//! A durable mothership's state file, and the effect runner that writes it.
//!
//! The ship asks for one store at a time ([`ShipEffect::Store`]); the runner hands each to
//! a writer thread of its own, so the disk never blocks the ship's loop and writes land in
//! the order they were asked — also when the ship gave up waiting on one (a timeout) and
//! asked again.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use flotilla_core::EffectError;
use flotilla_core::ship::{ShipEffect, Stored};
use flotilla_tokio::EffectRunner;
use tokio::sync::oneshot;

struct Job {
    stored: Stored,
    done: oneshot::Sender<std::io::Result<()>>,
}

/// Runs a ship's store effects against its state file; without a file, refuses them (a
/// ship that is not durable never asks).
pub(crate) struct StateFile {
    path: Option<PathBuf>,
    jobs: Option<mpsc::Sender<Job>>,
}

impl StateFile {
    /// A runner writing to `path`, with its writer thread started.
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        let jobs = path.clone().map(|p| {
            let (tx, rx) = mpsc::channel::<Job>();
            // The one thread of the binary: a blocking writer that keeps stores in order.
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || {
                for job in rx {
                    let _ = job.done.send(write_state(&p, &job.stored));
                }
            });
            tx
        });
        StateFile { path, jobs }
    }
}

impl EffectRunner<ShipEffect, ()> for StateFile {
    fn run(
        &self,
        effect: ShipEffect,
    ) -> impl Future<Output = Result<(), EffectError>> + Send + 'static {
        let ShipEffect::Store(stored) = effect else {
            unreachable!("ShipEffect has one variant today");
        };
        let (done, result) = oneshot::channel();
        let queued = match &self.jobs {
            Some(jobs) => jobs.send(Job { stored, done }).is_ok(),
            None => false,
        };
        let path = self.path.clone();
        async move {
            let Some(path) = path else {
                return Err(EffectError::Unsupported);
            };
            if !queued {
                return Err(EffectError::Failed(
                    "the state file's writer stopped".into(),
                ));
            }
            match result.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(EffectError::Failed(format!(
                    "cannot write the state file {}: {e}",
                    path.display()
                ))),
                Err(_) => Err(EffectError::Failed(
                    "the state file's writer stopped".into(),
                )),
            }
        }
    }
}

/// Reads a state file written by [`write_state`]; `None` if there is none yet.
pub(crate) fn read_state(path: &Path) -> Result<Option<Stored>, String> {
    match std::fs::read(path) {
        Ok(bytes) => Stored::decode(&bytes.into())
            .map(Some)
            .map_err(|e| format!("{}: not a flotilla state file: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the stored copy so that a crash leaves either the old file or the new one:
/// a temporary file, synced, then renamed over the old one.
fn write_state(path: &Path, stored: &Stored) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&stored.encode())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
