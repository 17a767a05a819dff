//! [`Runc`]: the [`Runtime`] on an external OCI runtime binary (Debian's `runc`), with the same
//! bundle and the same state-root layout as [`Youki`](super::youki::Youki), so that a test can
//! run one spec under both and compare.
//!
//! runc passes its own stdio to the container when there is no terminal ("pass-through" mode), so
//! `runc create` runs with the container's stdio; its own messages go to a JSON log file next to
//! the state (`--log`), which is where a failed create's error is read from. (runc also prints a
//! failed create's error on its stderr: that line ends up in the container's stderr log, which is
//! where a user looks anyway.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio as ProcessStdio};

use super::driver::{ContainerState, ContainerStatus, Runtime, RuntimeError, Signal, Stdio};

/// An OCI runtime binary with runc's command line.
pub struct Runc {
    root: PathBuf,
    binary: PathBuf,
}

impl Runc {
    /// `state_root` is passed as `--root` (created on first use); `binary` is the runtime, such
    /// as `runc` (looked up in `PATH`) or `/usr/sbin/runc`.
    pub fn new(state_root: impl Into<PathBuf>, binary: impl Into<PathBuf>) -> Runc {
        Runc { root: state_root.into(), binary: binary.into() }
    }

    pub fn state_root(&self) -> &Path {
        &self.root
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root).args(args);
        command
    }

    /// Runs an operation that does not involve the container's stdio; its errors are on stderr.
    fn run(&self, op: &'static str, id: &str, args: &[&str]) -> Result<Output, RuntimeError> {
        let output = self
            .command(args)
            .stdin(ProcessStdio::null())
            .output()
            .map_err(|source| self.spawn_error(op, id, source))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message = last_line(&stderr).unwrap_or_else(|| output.status.to_string());
            return Err(RuntimeError::Failed { id: id.to_owned(), op, message });
        }
        Ok(output)
    }

    fn spawn_error(&self, op: &'static str, id: &str, source: std::io::Error) -> RuntimeError {
        RuntimeError::Spawn { id: id.to_owned(), op, program: self.binary.clone(), source }
    }
}

impl Runtime for Runc {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
        fs::create_dir_all(&self.root).map_err(|e| RuntimeError::io("create", &self.root, e))?;
        let log = self.root.join(format!(".{id}.log"));
        let pid_file = self.root.join(format!(".{id}.pid"));
        let stdin = stdio.stdin.map_or_else(ProcessStdio::null, ProcessStdio::from);
        let status = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "create", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr)
            .status()
            .map_err(|source| self.spawn_error("create", id, source));
        let log_text = fs::read_to_string(&log).unwrap_or_default();
        let pid_text = fs::read_to_string(&pid_file);
        let _ = fs::remove_file(&log);
        let _ = fs::remove_file(&pid_file);
        let status = status?;
        if !status.success() {
            // runc destroys what it made of a failed create; make sure of it.
            let _ = self.run("delete", id, &["delete", "--force", id]);
            let message = log_error(&log_text).unwrap_or_else(|| format!("runc create {status}"));
            return Err(RuntimeError::Failed { id: id.to_owned(), op: "create", message });
        }
        pid_text
            .map_err(|e| RuntimeError::io("read the pid file", &pid_file, e))?
            .trim()
            .parse()
            .map_err(|e| RuntimeError::Protocol {
                id: id.to_owned(),
                op: "create",
                program: self.binary.clone(),
                message: format!("bad pid file: {e}"),
            })
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("start", id, &["start", id]).map(drop)
    }

    fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        let number = (signal as i32).to_string();
        match self.run("kill", id, &["kill", id, &number]) {
            Ok(_) => Ok(()),
            // runc refuses to signal a stopped container; that race with an exit is no error.
            Err(err) => match self.state(id) {
                Ok(None) => Ok(()),
                Ok(Some(s)) if s.status == ContainerStatus::Stopped => Ok(()),
                _ => Err(err),
            },
        }
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        let args: &[&str] = if force { &["delete", "--force", id] } else { &["delete", id] };
        self.run("delete", id, args).map(drop)
    }

    fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        if !self.root.join(id).join("state.json").exists() {
            return Ok(None);
        }
        let output = self.run("state", id, &["state", id])?;
        #[derive(serde::Deserialize)]
        struct RuncState {
            status: ContainerStatus,
            #[serde(default)]
            pid: i32,
        }
        let state: RuncState =
            serde_json::from_slice(&output.stdout).map_err(|e| RuntimeError::Protocol {
                id: id.to_owned(),
                op: "state",
                program: self.binary.clone(),
                message: e.to_string(),
            })?;
        // runc reports pid 0 once the init is gone.
        Ok(Some(ContainerState { status: state.status, pid: (state.pid > 0).then_some(state.pid) }))
    }
}

fn last_line(text: &str) -> Option<String> {
    text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_owned())
}

/// The last error-level message in a runc JSON log (`{"level":"error","msg":"..."}` lines).
fn log_error(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|v| v["msg"].as_str().map(str::to_owned))
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_of_a_runc_log() {
        let log = r#"{"level":"info","msg":"starting","time":"t"}
{"level":"error","msg":"first","time":"t"}
not json
{"level":"error","msg":"runc create failed: exec: \"x\": executable file not found in $PATH"}
{"level":"warning","msg":"later warning"}
"#;
        assert_eq!(
            log_error(log).as_deref(),
            Some("runc create failed: exec: \"x\": executable file not found in $PATH")
        );
        assert_eq!(log_error(""), None);
        assert_eq!(last_line("a\nb\n\n").as_deref(), Some("b"));
    }
}
