//! Readiness and lifecycle end to end, as root, with real containers: healthchecks gating
//! `depends_on` (`service_healthy`, `service_completed_successfully`, `required: false`),
//! `up --wait` and its timeout, restart policies with their backoff, `restart: true` dependents,
//! profiles, and independent branches starting in parallel. Every test checks that nothing is
//! left on the host.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::env::{eventually, DevEnv};
use support::images::Fixture;
use support::watch::{is_event, Events};

fn root() -> bool {
    if !support::is_root() {
        eprintln!("skipped: needs root to run containers");
    }
    support::is_root()
}

fn inspect(env: &DevEnv, service: &str, field: &str) -> String {
    env.ok(&["inspect", "--format", &format!("{{{{.{field}}}}}"), service]).trim().to_owned()
}

/// `inspect -f '{{json .health}}'`, parsed.
fn health(env: &DevEnv, service: &str) -> Value {
    let text = env.ok(&["inspect", "-f", "{{json .health}}", service]);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("health {text:?}: {e}"))
}

/// A service's row of `ps --format json`.
fn row(env: &DevEnv, service: &str) -> Value {
    env.ps()
        .into_iter()
        .find(|r| r["service"] == service)
        .unwrap_or_else(|| panic!("no service {service} in ps"))
}

/// The services `ps` lists, sorted.
fn services(env: &DevEnv) -> Vec<String> {
    let mut v: Vec<String> =
        env.ps().iter().map(|r| r["service"].as_str().unwrap().to_owned()).collect();
    v.sort();
    v
}

/// The pid of a running service, from `ps`.
fn pid(env: &DevEnv, service: &str) -> i32 {
    let (state, pid) = env.service(service);
    assert!(state.starts_with("running"), "{service} is {state}");
    pid.unwrap_or_else(|| panic!("{service} has no pid"))
}

/// `down`, then nothing is left.
fn down_clean(env: &DevEnv) {
    env.ok(&["down", "-v"]);
    assert!(env.ps().is_empty(), "ps after down: {:?}", env.ps());
    env.assert_clean();
}

/// Seconds since boot from a line of /proc/uptime (its first field, in centiseconds).
fn uptime_ms(line: &str) -> u64 {
    let first = line.split_whitespace().next().unwrap_or_else(|| panic!("uptime line {line:?}"));
    let (s, cs) = first.split_once('.').unwrap_or((first, "0"));
    s.parse::<u64>().unwrap() * 1000 + cs.parse::<u64>().unwrap() * 10
}

/// Milliseconds since the epoch of an event's `time` (RFC 3339, UTC, with milliseconds).
fn event_ms(v: &Value) -> i64 {
    let t = v["time"].as_str().unwrap_or_else(|| panic!("no time in {v}"));
    let num = |r: std::ops::Range<usize>| -> i64 { t[r].parse().unwrap() };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    let ms = t[19..].trim_end_matches('Z').trim_start_matches('.');
    let ms: i64 = if ms.is_empty() { 0 } else { format!("{ms:0<3}")[..3].parse().unwrap() };
    // Days from 1970-01-01 to y-m-d (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms
}

#[test]
fn event_times_parse() {
    let v = serde_json::json!({"time": "2024-01-01T00:00:01.250Z"});
    assert_eq!(event_ms(&v), 1_704_067_201_250);
    assert_eq!(uptime_ms("12.34 56.78"), 12_340);
}

/// (1) A redis with `redis-cli ping` as its check gates its dependent, which finds it answering;
/// `ps` and `inspect` show the health; `up --wait` returns once the check passed.
#[test]
fn a_healthy_redis_gates_its_dependent_and_up_wait_returns_once_healthy() {
    if !root() {
        return;
    }
    let env = DevEnv::new("healthy").with_images(&[(Fixture::Redis, "redis:7")]);
    let redis = "  redis:\n    image: redis:7\n    command: [redis-server, --save, \"\", --protected-mode, \"no\"]\n    healthcheck:\n      test: [\"CMD\", \"redis-cli\", \"ping\"]\n      interval: 1s\n";
    let app = "  app:\n    image: redis:7\n    command: [sh, -c, \"redis-cli -h redis ping > /tmp/first 2>&1; exec sleep 1000\"]\n    depends_on:\n      redis:\n        condition: service_healthy\n";
    env.write("devenv.yaml", &format!("services:\n{redis}{app}"));
    env.ok(&["up", "-d"]);
    // app started only once redis was healthy, so its very first ping was answered.
    // `up -d` returns once app's process runs; its first ping follows.
    let mut first = String::new();
    eventually(5, "app's first ping", || {
        let out = env.run(&["exec", "app", "cat", "/tmp/first"]);
        first = String::from_utf8_lossy(&out.stdout).into_owned();
        first.ends_with('\n')
    });
    assert_eq!(first.trim(), "PONG", "app's first ping");
    let table = env.ok(&["ps"]);
    let line = table.lines().find(|l| l.starts_with("redis ")).unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("running (healthy)"), "{table}");
    let r = row(&env, "redis");
    assert_eq!((r["state"].as_str(), r["health"].as_str()), (Some("running"), Some("healthy")));
    let h = health(&env, "redis");
    assert_eq!(h["status"], "healthy", "{h}");
    assert_eq!(h["failing_streak"], 0, "{h}");
    let log = h["log"].as_array().unwrap_or_else(|| panic!("no log: {h}"));
    assert!(
        log.iter()
            .any(|p| p["exit_code"] == 0 && p["output"].as_str().map(str::trim) == Some("PONG")),
        "a passing check with output PONG: {h}"
    );
    let last = log.last().unwrap();
    assert!(last["start"].as_str().is_some_and(|s| s.ends_with('Z')), "{last}");
    assert!(last["end"].as_str().is_some_and(|s| s.ends_with('Z')), "{last}");
    // app has no check: no health.
    assert_eq!(row(&env, "app")["health"], Value::Null);
    down_clean(&env);

    // Alone, redis is not waited for by `up -d`; `up --wait` returns only once it is healthy.
    env.write("devenv.yaml", &format!("services:\n{redis}"));
    let t = Instant::now();
    env.ok(&["up", "--wait", "--wait-timeout", "10s"]);
    let took = t.elapsed();
    let h = health(&env, "redis");
    assert_eq!(h["status"], "healthy", "right after up --wait: {h}");
    assert_eq!(row(&env, "redis")["health"], "healthy");
    assert!(took < Duration::from_secs(5), "up --wait took {took:?}: the early probes");
    down_clean(&env);
}

/// (2) A check that keeps failing makes its dependency unhealthy: `up` fails naming the chain and
/// the last output, and leaves nothing; with `required: false` the dependent starts anyway.
#[test]
fn an_unhealthy_dependency_blocks_its_dependent_unless_not_required() {
    if !root() {
        return;
    }
    let env = DevEnv::new("unhealthy").with_images(&[(Fixture::Busybox, "busybox")]);
    let file = |required: bool| {
        format!(
            r#"services:
  dep:
    image: busybox
    network_mode: none
    command: [sleep, "1000"]
    healthcheck:
      test: ["CMD-SHELL", "echo nope; exit 1"]
      interval: 200ms
      retries: 2
  web:
    image: busybox
    network_mode: none
    command: [sleep, "1000"]
    depends_on:
      dep:
        condition: service_healthy
        required: {required}
"#
        )
    };
    env.write("devenv.yaml", &file(true));
    let t = Instant::now();
    let (code, err) = env.fails(&["up", "-d"]);
    let took = t.elapsed();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("service \"web\""), "names the dependent: {err}");
    assert!(err.contains("\"dep\""), "names the dependency: {err}");
    assert!(err.contains("unhealthy"), "{err}");
    assert!(err.contains("nope"), "the last check's output: {err}");
    assert!(err.contains("exited 1"), "the last check's exit code: {err}");
    assert!(took < Duration::from_secs(8), "failed after {took:?}");
    assert!(env.ps().is_empty(), "a failed first up leaves nothing: {:?}", env.ps());
    env.assert_clean();

    env.write("devenv.yaml", &file(false));
    env.ok(&["up", "-d"]);
    assert_eq!(env.service("web").0, "running");
    eventually(10, "dep unhealthy in ps", || row(&env, "dep")["health"] == "unhealthy");
    let table = env.ok(&["ps"]);
    assert!(table.contains("running (unhealthy)"), "{table}");
    let h = health(&env, "dep");
    assert!(h["failing_streak"].as_u64().unwrap() >= 2, "{h}");
    let last = h["log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["exit_code"].as_i64(), last["output"].as_str()), (Some(1), Some("nope\n")));
    down_clean(&env);
}

const MIGRATE_WEB: &str = r#"services:
  migrate:
    image: busybox
    network_mode: none
    restart: "no"
    volumes: ["./shared:/shared"]
    command: [sh, -c, "echo run >> /shared/runs; sleep 0.5; cat /proc/uptime > /shared/ok; exit CODE"]
  web:
    image: busybox
    network_mode: none
    volumes: ["./shared:/shared"]
    environment:
      V: "VERSION"
    command: [sh, -c, "cat /proc/uptime > /shared/web_at; if test -f /shared/ok; then echo yes; else echo no; fi > /shared/web; exec sleep 1000"]
    depends_on:
      migrate:
        condition: service_completed_successfully
"#;

fn migrate_web(code: i32, version: u32) -> String {
    MIGRATE_WEB.replace("CODE", &code.to_string()).replace("VERSION", &version.to_string())
}

/// (3) A one-shot dependency: its dependent starts after it exited 0; a failing one fails `up`
/// with its code; saving the project file does not run it again.
#[test]
fn a_one_shot_dependency_completes_first_and_is_not_rerun_by_edits() {
    if !root() {
        return;
    }
    let env = DevEnv::new("one-shot").with_images(&[(Fixture::Busybox, "busybox")]);
    env.write("shared/.keep", "");
    env.write("devenv.yaml", &migrate_web(0, 1));
    env.ok(&["up", "-d"]);
    let read = |f: &str| std::fs::read_to_string(env.path(&format!("shared/{f}"))).unwrap();
    // `up -d` returns once web's process runs; its first lines follow.
    eventually(5, "web's first lines", || {
        std::fs::read_to_string(env.path("shared/web")).is_ok_and(|t| t.ends_with('\n'))
    });
    assert_eq!(read("web").trim(), "yes", "web found migrate's file at its start");
    let (ok_at, web_at) = (uptime_ms(&read("ok")), uptime_ms(&read("web_at")));
    assert!(web_at >= ok_at, "web started at {web_at} ms, before migrate finished at {ok_at} ms");
    assert_eq!(env.service("migrate").0, "exited (0)");
    assert_eq!(row(&env, "migrate")["exit_code"], 0);
    assert_eq!(env.service("web").0, "running");
    let migrate_id = inspect(&env, "migrate", "container");
    let web_pid = pid(&env, "web");

    // A comment, then a change of web's environment: migrate is neither recreated nor re-run.
    let mut events = Events::follow(&env);
    env.write("devenv.yaml", &format!("# edited\n{}", migrate_web(0, 1)));
    std::thread::sleep(Duration::from_millis(500));
    env.write("devenv.yaml", &migrate_web(0, 2));
    let rec = events.wait_for(10, "the edit applied", |v| {
        v["event"] == "reconciled" && v["recreated"] == serde_json::json!(["web"])
    });
    assert_eq!(rec["created"], serde_json::json!([]), "{rec}");
    events.wait_for(10, "web running again", |v| is_event(v, "running", "web"));
    assert_ne!(pid(&env, "web"), web_pid, "web was recreated");
    assert_eq!(inspect(&env, "migrate", "container"), migrate_id, "migrate kept its container");
    assert_eq!(env.service("migrate").0, "exited (0)");
    assert_eq!(read("runs"), "run\n", "migrate ran once");
    let starts: Vec<&Value> =
        events.seen.iter().filter(|v| is_event(v, "starting", "migrate")).collect();
    assert!(starts.is_empty(), "migrate started again: {}", events.dump());
    eprintln!("events during the edits:\n{}", events.dump());
    drop(events);
    down_clean(&env);

    // A failing one-shot: up fails, naming it and its exit code.
    std::fs::remove_file(env.path("shared/ok")).unwrap();
    std::fs::remove_file(env.path("shared/web")).unwrap();
    env.write("devenv.yaml", &migrate_web(3, 1));
    let (code, err) = env.fails(&["up", "-d"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("service \"web\""), "{err}");
    assert!(err.contains("\"migrate\" exited with code 3"), "{err}");
    assert!(!env.path("shared/web").exists(), "web never started");
    assert!(env.ps().is_empty(), "{:?}", env.ps());
    env.assert_clean();
}

/// (4) `on-failure:3` restarts a crashing service three times, each after a longer wait, then
/// leaves it exited; `always` restarts a service that exits 0, saying `restarting (N)` between.
#[test]
fn restart_policies_back_off_and_stop_after_max_retries() {
    if !root() {
        return;
    }
    let env = DevEnv::new("crash").with_images(&[(Fixture::Busybox, "busybox")]);
    env.write("data/.keep", "");
    env.write(
        "devenv.yaml",
        r#"services:
  crash:
    image: busybox
    network_mode: none
    restart: on-failure:3
    volumes: ["./data:/data"]
    command: [sh, -c, "cat /proc/uptime >> /data/runs; exit 3"]
"#,
    );
    env.ok(&["up", "-d"]);
    let runs = || std::fs::read_to_string(env.path("data/runs")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = row(&env, "crash");
        if r["state"] == "exited (3)" && r["restart_count"] == 3 {
            break;
        }
        if Instant::now() > deadline {
            let log = env.home.path().join("run").join(&env.project).join("supervisor.log");
            panic!(
                "crash did not give up: {r}\nruns:\n{}\nsupervisor log:\n{}",
                runs(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing more comes: the policy gave up.
    std::thread::sleep(Duration::from_millis(1200));
    let text = runs();
    let times: Vec<u64> = text.lines().map(uptime_ms).collect();
    assert_eq!(times.len(), 4, "1 run + 3 restarts: {text}");
    let r = row(&env, "crash");
    assert_eq!((r["state"].as_str(), r["exit_code"].as_i64()), (Some("exited (3)"), Some(3)));
    assert_eq!(r["restart_count"], 3, "{r}");
    assert_eq!(inspect(&env, "crash", "restart_count"), "3");
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("gaps between runs (ms): {gaps:?}");
    for (gap, want) in gaps.iter().zip([100u64, 200, 400]) {
        assert!(*gap * 10 >= want * 8, "gap {gap} ms < 80% of {want} ms; gaps {gaps:?}");
        assert!(*gap < want + 2000, "gap {gap} ms for a backoff of {want} ms; gaps {gaps:?}");
    }
    // The waits grow. The first gap also holds what is left of the first reconcile (a restart
    // waits for it to finish): a little slack there, none between the later two.
    assert!(gaps[1] + 50 > gaps[0], "gaps grow: {gaps:?}");
    assert!(gaps[2] > gaps[1] && gaps[2] > gaps[0], "gaps grow: {gaps:?}");
    down_clean(&env);

    // `always`, on a service that exits 0.
    env.write(
        "devenv.yaml",
        "services:\n  loop:\n    image: busybox\n    network_mode: none\n    restart: always\n    command: [\"true\"]\n",
    );
    env.ok(&["up", "-d"]);
    let mut restarting = None;
    let mut states = std::collections::BTreeSet::new();
    eventually(10, "loop restarted 3 times, seen restarting", || {
        let r = row(&env, "loop");
        let state = r["state"].as_str().unwrap().to_owned();
        if state.starts_with("restarting (") {
            restarting.get_or_insert(state.clone());
        }
        states.insert(state);
        r["restart_count"].as_u64().unwrap() >= 3 && restarting.is_some()
    });
    let state = restarting.unwrap();
    let n: u64 = state["restarting (".len()..state.len() - 1].parse().unwrap();
    assert!(n >= 1, "{state}; states seen: {states:?}");
    let count = row(&env, "loop")["restart_count"].as_u64().unwrap();
    eventually(10, "restart_count to grow further", || {
        row(&env, "loop")["restart_count"].as_u64().unwrap() > count
    });
    down_clean(&env);
}

/// (5) `devenv restart db` restarts the services that depend on it with `restart: true`, and
/// only those; so does a restart by db's restart policy.
#[test]
fn restart_true_dependents_follow_their_dependency() {
    if !root() {
        return;
    }
    let env = DevEnv::new("follow").with_images(&[(Fixture::Busybox, "busybox")]);
    env.write(
        "devenv.yaml",
        r#"services:
  db:
    image: busybox
    network_mode: none
    restart: always
    command: [sleep, "1000"]
  app:
    image: busybox
    network_mode: none
    command: [sleep, "1000"]
    depends_on:
      db:
        condition: service_started
        restart: true
  other:
    image: busybox
    network_mode: none
    command: [sleep, "1000"]
    depends_on:
      db:
        condition: service_started
"#,
    );
    env.ok(&["up", "-d"]);
    let (db1, app1, other1) = (pid(&env, "db"), pid(&env, "app"), pid(&env, "other"));
    env.ok(&["restart", "db"]);
    let (db2, app2) = (pid(&env, "db"), pid(&env, "app"));
    assert_ne!(db2, db1, "db restarted");
    assert_ne!(app2, app1, "app (restart: true) restarted with db");
    assert_eq!(pid(&env, "other"), other1, "other (no restart: true) kept its process");

    // db dies; its policy restarts it, and app follows.
    let mut events = Events::follow(&env);
    let kill = std::process::Command::new("kill").args(["-9", &db2.to_string()]).status();
    assert!(kill.unwrap().success());
    events.wait_for(10, "db running again", |v| is_event(v, "running", "db"));
    eventually(10, "app restarted after db's policy restart", || {
        env.service("app").1.is_some_and(|p| p != app2) && env.service("app").0 == "running"
    });
    assert_ne!(pid(&env, "db"), db2);
    assert_eq!(row(&env, "db")["restart_count"], 1);
    assert_eq!(pid(&env, "other"), other1, "other still kept its process");
    drop(events);
    down_clean(&env);
}

/// (6) A service with `profiles:` starts only when one of them is active (flag before or after
/// the subcommand, DEVENV_PROFILES, COMPOSE_PROFILES) or when it is named.
#[test]
fn a_profiled_service_starts_only_when_its_profile_is_active_or_it_is_named() {
    if !root() {
        return;
    }
    let env = DevEnv::new("profiles").with_images(&[(Fixture::Busybox, "busybox")]);
    env.write(
        "devenv.yaml",
        "services:\n  main:\n    image: busybox\n    network_mode: none\n    command: [sleep, \"1000\"]\n  debug:\n    image: busybox\n    network_mode: none\n    command: [sleep, \"1000\"]\n    profiles: [debug]\n",
    );
    let both = vec!["debug".to_owned(), "main".to_owned()];
    env.ok(&["up", "-d"]);
    assert_eq!(services(&env), ["main"], "debug's profile is not active");
    down_clean(&env);

    env.ok(&["--profile", "debug", "up", "-d"]);
    assert_eq!(services(&env), both, "--profile before the subcommand");
    // A live edit of the project file keeps the profiles `up` was given.
    let mut events = Events::follow(&env);
    let text = std::fs::read_to_string(env.path("devenv.yaml")).unwrap();
    env.write("devenv.yaml", &format!("# edited\n{text}"));
    events.wait_for(10, "the edit applied", |v| v["event"] == "reconciled");
    assert_eq!(services(&env), both, "after a live edit: {}", events.dump());
    assert!(!events.seen.iter().any(|v| v["event"] == "exited"), "{}", events.dump());
    drop(events);
    down_clean(&env);

    env.ok(&["up", "-d", "--profile", "debug"]);
    assert_eq!(services(&env), both, "--profile after the subcommand");
    down_clean(&env);

    env.ok(&["--profile", "other", "up", "-d"]);
    assert_eq!(services(&env), ["main"], "another profile");
    down_clean(&env);

    for var in ["DEVENV_PROFILES", "COMPOSE_PROFILES"] {
        let out = env.command(&["up", "-d"]).env(var, "x,debug").output().unwrap();
        assert!(out.status.success(), "{var}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(services(&env), both, "{var}=x,debug");
        down_clean(&env);
    }

    env.ok(&["up", "-d", "debug"]);
    assert_eq!(services(&env), ["debug"], "named on the command line");
    assert_eq!(env.service("debug").0, "running");
    // A live edit keeps to the services `up` was given.
    let mut events = Events::follow(&env);
    env.write("devenv.yaml", &format!("# edited\n{text}"));
    events.wait_for(10, "the edit applied", |v| v["event"] == "reconciled");
    assert_eq!(services(&env), ["debug"], "after a live edit: {}", events.dump());
    drop(events);
    down_clean(&env);
}

/// (7) `up --wait --wait-timeout` gives up on a service that stays `starting`, naming it; the
/// project stays up.
#[test]
fn up_wait_times_out_naming_the_service_still_starting() {
    if !root() {
        return;
    }
    let env = DevEnv::new("wait-timeout").with_images(&[(Fixture::Busybox, "busybox")]);
    env.write(
        "devenv.yaml",
        r#"services:
  slow:
    image: busybox
    network_mode: none
    command: [sleep, "1000"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 100ms
      start_period: 60s
  fine:
    image: busybox
    network_mode: none
    command: [sleep, "1000"]
"#,
    );
    let t = Instant::now();
    let (code, err) = env.fails(&["up", "--wait", "--wait-timeout", "1s"]);
    let took = t.elapsed();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("timed out waiting for"), "{err}");
    assert!(err.contains("slow"), "names the service: {err}");
    assert!(!err.contains("fine"), "fine is ready and not named: {err}");
    assert!(took >= Duration::from_secs(1), "gave up after {took:?}");
    assert!(took < Duration::from_secs(6), "gave up after {took:?}");
    // Still up, still starting (failures in the start period do not count).
    let r = row(&env, "slow");
    assert_eq!((r["state"].as_str(), r["health"].as_str()), (Some("running"), Some("starting")));
    assert_eq!(env.service("fine").0, "running");
    let h = health(&env, "slow");
    assert_eq!(h["failing_streak"], 0, "{h}");
    assert!(!h["log"].as_array().unwrap().is_empty(), "checks ran: {h}");
    down_clean(&env);
}

/// (8) Independent branches start in parallel: `b` does not wait for `a` to be healthy, and `c`,
/// which does, starts as soon as it is.
#[test]
fn independent_services_do_not_wait_and_a_dependent_starts_as_soon_as_healthy() {
    if !root() {
        return;
    }
    let env = DevEnv::new("parallel").with_images(&[(Fixture::Busybox, "busybox")]);
    let sleeper = "image: busybox\n    network_mode: none\n    command: [sleep, \"1000\"]";
    env.write("devenv.yaml", &format!("services:\n  z:\n    {sleeper}\n"));
    env.ok(&["up", "-d", "--no-watch"]);
    let mut events = Events::follow(&env);
    env.write(
        "devenv.yaml",
        &format!(
            r#"services:
  z:
    {sleeper}
  a:
    image: busybox
    network_mode: none
    command: [sh, -c, "sleep 1; touch /tmp/ready; exec sleep 1000"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 100ms
      start_period: 5s
  b:
    {sleeper}
  c:
    {sleeper}
    depends_on:
      a:
        condition: service_healthy
"#
        ),
    );
    env.ok(&["up", "-d", "--no-watch"]);
    events.wait_for(10, "c running", |v| is_event(v, "running", "c"));
    events.wait_for(10, "a healthy", |v| is_event(v, "health", "a") && v["status"] == "healthy");
    let at = |kind: &str, service: &str| {
        let v = events.seen.iter().find(|v| is_event(v, kind, service));
        event_ms(v.unwrap_or_else(|| panic!("no {kind} event of {service}:\n{}", events.dump())))
    };
    let a_running = at("running", "a");
    let b_running = at("running", "b");
    let healthy = events
        .seen
        .iter()
        .find(|v| is_event(v, "health", "a") && v["status"] == "healthy")
        .map(event_ms)
        .unwrap();
    let c_running = at("running", "c");
    let dump = events.dump();
    eprintln!(
        "a running +0, b running {:+} ms, a healthy {:+} ms, c running {:+} ms",
        b_running - a_running,
        healthy - a_running,
        c_running - a_running
    );
    assert!(b_running < healthy, "b waited for a to be healthy:\n{dump}");
    assert!(b_running.abs_diff(a_running) < 500, "a and b start together:\n{dump}");
    assert!(healthy - a_running >= 900, "a is healthy after its 1 s sleep:\n{dump}");
    assert!(c_running >= healthy, "c started before a was healthy:\n{dump}");
    assert!(
        c_running - healthy <= 500,
        "c started {} ms after a was healthy:\n{dump}",
        c_running - healthy
    );
    assert!(
        !events.seen.iter().any(|v| is_event(v, "starting", "c") && event_ms(v) < healthy),
        "c was created before a was healthy:\n{dump}"
    );
    let r = row(&env, "a");
    assert_eq!((r["state"].as_str(), r["health"].as_str()), (Some("running"), Some("healthy")));
    drop(events);
    down_clean(&env);
}

/// A `down` right after a save of the project file, while the watcher's debounce runs: the
/// watcher must not apply the file after `down` removed the project. (It did: the container
/// started again with no supervisor left, and `ps` showed it running until a second `down`.)
#[test]
fn down_right_after_a_save_of_the_project_file_leaves_nothing() {
    if !root() {
        return;
    }
    let env = DevEnv::new("save-down").with_images(&[(Fixture::Busybox, "busybox")]);
    let text = "services:\n  main:\n    image: busybox\n    network_mode: none\n    command: [sleep, \"1000\"]\n";
    for round in 0..3 {
        env.write("devenv.yaml", text);
        env.ok(&["up", "-d"]);
        // The watcher starts watching a moment after `up -d` returns.
        std::thread::sleep(Duration::from_millis(200));
        env.write("devenv.yaml", &format!("# edit {round}\n{text}"));
        env.ok(&["down"]);
        // Longer than the debounce (50 ms) and a reconcile.
        std::thread::sleep(Duration::from_millis(400));
        assert!(env.ps().is_empty(), "round {round}: ps after down: {:?}", env.ps());
        let state = env.home.path().join("projects").join(&env.project).join("state.json");
        assert!(
            !state.exists(),
            "round {round}: state left: {}",
            std::fs::read_to_string(&state).unwrap_or_default()
        );
        env.assert_clean();
    }
}

/// A dependency that exits once at start and is restarted by its policy before it is healthy.
fn flaky_db_and_web() -> &'static str {
    r#"  db:
    image: busybox
    network_mode: none
    restart: on-failure
    volumes: ["./data:/data"]
    command: [sh, -c, "if [ ! -f /data/once ]; then touch /data/once; exit 1; fi; exec sleep 1000"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
  web:
    image: busybox
    network_mode: none
    command: [sleep, "1000"]
    depends_on:
      db:
        condition: service_healthy
"#
}

/// Product bug: the reaper records the exit and wakes the waiting dependents
/// (src/supervisor/shared.rs `reap`: `notify_ready` before `on_exit`) before the restart policy
/// marks the container `restarting`, so `Readiness::wait_for` sees `exited` and fails `up`
/// ("\"db\" exited (code 1) before it was healthy") though db is restarted and healthy a moment
/// later. Docker Compose keeps waiting for a container its restart policy restarts.
#[test]
fn a_dependency_restarted_by_its_policy_before_it_is_healthy_is_waited_for() {
    if !root() {
        return;
    }
    let env = DevEnv::new("flaky-first").with_images(&[(Fixture::Busybox, "busybox")]);
    env.write("data/.keep", "");
    env.write("devenv.yaml", &format!("services:\n{}", flaky_db_and_web()));
    env.ok(&["up", "-d"]);
    assert_eq!(env.service("web").0, "running");
    assert_eq!(row(&env, "db")["restart_count"], 1);
    down_clean(&env);
}

/// Product bug: in a reconcile other than the first (`up -d` again, a saved project file), the
/// reconcile holds the supervisor's operation lock while a new service waits for its dependency
/// to be healthy, and a restart by policy waits for that same lock
/// (src/supervisor/policy.rs `on_exit`: `me.op.lock().await`): the dependency stays
/// `restarting (1)` and `up -d` never returns (until `down`).
#[test]
fn a_live_reconcile_waits_for_a_dependency_its_policy_restarts() {
    if !root() {
        return;
    }
    let env = DevEnv::new("flaky-live").with_images(&[(Fixture::Busybox, "busybox")]);
    env.write("data/.keep", "");
    let z = "services:\n  z:\n    image: busybox\n    network_mode: none\n    command: [sleep, \"1000\"]\n";
    env.write("devenv.yaml", z);
    env.ok(&["up", "-d", "--no-watch"]);
    env.write("devenv.yaml", &format!("{z}{}", flaky_db_and_web()));
    let mut up = env.command(&["up", "-d", "--no-watch"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = up.kill();
            let _ = up.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let db = env.ps().into_iter().find(|r| r["service"] == "db");
    assert!(status.is_some(), "up -d still waiting after 8 s; db: {db:?}");
    assert!(status.unwrap().success(), "up -d failed; db: {db:?}");
    assert_eq!(env.service("web").0, "running");
    down_clean(&env);
}
