//! Benchmark: container lifecycle, devenv against Docker in the same run (issue 3, "Performance").
//!
//! Both sides run the same project file (`PROJECT` below: three busybox services on
//! `network_mode: none`, `command: sleep 1000`, `init: true`, `app` depending on `db`) from the
//! same fixture image (`support::images`, built from this host's Debian binaries), and each is
//! timed through its own command line, as a user would run it:
//!
//! - `up -d` of the project until the tool's own status command (`devenv ps --format json`,
//!   `docker-compose ps`) reports all three running;
//! - a no-op `up -d` on the running project (checked to have restarted nothing);
//! - `down` of the project (checked to have left no container);
//! - start of one container: devenv's `up -d` of a one-service `command: "true"` project until
//!   `ps` reports `exited (0)`, against `docker run --rm --init --network none` (which also
//!   removes the container; devenv's removal, its `down`, is timed on its own row);
//! - resident memory with the three services up: the devenv supervisor's VmRSS against dockerd's
//!   plus containerd's (the per-container shims are shown beside them).
//!
//! Each measurement runs `BENCH_ROUNDS` times (default 20) after 2 untimed warm-up rounds; the
//! output is a Markdown table of medians and p95s with the devenv ÷ Docker ratios, ready for
//! BENCHMARKS.md, and the raw samples as JSON in `target/bench/lifecycle.json`.
//!
//! Run it with `bench/lifecycle.sh` (as root): it installs docker.io, docker-compose and skopeo
//! if missing, starts a private dockerd, and runs `cargo bench --bench lifecycle` against it.
//! Run directly, the Docker half is skipped unless `DOCKER_HOST` names a daemon (it is never
//! the system's default socket by accident). Other settings: `BENCH_ONLY=devenv|docker`,
//! `DEVENV_BIN` (default: the release binary cargo builds for this bench), `DOCKER_BIN`,
//! `DOCKER_COMPOSE_BIN`, `DOCKERD_PID` (needed for Docker's memory figure).
//!
//! Any failure (a command's exit status, a timeout, a state that never comes) stops that half,
//! is reported with the command's error output, and makes the bench exit non-zero: a half that
//! failed produces no numbers rather than misleading ones.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};

use support::images::{oci_layout, Fixture, REF_NAME};

/// The image name on both sides (normalized to `docker.io/devenv-bench/busybox:latest` by both).
const IMAGE: &str = "devenv-bench/busybox";

/// The 3-service project. `init: true` is devenv's default; Docker needs it spelled out, or
/// busybox `sleep` as PID 1 ignores SIGTERM and every `down` waits out the 10 s grace period,
/// which would measure the grace period rather than either engine.
const PROJECT: &str = "services:
  db:
    image: devenv-bench/busybox
    network_mode: none
    init: true
    command: sleep 1000
  cache:
    image: devenv-bench/busybox
    network_mode: none
    init: true
    command: sleep 1000
  app:
    image: devenv-bench/busybox
    network_mode: none
    init: true
    command: sleep 1000
    depends_on: [db]
";
const SERVICES: usize = 3;

/// devenv's side of "start one container": the equivalent of `docker run --rm IMAGE true`.
const ONE: &str = "services:
  one:
    image: devenv-bench/busybox
    network_mode: none
    init: true
    command: \"true\"
";

const WARMUPS: usize = 2;
const DEFAULT_ROUNDS: usize = 20;
/// Longest any one command may take before it is killed and the half fails (a hung `up` must
/// not hang the bench; Docker's slowest step here takes about a second).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a status command may keep disagreeing with the state `up` promised.
const STATE_TIMEOUT: Duration = Duration::from_secs(20);

fn main() {
    let cfg = Config::from_env();
    let machine = machine_info();
    eprintln!(
        "lifecycle bench: {} rounds after {WARMUPS} warm-ups; load average at start {}",
        cfg.rounds,
        machine["loadavg_start"].as_str().unwrap_or("?")
    );
    let layout = oci_layout(Fixture::Busybox);

    let devenv = if !cfg.wants("devenv") {
        Half::Skipped("BENCH_ONLY excludes it".into())
    } else if !support::is_root() {
        Half::Skipped("needs root to run containers".into())
    } else {
        run_half("devenv", || {
            let d = Devenv::new(&cfg.devenv_bin, &layout)?;
            let mut fig = measure(&d, cfg.rounds)?;
            fig.create_start = create_start(&cfg.devenv_bin, d.home(), WARMUPS + cfg.rounds)?;
            Ok(fig)
        })
    };
    let docker = if !cfg.wants("docker") {
        Half::Skipped("BENCH_ONLY excludes it".into())
    } else {
        match Docker::available(&cfg) {
            Err(why) => Half::Skipped(why),
            Ok(()) => run_half("Docker", || {
                let d = Docker::new(&cfg, &layout)?;
                measure(&d, cfg.rounds)
            }),
        }
    };

    let versions = versions(&cfg);
    let table = markdown(&cfg, &machine, &versions, &devenv, &docker);
    println!("\n{table}");
    let out = write_outputs(&cfg, &machine, &versions, &devenv, &docker, &table);
    match out {
        Ok(path) => eprintln!("raw samples: {}", path.display()),
        Err(e) => eprintln!("could not write the raw samples: {e:#}"),
    }
    let mut failed = false;
    for (name, half) in [("devenv", &devenv), ("Docker", &docker)] {
        match half {
            Half::Failed(e) => {
                failed = true;
                eprintln!("\n{name} half FAILED, no figures: {e:#}");
                if format!("{e:#}").contains("not available in this build") {
                    eprintln!(
                        "  (expected until the container runtime driver is merged: this build \
                         has the placeholder runtime)"
                    );
                }
            }
            Half::Skipped(why) => eprintln!("\n{name} half skipped: {why}"),
            Half::Done(_) => {}
        }
    }
    if failed {
        std::process::exit(1);
    }
}

/// Settings from the environment (see the module doc).
struct Config {
    rounds: usize,
    only: Option<String>,
    devenv_bin: PathBuf,
    docker_bin: String,
    compose_bin: String,
    dockerd_pid: Option<i32>,
}

impl Config {
    fn from_env() -> Config {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Config {
            rounds: var("BENCH_ROUNDS").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_ROUNDS),
            only: var("BENCH_ONLY").map(|v| v.to_lowercase()),
            // Cargo builds the binary with the bench profile (release) for this target.
            devenv_bin: var("DEVENV_BIN")
                .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_devenv")), PathBuf::from),
            docker_bin: var("DOCKER_BIN").unwrap_or_else(|| "docker".into()),
            compose_bin: var("DOCKER_COMPOSE_BIN").unwrap_or_else(|| "docker-compose".into()),
            dockerd_pid: var("DOCKERD_PID").and_then(|v| v.parse().ok()),
        }
    }

    fn wants(&self, side: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == side)
    }
}

/// The outcome of one side of the comparison.
enum Half {
    Done(Figures),
    Failed(anyhow::Error),
    Skipped(String),
}

fn run_half(name: &str, f: impl FnOnce() -> Result<Figures>) -> Half {
    eprintln!("== {name}");
    match f() {
        Ok(fig) => Half::Done(fig),
        Err(e) => Half::Failed(e),
    }
}

/// Samples of one side, in milliseconds (memory in KiB).
#[derive(Default)]
struct Figures {
    up: Vec<f64>,
    noop: Vec<f64>,
    down: Vec<f64>,
    start_one: Vec<f64>,
    /// devenv only: the runtime's create + start of one prepared container (what `up` pays per
    /// container once its image is unpacked), measured through the library.
    create_start: Vec<f64>,
    /// devenv only: `down` of the exited one-service project (`docker run --rm` includes it).
    remove_one: Vec<f64>,
    /// Per process group (e.g. "dockerd", "containerd"), one sample per round, 3 services up.
    rss_kib: BTreeMap<String, Vec<u64>>,
    /// Which of `rss_kib` count as the engine's own memory (the rest is shown beside it).
    rss_engine: Vec<String>,
}

/// What the measurement loop needs from an engine: the same steps on both sides.
trait Engine {
    /// `up -d` of the 3-service project.
    fn up(&self) -> Result<()>;
    /// How many of its services the tool's status command reports running.
    fn running(&self) -> Result<usize>;
    /// The running containers' identities (pids, ids): a no-op `up` must not change them.
    fn identities(&self) -> Result<Vec<String>>;
    fn down(&self) -> Result<()>;
    /// Whether the project has no container left.
    fn gone(&self) -> Result<bool>;
    /// Runs one container of `true` to its exit; returns the time to exit and, where the engine
    /// removes it in a separate step, that step's time.
    fn start_one(&self) -> Result<(Duration, Option<Duration>)>;
    /// Resident memory of the engine's own processes: (name, KiB).
    fn memory(&self) -> Result<Vec<(String, u64)>>;
    /// Which of `memory`'s entries are the engine proper (summed against the other side).
    fn engine_processes(&self) -> Vec<String>;
}

fn measure(e: &dyn Engine, rounds: usize) -> Result<Figures> {
    let mut fig = Figures { rss_engine: e.engine_processes(), ..Figures::default() };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for i in 0..WARMUPS + rounds {
        let round = round_name(i);
        let t0 = Instant::now();
        e.up().with_context(|| format!("`up -d` of the 3-service project, {round}"))?;
        let up = settled(t0, true, || Ok(e.running()? == SERVICES))
            .with_context(|| format!("waiting for all {SERVICES} services to run, {round}"))?;
        let before = e.identities()?;

        let t = Instant::now();
        e.up().with_context(|| format!("no-op `up -d`, {round}"))?;
        let noop = t.elapsed();
        ensure!(e.running()? == SERVICES, "a service stopped after the no-op `up -d`, {round}");
        ensure!(e.identities()? == before, "the no-op `up -d` restarted containers, {round}");

        let mem = e.memory().with_context(|| format!("reading resident memory, {round}"))?;

        let t = Instant::now();
        e.down().with_context(|| format!("`down` of the 3-service project, {round}"))?;
        let down = t.elapsed();
        ensure!(e.gone()?, "containers left after `down`, {round}");

        if i >= WARMUPS {
            fig.up.push(ms(up));
            fig.noop.push(ms(noop));
            fig.down.push(ms(down));
            for (name, kib) in mem {
                fig.rss_kib.entry(name).or_default().push(kib);
            }
        }
    }
    for i in 0..WARMUPS + rounds {
        let (start, remove) =
            e.start_one().with_context(|| format!("starting one container, {}", round_name(i)))?;
        if i >= WARMUPS {
            fig.start_one.push(ms(start));
            fig.remove_one.extend(remove.map(ms));
        }
    }
    Ok(fig)
}

fn round_name(i: usize) -> String {
    if i < WARMUPS {
        format!("warm-up round {}", i + 1)
    } else {
        format!("round {}", i - WARMUPS + 1)
    }
}

/// Time from `t0` (just before `up -d`) to the moment the project is known to be in the state
/// `check` wants: the end of the first check that agrees, polling every millisecond.
///
/// Where `up -d` itself promises that state when it returns (`promised`: all services running),
/// and the first check after it agrees, the time is `up`'s own: the check's run time (half a
/// second for docker-compose's Python start-up) is charged to neither tool.
fn settled(
    t0: Instant,
    promised: bool,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let returned = t0.elapsed();
    if check()? {
        return Ok(if promised { returned } else { t0.elapsed() });
    }
    while t0.elapsed() < STATE_TIMEOUT {
        std::thread::sleep(Duration::from_millis(1));
        if check()? {
            return Ok(t0.elapsed());
        }
    }
    bail!("not reached after {STATE_TIMEOUT:?}")
}

/// Runs a command to completion with its output captured, killing it after `COMMAND_TIMEOUT`;
/// fails with its stderr unless it exits 0.
///
/// Output goes to unnamed temporary files, not pipes: `up -d` leaves a daemon behind, and one
/// that kept a pipe open would make the read, and the bench, wait for it forever; `wait` only
/// waits for the command. The watchdog is a thread rather than a polling loop so that the
/// caller's timing sees the exit as soon as `wait` does.
fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let (mut out, mut err) = (tempfile::tempfile()?, tempfile::tempfile()?);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    let pid = child.id() as i32;
    let (done, wait) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(COMMAND_TIMEOUT) == Err(mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: kill takes no pointers. The child is reaped only once `wait` returns,
            // which is followed at once by `done`, so the pid still names it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return true;
        }
        false
    });
    let status = child.wait();
    let _ = done.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let status = status.with_context(|| format!("waiting for {shown}"))?;
    let read = |f: &mut std::fs::File| -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(0))?;
        f.read_to_end(&mut buf)?;
        Ok(buf)
    };
    let output = Output { status, stdout: read(&mut out)?, stderr: read(&mut err)? };
    if timed_out {
        bail!("{shown} did not finish within {COMMAND_TIMEOUT:?}");
    }
    if !output.status.success() {
        bail!(
            "{shown} failed ({}):\n{}{}",
            output.status,
            indent(&String::from_utf8_lossy(&output.stderr)),
            indent(&String::from_utf8_lossy(&output.stdout))
        );
    }
    Ok(output)
}

fn stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

// ---------------------------------------------------------------------------------------------
// devenv

/// devenv with its own DEVENV_HOME and project directory, the fixture image in its store.
struct Devenv {
    bin: PathBuf,
    home: Option<tempfile::TempDir>,
    dir: tempfile::TempDir,
}

const DEVENV_PROJECT: &str = "bench3";
const DEVENV_ONE: &str = "bench1";

impl Devenv {
    fn new(bin: &Path, layout: &Path) -> Result<Devenv> {
        ensure!(bin.is_file(), "no devenv binary at {} (cargo build --release)", bin.display());
        let d = Devenv {
            bin: bin.to_path_buf(),
            home: Some(tempfile::Builder::new().prefix("devenv-bench-home").tempdir()?),
            dir: tempfile::Builder::new().prefix("devenv-bench-proj").tempdir()?,
        };
        std::fs::write(d.dir.path().join("compose.yaml"), PROJECT)?;
        std::fs::write(d.dir.path().join("one.yaml"), ONE)?;
        let layout = layout.to_str().context("fixture path is not UTF-8")?;
        run(&mut d.cmd(&["image", "load", layout, "--tag", IMAGE]))
            .context("loading the busybox fixture into devenv's store")?;
        Ok(d)
    }

    fn home(&self) -> &Path {
        self.home.as_ref().expect("home lives until drop").path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).current_dir(self.dir.path()).env("DEVENV_HOME", self.home());
        // Names and files come from the arguments only.
        c.env_remove("COMPOSE_PROJECT_NAME").env_remove("COMPOSE_FILE");
        c
    }

    fn project(&self, name: &str, file: &str, args: &[&str]) -> Command {
        let mut c = self.cmd(&["-p", name, "-f", file]);
        c.args(args);
        c
    }

    fn ps(&self, name: &str, file: &str) -> Result<Vec<Value>> {
        let text = stdout(&mut self.project(name, file, &["ps", "--format", "json"]))?;
        serde_json::from_str(&text).with_context(|| format!("`ps --format json` printed {text}"))
    }
}

impl Engine for Devenv {
    fn up(&self) -> Result<()> {
        run(&mut self.project(DEVENV_PROJECT, "compose.yaml", &["up", "-d"])).map(drop)
    }

    fn running(&self) -> Result<usize> {
        let rows = self.ps(DEVENV_PROJECT, "compose.yaml")?;
        Ok(rows.iter().filter(|r| r["state"] == "running").count())
    }

    fn identities(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .ps(DEVENV_PROJECT, "compose.yaml")?
            .iter()
            .map(|r| format!("{}={}", r["service"], r["pid"]))
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn down(&self) -> Result<()> {
        run(&mut self.project(DEVENV_PROJECT, "compose.yaml", &["down"])).map(drop)
    }

    fn gone(&self) -> Result<bool> {
        Ok(self.ps(DEVENV_PROJECT, "compose.yaml")?.is_empty())
    }

    fn start_one(&self) -> Result<(Duration, Option<Duration>)> {
        let t0 = Instant::now();
        run(&mut self.project(DEVENV_ONE, "one.yaml", &["up", "-d"]))?;
        let mut last = String::new();
        let start = settled(t0, false, || {
            let rows = self.ps(DEVENV_ONE, "one.yaml")?;
            last = rows.first().map(|r| r["state"].to_string()).unwrap_or_default();
            // A command that exited with another status did not run as intended.
            ensure!(!last.contains("exited") || last.contains("exited (0)"), "`true` {last}");
            Ok(last.contains("exited (0)"))
        })
        .with_context(|| format!("waiting for `true` to exit (last state {last})"))?;
        let t = Instant::now();
        run(&mut self.project(DEVENV_ONE, "one.yaml", &["down"]))?;
        Ok((start, Some(t.elapsed())))
    }

    fn memory(&self) -> Result<Vec<(String, u64)>> {
        let state = self.home().join("projects").join(DEVENV_PROJECT).join("state.json");
        let text = std::fs::read(&state).with_context(|| format!("reading {}", state.display()))?;
        let v: Value = serde_json::from_slice(&text).context("parsing state.json")?;
        let pid = v["supervisor"][0].as_i64().context("no supervisor pid in state.json")?;
        Ok(vec![("supervisor".into(), rss_kib(pid as i32)?)])
    }

    fn engine_processes(&self) -> Vec<String> {
        vec!["supervisor".into()]
    }
}

impl Drop for Devenv {
    /// Takes down whatever a failed round left, then deletes the home, unless something is
    /// still mounted under it (deleting through a mount could reach outside).
    fn drop(&mut self) {
        for (name, file) in [(DEVENV_PROJECT, "compose.yaml"), (DEVENV_ONE, "one.yaml")] {
            if let Err(e) = run(&mut self.project(name, file, &["down"])) {
                eprintln!("cleanup: devenv down of {name}: {e:#}");
            }
        }
        let home = self.home.take().expect("home lives until drop");
        let prefix = home.path().to_string_lossy().into_owned();
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix)));
        if mounted {
            eprintln!("cleanup: mounts remain under {prefix}; leaving it in place");
            let _ = home.keep();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Docker

/// docker-compose and the docker CLI against the daemon in DOCKER_HOST, the fixture image
/// loaded into it.
struct Docker {
    docker: String,
    compose: String,
    dir: tempfile::TempDir,
    dockerd_pid: Option<i32>,
}

/// docker-compose's project name (devenv's has its own store, so the names need not differ).
const COMPOSE_PROJECT: &str = "devenvbench";

impl Docker {
    /// Whether there is a daemon to measure: only one named by DOCKER_HOST, so that a bare
    /// `cargo bench` never creates containers in the user's own Docker.
    fn available(cfg: &Config) -> Result<(), String> {
        let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) else {
            return Err("DOCKER_HOST is not set (bench/lifecycle.sh starts a dockerd)".into());
        };
        run(Command::new(&cfg.docker_bin).args(["version", "--format", "{{.Server.Version}}"]))
            .map(drop)
            .map_err(|e| format!("no Docker daemon answers at {host}: {e:#}"))?;
        run(Command::new(&cfg.compose_bin).arg("version"))
            .map(drop)
            .map_err(|e| format!("docker-compose does not run: {e:#}"))
    }

    fn new(cfg: &Config, layout: &Path) -> Result<Docker> {
        let d = Docker {
            docker: cfg.docker_bin.clone(),
            compose: cfg.compose_bin.clone(),
            dir: tempfile::Builder::new().prefix("devenv-bench-compose").tempdir()?,
            dockerd_pid: cfg.dockerd_pid,
        };
        std::fs::write(d.dir.path().join("compose.yaml"), PROJECT)?;
        // skopeo talks to the daemon itself and ignores DOCKER_HOST unless told.
        let host = std::env::var("DOCKER_HOST")?;
        let src = format!("oci:{}:{REF_NAME}", layout.display());
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-daemon-host", &host])
            .args([src, format!("docker-daemon:{IMAGE}:latest")]))
        .context("loading the busybox fixture into dockerd (skopeo copy)")?;
        // The image must be there: otherwise docker would try to pull it from a registry.
        run(d.docker().args(["image", "inspect", IMAGE])).context("the loaded image")?;
        Ok(d)
    }

    fn docker(&self) -> Command {
        Command::new(&self.docker)
    }

    fn compose(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.compose);
        c.args(["-p", COMPOSE_PROJECT, "-f", "compose.yaml"]).args(args);
        c.current_dir(self.dir.path());
        c.env_remove("COMPOSE_PROJECT_NAME").env_remove("COMPOSE_FILE");
        c
    }

    /// Ids of the project's containers, by the label docker-compose puts on them.
    fn containers(&self, all: bool) -> Result<Vec<String>> {
        let label = format!("label=com.docker.compose.project={COMPOSE_PROJECT}");
        let mut c = self.docker();
        c.args(["ps", "-q", "--no-trunc", "--filter", &label]);
        if all {
            c.arg("-a");
        }
        let mut ids: Vec<String> = stdout(&mut c)?.lines().map(str::to_owned).collect();
        ids.sort();
        Ok(ids)
    }
}

impl Engine for Docker {
    fn up(&self) -> Result<()> {
        run(&mut self.compose(&["up", "-d"])).map(drop)
    }

    fn running(&self) -> Result<usize> {
        let out = stdout(&mut self.compose(&["ps", "--services", "--filter", "status=running"]))?;
        Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
    }

    fn identities(&self) -> Result<Vec<String>> {
        self.containers(false)
    }

    fn down(&self) -> Result<()> {
        run(&mut self.compose(&["down"])).map(drop)
    }

    fn gone(&self) -> Result<bool> {
        Ok(self.containers(true)?.is_empty())
    }

    fn start_one(&self) -> Result<(Duration, Option<Duration>)> {
        let t0 = Instant::now();
        run(self
            .docker()
            .args(["run", "--rm", "--init", "--network", "none", "--pull", "never"])
            .args([IMAGE, "true"]))?;
        Ok((t0.elapsed(), None))
    }

    fn memory(&self) -> Result<Vec<(String, u64)>> {
        let dockerd = self.dockerd_pid.context("DOCKERD_PID is not set")?;
        let mut parts = vec![("dockerd".to_string(), rss_kib(dockerd)?)];
        // dockerd starts containerd as its child (unless a system containerd already runs,
        // which bench/lifecycle.sh warns about); the shims are reparented away from it but
        // name containerd's state directory on their command lines.
        let procs = processes();
        let containerd = procs
            .iter()
            .find(|p| p.ppid == dockerd && p.comm == "containerd")
            .context("no containerd child of dockerd")?;
        parts.push(("containerd".into(), rss_kib(containerd.pid)?));
        let state_dir = containerd
            .args
            .windows(2)
            .find(|w| w[0] == "--config")
            .and_then(|w| Path::new(&w[1]).parent().map(|p| p.to_string_lossy().into_owned()));
        if let Some(dir) = state_dir {
            let mut shims = 0;
            for p in procs.iter().filter(|p| p.comm.starts_with("containerd-shim")) {
                if p.args.iter().any(|a| a.starts_with(&dir)) {
                    shims += rss_kib(p.pid)?;
                }
            }
            parts.push(("containerd-shims".into(), shims));
        }
        Ok(parts)
    }

    fn engine_processes(&self) -> Vec<String> {
        vec!["dockerd".into(), "containerd".into()]
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Err(e) = run(&mut self.compose(&["down", "--timeout", "1"])) {
            eprintln!("cleanup: docker-compose down: {e:#}");
        }
        // Leave nothing behind in a daemon that outlives the bench.
        let _ = run(self.docker().args(["rmi", IMAGE]));
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

struct Proc {
    pid: i32,
    ppid: i32,
    comm: String,
    args: Vec<String>,
}

fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|p| p.parse().ok());
        let args = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args = args
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push(Proc { pid, ppid: ppid.unwrap_or(0), comm, args });
    }
    out
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for process {pid}"))
}

// ---------------------------------------------------------------------------------------------
// Report

fn machine_info() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_owned();
    let cgroups = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "unified"
    } else if Path::new("/sys/fs/cgroup/unified").exists() {
        "hybrid"
    } else {
        "legacy"
    };
    let loadavg = read("/proc/loadavg");
    let load = loadavg.split(' ').take(3).collect::<Vec<_>>().join(" ");
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cgroups": cgroups,
        "loadavg_start": load,
        "date": first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
    })
}

fn versions(cfg: &Config) -> Value {
    let devenv = first_line(Command::new(&cfg.devenv_bin).arg("--version"));
    let rev = first_line(Command::new("git").args(["rev-parse", "--short", "HEAD"]));
    let docker = std::env::var_os("DOCKER_HOST").and_then(|_| {
        first_line(Command::new(&cfg.docker_bin).args([
            "version",
            "--format",
            "{{.Server.Version}}",
        ]))
    });
    let compose = first_line(Command::new(&cfg.compose_bin).args(["version", "--short"]));
    json!({"devenv": devenv, "git": rev, "dockerd": docker, "docker_compose": compose})
}

/// The first line a command prints, if it runs and succeeds.
fn first_line(cmd: &mut Command) -> Option<String> {
    let out = run(cmd).ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned)
}

/// Median and nearest-rank p95 of the samples.
fn stats(samples: &[f64]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    let p95 = s[(n * 95).div_ceil(100) - 1];
    Some((median, p95))
}

fn fmt_ms(ms: f64) -> String {
    match ms {
        m if m >= 1000.0 => format!("{:.2} s", m / 1000.0),
        m if m >= 100.0 => format!("{m:.0} ms"),
        m if m >= 10.0 => format!("{m:.1} ms"),
        m => format!("{m:.2} ms"),
    }
}

fn fmt_mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// A table cell for one side: the figure, or why there is none.
fn cell(half: &Half, pick: impl Fn(&Figures) -> Option<String>) -> String {
    match half {
        Half::Done(f) => pick(f).unwrap_or_else(|| "—".into()),
        Half::Failed(_) => "**failed**".into(),
        Half::Skipped(_) => "skipped".into(),
    }
}

fn figures(half: &Half) -> Option<&Figures> {
    match half {
        Half::Done(f) => Some(f),
        _ => None,
    }
}

/// One time row: medians, p95s, the ratio devenv ÷ Docker of the medians, and the target.
#[allow(clippy::too_many_arguments)]
fn time_row(
    t: &mut String,
    what: &str,
    devenv: &Half,
    docker: &Half,
    pick: fn(&Figures) -> &Vec<f64>,
    docker_note: Option<&str>,
    target: &str,
    met: impl Fn(f64, Option<f64>) -> Option<bool>,
) {
    let med = |h: &Half| figures(h).and_then(|f| stats(pick(f))).map(|s| s.0);
    let (dv, dk) = (med(devenv), med(docker));
    let ratio = match (dv, dk) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.3} ({:.1}x faster)", a / b, b / a),
        _ => "—".into(),
    };
    let target = match dv.and_then(|a| met(a, dk)) {
        Some(true) => format!("{target}: **met**"),
        Some(false) => format!("{target}: **not met**"),
        None => target.to_owned(),
    };
    let side = |h: &Half, i: usize| {
        cell(h, |f| stats(pick(f)).map(|s| fmt_ms(if i == 0 { s.0 } else { s.1 })))
    };
    let (dk_med, dk_p95) = match docker_note {
        Some(n) if figures(docker).is_some() => (n.to_owned(), String::new()),
        _ => (side(docker, 0), side(docker, 1)),
    };
    let _ = writeln!(
        t,
        "| {what} | {} | {} | {dk_med} | {dk_p95} | {ratio} | {target} |",
        side(devenv, 0),
        side(devenv, 1)
    );
}

fn markdown(
    cfg: &Config,
    machine: &Value,
    versions: &Value,
    devenv: &Half,
    docker: &Half,
) -> String {
    let mut t = String::new();
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let _ = writeln!(
        t,
        "Run {}: {} rounds after {WARMUPS} warm-ups, {} CPUs, Linux {}, {} cgroups, load average \
         {} at start. {} ({}); dockerd {}, docker-compose {}.\n",
        s(&machine["date"]),
        cfg.rounds,
        machine["cpus"],
        s(&machine["kernel"]),
        s(&machine["cgroups"]),
        s(&machine["loadavg_start"]),
        s(&versions["devenv"]),
        s(&versions["git"]),
        s(&versions["dockerd"]),
        s(&versions["docker_compose"]),
    );
    t.push_str(
        "| measurement | devenv median | devenv p95 | Docker median | Docker p95 | devenv ÷ Docker \
         (medians) | target |\n|---|---|---|---|---|---|---|\n",
    );
    let faster = |x: f64| move |a: f64, b: Option<f64>| b.map(|b| b / a >= x);
    let under = |ms: f64| move |a: f64, _: Option<f64>| Some(a < ms);
    time_row(
        &mut t,
        "`up -d`, 3 services, to all running",
        devenv,
        docker,
        |f| &f.up,
        None,
        "≥ 10x faster",
        faster(10.0),
    );
    time_row(&mut t, "no-op `up -d`", devenv, docker, |f| &f.noop, None, "< 20 ms", under(20.0));
    time_row(
        &mut t,
        "`down`, 3 services",
        devenv,
        docker,
        |f| &f.down,
        None,
        "≥ 20x faster",
        faster(20.0),
    );
    time_row(
        &mut t,
        "start one container (`true`) to its exit; Docker: `docker run --rm`",
        devenv,
        docker,
        |f| &f.start_one,
        None,
        "< 30 ms",
        under(30.0),
    );
    time_row(
        &mut t,
        "create + start of one container by the runtime (libcontainer through the helper)",
        devenv,
        docker,
        |f| &f.create_start,
        Some("—"),
        "< 30 ms",
        under(30.0),
    );
    time_row(
        &mut t,
        "remove that exited container (devenv `down`)",
        devenv,
        docker,
        |f| &f.remove_one,
        Some("in `docker run --rm`"),
        "",
        |_, _| None,
    );
    // Memory: the engine's own processes summed per round, then the median.
    let mem = |h: &Half| {
        cell(h, |f| {
            let n = f.rss_kib.values().map(Vec::len).min()?;
            let total: Vec<f64> = (0..n)
                .map(|i| f.rss_engine.iter().filter_map(|k| f.rss_kib.get(k)).map(|v| v[i]).sum())
                .map(|k: u64| k as f64)
                .collect();
            let part = |k: &String, v: &Vec<u64>| {
                let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
                format!("{k} {}", fmt_mib(stats(&v).map_or(0.0, |s| s.0)))
            };
            let (own, besides): (Vec<_>, Vec<_>) =
                f.rss_kib.iter().partition(|(k, _)| f.rss_engine.contains(k));
            let own: Vec<String> = own.into_iter().map(|(k, v)| part(k, v)).collect();
            let besides: Vec<String> = besides.into_iter().map(|(k, v)| part(k, v)).collect();
            let (med, _) = stats(&total)?;
            let mut text = format!("{} ({}", fmt_mib(med), own.join(" + "));
            if !besides.is_empty() {
                let _ = write!(text, "; not counted: {}", besides.join(", "));
            }
            Some(text + ")")
        })
    };
    let _ = writeln!(
        t,
        "| resident memory, 3 services up (devenv: supervisor; Docker: dockerd + containerd) | {} \
         | | {} | | | |",
        mem(devenv),
        mem(docker)
    );
    t
}

fn samples_json(half: &Half) -> Value {
    match half {
        Half::Done(f) => json!({
            "status": "ok",
            "ms": {
                "up_3_services": micros(&f.up),
                "noop_up": micros(&f.noop),
                "down_3_services": micros(&f.down),
                "start_one": micros(&f.start_one),
                "create_start": micros(&f.create_start),
                "remove_one": micros(&f.remove_one),
            },
            "rss_kib": f.rss_kib,
            "rss_engine": f.rss_engine,
        }),
        Half::Failed(e) => json!({"status": "failed", "error": format!("{e:#}")}),
        Half::Skipped(why) => json!({"status": "skipped", "reason": why}),
    }
}

/// Milliseconds to the microsecond, for a readable JSON file.
fn micros(ms: &[f64]) -> Vec<f64> {
    ms.iter().map(|m| (m * 1000.0).round() / 1000.0).collect()
}

/// Writes the raw samples (JSON) and the table (Markdown) under `target/bench/`.
fn write_outputs(
    cfg: &Config,
    machine: &Value,
    versions: &Value,
    devenv: &Half,
    docker: &Half,
    table: &str,
) -> Result<PathBuf> {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().context("target dir")?;
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    let doc = json!({
        "bench": "lifecycle",
        "rounds": cfg.rounds,
        "warmups": WARMUPS,
        "machine": machine,
        "versions": versions,
        "devenv": samples_json(devenv),
        "docker": samples_json(docker),
    });
    let path = dir.join("lifecycle.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
    std::fs::write(dir.join("lifecycle.md"), table)?;
    Ok(path)
}

/// Create + start of a busybox `true` container through devenv's runtime driver, on one prepared
/// bundle (overlay over the store's layers, spec from the library): the per-container cost of
/// `up` without the CLI, supervisor and state around it. The first run, which pays for the
/// sealed copy of the helper binary, is left out as a warm-up.
fn create_start(bin: &Path, home: &Path, runs: usize) -> Result<Vec<f64>> {
    use devenv::config::forms::Command as Cmd;
    use devenv::config::model::Service;
    use devenv::image::{Reference, Store};
    use devenv::runtime::spec::{build_spec, NetworkNamespace, SpecInput};
    use devenv::runtime::{cgroups_path, init_binary, rootfs, try_wait_exit, write_bundle};
    use devenv::runtime::{Runtime, Stdio as RtStdio, Youki};

    devenv::runtime::set_child_subreaper()?;
    let store = Store::open(home.join("images"))?;
    let image = store.resolve(&Reference::parse(IMAGE)?)?.context("the busybox image is loaded")?;
    let work = tempfile::Builder::new().prefix("devenv-bench-rt").tempdir()?;
    let (bundle, upper, wdir) =
        (work.path().join("b"), work.path().join("u"), work.path().join("w"));
    let root = bundle.join("rootfs");
    for d in [&root, &upper, &wdir] {
        std::fs::create_dir_all(d)?;
    }
    rootfs::mount_overlay(&image.layers, &upper, &wdir, &root)?;
    let result = (|| -> Result<Vec<f64>> {
        let service = Service { command: Some(Cmd(vec!["true".into()])), ..Service::default() };
        let config = image.config.config().clone().unwrap_or_default();
        let init = init_binary(&work.path().join("bin"))?;
        let mut spec = build_spec(&SpecInput {
            service_name: "one",
            service: &service,
            image_config: &config,
            rootfs: &root,
            network: NetworkNamespace::New,
            volume_dirs: &|n| work.path().join(n),
            hosts_file: None,
            resolv_conf: None,
            init: Some(&init),
            extra_env: &[],
        })?;
        devenv::runtime::driver::fit_rlimits(&mut spec);
        let runtime = Youki::new(work.path().join("state"), bin);
        let mut times = Vec::new();
        for i in 0..runs + 1 {
            let id = format!("bench-rt-{}-{i}", std::process::id());
            write_bundle(&bundle, &mut spec, &cgroups_path("devenv-bench", &id))?;
            let log = std::fs::File::create(work.path().join("log"))?;
            let stdio =
                RtStdio { stdin: None, stdout: log.try_clone()?.into(), stderr: log.into() };
            let t = Instant::now();
            let pid = runtime.create(&id, &bundle, stdio)?;
            runtime.start(&id)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let deadline = Instant::now() + Duration::from_secs(10);
            while try_wait_exit(pid)?.is_none() {
                ensure!(Instant::now() < deadline, "container {id} did not exit");
                std::thread::sleep(Duration::from_millis(1));
            }
            runtime.delete(&id, true)?;
        }
        let _ = devenv::runtime::remove_project_cgroups("devenv-bench");
        Ok(times.split_off(1))
    })();
    rootfs::unmount(&root)?;
    result
}
