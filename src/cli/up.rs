//! `devenv up`: converge the project. A running supervisor gets the request; otherwise one is
//! started, in this process (foreground, streaming every service's output until Ctrl-C, which
//! takes the project down) or forked into the background (`-d`), returning once it converged.

use std::io::{BufRead, BufReader, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::unistd::{fork, ForkResult};

use super::{engine, ProjectArgs};
use crate::config::model::PullPolicy;
use crate::config::{self, LoadOptions};
use crate::image::{Reference, Store};
use crate::logs::Follower;
use crate::state::{Home, ProjectLock};
use crate::supervisor::protocol::{self, ProjectRef, Request, Response};
use crate::supervisor::{self, Exit, Supervisor};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Run in the background: return once every service is started.
    #[arg(short, long)]
    pub detach: bool,
    /// Run in the background and return once every service runs and is healthy (one-shot
    /// services: completed successfully); fail if one exits with an error or is unhealthy.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long, like `2m` (default: no limit).
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub wait_timeout: Option<crate::config::units::Duration>,
    /// Do not colour the service prefixes.
    #[arg(long)]
    pub no_color: bool,
    /// When to pull images, for every service: `missing`, `always` or `never`; by default each
    /// service's `pull_policy` (itself `missing` by default).
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<PullPolicy>,
    /// Do not watch: neither the services' `watch` rules nor the project file.
    #[arg(long)]
    pub no_watch: bool,
    /// How long file changes must stop before devenv acts on them, like `50ms` or `1s`.
    #[arg(long, value_name = "DURATION", default_value = "50ms")]
    pub debounce: crate::config::units::Duration,
    /// Start only these services (and what they depend on).
    pub services: Vec<String>,
}

pub fn run(project: &ProjectArgs, args: &UpArgs) -> anyhow::Result<()> {
    let opts = project.load_options().context("reading the working directory")?;
    let p = config::load(&opts)?;
    for w in &p.warnings {
        eprintln!("{w}");
    }
    // The supervisor reloads the file it was started from, wherever it runs from.
    let options = LoadOptions { file: Some(p.file.clone()), ..opts.clone() };
    let pref = ProjectRef {
        options,
        profiles: project.active_profiles(),
        services: args.services.clone(),
        no_watch: args.no_watch,
        debounce_ms: Some(args.debounce.0.as_millis() as u64),
    };
    let wanted = supervisor::wanted_services(&p, &pref)?;
    let home = Home::from_env();
    // Pulling starts threads and joins them all before returning: `-d` forks below.
    pull_for_up(&p, &wanted, args.pull, &home)?;
    let name = p.name.clone();
    let lock = ProjectLock::acquire(&home.project(&name), "up", |holder| {
        eprintln!("waiting for {holder} to finish with project {name}...")
    })?;

    let detach = args.detach || args.wait;
    let wait = |()| match args.wait {
        true => super::wait::wait_ready(&home, &p, &wanted, args.wait_timeout.map(|d| d.0)),
        false => Ok(()),
    };
    let colour = !args.no_color && std::io::stdout().is_terminal();
    let services: Vec<(String, std::path::PathBuf)> =
        wanted.iter().map(|s| (s.clone(), home.log_file(&name, s))).collect();
    // A supervisor already runs the project: it reconciles.
    if let Some(resp) = protocol::call(
        &home.socket(&name),
        &Request::Reconcile { project: Box::new(pref.clone()) },
        None,
    )? {
        drop(lock);
        match resp {
            Response::Ok { message, .. } => eprintln!("{name}: {message}"),
            Response::Error { message } => bail!(message),
        }
        if detach {
            return wait(());
        }
        // Attached to a project a supervisor runs: Ctrl-C takes it down, as in Compose.
        let mut follower = Follower::from_end(&services, colour);
        on_interrupt()?;
        let interrupted = || INTERRUPTED.load(Ordering::Relaxed);
        follower.follow(&mut std::io::stdout(), Duration::from_millis(50), &interrupted)?;
        let _lock = ProjectLock::acquire(&home.project(&name), "up", |_| {})?;
        match super::down::down_via_supervisor(&home, &name, false)? {
            Some(Response::Error { message }) => bail!(message),
            _ => eprintln!("{name}: stopped and removed"),
        }
        return Ok(());
    }

    let sup = Supervisor {
        home: home.clone(),
        engine: engine(&home)?,
        project: pref,
        foreground: !detach,
    };
    if detach {
        return self::detach(sup, &home, &name, lock).and_then(wait);
    }

    // Foreground: follow the logs on a thread while the supervisor runs here.
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let stop = stop.clone();
        let mut f = Follower::from_end(&services, colour);
        std::thread::spawn(move || {
            f.follow(&mut std::io::stdout(), Duration::from_millis(50), &|| {
                stop.load(Ordering::Relaxed)
            })
        })
    };
    let failed = Arc::new(std::sync::Mutex::new(None));
    let f2 = failed.clone();
    let n2 = name.clone();
    let exit = sup.run(Box::new(move |r| {
        drop(lock);
        match r {
            Ok(m) => eprintln!("{n2}: {m}; press Ctrl-C to stop"),
            Err(m) => *f2.lock().expect("flag") = Some(m),
        }
    }));
    stop.store(true, Ordering::Relaxed);
    let _ = follower.join();
    if let Some(m) = failed.lock().expect("flag").take() {
        bail!(m);
    }
    if exit == Exit::Down {
        eprintln!("{name}: stopped and removed");
    }
    Ok(())
}

/// Pulls what the services' pull policies (or `--pull`) ask for. A stored image that no longer
/// resolves (a blob gone) counts as missing: pulling fetches it again.
fn pull_for_up(
    p: &config::Project,
    wanted: &[String],
    flag: Option<PullPolicy>,
    home: &Home,
) -> anyhow::Result<()> {
    let store = Store::open(home.images())?;
    let stored = |r: &Reference| matches!(store.resolve(r), Ok(Some(_)));
    let images = images_to_pull(p, wanted, flag, stored);
    super::pull::pull_images(&store, &images, false)
}

/// `always`: every image; `missing`: those not stored; `never`: none (starting then fails on a
/// missing image, as it says). Each image once.
fn images_to_pull(
    p: &config::Project,
    wanted: &[String],
    flag: Option<PullPolicy>,
    stored: impl Fn(&Reference) -> bool,
) -> Vec<Reference> {
    let mut images: Vec<Reference> = Vec::new();
    for name in wanted {
        let svc = &p.model.services[name];
        // A bad reference is reported by the engine, with the service it belongs to.
        let Some(Ok(reference)) = svc.image.as_deref().map(Reference::parse) else { continue };
        let pull = match flag.unwrap_or_else(|| svc.pull_policy()) {
            PullPolicy::Always => true,
            PullPolicy::Missing => !stored(&reference),
            PullPolicy::Never => false,
        };
        if pull && !images.contains(&reference) {
            images.push(reference);
        }
    }
    images
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Turns SIGINT into a flag the log follower checks.
fn on_interrupt() -> anyhow::Result<()> {
    extern "C" fn handler(_: libc::c_int) {
        INTERRUPTED.store(true, Ordering::Relaxed);
    }
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { signal(Signal::SIGINT, SigHandler::Handler(handler)) }.context("handling Ctrl-C")?;
    Ok(())
}

/// Forks the supervisor into the background and waits for its readiness line.
fn detach(sup: Supervisor, home: &Home, name: &str, lock: ProjectLock) -> anyhow::Result<()> {
    let (read, write) = nix::unistd::pipe().context("creating the readiness pipe")?;
    let log = supervisor::log_path(home, name);
    std::fs::create_dir_all(home.run_dir(name))?;
    // SAFETY: this process has no other thread (the CLI is single-threaded until here: the pull
    // joined its threads and its progress bars never start one), so the child may do anything
    // after fork.
    match unsafe { fork() }.context("forking the supervisor")? {
        ForkResult::Child => {
            drop(read);
            drop(lock); // the parent keeps holding it until the child is ready
            let _ = nix::unistd::setsid();
            redirect_stdio(&log);
            let exit = sup.run(supervisor::pipe_ready(write));
            std::process::exit(if exit == Exit::Failed { 1 } else { 0 })
        }
        ForkResult::Parent { child } => {
            drop(write);
            let mut line = String::new();
            BufReader::new(std::fs::File::from(read)).read_line(&mut line)?;
            drop(lock);
            match line.trim_end().split_once(' ') {
                Some(("ok", m)) => {
                    eprintln!("{name}: {m} (supervisor pid {child})");
                    Ok(())
                }
                Some(("error", m)) => bail!("{m}"),
                _ => bail!("the supervisor exited before it was ready; see {}", log.display()),
            }
        }
    }
}

fn redirect_stdio(log: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let null = std::fs::File::open("/dev/null");
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log);
    if let (Ok(null), Ok(out)) = (null, out) {
        // SAFETY: dup2 on descriptors we own; the child has no other threads yet.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(out.as_raw_fd(), 1);
            libc::dup2(out.as_raw_fd(), 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_choose_the_images() {
        let text =
            "services:\n  a:\n    image: a:1\n  b:\n    image: b:1\n    pull_policy: always\n  \
                    c:\n    image: c:1\n    pull_policy: never\n  d:\n    image: a:1\n";
        let dir = std::path::Path::new("/nonexistent/p");
        let p = config::load_str(&dir.join("devenv.yaml"), text, dir, Default::default(), None)
            .unwrap();
        let all: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let names = |flag, stored: &[&str]| -> Vec<String> {
            let stored: Vec<Reference> =
                stored.iter().map(|s| Reference::parse(s).unwrap()).collect();
            images_to_pull(&p, &all, flag, |r| stored.contains(r))
                .iter()
                .map(Reference::familiar)
                .collect()
        };
        assert_eq!(names(None, &[]), ["a:1", "b:1"]);
        assert_eq!(names(None, &["a:1", "b:1"]), ["b:1"]);
        assert_eq!(names(Some(PullPolicy::Always), &["a:1", "b:1", "c:1"]), ["a:1", "b:1", "c:1"]);
        assert_eq!(names(Some(PullPolicy::Missing), &["a:1"]), ["b:1", "c:1"]);
        assert!(names(Some(PullPolicy::Never), &[]).is_empty());
    }
}
