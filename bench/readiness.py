#!/usr/bin/env python3
"""Readiness benchmark (issue 7), devenv against docker-compose in the same run.

Run by bench/readiness.sh, which installs the peers, builds devenv, loads the fixture images
into devenv and into a private dockerd, and cleans up. Everything here goes through each tool's
own command line. Configuration comes from the environment:

  DEVENV_BIN      the devenv binary (release build)
  DEVENV_HOME     devenv's home for this run (temporary)
  BENCH_WORK      a temporary directory for the project files
  BENCH_ROUNDS    measured rounds (default 20), after BENCH_WARMUPS (default 1)
  BENCH_JSON      where to write the raw samples
  DOCKER_BIN, DOCKER_COMPOSE_BIN, DOCKER_HOST   the Docker side; absent: devenv only
  REDIS_IMAGE, BUSYBOX_IMAGE                    image names, the same in both engines

Scenarios, interleaved round by round (one round of each, then the next round):

  deps   `redis` (healthcheck `redis-cli ping`, interval 1s; devenv also start_interval 1s, which
         docker-compose 1.29 rejects) and `app` (busybox sleep) with
         `depends_on: {redis: {condition: service_healthy}}`, both `network_mode: none`,
         `init: true`.
         - `up -d` wall time (the command returns once `app` runs: it waits for redis being
           healthy); checked afterwards (not timed) that both run. devenv also `up --wait`.
           `down` timed separately.
         - timestamps of the transitions. docker-compose: `docker events --since/--until` after
           the round (timeNano of `start`, `health_status: healthy`, `create`) and
           `docker inspect`'s health log (each check's Start/End, ns). devenv: its event stream
           (`devenv events --format json`, ms), which needs a running supervisor: the project
           has a third service, `anchor` (busybox sleep, nothing depends on it), brought up
           first with `devenv up -d anchor`; the stream is connected; then `devenv up -d` asks
           that supervisor to reconcile the whole project, which starts redis and app exactly as
           a first `up` does (same reconcile, same dependency wait); `inspect`'s health log
           gives each check's start/end (ms).
  slow10, slow15
         one service ready 1.0 s (1.5 s) after it starts:
         `sh -c 'sleep 1.0; touch /tmp/ready; exec sleep 1000'`, check `test -f /tmp/ready`,
         interval 1s (devenv also start_interval 1s). When it became ready is the file's mtime
         (`stat -c %y /tmp/ready` through `exec`, ns); when it became healthy, the event.
         devenv with the same anchor arrangement. 1.0 s is when Docker runs its first check
         (`interval` after the start), so that check races the file; 1.5 s falls between two of
         Docker's checks.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

DV = os.environ["DEVENV_BIN"]
WORK = os.environ["BENCH_WORK"]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
WARMUPS = int(os.environ.get("BENCH_WARMUPS", "1"))
OUT_JSON = os.environ.get("BENCH_JSON")
DOCKER = os.environ.get("DOCKER_BIN")
COMPOSE = os.environ.get("DOCKER_COMPOSE_BIN")
WITH_DOCKER = bool(DOCKER and COMPOSE and os.environ.get("DOCKER_HOST"))
REDIS = os.environ.get("REDIS_IMAGE", "devenv-bench/redis")
BUSYBOX = os.environ.get("BUSYBOX_IMAGE", "devenv-bench/busybox")
TIMEOUT = 60
# The "slow" services: name, seconds until ready. 1.0 s falls on Docker's first check (at
# `interval` after the start); 1.5 s falls between two of its checks.
SLOW = [("slow10", "1.0"), ("slow15", "1.5")]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- project files -----------------------------------------------------------------------------

def service_redis(start_interval):
    si = "\n      start_interval: 1s" if start_interval else ""
    return f"""  redis:
    image: {REDIS}
    network_mode: none
    init: true
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s{si}
"""


APP = f"""  app:
    image: {BUSYBOX}
    network_mode: none
    init: true
    command: sleep 1000
    depends_on:
      redis:
        condition: service_healthy
"""

ANCHOR = f"""  anchor:
    image: {BUSYBOX}
    network_mode: none
    init: true
    command: sleep 1000
"""


def service_slow(start_interval, delay):
    si = "\n      start_interval: 1s" if start_interval else ""
    return f"""  slow:
    image: {BUSYBOX}
    network_mode: none
    init: true
    command: ["sh", "-c", "sleep {delay}; touch /tmp/ready; exec sleep 1000"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s{si}
"""


def write_project(name, file, text):
    d = os.path.join(WORK, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, file)
    with open(path, "w") as f:
        f.write("services:\n" + text)
    return d, path


# --- running commands --------------------------------------------------------------------------

def run(argv, check=True, capture=True, env=None):
    p = subprocess.run(argv, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=TIMEOUT, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout if capture else ""


def timed(argv):
    """Runs argv; its wall time in ms (perf_counter), and the wall-clock ns when it started."""
    wall0 = time.time_ns()
    t0 = time.perf_counter_ns()
    run(argv, capture=False)
    return (time.perf_counter_ns() - t0) / 1e6, wall0


class Devenv:
    def __init__(self, project, directory, file):
        self.base = [DV, "-p", project, "--project-directory", directory, "-f", file]

    def __call__(self, *args):
        return self.base + list(args)

    def all_running(self, services):
        rows = json.loads(run(self("ps", "--format", "json")))
        states = {r["service"]: r["state"] for r in rows}
        return all(states.get(s) == "running" for s in services), states

    def health_log(self, service):
        out = run(self("inspect", "-f", "{{json .health}}", service)).strip()
        return json.loads(out)["log"] if out else []

    def down(self):
        run(self("down"), capture=False)


class Compose:
    def __init__(self, project, directory, file):
        self.project = project
        self.base = [COMPOSE, "-p", project, "--project-directory", directory, "-f", file]

    def __call__(self, *args):
        return self.base + list(args)

    def container(self, service):
        out = run([DOCKER, "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}",
                   "--filter", f"label=com.docker.compose.service={service}"]).split()
        return out[0] if out else None

    def all_running(self, services):
        states = {}
        for s in services:
            c = self.container(s)
            states[s] = run([DOCKER, "inspect", "-f", "{{.State.Status}}", c]).strip() if c else None
        return all(v == "running" for v in states.values()), states

    def health(self, service):
        c = self.container(service)
        return json.loads(run([DOCKER, "inspect", "-f", "{{json .State.Health}}", c]))

    def events(self, since_ns):
        """Docker's events for this project's containers since since_ns, until now."""
        until = time.time_ns() + 1_000_000
        out = run([DOCKER, "events", "--since", f"{since_ns / 1e9:.6f}", "--until", f"{until / 1e9:.6f}",
                   "--filter", "type=container",
                   "--filter", f"label=com.docker.compose.project={self.project}",
                   "--format", "{{json .}}"])
        evs = []
        for line in out.splitlines():
            e = json.loads(line)
            attrs = e.get("Actor", {}).get("Attributes", {})
            evs.append({"service": attrs.get("com.docker.compose.service"),
                        "action": e.get("Action") or e.get("status"),
                        "ns": int(e["timeNano"])})
        return evs

    def down(self):
        run(self("down"), capture=False)


# --- time parsing ------------------------------------------------------------------------------

_TS = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?$")


def ts_ns(text):
    """RFC 3339 (any number of fractional digits, Z or an offset), or `stat -c %y`'s
    `2026-12-04 21:43:07.998112046 +0000`, to Unix ns."""
    m = _TS.match(text.strip())
    if not m:
        raise ValueError(f"not a timestamp: {text!r}")
    date, clock, frac, zone = m.groups()
    dt = datetime.fromisoformat(f"{date}T{clock}").replace(tzinfo=timezone.utc)
    ns = int(dt.timestamp()) * 1_000_000_000 + int(((frac or "") + "000000000")[:9])
    if zone and zone != "Z":
        z = zone.replace(":", "")
        off = (int(z[1:3]) * 3600 + int(z[3:5]) * 60) * 1_000_000_000
        ns -= off if z[0] == "+" else -off
    return ns


def ms(a, b):
    return (b - a) / 1e6


# --- devenv's event stream ---------------------------------------------------------------------

class EventStream:
    def __init__(self, dv, path):
        self.path = path
        self.f = open(path, "w")
        self.p = subprocess.Popen(dv("events", "--format", "json"), stdout=self.f,
                                  stderr=subprocess.DEVNULL)
        # The stream is connected once the client has made its request; nothing is printed until
        # an event, so give it a moment (it is a unix socket on this host: a few ms).
        time.sleep(0.3)

    def read(self):
        with open(self.path) as f:
            out = []
            for line in f:
                line = line.strip()
                if line:
                    e = json.loads(line)
                    e["ns"] = ts_ns(e["time"])
                    out.append(e)
            return out

    def wait_for(self, pred, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            evs = self.read()
            if any(pred(e) for e in evs):
                return evs
            time.sleep(0.02)
        raise RuntimeError(f"event not seen within {timeout} s; got {self.read()}")

    def close(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.f.close()


def first(evs, pred):
    for e in evs:
        if pred(e):
            return e
    return None


def passing_probe(log_entries, start_key, end_key, code_key):
    """The first passing check in the health log: (start ns, end ns, index, how many kept)."""
    for i, p in enumerate(log_entries):
        if p[code_key] == 0:
            return ts_ns(p[start_key]), ts_ns(p[end_key]), i, len(log_entries)
    raise RuntimeError(f"no passing check in {log_entries}")


# --- samples -----------------------------------------------------------------------------------

samples = {}


def add(key, value):
    samples.setdefault(key, []).append(value)


def ensure(cond, what):
    if not cond:
        raise RuntimeError(what)


# --- the scenarios -----------------------------------------------------------------------------

def dv_deps_up(dv, record):
    """`up -d` then `up --wait` of redis + app, each followed by a timed `down`."""
    t, _ = timed(dv("up", "-d"))
    ok, states = dv.all_running(["redis", "app"])
    ensure(ok, f"devenv up -d: not both running: {states}")
    td, _ = timed(dv("down"))
    t2, _ = timed(dv("up", "--wait"))
    ok, states = dv.all_running(["redis", "app"])
    ensure(ok, f"devenv up --wait: not both running: {states}")
    td2, _ = timed(dv("down"))
    if record:
        add("dv.up_d", t)
        add("dv.up_wait", t2)
        add("dv.down", td)
        add("dv.down", td2)


def dv_deps_events(dv, record, n):
    """Transition timestamps of redis + app from the event stream (anchor arrangement)."""
    run(dv("up", "-d", "anchor"), capture=False)
    stream = EventStream(dv, os.path.join(WORK, f"dv-deps-events-{n}.jsonl"))
    try:
        t, wall0 = timed(dv("up", "-d"))
        evs = stream.wait_for(lambda e: e["event"] == "running" and e.get("service") == "app")
    finally:
        stream.close()
    ok, states = dv.all_running(["redis", "app", "anchor"])
    ensure(ok, f"devenv up -d (via the supervisor): not all running: {states}")
    hlog = dv.health_log("redis")
    dv.down()
    ev = lambda kind, svc, **kw: first(evs, lambda e: e["event"] == kind and e.get("service") == svc
                                       and all(e.get(k) == v for k, v in kw.items()))
    r_start, r_run = ev("starting", "redis"), ev("running", "redis")
    healthy = ev("health", "redis", status="healthy")
    a_start, a_run = ev("starting", "app"), ev("running", "app")
    ensure(all([r_start, r_run, healthy, a_start, a_run]), f"events missing: {evs}")
    p_start, p_end, idx, kept = passing_probe(hlog, "start", "end", "exit_code")
    if record:
        add("dv.via_sup_up_d", t)
        add("dv.up_start_to_redis_starting", ms(wall0, r_start["ns"]))
        add("dv.redis_starting_to_running", ms(r_start["ns"], r_run["ns"]))
        add("dv.redis_running_to_first_pass_start", ms(r_run["ns"], p_start))
        add("dv.pass_probe_duration", ms(p_start, p_end))
        add("dv.pass_end_to_healthy", ms(p_end, healthy["ns"]))
        add("dv.redis_running_to_healthy", ms(r_run["ns"], healthy["ns"]))
        add("dv.healthy_to_app_starting", ms(healthy["ns"], a_start["ns"]))
        add("dv.healthy_to_app_running", ms(healthy["ns"], a_run["ns"]))
        add("dv.up_start_to_app_running", ms(wall0, a_run["ns"]))
        add("dv.checks_until_pass", idx + 1 if kept < 5 else None)


def ck_deps(ck, record):
    """docker-compose `up -d` of redis + app, its events and health log, `down` timed."""
    t, wall0 = timed(ck("up", "-d"))
    ok, states = ck.all_running(["redis", "app"])
    ensure(ok, f"docker-compose up -d: not both running: {states}")
    health = ck.health("redis")
    evs = ck.events(wall0 - 1_000_000)
    td, _ = timed(ck("down"))
    ev = lambda svc, action: first(evs, lambda e: e["service"] == svc and e["action"] == action)
    r_create, r_start = ev("redis", "create"), ev("redis", "start")
    healthy = ev("redis", "health_status: healthy")
    a_create, a_start = ev("app", "create"), ev("app", "start")
    ensure(all([r_create, r_start, healthy, a_create, a_start]), f"docker events missing: {evs}")
    p_start, p_end, idx, kept = passing_probe(health["Log"], "Start", "End", "ExitCode")
    if record:
        add("ck.up_d", t)
        add("ck.down", td)
        add("ck.up_start_to_redis_starting", ms(wall0, r_create["ns"]))
        add("ck.redis_starting_to_running", ms(r_create["ns"], r_start["ns"]))
        add("ck.redis_running_to_first_pass_start", ms(r_start["ns"], p_start))
        add("ck.pass_probe_duration", ms(p_start, p_end))
        add("ck.pass_end_to_healthy", ms(p_end, healthy["ns"]))
        add("ck.redis_running_to_healthy", ms(r_start["ns"], healthy["ns"]))
        add("ck.healthy_to_app_create", ms(healthy["ns"], a_create["ns"]))
        add("ck.healthy_to_app_running", ms(healthy["ns"], a_start["ns"]))
        add("ck.up_start_to_app_running", ms(wall0, a_start["ns"]))
        add("ck.checks_until_pass", idx + 1 if kept < 5 else None)


def ready_ns(argv):
    return ts_ns(run(argv).strip())


def dv_slow(dv, record, n, tag):
    run(dv("up", "-d", "anchor"), capture=False)
    stream = EventStream(dv, os.path.join(WORK, f"dv-{tag}-events-{n}.jsonl"))
    try:
        _, wall0 = timed(dv("up", "-d"))
        evs = stream.wait_for(lambda e: e["event"] == "health" and e.get("service") == "slow"
                              and e.get("status") in ("healthy", "unhealthy"))
    finally:
        stream.close()
    ready = ready_ns(dv("exec", "slow", "stat", "-c", "%y", "/tmp/ready"))
    hlog = dv.health_log("slow")
    dv.down()
    run_ev = first(evs, lambda e: e["event"] == "running" and e.get("service") == "slow")
    healthy = first(evs, lambda e: e["event"] == "health" and e.get("service") == "slow"
                    and e.get("status") == "healthy")
    ensure(run_ev and healthy, f"events missing: {evs}")
    p_start, p_end, _, _ = passing_probe(hlog, "start", "end", "exit_code")
    if record:
        add(f"dv.{tag}.running_to_ready", ms(run_ev["ns"], ready))
        add(f"dv.{tag}.ready_to_healthy", ms(ready, healthy["ns"]))
        add(f"dv.{tag}.ready_to_pass_start", ms(ready, p_start))
        add(f"dv.{tag}.running_to_healthy", ms(run_ev["ns"], healthy["ns"]))
        add(f"dv.{tag}.up_start_to_healthy", ms(wall0, healthy["ns"]))


def ck_slow(ck, record, tag):
    wall0 = time.time_ns()
    run(ck("up", "-d"), capture=False)
    c = ck.container("slow")
    # The times come from Docker's events; this only waits (gently: each look runs the docker
    # client) until the status is known.
    end = time.monotonic() + 15
    while time.monotonic() < end:
        status = run([DOCKER, "inspect", "-f", "{{.State.Health.Status}}", c]).strip()
        if status != "starting":
            break
        time.sleep(0.25)
    ensure(status == "healthy", f"compose slow service: {status}")
    ready = ready_ns([DOCKER, "exec", c, "stat", "-c", "%y", "/tmp/ready"])
    health = ck.health("slow")
    evs = ck.events(wall0 - 1_000_000)
    ck.down()
    start = first(evs, lambda e: e["service"] == "slow" and e["action"] == "start")
    healthy = first(evs, lambda e: e["service"] == "slow" and e["action"] == "health_status: healthy")
    ensure(start and healthy, f"docker events missing: {evs}")
    p_start, p_end, _, _ = passing_probe(health["Log"], "Start", "End", "ExitCode")
    if record:
        add(f"ck.{tag}.running_to_ready", ms(start["ns"], ready))
        add(f"ck.{tag}.ready_to_healthy", ms(ready, healthy["ns"]))
        add(f"ck.{tag}.ready_to_pass_start", ms(ready, p_start))
        add(f"ck.{tag}.running_to_healthy", ms(start["ns"], healthy["ns"]))
        add(f"ck.{tag}.up_start_to_healthy", ms(wall0, healthy["ns"]))


# --- report ------------------------------------------------------------------------------------

def stats(key):
    v = [x for x in samples.get(key, []) if x is not None]
    if not v:
        return None
    s = sorted(v)
    n = len(s)
    p95 = s[-(-n * 95 // 100) - 1]
    return statistics.median(s), p95, n


def fmt(x):
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x / 1000:.2f} s"
    if abs(x) >= 100:
        return f"{x:.0f} ms"
    if abs(x) >= 10:
        return f"{x:.1f} ms"
    return f"{x:.2f} ms"


def row(label, dv_key, ck_key, note="", ratio=True):
    d = stats(dv_key) if dv_key else None
    c = stats(ck_key) if ck_key else None
    with_ratio = ratio
    ratio = "—"
    if with_ratio and d and c and c[0] > 0 and d[0] > 0:
        r = d[0] / c[0]
        ratio = f"{r:.3f}" + (f" ({1 / r:.1f}x faster)" if r < 1 else "")
    cells = [label,
             fmt(d[0]) if d else "—", fmt(d[1]) if d else "—",
             fmt(c[0]) if c else "—", fmt(c[1]) if c else "—", ratio, note]
    print("| " + " | ".join(cells) + " |")


def report():
    print("| measurement | devenv median | devenv p95 | compose median | compose p95 | devenv ÷ compose | note |")
    print("|---|---|---|---|---|---|---|")
    print("| **deps: redis (healthcheck) ← app (`service_healthy`)** | | | | | | |")
    row("`up -d` wall time (returns once app runs)", "dv.up_d", "ck.up_d")
    row("`up --wait` wall time (devenv only)", "dv.up_wait", None)
    row("`down` wall time", "dv.down", "ck.down", "devenv: both downs of the round")
    row("start of `up -d` → redis `starting` (devenv) / `create` (compose)", "dv.up_start_to_redis_starting",
        "ck.up_start_to_redis_starting", "devenv: via a running supervisor (anchor)")
    row("redis `starting` / `create` → running", "dv.redis_starting_to_running", "ck.redis_starting_to_running")
    row("redis running → start of the check that passed", "dv.redis_running_to_first_pass_start",
        "ck.redis_running_to_first_pass_start", "devenv: first early probe at +50 ms; Docker: first check after `interval`")
    row("duration of that check (exec + `redis-cli ping`)", "dv.pass_probe_duration", "ck.pass_probe_duration")
    row("(a) check passed (its end) → `healthy`", "dv.pass_end_to_healthy", "ck.pass_end_to_healthy",
        "event times: devenv ms, Docker ns")
    row("redis running → `healthy`", "dv.redis_running_to_healthy", "ck.redis_running_to_healthy")
    row("(b) redis `healthy` → app `starting` (devenv) / `create` (compose)", "dv.healthy_to_app_starting",
        "ck.healthy_to_app_create", "the dependency wait's own delay")
    row("(b) redis `healthy` → app running", "dv.healthy_to_app_running", "ck.healthy_to_app_running",
        "adds creating and starting app")
    row("start of `up -d` → app running (event)", "dv.up_start_to_app_running", "ck.up_start_to_app_running",
        "devenv: via a running supervisor (anchor)")
    row("`up -d` via a running supervisor (devenv, anchor arrangement)", "dv.via_sup_up_d", None)
    for tag, delay in SLOW:
        print(f"| **{tag}: ready {delay} s after start, check `test -f /tmp/ready`, interval 1s** | | | | | | |")
        row("container running → ready (the file's mtime)", f"dv.{tag}.running_to_ready", f"ck.{tag}.running_to_ready",
            ratio=False)
        row("ready → start of the check that passed", f"dv.{tag}.ready_to_pass_start", f"ck.{tag}.ready_to_pass_start",
            ratio=False)
        row("(c) ready → `healthy`", f"dv.{tag}.ready_to_healthy", f"ck.{tag}.ready_to_healthy")
        row("container running → `healthy`", f"dv.{tag}.running_to_healthy", f"ck.{tag}.running_to_healthy")
        row("start of `up -d` → `healthy`", f"dv.{tag}.up_start_to_healthy", f"ck.{tag}.up_start_to_healthy")
    cu = stats("dv.checks_until_pass"), stats("ck.checks_until_pass")
    print()
    print(f"Checks run until redis's first pass (median): devenv {cu[0][0] if cu[0] else '—'}, "
          f"compose {cu[1][0] if cu[1] else '—'}.")


def main():
    dv_deps_dir, dv_deps_file = write_project(
        "dv-deps", "devenv.yaml", service_redis(True) + APP)
    dv_ev_dir, dv_ev_file = write_project(
        "dv-deps-ev", "devenv.yaml", service_redis(True) + APP + ANCHOR)
    dv_deps = Devenv("rbench-deps", dv_deps_dir, dv_deps_file)
    dv_ev = Devenv("rbench-deps-ev", dv_ev_dir, dv_ev_file)
    dv_slow_p = {}
    ck_slow_p = {}
    for tag, delay in SLOW:
        d, f = write_project(f"dv-{tag}", "devenv.yaml", service_slow(True, delay) + ANCHOR)
        dv_slow_p[tag] = Devenv(f"rbench-{tag}", d, f)
    if WITH_DOCKER:
        ck_deps_dir, ck_deps_file = write_project(
            "ck-deps", "docker-compose.yml", service_redis(False) + APP)
        for tag, delay in SLOW:
            d, f = write_project(f"ck-{tag}", "docker-compose.yml", service_slow(False, delay))
            ck_slow_p[tag] = Compose(f"rbench-{tag}", d, f)
        ck_d = Compose("rbench-deps", ck_deps_dir, ck_deps_file)
    failures = []
    total = WARMUPS + ROUNDS
    for n in range(total):
        record = n >= WARMUPS
        label = f"round {n - WARMUPS + 1}/{ROUNDS}" if record else f"warm-up {n + 1}/{WARMUPS}"
        log(f"== {label}")
        steps = [("devenv deps up", lambda: dv_deps_up(dv_deps, record), dv_deps),
                 ("devenv deps events", lambda: dv_deps_events(dv_ev, record, n), dv_ev)]
        for tag, _ in SLOW:
            steps.append((f"devenv {tag}", lambda tag=tag: dv_slow(dv_slow_p[tag], record, n, tag), dv_slow_p[tag]))
        if WITH_DOCKER:
            steps.append(("compose deps", lambda: ck_deps(ck_d, record), ck_d))
            for tag, _ in SLOW:
                steps.append((f"compose {tag}", lambda tag=tag: ck_slow(ck_slow_p[tag], record, tag), ck_slow_p[tag]))
        for name, step, tool in steps:
            try:
                step()
            except Exception as e:  # a failed round is reported, and the project taken down
                failures.append(f"{label}, {name}: {e}")
                log(f"   FAILED {name}: {e}")
                try:
                    tool.down()
                except Exception as e2:
                    log(f"   and its down failed too: {e2}")
    if OUT_JSON:
        os.makedirs(os.path.dirname(OUT_JSON), exist_ok=True)
        with open(OUT_JSON, "w") as f:
            json.dump({"rounds": ROUNDS, "warmups": WARMUPS, "samples": samples,
                       "failures": failures}, f, indent=1)
    report()
    if failures:
        print()
        print(f"Failed steps ({len(failures)}), left out of the figures:")
        for f in failures:
            print(f"- {f}")


if __name__ == "__main__":
    main()
