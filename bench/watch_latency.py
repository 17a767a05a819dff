#!/usr/bin/env python3
"""Edit-to-effect latency driver for bench/watch.sh (issue 6, "live edits").

Each timed edit takes its timestamps (time.perf_counter_ns for the latency, time.time_ns to
line up with devenv's event times) immediately before the file is opened for writing, writes the
file in place (truncate + write + close, as most editors save), then polls 127.0.0.1:PORT with
raw HTTP/1.0 GETs, a new one every ~2 ms on its own non-blocking socket whatever became of the
earlier ones, until the new content is served; each polling round connects from a loopback
source address of its own (see fresh_source). The latency is from that timestamp to the end of
the first response that carries the edit's unique token. With --poll-after EVENT, no request is
sent until devenv reports EVENT (the latency is still from the write).

  content  edit FILE (an HTML page) EDITS times; each edit writes a new token into it
  port     rewrite the project file with a `ports:` entry (timed: until 127.0.0.1:PORT serves),
           then without it (untimed: until the supervisor reports the reconcile and connections
           to the port are refused), EDITS times
  report   the Markdown tables of a set of result files

With --events CMD (a shell command printing devenv's JSON event lines, `devenv events --format
json`), the events that arrive between one edit and the next are recorded with the edit, for the
breakdown: the action's own duration (`restarted`/`synced`/`reconciled` ms), when it ended
relative to the write, and the errors and extra actions seen.

Results go to --out as JSON: the samples in ms, the per-edit events, and failures (an edit whose
content was not served within --timeout is a failure, reported, not a sample).
"""

import argparse
import errno
import json
import os
import random
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime

ACTION_EVENTS = ("restarted", "synced", "reconciled", "executed", "signaled")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


_source = 0


def fresh_source():
    """A loopback source address not used before in this run (127.100.0.1, 127.100.0.2, ...),
    one per polling round. Connections from earlier rounds leave conntrack entries behind, some
    DNATed to a container (unanswered SYNs stay for 120 s); a later connection that happened to
    reuse one's source port would follow that stale mapping instead of the rules in force now,
    and a port map just removed would still seem to work. A new source address per round makes
    every connection a new conntrack entry."""
    global _source
    _source += 1
    return f"127.{100 + _source // 65024}.{_source // 254 % 256}.{_source % 254 + 1}"


def served(resp, token):
    return resp is not None and resp.startswith(b"HTTP/1.") and b" 200" in resp[:16] and token in resp


class Poll:
    """What polling for one edit saw: GETs started, refused (nothing listening), answered with
    other content (the old page, an error), and still unanswered when the new content came
    (SYNs that went nowhere: dropped, or queued behind an unresolved neighbour)."""

    def __init__(self):
        self.attempts = 0
        self.refused = 0
        self.other = 0
        self.stalled = 0
        self.oldest_stalled_ms = 0.0


REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\nConnection: close\r\n\r\n"
MAX_IN_FLIGHT = 256


def poll_until(port, token, t0, timeout_s, interval_s, poll=None):
    """perf_counter_ns when 127.0.0.1:port first serves `token`, or None after timeout_s.

    A new GET starts every interval_s whatever happened to the earlier ones, each on its own
    non-blocking socket: one whose SYN goes nowhere (during a restart) waits for the kernel's
    retransmission without holding the others back, so the content is seen at most one interval
    after a fresh request could first get it, as a browser's request started then would."""
    poll = poll or Poll()
    deadline = t0 + int(timeout_s * 1e9)
    sel = selectors.DefaultSelector()
    addr = ("127.0.0.1", port)
    source = (fresh_source(), 0)
    next_start = 0

    def drop(sock):
        sel.unregister(sock)
        sock.close()

    try:
        while True:
            now = time.perf_counter_ns()
            if now >= next_start and len(sel.get_map()) < MAX_IN_FLIGHT:
                next_start = now + int(interval_s * 1e9)
                poll.attempts += 1
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.bind(source)
                err = sock.connect_ex(addr)
                if err in (0, errno.EINPROGRESS):
                    sel.register(sock, selectors.EVENT_WRITE, {"start": now, "connected": False, "buf": []})
                else:
                    poll.refused += 1
                    sock.close()
            wait = max(0.0, (next_start - time.perf_counter_ns()) / 1e9)
            for key, _ in sel.select(wait):
                sock, st = key.fileobj, key.data
                if not st["connected"]:
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        poll.refused += 1
                        drop(sock)
                        continue
                    st["connected"] = True
                    try:
                        sock.send(REQUEST)
                    except OSError:
                        poll.other += 1
                        drop(sock)
                        continue
                    sel.modify(sock, selectors.EVENT_READ, st)
                    continue
                try:
                    b = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    poll.other += 1
                    drop(sock)
                    continue
                if b:
                    st["buf"].append(b)
                    continue
                drop(sock)
                if served(b"".join(st["buf"]), token):
                    done = time.perf_counter_ns()
                    for k in sel.get_map().values():
                        if not k.data["connected"]:
                            poll.stalled += 1
                            poll.oldest_stalled_ms = max(poll.oldest_stalled_ms, (done - k.data["start"]) / 1e6)
                    return done
                poll.other += 1
            if time.perf_counter_ns() > deadline:
                return None
            # Attempts that got nowhere in 3 s make room for new ones.
            for k in list(sel.get_map().values()):
                if time.perf_counter_ns() - k.data["start"] > 3_000_000_000:
                    drop(k.fileobj)
    finally:
        for k in list(sel.get_map().values()):
            k.fileobj.close()
        sel.close()


def port_refused(port, times=3):
    """True when a connection to 127.0.0.1:port is refused `times` times in a row, 10 ms apart:
    nothing is published there. A connection that times out (a SYN forwarded to a container
    that does not answer yet) does not count: the port may still be published."""
    for i in range(times):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((fresh_source(), 0))
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", port))
            return False
        except ConnectionRefusedError:
            pass
        except OSError:
            return False
        finally:
            s.close()
        if i + 1 < times:
            time.sleep(0.01)
    return True


class Events:
    """Reads `devenv events --format json` in a thread; each event is kept with the
    perf_counter_ns of its arrival."""

    def __init__(self, cmd):
        self.items = []
        self.lock = threading.Lock()
        self.proc = None
        if not cmd:
            return
        self.proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.items.append((time.perf_counter_ns(), ev))

    def since(self, t0):
        with self.lock:
            return [(t, e) for t, e in self.items if t >= t0]

    def wait_for(self, t0, pred, timeout_s):
        """The first event received since t0 for which pred holds, waiting up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            for _, e in self.since(t0):
                if pred(e):
                    return e
            if time.monotonic() > deadline or self.proc is None:
                return None
            time.sleep(0.005)

    def close(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def event_wall_ns(e):
    # RFC 3339, UTC, milliseconds: 2026-12-04T20:49:40.638Z
    return int(datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() * 1e9)


def write_file(path, data):
    with open(path, "w") as f:
        f.write(data)


def edit_record(i, t0, wall0, t_served, evs):
    """What one edit gave: latency, and the events seen between its write and the next."""
    rec = {"edit": i, "ms": None if t_served is None else (t_served - t0) / 1e6, "actions": [], "errors": [],
           "notes": []}
    for t, e in evs:
        kind = e.get("event")
        if kind in ACTION_EVENTS:
            a = {"event": kind, "service": e.get("service"), "ms": e.get("ms"),
                 # when devenv stamped the event, from the write (wall clocks, 1 ms resolution)
                 "at_ms": (event_wall_ns(e) - wall0) / 1e6,
                 # when this driver received it, from the write
                 "received_ms": (t - t0) / 1e6}
            if kind == "synced":
                a["files"] = e.get("files")
            if kind == "reconciled":
                a["created"], a["recreated"], a["removed"] = e.get("created"), e.get("recreated"), e.get("removed")
            rec["actions"].append(a)
        elif kind == "error":
            rec["errors"].append(e.get("message"))
        elif kind == "note":
            rec["notes"].append(e.get("message"))
    return rec


def cmd_content(args):
    events = Events(args.events)
    time.sleep(0.3)  # let the event stream connect
    page = "<html><body><p>watch bench {token}</p></body></html>\n"
    results = []
    failures = 0
    total = args.warmup + args.edits
    try:
        # The service serves its initial content first.
        t0 = time.perf_counter_ns()
        if poll_until(args.port, b"", t0, args.timeout, args.interval) is None:
            raise SystemExit(f"{args.label}: nothing serves on 127.0.0.1:{args.port}")
        for i in range(total):
            token = f"edit-{i}-{random.getrandbits(48):012x}"
            data = page.format(token=token)
            wall0 = time.time_ns()
            t0 = time.perf_counter_ns()
            write_file(args.file, data)
            if args.poll_after:
                events.wait_for(t0, lambda e: e.get("event") == args.poll_after, args.timeout)
            poll = Poll()
            t_served = poll_until(args.port, token.encode(), t0, args.timeout, args.interval, poll)
            # The action's event may come after the content is served (a restart is reported
            # once the process runs, which may be after it answers): wait a little for it.
            if args.expect:
                events.wait_for(t0, lambda e: e.get("event") == args.expect, 2.0)
            time.sleep(args.pause)
            rec = edit_record(i, t0, wall0, t_served, events.since(t0))
            rec["warmup"] = i < args.warmup
            rec["poll"] = vars(poll)
            results.append(rec)
            status = "FAILED (not served within %.1f s)" % args.timeout if t_served is None else "%.1f ms" % rec["ms"]
            acts = ", ".join(f"{a['event']} {a['ms']} ms at {a['at_ms']:.0f}" for a in rec["actions"])
            acts += (f"; {poll.attempts} GETs: {poll.refused} refused, {poll.other} other, {poll.stalled} "
                     f"stalled (oldest {poll.oldest_stalled_ms:.0f} ms)")
            log(f"   {args.label} {'warm-up' if rec['warmup'] else 'edit'} {i}: {status}  [{acts}]"
                + (f"  errors: {rec['errors']}" if rec["errors"] else ""))
            if t_served is None and not rec["warmup"]:
                failures += 1
    finally:
        events.close()
    save(args, results, failures)


def cmd_port(args):
    events = Events(args.events)
    time.sleep(0.3)
    with_ports = open(args.with_file).read()
    without = open(args.without_file).read()
    results = []
    failures = 0
    anomalies = []
    total = args.warmup + args.edits
    is_reconciled = lambda e: e.get("event") == "reconciled"  # noqa: E731
    try:
        for i in range(total):
            # Nothing may be published on the port before the edit that adds it.
            if not port_refused(args.port):
                msg = f"edit {i}: 127.0.0.1:{args.port} is not refused before the port map is added"
                log(f"   {args.label}: {msg}; waiting for it to go")
                anomalies.append(msg)
                deadline = time.monotonic() + args.timeout
                while not port_refused(args.port):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{args.label}: 127.0.0.1:{args.port} still not refused")
                    time.sleep(0.05)
            wall0 = time.time_ns()
            t0 = time.perf_counter_ns()
            write_file(args.project_file, with_ports)
            if args.poll_after:
                events.wait_for(t0, lambda e: e.get("event") == args.poll_after, args.timeout)
            # The page the service serves is fixed; any 200 with it counts.
            poll = Poll()
            t_served = poll_until(args.port, args.token.encode(), t0, args.timeout, args.interval, poll)
            events.wait_for(t0, is_reconciled, 2.0)
            time.sleep(args.pause)
            rec = edit_record(i, t0, wall0, t_served, events.since(t0))
            rec["warmup"] = i < args.warmup
            rec["poll"] = vars(poll)
            results.append(rec)
            status = "FAILED (not served within %.1f s)" % args.timeout if t_served is None else "%.1f ms" % rec["ms"]
            acts = ", ".join(f"{a['event']} {a['ms']} ms at {a['at_ms']:.0f}" for a in rec["actions"])
            acts += (f"; {poll.attempts} GETs: {poll.refused} refused, {poll.other} other, {poll.stalled} "
                     f"stalled (oldest {poll.oldest_stalled_ms:.0f} ms)")
            log(f"   {args.label} {'warm-up' if rec['warmup'] else 'add'} {i}: {status}  [{acts}]"
                + (f"  errors: {rec['errors']}" if rec["errors"] else ""))
            if t_served is None and not rec["warmup"]:
                failures += 1
            # Untimed: the port map removed again, until reconciled and the port is gone.
            t1 = time.perf_counter_ns()
            write_file(args.project_file, without)
            if events.wait_for(t1, is_reconciled, args.timeout) is None and events.proc is not None:
                log(f"   {args.label} remove {i}: no reconciled event within {args.timeout} s")
            deadline = time.monotonic() + args.timeout
            while not port_refused(args.port):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{args.label}: 127.0.0.1:{args.port} still published {args.timeout} s "
                                     "after the port map was removed")
                time.sleep(0.01)
            rec["removed_ms"] = (time.perf_counter_ns() - t1) / 1e6
            time.sleep(args.pause)
    finally:
        events.close()
    save(args, results, failures, anomalies)


def save(args, results, failures, anomalies=()):
    timed = [r for r in results if not r["warmup"]]
    samples = [r["ms"] for r in timed if r["ms"] is not None]
    out = {"label": args.label, "tool": args.tool, "poll_after": args.poll_after, "scenario": args.scenario, "edits": len(timed),
           "failures": failures, "pause_ms": args.pause * 1000, "interval_ms": args.interval * 1000,
           "samples_ms": samples, "anomalies": list(anomalies), "records": results}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    if samples:
        s = stats(samples)
        log(f"   {args.label}: p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms, min {s['min']:.0f}, "
            f"max {s['max']:.0f} ({len(samples)} edits, {failures} failed)")


def nearest_rank(xs, p):
    xs = sorted(xs)
    k = max(1, -(-len(xs) * p // 100))  # ceil(n * p / 100)
    return xs[int(k) - 1]


def stats(xs):
    return {"p50": statistics.median(xs), "p95": nearest_rank(xs, 95), "min": min(xs), "max": max(xs)}


def fmt(x):
    return "—" if x is None else f"{x:.0f}"


def cmd_report(args):
    runs = [json.load(open(p)) for p in args.files]
    print("| scenario | tool | edits | p50 ms | p95 ms | min ms | max ms | failed | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        s = stats(r["samples_ms"]) if r["samples_ms"] else dict.fromkeys(("p50", "p95", "min", "max"))
        target = ""
        if r["tool"] == "devenv" and s["p50"] is not None:
            limit = LIMITS[r["scenario"]]
            target = f"{TARGETS[r['scenario']]}: {'met' if s['p50'] < limit else 'NOT met'}"
        print(f"| {r['label']} | {r['tool']} | {r['edits']} | {fmt(s['p50'])} | {fmt(s['p95'])} | "
              f"{fmt(s['min'])} | {fmt(s['max'])} | {r['failures']} | {target} |")
    rows = [r for r in runs if r["tool"] == "devenv"]
    if not rows:
        return
    print()
    print("Where the time goes (devenv's own events; medians over the timed edits, ms). *before*: from "
          "the write to the start of the action (the change noticed, the debounce, scheduling: the event's "
          "time minus its duration); *action*: the event's own `ms`; *after*: from the end of the action "
          "(the event's time) to the first response with the new content (the app starting and answering, "
          "and the network path). *stalled*: edits whose *after* exceeded 500 ms; the last column is the "
          "p50 of the other edits.")
    print()
    print("| scenario | event | before | action | after | p50 all | stalled > 500 ms | p50 not stalled | "
          "edits with >1 action | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        befores, actions, afters, multi, errors, kinds = [], [], [], 0, 0, set()
        stalled, fine = 0, []
        for rec in r["records"]:
            if rec["warmup"] or rec["ms"] is None:
                continue
            acts = [a for a in rec["actions"] if a["ms"] is not None]
            if len(rec["actions"]) > 1:
                multi += 1
            errors += len(rec["errors"])
            # The action that made the content served: the last one that ended before it was.
            done = [a for a in acts if a["at_ms"] <= rec["ms"] + 2] or acts
            if not done:
                fine.append(rec["ms"])
                continue
            a = done[-1]
            kinds.add(a["event"])
            befores.append(a["at_ms"] - a["ms"])
            actions.append(a["ms"])
            afters.append(rec["ms"] - a["at_ms"])
            if rec["ms"] - a["at_ms"] > 500:
                stalled += 1
            else:
                fine.append(rec["ms"])
        med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
        s = stats(r["samples_ms"]) if r["samples_ms"] else {"p50": None}
        print(f"| {r['label']} | {', '.join(sorted(kinds)) or '—'} | {fmt(med(befores))} | {fmt(med(actions))} | "
              f"{fmt(med(afters))} | {fmt(s['p50'])} | {stalled} of {len(befores)} | {fmt(med(fine))} | "
              f"{multi} | {errors} |")


TARGETS = {"restart": "< 150 ms p50", "sync": "< 80 ms p50", "port": "< 300 ms p50"}
LIMITS = {"restart": 150, "sync": 80, "port": 300}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("content", "port"):
        p = sub.add_parser(name)
        p.add_argument("--label", required=True)
        p.add_argument("--tool", default="devenv")
        p.add_argument("--scenario", required=True, choices=sorted(TARGETS))
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--edits", type=int, default=30)
        p.add_argument("--warmup", type=int, default=2)
        p.add_argument("--pause", type=float, default=0.4, help="seconds between edits")
        p.add_argument("--interval", type=float, default=0.002, help="seconds between polls")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds an edit may take")
        p.add_argument("--events", help="shell command printing devenv's JSON event lines")
        p.add_argument("--out", required=True)
        p.add_argument("--poll-after", metavar="EVENT",
                       help="send no request until this event arrives (the latency is still from the write)")
        if name == "content":
            p.add_argument("--file", required=True, help="the page to edit")
            p.add_argument("--expect", help="the event an edit causes, waited for (up to 2 s)")
        else:
            p.add_argument("--project-file", required=True)
            p.add_argument("--with-file", required=True, help="the project file with the port map")
            p.add_argument("--without-file", required=True, help="the project file without it")
            p.add_argument("--token", required=True, help="text the served page contains")
    p = sub.add_parser("report")
    p.add_argument("files", nargs="+")
    args = ap.parse_args()
    {"content": cmd_content, "port": cmd_port, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
