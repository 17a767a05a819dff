//! Real containers from the fixture images, driven through the `devenv` binary as a user would:
//! `up -d`, `ps`, `logs`, `down`, checked with real clients (redis-cli, curl), and with the host
//! checked for leftovers after every test.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::env::{eventually, free_port, DevEnv};
use support::images::Fixture;

fn root() -> bool {
    if !support::is_root() {
        eprintln!("skipped: needs root to run containers");
    }
    support::is_root()
}

#[test]
fn redis_on_the_host_network_answers_and_down_removes_it() {
    if !root() {
        return;
    }
    let env = DevEnv::new("redis").with_images(&[(Fixture::Redis, "redis:7")]);
    let port = free_port().to_string();
    env.write(
        "devenv.yaml",
        &format!("services:\n  redis:\n    image: redis:7\n    network_mode: host\n    command: [redis-server, --port, \"{port}\", --save, \"\"]\n"),
    );
    env.ok(&["up", "-d"]);
    let (state, pid) = env.service("redis");
    assert_eq!(state, "running");
    assert!(pid.is_some());
    eventually(10, "redis to answer PING", || {
        let out = Command::new("redis-cli").args(["-p", &port, "ping"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "PONG"
    });
    env.ok(&["down"]);
    assert!(env.ps().is_empty());
    env.assert_clean();
}

#[test]
fn python_runs_a_script_from_the_bind_mounted_directory_read_only() {
    if !root() {
        return;
    }
    let env = DevEnv::new("python").with_images(&[(Fixture::Python, "python:3.11")]);
    env.write("data.txt", "forty-two\n");
    env.write(
        "script.py",
        "import os\nprint('read:', open('data.txt').read().strip())\ntry:\n    open('/app/new.txt', 'w')\nexcept OSError as e:\n    print('write refused:', e.errno)\n",
    );
    env.write(
        "devenv.yaml",
        "services:\n  app:\n    image: python:3.11\n    network_mode: none\n    working_dir: /app\n    volumes: [\".:/app:ro\"]\n    command: python3 script.py\n",
    );
    env.ok(&["up", "-d"]);
    eventually(20, "the script to finish", || env.service("app").0 == "exited (0)");
    let logs = env.ok(&["logs", "--no-color", "app"]);
    assert!(logs.contains("app | read: forty-two"), "{logs}");
    assert!(logs.contains("write refused: 30"), "EROFS expected: {logs}");
    assert!(!env.path("new.txt").exists());
}

#[test]
fn nginx_on_the_host_network_serves_a_mounted_site() {
    if !root() {
        return;
    }
    let env = DevEnv::new("nginx").with_images(&[(Fixture::Nginx, "nginx:1.22")]);
    let port = free_port();
    env.write("site/index.html", "hello from the bind mount\n");
    env.write(
        "conf/default.conf",
        &format!("server {{ listen 127.0.0.1:{port}; root /srv/site; }}\n"),
    );
    env.write(
        "devenv.yaml",
        "services:\n  web:\n    image: nginx:1.22\n    network_mode: host\n    volumes:\n      - ./site:/srv/site:ro\n      - ./conf:/etc/nginx/conf.d:ro\n",
    );
    env.ok(&["up", "-d"]);
    let url = format!("http://127.0.0.1:{port}/");
    eventually(10, "nginx to serve", || {
        let out = Command::new("curl").args(["-s", &url]).output().unwrap();
        String::from_utf8_lossy(&out.stdout) == "hello from the bind mount\n"
    });
}

#[test]
fn network_mode_none_has_only_loopback_and_it_is_up() {
    if !root() {
        return;
    }
    let env = DevEnv::new("none").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write(
        "devenv.yaml",
        "services:\n  box:\n    image: busybox:1.35\n    network_mode: none\n    command: [sh, -c, \"ip -o link; echo done\"]\n",
    );
    env.ok(&["up", "-d"]);
    eventually(10, "the command to finish", || env.service("box").0 == "exited (0)");
    let logs = env.ok(&["logs", "--no-color"]);
    let links: Vec<&str> = logs.lines().filter(|l| l.contains(": <")).collect();
    assert_eq!(links.len(), 1, "{logs}");
    assert!(links[0].contains("lo: <LOOPBACK,UP"), "{logs}");
}

#[test]
fn up_reconciles_only_what_changed() {
    if !root() {
        return;
    }
    let env = DevEnv::new("reconcile").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    let file = |b_cmd: &str, with_b: bool| {
        let mut s = String::from("services:\n  a:\n    image: busybox:1.35\n    network_mode: none\n    command: sleep 1000\n");
        if with_b {
            s.push_str(&format!(
                "  b:\n    image: busybox:1.35\n    network_mode: none\n    command: {b_cmd}\n"
            ));
        }
        s
    };
    env.write("devenv.yaml", &file("sleep 1000", true));
    env.ok(&["up", "-d"]);
    let (a1, b1) = (env.service("a").1.unwrap(), env.service("b").1.unwrap());

    let out = env.command(&["up", "-d"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 unchanged"), "{out:?}");
    assert_eq!((env.service("a").1, env.service("b").1), (Some(a1), Some(b1)));

    env.write("devenv.yaml", &file("sleep 999", true));
    env.ok(&["up", "-d"]);
    assert_eq!(env.service("a").1, Some(a1), "a did not change and keeps its process");
    let b2 = env.service("b").1.unwrap();
    assert_ne!(b2, b1, "b changed and was recreated");

    env.write("devenv.yaml", &file("", false));
    env.ok(&["up", "-d"]);
    let services: Vec<String> =
        env.ps().iter().map(|r| r["service"].as_str().unwrap().to_owned()).collect();
    assert_eq!(services, vec!["a"]);
    assert!(std::fs::read_to_string(format!("/proc/{b2}/stat")).is_err(), "b's process is gone");
}

#[test]
fn down_with_nothing_running_exits_0() {
    if !root() {
        return;
    }
    let env = DevEnv::new("empty");
    env.write("devenv.yaml", "services:\n  a:\n    image: busybox:1.35\n");
    env.ok(&["down"]);
}

#[test]
fn after_the_supervisor_is_killed_up_adopts_and_down_removes() {
    if !root() {
        return;
    }
    let env = DevEnv::new("adopt").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write("devenv.yaml", "services:\n  a:\n    image: busybox:1.35\n    network_mode: none\n    command: sleep 1000\n");
    env.ok(&["up", "-d"]);
    let pid = env.service("a").1.unwrap();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            env.home.path().join("projects").join(&env.project).join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let sup = state["supervisor"][0].as_i64().unwrap() as i32;
    Command::new("kill").args(["-9", &sup.to_string()]).status().unwrap();
    eventually(5, "the supervisor to die", || {
        std::fs::read_to_string(format!("/proc/{sup}/stat")).map_or(true, |s| s.contains(") Z"))
    });
    env.ok(&["up", "-d"]);
    assert_eq!(env.service("a"), ("running".to_string(), Some(pid)), "adopted, not duplicated");
    env.ok(&["down"]);
    env.assert_clean();
}

#[test]
fn a_missing_image_is_reported_and_nothing_is_created() {
    if !root() {
        return;
    }
    let env = DevEnv::new("noimage");
    // Never pulled: by `--pull never`, then by the file's `pull_policy`.
    env.write("devenv.yaml", "services:\n  a:\n    image: redis:7\n    network_mode: none\n");
    let (code, err) = env.fails(&["up", "-d", "--pull", "never"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("docker.io/library/redis:7 is not in the image store"), "{err}");
    assert!(err.contains("devenv image load"), "{err}");
    env.write(
        "devenv.yaml",
        "services:\n  a:\n    image: redis:7\n    network_mode: none\n    pull_policy: never\n",
    );
    let (code, err) = env.fails(&["up", "-d"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("docker.io/library/redis:7 is not in the image store"), "{err}");
    // By default a missing image is pulled first; one that cannot be is named.
    env.write("devenv.yaml", "services:\n  a:\n    image: registry.invalid/a:1\n");
    let (code, err) = env.fails(&["up", "-d"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("could not pull registry.invalid/a:1"), "{err}");
    assert!(env.ps().is_empty());
    env.assert_clean();
}

#[test]
fn a_missing_command_exits_127_and_the_others_keep_running() {
    if !root() {
        return;
    }
    let env = DevEnv::new("e127").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write(
        "devenv.yaml",
        "services:\n  ok:\n    image: busybox:1.35\n    network_mode: none\n    command: sleep 1000\n  bad:\n    image: busybox:1.35\n    network_mode: none\n    command: no-such-program\n",
    );
    env.ok(&["up", "-d"]);
    eventually(10, "bad to exit", || env.service("bad").0 == "exited (127)");
    assert_eq!(env.service("ok").0, "running");
}

#[test]
fn a_file_bound_over_a_directory_is_refused_and_nothing_remains() {
    if !root() {
        return;
    }
    let env = DevEnv::new("bindfile").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write("hosts.txt", "x\n");
    env.write(
        "devenv.yaml",
        "services:\n  first:\n    image: busybox:1.35\n    network_mode: none\n    command: sleep 1000\n  a:\n    image: busybox:1.35\n    network_mode: none\n    depends_on: [first]\n    volumes: [\"./hosts.txt:/etc\"]\n",
    );
    let (code, err) = env.fails(&["up", "-d"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is a file, but /etc is a directory in the image"), "{err}");
    assert!(env.ps().is_empty(), "the attempt's containers are removed too");
    env.assert_clean();
}

#[test]
fn init_stops_a_sigterm_ignoring_pid_1_at_once() {
    if !root() {
        return;
    }
    let env = DevEnv::new("init").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write(
        "devenv.yaml",
        "services:\n  s:\n    image: busybox:1.35\n    network_mode: none\n    command: sleep 1000\n    stop_grace_period: 30s\n",
    );
    env.ok(&["up", "-d"]);
    let t = Instant::now();
    env.ok(&["down"]);
    assert!(t.elapsed() < Duration::from_secs(5), "down took {:?}", t.elapsed());
}

#[test]
fn a_second_command_waits_for_the_lock_and_says_for_whom() {
    if !root() {
        return;
    }
    let env = DevEnv::new("lock").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write("devenv.yaml", "services:\n  a:\n    image: busybox:1.35\n    network_mode: none\n    command: sleep 1000\n");
    let lock_dir = env.home.path().join("projects").join(&env.project);
    std::fs::create_dir_all(&lock_dir).unwrap();
    let lock = lock_dir.join("lock");
    std::fs::write(&lock, "`devenv down` (pid 1)").unwrap();
    let mut holder = Command::new("flock").arg(&lock).args(["sleep", "1"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = env.command(&["up", "-d"]).output().unwrap();
    holder.wait().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("waiting for `devenv down` (pid 1) to finish with project"), "{err}");
}

#[test]
fn foreground_up_streams_prefixed_output_and_ctrl_c_removes_everything() {
    if !root() {
        return;
    }
    let env = DevEnv::new("fg").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write(
        "devenv.yaml",
        "services:\n  talker:\n    image: busybox:1.35\n    network_mode: none\n    command: [sh, -c, \"echo hello from talker; exec sleep 1000\"]\n",
    );
    let mut child = env
        .command(&["up", "--no-color"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "talker | hello from talker");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(env.ps().is_empty());
    env.assert_clean();
}

#[test]
fn exec_and_cp_through_the_cli_on_the_host_network() {
    if !root() {
        return;
    }
    let env = DevEnv::new("exec").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write("devenv.yaml", "services:\n  s:\n    image: busybox:1.35\n    network_mode: host\n    command: sleep 1000\n");
    env.ok(&["up", "-d"]);

    // The host's network stack: the same interfaces inside as outside.
    let names = |text: &str| -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let inside = env.ok(&["exec", "s", "ip", "-o", "link"]);
    let host = String::from_utf8(Command::new("ip").args(["-o", "link"]).output().unwrap().stdout)
        .unwrap();
    assert_eq!(names(&inside), names(&host));

    let out = env.run(&["exec", "-e", "CODE=5", "s", "sh", "-c", "exit $CODE"]);
    assert_eq!(out.status.code(), Some(5));
    let out = env.run(&["exec", "s", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));

    let src = env.write("note.txt", "copied in\n");
    std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o751)).unwrap();
    env.ok(&["cp", src.to_str().unwrap(), "s:/tmp/"]);
    assert_eq!(env.ok(&["exec", "s", "cat", "/tmp/note.txt"]), "copied in\n");
    assert!(env.ok(&["exec", "s", "ls", "-l", "/tmp/note.txt"]).starts_with("-rwxr-x--x"));
    let back = env.path("back.txt");
    env.ok(&["cp", "s:/tmp/note.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied in\n");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&back).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o751);
}

#[test]
fn exec_with_a_terminal_gives_an_interactive_shell() {
    if !root() {
        return;
    }
    let env = DevEnv::new("tty").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write("devenv.yaml", "services:\n  s:\n    image: busybox:1.35\n    network_mode: none\n    command: sleep 1000\n");
    env.ok(&["up", "-d"]);
    let session = env.project.clone();
    let cmd = format!(
        "DEVENV_HOME={} {} -p {} exec -i -t s sh; echo exited-$? > {}",
        env.home.path().display(),
        env!("CARGO_BIN_EXE_devenv"),
        env.project,
        env.path("status").display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().unwrap();
    assert!(tmux(&["new-session", "-d", "-s", &session, "-x", "80", "-y", "24", &cmd])
        .status
        .success());
    let screen =
        || String::from_utf8(tmux(&["capture-pane", "-p", "-t", &session]).stdout).unwrap();
    eventually(10, "a prompt", || screen().contains('#'));
    tmux(&["send-keys", "-t", &session, "echo $((6*7))", "Enter"]);
    eventually(10, "the answer", || screen().lines().any(|l| l.trim() == "42"));
    // Arrow up recalls the last command: line editing works through the terminal.
    tmux(&["send-keys", "-t", &session, "Up", "Enter"]);
    eventually(10, "the recalled answer", || {
        screen().lines().filter(|l| l.trim() == "42").count() == 2
    });
    tmux(&["send-keys", "-t", &session, "exit 3", "Enter"]);
    eventually(10, "the shell to exit", || {
        std::fs::read_to_string(env.path("status")).is_ok_and(|s| s.trim() == "exited-3")
    });
    let _ = tmux(&["kill-session", "-t", &session]);
}

#[test]
fn named_volumes_are_seeded_from_the_image_and_kept_until_down_v() {
    if !root() {
        return;
    }
    let env = DevEnv::new("volume").with_images(&[(Fixture::Nginx, "nginx:1.22")]);
    env.write(
        "devenv.yaml",
        "services:\n  web:\n    image: nginx:1.22\n    network_mode: none\n    volumes: [\"html:/usr/share/nginx/html\"]\n    tmpfs: [/scratch]\nvolumes:\n  html: {}\n",
    );
    env.ok(&["up", "-d"]);
    let data = env.home.path().join("volumes").join(format!("{}_html", env.project)).join("_data");
    let index = std::fs::read_to_string(data.join("index.html")).unwrap();
    assert_eq!(
        env.ok(&["exec", "web", "cat", "/usr/share/nginx/html/index.html"]),
        index,
        "seeded from the image"
    );
    env.ok(&["exec", "web", "sh", "-c", "echo kept > /usr/share/nginx/html/mine.txt"]);
    assert!(env.ok(&["exec", "web", "grep", " /scratch ", "/proc/mounts"]).contains("tmpfs"));
    env.ok(&["down"]);
    assert_eq!(std::fs::read_to_string(data.join("mine.txt")).unwrap(), "kept\n");
    env.ok(&["up", "-d"]);
    assert_eq!(env.ok(&["exec", "web", "cat", "/usr/share/nginx/html/mine.txt"]), "kept\n");
    env.ok(&["down", "-v"]);
    assert!(!data.exists());
}

#[test]
fn attaching_to_a_running_project_follows_it_and_ctrl_c_takes_it_down() {
    if !root() {
        return;
    }
    let env = DevEnv::new("attach").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write(
        "devenv.yaml",
        "services:\n  ticker:\n    image: busybox:1.35\n    network_mode: none\n    command: [sh, -c, \"sleep 0.5; while true; do echo tick; sleep 0.2; done\"]\n",
    );
    env.ok(&["up", "-d"]);
    let mut child = env
        .command(&["up", "--no-color"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ticker | tick");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(env.ps().is_empty(), "Ctrl-C took the project down");
    env.assert_clean();
}
