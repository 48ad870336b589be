//! The flood daemon's effect runner: the export command and the topology generator, each
//! run as `/bin/sh -c COMMAND` (seed 002), and the state file (`--state`, SPEC.md §8.8).
//!
//! The export command reads a bundle on its standard input (`flotilla_core::flood::bundle`)
//! in `export-directory` (by default `/`, as the seed says), with its standard output and
//! error sent to `/dev/null` ("Any such output will be routed to /dev/null") and
//! `FLOOD_SITE` set to the site's name; exit status 0 means exported. A generator reads
//! the group's estimates and writes the topology on its standard output.
//!
//! The driver enforces `export-timeout` by dropping the effect's future. Each command runs
//! in a process group of its own, and a command dropped before it was reaped is killed
//! with its whole group: a shell that started `sleep` leaves nothing running.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flotilla_core::EffectError;
use flotilla_core::flood::{FloodEffect, FloodEffectValue, FloodSettings};
use flotilla_tokio::EffectRunner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The most a topology generator may write; more is a failure, not a topology.
pub(crate) const MAX_GENERATOR_OUTPUT: usize = 16 << 20;

/// The shell every command runs under.
pub(crate) const SHELL: &str = "/bin/sh";

/// Runs a flood daemon's effects.
#[derive(Clone, Debug)]
pub(crate) struct FloodRunner {
    export_command: Option<Arc<str>>,
    directory: Arc<str>,
    site: Arc<str>,
    state: Option<Arc<StateWriter>>,
}

/// Writes a flood state file whole (`crate::state_file::replace_file`), off the event
/// loop. A store the machine gave up waiting for may still be writing when the next
/// is asked: the lock keeps them one at a time, and an older serial never replaces a
/// newer one.
#[derive(Debug)]
pub(crate) struct StateWriter {
    path: PathBuf,
    written: Mutex<u64>,
}

impl StateWriter {
    pub(crate) fn new(path: PathBuf) -> Self {
        StateWriter {
            path,
            written: Mutex::new(0),
        }
    }

    /// Stores `state` unless a later serial is already on disk.
    pub(crate) fn store(&self, state: &[u8], serial: u64) -> Result<(), String> {
        let mut written = self
            .written
            .lock()
            .map_err(|_| "the state file writer failed earlier".to_string())?;
        if serial <= *written {
            return Ok(());
        }
        crate::state_file::replace_file(&self.path, state)
            .map_err(|e| format!("cannot write the state file {}: {e}", self.path.display()))?;
        *written = (*written).max(serial);
        Ok(())
    }

    async fn run(
        self: Arc<Self>,
        state: Bytes,
        serial: u64,
    ) -> Result<FloodEffectValue, EffectError> {
        tokio::task::spawn_blocking(move || self.store(&state, serial))
            .await
            .map_err(|e| EffectError::Failed(format!("the state file writer stopped: {e}")))?
            .map(|()| FloodEffectValue::Stored)
            .map_err(EffectError::Failed)
    }
}

impl FloodRunner {
    /// The runner for a site's settings (its export command and directory) and its
    /// state file, if it keeps one.
    pub(crate) fn new(settings: &FloodSettings, state: Option<Arc<StateWriter>>) -> Self {
        FloodRunner {
            export_command: settings.local.export_command.as_deref().map(Arc::from),
            directory: Arc::from(settings.local.export_directory.as_str()),
            site: Arc::from(settings.me.name.as_str()),
            state,
        }
    }

    fn shell(&self, command: &str) -> Command {
        let mut cmd = Command::new(SHELL);
        cmd.arg("-c")
            .arg(command)
            .current_dir(&*self.directory)
            .env("FLOOD_SITE", &*self.site)
            .stderr(Stdio::null());
        cmd
    }

    async fn export(self, bundle: Bytes) -> Result<FloodEffectValue, EffectError> {
        let Some(command) = self.export_command.clone() else {
            return Err(EffectError::Failed(
                "no export-command is configured".to_string(),
            ));
        };
        let mut cmd = self.shell(&command);
        cmd.stdin(Stdio::piped()).stdout(Stdio::null());
        let what = format!("the export command {}", shown(&command));
        let (status, _) = run(cmd, bundle, 0, &what, &self.directory).await?;
        if status.success() {
            Ok(FloodEffectValue::Exported)
        } else {
            Err(EffectError::Failed(format!("{what} {}", describe(status))))
        }
    }

    async fn generate(
        self,
        group: String,
        command: String,
        input: String,
    ) -> Result<FloodEffectValue, EffectError> {
        let mut cmd = self.shell(&command);
        cmd.env("FLOOD_GROUP", &group)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let what = format!("the topology generator {} of {group}", shown(&command));
        let input = Bytes::from(input);
        let (status, out) = run(cmd, input, MAX_GENERATOR_OUTPUT, &what, &self.directory).await?;
        if !status.success() {
            return Err(EffectError::Failed(format!("{what} {}", describe(status))));
        }
        String::from_utf8(out)
            .map(FloodEffectValue::Generated)
            .map_err(|_| EffectError::Failed(format!("{what} wrote output that is not UTF-8")))
    }
}

impl EffectRunner<FloodEffect, FloodEffectValue> for FloodRunner {
    fn run(
        &self,
        effect: FloodEffect,
    ) -> impl Future<Output = Result<FloodEffectValue, EffectError>> + Send + 'static {
        let me = self.clone();
        async move {
            match effect {
                FloodEffect::Export { bundle, .. } => me.export(bundle).await,
                FloodEffect::Generate {
                    group,
                    command,
                    input,
                } => me.generate(group, command, input).await,
                FloodEffect::Store { state, serial } => match me.state {
                    Some(w) => w.run(state, serial).await,
                    None => Err(EffectError::Failed(
                        "no state file: floodd was started without --state".to_string(),
                    )),
                },
            }
        }
    }
}

/// Starts `cmd` in a process group of its own, writes `input` to its standard input and
/// closes it, reads up to `capture` bytes of its standard output (when piped), and waits
/// for it to exit. Input and output move at once: a command that writes before it has read
/// everything must not stall on a full pipe while the daemon stalls writing to it.
pub(crate) async fn run(
    mut cmd: Command,
    input: Bytes,
    capture: usize,
    what: &str,
    dir: &str,
) -> Result<(ExitStatus, Vec<u8>), EffectError> {
    let mut child = Group::spawn(&mut cmd)
        .map_err(|e| EffectError::Failed(format!("cannot start {what} in {dir}: {e}")))?;
    let stdin = child.child.stdin.take();
    let stdout = child.child.stdout.take();
    let mut feed = pin!(async move {
        if let Some(mut w) = stdin {
            // A command may exit without reading all of it (or any): its exit status is
            // the verdict, not the broken pipe.
            let _ = w.write_all(&input).await;
        }
    });
    let mut read = pin!(async move {
        let mut out = Vec::new();
        if let Some(r) = stdout {
            r.take(capture as u64 + 1).read_to_end(&mut out).await?;
        }
        Ok::<_, std::io::Error>(out)
    });
    let mut fed = false;
    let out = loop {
        tokio::select! {
            () = &mut feed, if !fed => fed = true,
            r = &mut read => break r,
        }
    };
    let out = out.map_err(|e| EffectError::Failed(format!("reading from {what}: {e}")))?;
    if out.len() > capture {
        // Dropping the group kills it: it may be blocked writing the rest.
        return Err(EffectError::Failed(format!(
            "{what} wrote more than {capture} bytes"
        )));
    }
    let status = loop {
        tokio::select! {
            () = &mut feed, if !fed => fed = true,
            s = child.wait() => break s,
        }
    };
    let status = status.map_err(|e| EffectError::Failed(format!("waiting for {what}: {e}")))?;
    Ok((status, out))
}

/// A child that leads a process group of its own. Dropped before it was reaped (the
/// driver dropped the effect at its time limit, or the daemon is stopping), it is killed
/// with every process of its group.
struct Group {
    child: Child,
    /// The group's id (the child's pid) while the child is not yet reaped.
    pgid: Option<u32>,
}

impl Group {
    fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        #[cfg(unix)]
        cmd.process_group(0);
        cmd.kill_on_drop(true);
        let child = cmd.spawn()?;
        let pgid = child.id();
        Ok(Group { child, pgid })
    }

    /// Waits for the child to exit; cancel-safe, like `Child::wait`.
    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        // Reaped: the id may belong to someone else from now on. Whatever the command
        // left running in the background once it exited is its own business.
        self.pgid = None;
        Ok(status)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            kill_group(pgid);
        }
        // `kill_on_drop` then kills the child itself (already dead here on unix) and
        // tokio reaps it.
    }
}

/// Sends SIGKILL to process group `pgid`. The standard library signals only single
/// children, and unsafe code (`kill(2)`) is forbidden in this workspace, so the shell's
/// `kill` does it. It runs to completion before the effect's outcome is reported, so the
/// group is gone when the machine hears of the timeout; the child is not yet reaped, so
/// its id cannot have been reused.
fn kill_group(pgid: u32) {
    #[cfg(unix)]
    {
        let result = std::process::Command::new(SHELL)
            .args(["-c", "kill -s KILL -- \"-$1\" 2>/dev/null", "kill"])
            .arg(pgid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = result {
            tracing::warn!(pgid, error = %e, "cannot kill a command's process group");
        }
    }
    #[cfg(not(unix))]
    let _ = pgid;
}

/// How a command ended, for a failure message.
pub(crate) fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("was killed by signal {sig}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("ended with {status}"),
    }
}

/// A command as a message shows it: quoted, at most 80 characters.
pub(crate) fn shown(command: &str) -> String {
    let mut s: String = command.chars().take(80).collect();
    if s.len() < command.len() {
        s.push('…');
    }
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::flood::config::LocalDef;
    use flotilla_core::flood::msg::SiteInfo;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn runner(command: Option<&str>, dir: &Path) -> FloodRunner {
        let settings = FloodSettings {
            me: SiteInfo {
                name: "here".into(),
                data: "127.0.0.1:1".parse().unwrap(),
                client_port: 2,
                position: None,
            },
            sites: Vec::new(),
            groups: Vec::new(),
            local: LocalDef {
                export_command: command.map(str::to_string),
                export_directory: dir.display().to_string(),
                ..LocalDef::default()
            },
            limits: Default::default(),
            canary_duplicate_export: false,
            durable: false,
            restore: None,
        };
        FloodRunner::new(&settings, None)
    }

    #[test]
    fn a_state_store_replaces_the_file_and_an_older_serial_never_does() {
        let dir = std::env::temp_dir().join(format!("flotilla-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("site.state");
        let w = StateWriter::new(path.clone());
        w.store(b"second", 2).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        // A store the machine gave up on, landing late, leaves the newer file.
        w.store(b"first", 1).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        w.store(b"third", 3).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"third");
        assert!(
            !dir.join("site.state.tmp").exists(),
            "the temporary file stays"
        );
        let gone = StateWriter::new(dir.join("no such directory").join("x"));
        let err = gone.store(b"x", 1).unwrap_err();
        assert!(err.contains("cannot write the state file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flotilla-runner-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn export(bundle: &'static [u8]) -> FloodEffect {
        FloodEffect::Export {
            bundle: Bytes::from_static(bundle),
            updates: 1,
        }
    }

    #[test]
    fn export_reads_the_bundle_in_its_directory_with_the_site_named() {
        let dir = temp_dir("export");
        let r = runner(
            Some("cat > out; pwd > where; echo \"$FLOOD_SITE\" > site; echo noise; echo noise >&2"),
            &dir,
        );
        let got = rt().block_on(r.run(export(b"update g a 1 1 3\n\x00\xff\n\n")));
        assert_eq!(got, Ok(FloodEffectValue::Exported));
        assert_eq!(
            std::fs::read(dir.join("out")).unwrap(),
            b"update g a 1 1 3\n\x00\xff\n\n"
        );
        let here = std::fs::canonicalize(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("where")).unwrap().trim(),
            here.to_str().unwrap()
        );
        assert_eq!(std::fs::read_to_string(dir.join("site")).unwrap(), "here\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failures_say_why() {
        let dir = temp_dir("fail");
        let rt = rt();
        let got = rt.block_on(runner(Some("exit 3"), &dir).run(export(b"x")));
        assert!(
            matches!(&got, Err(EffectError::Failed(m)) if m.contains("exited with status 3")),
            "{got:?}"
        );
        let got = rt.block_on(runner(Some("kill -9 $$"), &dir).run(export(b"x")));
        assert!(
            matches!(&got, Err(EffectError::Failed(m)) if m.contains("killed by signal 9")),
            "{got:?}"
        );
        // A command that does not read its input is judged by its exit status alone,
        // however large the bundle.
        static BIG: [u8; 1 << 20] = [b'x'; 1 << 20];
        let got = rt.block_on(runner(Some("exit 0"), &dir).run(export(&BIG)));
        assert_eq!(got, Ok(FloodEffectValue::Exported));
        let missing = dir.join("no-such-dir");
        let got = rt.block_on(runner(Some("true"), &missing).run(export(b"x")));
        assert!(
            matches!(&got, Err(EffectError::Failed(m)) if m.contains("cannot start")),
            "{got:?}"
        );
        let got = rt.block_on(runner(None, &dir).run(export(b"x")));
        assert!(matches!(got, Err(EffectError::Failed(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What the driver does at `export-timeout`: drops the future. The shell and the
    /// `sleep` it started die with their group.
    #[test]
    fn a_dropped_export_kills_its_whole_process_group() {
        let dir = temp_dir("drop");
        let r = runner(
            Some("echo $$ > pid; sleep 60 & echo $! > child; wait"),
            &dir,
        );
        let rt = rt();
        let got = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(500), r.run(export(b"x"))).await
        });
        assert!(got.is_err(), "the export should still be running");
        for name in ["pid", "child"] {
            let pid = std::fs::read_to_string(dir.join(name)).unwrap();
            let pid = pid.trim();
            // SIGKILL was sent before the drop returned; dying takes the target a moment.
            let running = || {
                let state =
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // Gone, or a zombie waiting for its reaper: not running.
                let field = state.rsplit(") ").next().unwrap_or("").chars().next();
                !(state.is_empty() || field == Some('Z'))
            };
            let gone = rt.block_on(async {
                for _ in 0..100 {
                    if !running() {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                false
            });
            assert!(gone, "{name} {pid} still runs");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_generator_gives_its_output_within_the_limit() {
        let dir = temp_dir("generate");
        let rt = rt();
        let generate = |command: &str| FloodEffect::Generate {
            group: "g".into(),
            command: command.into(),
            input: "a b 10\n".into(),
        };
        let r = runner(None, &dir);
        assert_eq!(
            rt.block_on(r.run(generate("cat; echo \"$FLOOD_GROUP\""))),
            Ok(FloodEffectValue::Generated("a b 10\ng\n".into()))
        );
        let got = rt.block_on(r.run(generate("head -c 17000000 /dev/zero")));
        assert!(
            matches!(&got, Err(EffectError::Failed(m)) if m.contains("more than")),
            "{got:?}"
        );
        let got = rt.block_on(r.run(generate("printf '\\377'")));
        assert!(
            matches!(&got, Err(EffectError::Failed(m)) if m.contains("UTF-8")),
            "{got:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
