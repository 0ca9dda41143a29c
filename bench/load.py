"""Load suite: relapp under signed-in browsing, open live streams, releases cut and deployed.

Starts its own stack (bench/loadlib/stack.py), loopback only, and stops it at the end:

- `production` (default): a fresh PostgreSQL database and a Redis database number of its own,
  `flask --app relapp db upgrade`, 5 projects (relapp.demo's generated repository with a bare
  remote each), 50 users, gunicorn as the README's production start (2 gevent workers,
  RELAPP_ENV=production, a real SECRET_KEY) and the workers.
- `--make-run`: `python -m relapp.run` (SQLite, embedded Redis, the demo project), smaller:
  20 users, 100 streams.

Phases: a sign-in burst (every user signs in within 5 s), the live streams opened (spread over
a few seconds, held by a few client processes), then for `--duration` seconds the users browse
board, release pages, environments and /healthz at a FIXED offered rate (open loop: each request
is started at its scheduled time, whether or not the previous ones have answered) while releases
are cut on the projects through the JSON API, tagged by the workers and deployed to qa.

Prints requests per second, p50/p95/p99 per page, each stream's time to first byte, the SSE
delivery lag (API call returned -> each open /events stream has the change naming the
release's topic), errors by kind, the peak RSS of each relapp process, the sign-in burst's p95,
then the targets with PASS/FAIL. Exit status 0 only when every target passes.

Run: `.venv/bin/python bench/load.py` (about 4 minutes) or `bench/load.py --make-run`;
`--duration`, `--rate`, `--users`, `--streams` shorten or change it; `--keep` keeps the
temporary folder (logs of the started processes).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import multiprocessing
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from loadlib import stack as stacks
from loadlib.sse import stream_process

PAGES = ("board", "release", "environments", "healthz")
STREAMS_PER_PROCESS = 125
PER_USER_RATE = 0.6  # page requests per second per signed-in user
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


@dataclass
class Action:
    kind: str  # cut | deploy
    project: str
    version: str
    sent: float  # wall clock
    returned: float
    status: int
    job: dict[str, Any] | None = None


@dataclass
class Run:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unloaded: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    late: list[float] = field(default_factory=list)  # how late each request started (client health)
    sent: int = 0
    answered: int = 0
    window: float = 0.0
    signin: list[float] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    cheapest: str = "/healthz"
    stream_path: str = "/events"
    stop: float = 0.0  # wall clock at which the streams close
    deploying: dict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


class RssSampler(threading.Thread):
    """Every 0.5 s: the RSS of every process under the stack's roots, kept at its peak per process
    and per phase. Redis, PostgreSQL and git are not relapp's processes and are left out."""

    EXCLUDED = ("redis-server", "postgres", "git")

    def __init__(self, roots: list[tuple[str, int]]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.phase = "setup"
        self.peaks: dict[tuple[str, int], tuple[str, int]] = {}  # (phase, pid) -> (role, rss)
        self.cpu: dict[tuple[str, int], list[float]] = {}  # (phase, pid) -> [first, last] CPU s, wall s
        self.halt = threading.Event()

    @staticmethod
    def role(proc: psutil.Process) -> str | None:
        try:
            name = proc.name()
            line = " ".join(proc.cmdline())
            parent = proc.parent()
            parent_line = " ".join(parent.cmdline()) if parent else ""
            grandparent = parent.parent() if parent else None
            grand_line = " ".join(grandparent.cmdline()) if grandparent else ""
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        if any(name.startswith(x) for x in RssSampler.EXCLUDED) or "redis-server" in line:
            return None
        # A process forked for a git command still shows its parent's command line until it
        # execs: one level deeper than the process it came from, and not counted.
        if "gunicorn" in line:
            if "gunicorn" in grand_line:
                return None
            return "gunicorn worker" if "gunicorn" in parent_line else "gunicorn master"
        if "worker.py" in line:
            if "--maintain" in line:
                return "worker.py companion (--maintain)"
            if "worker.py" in grand_line:
                return None
            if "worker.py" in parent_line:
                return "worker.py child (work-horse / RQ scheduler)"
            return "worker.py" + line.split("worker.py", 1)[1]
        if "relapp.run" in line:
            return "relapp.run supervisor"
        if "demo_deploy" in line:
            return None  # the simulated deploy command: the project's, not relapp's
        return name

    def run(self) -> None:
        while not self.halt.is_set():
            for _label, pid in self.roots:
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for proc in procs:
                    role = self.role(proc)
                    if role is None:
                        continue
                    try:
                        rss = proc.memory_info().rss
                        used = sum(proc.cpu_times()[:2])
                    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                        continue
                    key = (self.phase, proc.pid)
                    seen = self.cpu.setdefault(key, [used, used, time.monotonic(), time.monotonic()])
                    seen[1], seen[3] = used, time.monotonic()
                    if rss > self.peaks.get(key, (role, 0))[1]:
                        self.peaks[key] = (role, rss)
            self.halt.wait(0.5)

    def role_of(self, pid: int) -> str:
        return next((role for (_ph, p), (role, _rss) in self.peaks.items() if p == pid), "")

    def by_process(self, phase: str | None = None) -> list[tuple[str, int, int]]:
        """(role, pid, peak RSS) over all phases (or one), one row per process."""
        best: dict[int, tuple[str, int]] = {}
        for (ph, pid), (role, rss) in self.peaks.items():
            if phase is not None and ph != phase:
                continue
            if rss > best.get(pid, (role, 0))[1]:
                best[pid] = (role, rss)
        return sorted(((role, pid, rss) for pid, (role, rss) in best.items()), key=lambda r: (r[0], r[1]))


# --- clients -------------------------------------------------------------------------------


def new_client(base: str, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    # gunicorn closes a connection idle for 2 s (its keepalive); the client lets go of it after
    # 1 s, so a request never races the server's close (a ReadError that is no server fault).
    return httpx.AsyncClient(base_url=base, headers={"User-Agent": stacks.USER_AGENT, **(headers or {})},
                             timeout=httpx.Timeout(30.0), follow_redirects=False,
                             limits=httpx.Limits(keepalive_expiry=1.0))


async def sign_in_burst(base: str, users: list[str], password: str, window: float,
                        run: Run) -> list[httpx.AsyncClient]:
    """Fetch each user's sign-in form first; then every user posts it, spread evenly over
    `window` seconds. The POST's time (the password check) is the sign-in time."""
    clients = [new_client(base) for _ in users]
    tokens: list[str] = []
    for client in clients:
        page = await client.get("/login")
        found = CSRF.search(page.text)
        if page.status_code != 200 or not found:
            raise stacks.StackError(f"GET /login answered {page.status_code} without a CSRF token")
        tokens.append(found.group(1))
    start = time.perf_counter()

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, start + i * window / len(users) - time.perf_counter()))
        t0 = time.perf_counter()
        try:
            answer = await clients[i].post("/login", data={"username": users[i], "password": password,
                                                           "csrf_token": tokens[i]})
        except httpx.HTTPError as exc:
            run.error(f"sign-in {type(exc).__name__}")
            return
        run.signin.append(time.perf_counter() - t0)
        if answer.status_code != 302 or "/login" in answer.headers.get("location", ""):
            run.error(f"sign-in HTTP {answer.status_code}")

    await asyncio.gather(*(one(i) for i in range(len(users))))
    return clients


def settle(stack: stacks.Stack, quiet: float = 0.3, longest: float = 60.0) -> None:
    """Wait until the stack's processes together use under `quiet` of a core (over 1 s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < longest:
        procs = []
        for _label, pid in stack.roots():
            try:
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        before = {}
        for proc in procs:
            try:
                before[proc.pid] = sum(proc.cpu_times()[:2])
            except psutil.Error:
                pass
        time.sleep(1.0)
        used = 0.0
        for proc in procs:
            try:
                used += sum(proc.cpu_times()[:2]) - before.get(proc.pid, 0.0)
            except psutil.Error:
                pass
        if used < quiet:
            stacks.say(f"the stack settled in {time.monotonic() - t0:.0f} s")
            return
    stacks.say(f"the stack still used {used:.1f} of a core after {longest:g} s; measuring anyway")


def cookie_header(client: httpx.AsyncClient) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


async def browse(stack: stacks.Stack, clients: list[httpx.AsyncClient], api: httpx.AsyncClient,
                 versions: dict[str, list[str]], rate: float, duration: float, run: Run) -> None:
    """Offer `rate` requests per second for `duration` seconds, open loop: request n starts at
    start + n / rate. Pages take turns (board, release, environments, the cheapest endpoint);
    users and projects are picked at random."""
    rng = random.Random(10)
    keys = list(stack.projects)
    anonymous = new_client(stack.base_url)
    tasks: list[asyncio.Task[None]] = []
    total = int(rate * duration)
    start = time.perf_counter()

    async def one(page: str, client: httpx.AsyncClient, url: str, due: float) -> None:
        t0 = time.perf_counter()
        run.late.append(t0 - due)
        run.sent += 1
        try:
            answer = await client.get(url)
        except httpx.HTTPError as exc:
            run.error(f"{page}: {type(exc).__name__}")
            return
        run.latencies[page].append(time.perf_counter() - t0)
        run.answered += 1
        if answer.status_code >= 400:
            run.error(f"{page}: HTTP {answer.status_code}")
        elif 300 <= answer.status_code < 400 and "/login" in answer.headers.get("location", ""):
            run.error(f"{page}: redirected to sign-in")

    for n in range(total):
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        page = PAGES[n % len(PAGES)]
        key = rng.choice(keys)
        client = rng.choice(clients)
        url = page_url(page, key, rng.choice(versions[key]), run.cheapest)
        if page == "healthz" and run.cheapest != "/healthz":
            client = anonymous
        tasks.append(asyncio.create_task(one(page, client, url, due)))
    run.window = time.perf_counter() - start
    await asyncio.gather(*tasks)
    await anonymous.aclose()


def page_url(page: str, key: str, version: str, cheapest: str) -> str:
    if page == "board":
        return f"/?project={key}"
    if page == "environments":
        return f"/environments?project={key}"
    if page == "release":
        return f"/releases/{key}/{version}"
    return cheapest


async def calibrate(stack: stacks.Stack, client: httpx.AsyncClient, versions: dict[str, list[str]],
                    run: Run, rounds: int = 5) -> None:
    """Each page a few times, one request at a time, before the load: what a page costs the
    server unloaded, and so how much of the machine the offered rate asks for."""
    key = next(iter(stack.projects))
    anonymous = new_client(stack.base_url)
    for page in PAGES:
        url = page_url(page, key, versions[key][-1], run.cheapest)
        who = anonymous if page == "healthz" and run.cheapest != "/healthz" else client
        for _ in range(rounds):
            t0 = time.perf_counter()
            try:
                await who.get(url)
            except httpx.HTTPError:
                continue
            run.unloaded[page].append(time.perf_counter() - t0)
    await anonymous.aclose()


async def release_traffic(stack: stacks.Stack, api: httpx.AsyncClient, versions: dict[str, list[str]],
                          every: float, duration: float, run: Run) -> None:
    """Every `every` seconds, on the next project in turn: a new commit on main in its remote,
    a cut through the API; once the tag job has finished, a deploy of that release to qa."""
    keys = itertools.cycle(stack.projects)
    follow: list[asyncio.Task[None]] = []
    end = time.perf_counter() + duration - 10  # the last deploy still lands inside the run
    n = 0
    while time.perf_counter() < end:
        t_next = time.perf_counter() + every
        key = next(keys)
        n += 1
        await asyncio.to_thread(stacks.add_commit, stack.origins[key], n)
        action = await post(api, f"/api/v1/projects/{key}/releases", {"ref": "main"}, "cut", key, run)
        if action is not None:
            follow.append(asyncio.create_task(deploy_when_tagged(api, action, versions, run)))
        await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
    await asyncio.gather(*follow)


async def post(api: httpx.AsyncClient, url: str, body: dict[str, Any], kind: str, key: str,
               run: Run, version: str = "") -> Action | None:
    sent = time.time()
    try:
        answer = await api.post(url, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    except httpx.HTTPError as exc:
        run.error(f"API {kind}: {type(exc).__name__}")
        return None
    returned = time.time()
    if answer.status_code != 202:
        run.error(f"API {kind}: HTTP {answer.status_code} {answer.text[:160]!r}")
        return None
    data = answer.json()
    action = Action(kind, key, data.get("version") or version, sent, returned, answer.status_code, data.get("job"))
    run.actions.append(action)
    return action


async def wait_job(api: httpx.AsyncClient, job: dict[str, Any] | None, run: Run, timeout: float = 60) -> str:
    if not job:
        return "none"
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            answer = await api.get(job["url"])
        except httpx.HTTPError as exc:
            run.error(f"API job: {type(exc).__name__}")
            return "unreachable"
        if answer.status_code != 200:
            run.error(f"API job: HTTP {answer.status_code}")
            return "error"
        found = answer.json().get("job", answer.json())
        if found.get("finished_at"):
            return str(found.get("status"))
        await asyncio.sleep(0.5)
    return "timed out"


async def deploy_when_tagged(api: httpx.AsyncClient, cut: Action, versions: dict[str, list[str]], run: Run) -> None:
    """Deploy a cut release to qa once its tag job has finished; one deploy at a time per
    project (a second one while qa is busy would be refused, rightly)."""
    status = await wait_job(api, cut.job, run)
    if status not in ("done", "succeeded", "success"):
        run.error(f"tag job ended {status}")
        return
    versions[cut.project].append(cut.version)
    async with run.deploying[cut.project]:
        if time.time() > run.stop - 5:
            return  # the streams are closing: a change now could not be measured
        deployed = await post(api, f"/api/v1/projects/{cut.project}/releases/{cut.version}/deployments",
                              {"environment": "qa"}, "deploy", cut.project, run, cut.version)
        if deployed is not None:
            status = await wait_job(api, deployed.job, run)
            if status not in ("done", "succeeded", "success"):
                run.error(f"deploy job ended {status}")


# --- the run -------------------------------------------------------------------------------


def start_streams(stack: stacks.Stack, cookies: list[str], count: int, ramp: float,
                  run: Run) -> list[tuple[multiprocessing.Process, Any]]:
    """Start client processes of STREAMS_PER_PROCESS streams each and wait until they are ready;
    the streams open later, over `ramp` seconds, once `go` gives them the time."""
    plan = [(cookies[i % len(cookies)], i * ramp / max(1, count)) for i in range(count)]
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for share in range(math.ceil(count / STREAMS_PER_PROCESS)):
        here, there = ctx.Pipe()
        part = plan[share * STREAMS_PER_PROCESS:(share + 1) * STREAMS_PER_PROCESS]
        proc = ctx.Process(target=stream_process, args=("127.0.0.1", stack.port, run.stream_path, part,
                                                        stacks.USER_AGENT, there), daemon=True)
        proc.start()
        there.close()
        procs.append((proc, here))
    for proc, conn in procs:
        if not conn.poll(60) or conn.recv() != "ready":
            raise stacks.StackError(f"stream client process {proc.pid} did not start")
    return procs


def go(procs: list[tuple[multiprocessing.Process, Any]], base: float, stop: float) -> None:
    for _proc, conn in procs:
        conn.send((base, stop))


def collect_streams(procs: list[tuple[multiprocessing.Process, Any]], timeout: float) -> tuple[list[dict[str, Any]], list[tuple[float, float]]]:
    streams: list[dict[str, Any]] = []
    cpu: list[tuple[float, float]] = []
    for proc, conn in procs:
        if conn.poll(timeout):
            found = conn.recv()
            streams += found["streams"]
            cpu.append((found["cpu"], found["wall"]))
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    return streams, cpu


async def probe(stack: stacks.Stack, client: httpx.AsyncClient, run: Run) -> None:
    """Which cheapest endpoint this checkout has, and that /events streams."""
    answer = await client.get("/healthz")
    if answer.status_code == 404:
        run.cheapest = "/login"
        stacks.say("/healthz answers 404: the cheapest endpoint is GET /login (signed out) instead")
    async with client.stream("GET", "/events", headers={"Accept": "text/event-stream"}) as answer:
        if answer.status_code != 200:
            raise stacks.StackError(f"GET /events answered {answer.status_code}: no live stream to load")


async def main_async(args: argparse.Namespace, stack: stacks.Stack, sampler: RssSampler) -> tuple[Run, list[dict[str, Any]], list[tuple[float, float]], float]:
    run = Run()
    api = new_client(stack.base_url, headers={"Authorization": f"Bearer {stack.token}"})
    versions: dict[str, list[str]] = {}
    for key in stack.projects:
        answer = await api.get(f"/api/v1/projects/{key}/releases")
        versions[key] = [r["version"] for r in answer.json()["releases"]] or ["0.0.0"]
    # Before any figure: the stack settled (workers booting take whole seconds of CPU), then one
    # user signed in apart to warm the pages up and measure them one at a time.
    await asyncio.to_thread(settle, stack)
    warm = (await sign_in_burst(stack.base_url, stack.users[:1], stack.password, 0.0, Run()))[0]
    await probe(stack, warm, run)
    await calibrate(stack, warm, versions, run)
    await warm.aclose()
    cpu0 = time.process_time()

    sampler.phase = "sign-in burst"
    stacks.say(f"sign-in burst: {len(stack.users)} users within {args.signin_window:g} s")
    clients = await sign_in_burst(stack.base_url, stack.users, stack.password, args.signin_window, run)
    await asyncio.sleep(1)

    sampler.phase = "load"
    cookies = [cookie_header(c) for c in clients]
    procs = await asyncio.to_thread(start_streams, stack, cookies, args.streams, args.stream_ramp, run)
    stacks.say(f"opening {args.streams} streams to {run.stream_path} over {args.stream_ramp:g} s")
    base = time.time() + 0.2
    stop = run.stop = base + args.stream_ramp + 1 + args.duration + 3
    go(procs, base, stop)
    await asyncio.sleep(args.stream_ramp + 1)
    stacks.say(f"browsing at {args.rate:g} requests/s for {args.duration:g} s, "
               f"a cut every {args.cut_every:g} s")
    await asyncio.gather(browse(stack, clients, api, versions, args.rate, args.duration, run),
                         release_traffic(stack, api, versions, args.cut_every, args.duration, run))
    streams, stream_cpu = await asyncio.to_thread(collect_streams, procs, max(10.0, stop - time.time() + 15))
    client_cpu = time.process_time() - cpu0
    for client in clients:
        await client.aclose()
    await api.aclose()
    return run, streams, stream_cpu, client_cpu


def sse_lags(stack: stacks.Stack, run: Run, streams: list[dict[str, Any]]) -> tuple[list[float], list[float], int, int, int]:
    """Per API action and per stream open when it was sent: the first change naming the release's
    topic at or after the call was sent, minus the moment the call returned (0 when the change came
    first); and the same from the moment the call was sent. Returns both, how many came before
    the call returned, misses, and actions measured (those returned 3 s before the streams close)."""
    lags: list[float] = []
    from_sent: list[float] = []
    early = missed = measured = 0
    ids: dict[tuple[str, str], int | None] = {}
    for action in run.actions:
        if action.returned > run.stop - 3:
            continue
        key = (action.project, action.version)
        if key not in ids:
            ids[key] = stack.release_id(*key)
        rid = ids[key]
        if rid is None:
            continue
        measured += 1
        topic = f"release:{rid}"
        for stream in streams:
            if not stream["opened_at"] or stream["opened_at"] > action.sent:
                continue
            times = [t for t in stream["topics"].get(topic, []) if t >= action.sent]
            if not times:
                missed += 1
                continue
            lag = min(times) - action.returned
            early += lag < 0
            lags.append(max(0.0, lag))
            from_sent.append(min(times) - action.sent)
    return lags, from_sent, early, missed, measured


def report(args: argparse.Namespace, stack: stacks.Stack, run: Run, streams: list[dict[str, Any]],
           stream_cpu: list[tuple[float, float]], client_cpu: float, sampler: RssSampler) -> bool:
    print(f"\nrelapp load suite — {stack.mode} ({stack.base_url}), {len(stack.users)} users, "
          f"{len(streams)} streams to {run.stream_path}, {len(stack.projects)} project(s)")
    achieved = run.answered / run.window if run.window else 0.0
    print(f"\nRequests: {run.sent} sent at an offered {args.rate:g}/s; {achieved:.1f}/s answered "
          f"over the {run.window:.0f} s window; a request started at most {ms(max(run.late, default=0))} "
          f"late (p95 {ms(percentile(run.late, 95))})")
    print(f"{'page':<14}{'n':>6}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}{'unloaded':>11}")
    work = 0.0
    for page in PAGES:
        values = run.latencies.get(page, [])
        alone = percentile(run.unloaded.get(page, []), 50)
        work += 0.0 if math.isnan(alone) else alone * args.rate / len(PAGES)
        label = page if page != "healthz" else run.cheapest
        print(f"{label:<14}{len(values):>6}{ms(percentile(values, 50)):>10}{ms(percentile(values, 95)):>10}"
              f"{ms(percentile(values, 99)):>10}{ms(max(values, default=math.nan)):>10}{ms(alone):>11}")
    print(f"('unloaded': the median of {len(run.unloaded.get('board', []))} requests one at a time before the load. "
          f"The offered rate asks for about {work:.1f} s of server time per second; this machine has "
          f"{os.cpu_count()} cores; 1-minute load average {args.load_before:.1f} before the bench started)")

    ttfb = [t for s in streams for t in s["ttfb"]]
    hello = [t for s in streams for t in s["hello"]]
    never = sum(1 for s in streams if not s["ttfb"])
    print(f"\nStreams: {len(streams)} opened {len(ttfb)} time(s) ({sum(s['reopened'] for s in streams)} "
          f"reopened after the server ended them); {never} never received a byte")
    print(f"  time to first byte: p50 {ms(percentile(ttfb, 50))}, p95 {ms(percentile(ttfb, 95))}, "
          f"max {ms(max(ttfb, default=math.nan))}; hello event p95 {ms(percentile(hello, 95))}")
    lags, from_sent, early, missed, measured = sse_lags(stack, run, streams)
    print(f"  SSE delivery lag over {len(lags)} (action, stream) pairs from {measured} API actions: "
          f"p50 {ms(percentile(lags, 50))}, p95 {ms(percentile(lags, 95))}, max {ms(max(lags, default=math.nan))}; "
          f"{early} arrived before the API call returned (lag 0); {missed} never arrived")
    print(f"  from the moment the API call was sent instead: p50 {ms(percentile(from_sent, 50))}, "
          f"p95 {ms(percentile(from_sent, 95))}, max {ms(max(from_sent, default=math.nan))}")
    print(f"  change events received: {sum(s['events'] for s in streams)}, "
          f"resyncs {sum(s['resyncs'] for s in streams)}")
    cuts = sum(1 for a in run.actions if a.kind == "cut")
    deploys = sum(1 for a in run.actions if a.kind == "deploy")
    print(f"\nReleases: {cuts} cut and {deploys} deployed to qa through the API during the run")

    errors = dict(run.errors)
    for s in streams:
        for kind, count in s["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    if missed:
        errors["SSE change never arrived"] = missed
    print(f"\nErrors: {sum(errors.values())}")
    for kind, count in sorted(errors.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>6}  {kind}")

    print("\nPeak RSS per process (Redis, PostgreSQL, git and the demo deploy command left out):")
    rows = sampler.by_process()
    children: list[int] = []
    for role, pid, rss in rows:
        if "child" in role:
            children.append(rss)
            continue
        print(f"  {role:<44} pid {pid:<8} {rss / 2**20:8.1f} MB")
    if children:
        print(f"  {'worker.py children (' + str(len(children)) + ' processes, the largest)':<44} {'':<12}"
              f"{max(children) / 2**20:8.1f} MB")
    busy = [(sampler.role_of(pid), pid, (last - first) / max(0.5, t1 - t0))
            for (phase, pid), (first, last, t0, t1) in sampler.cpu.items() if phase == "load"]
    busy = [row for row in busy if row[0] and "child" not in row[0] and row[2] >= 0.02]
    if busy:
        print("CPU during the load phase (share of one core): "
              + ", ".join(f"{role} {pid} {share:.0%}" for role, pid, share in sorted(busy)))
    burst_web = [rss for role, _pid, rss in sampler.by_process("sign-in burst") if role == "gunicorn worker"]
    web = [rss for role, _pid, rss in rows if role == "gunicorn worker"]
    print(f"\nSign-in burst: {len(run.signin)} sign-ins within {args.signin_window:g} s: "
          f"p50 {ms(percentile(run.signin, 50))}, p95 {ms(percentile(run.signin, 95))}, "
          f"max {ms(max(run.signin, default=math.nan))}; web worker peak RSS during it "
          f"{max(burst_web, default=0) / 2**20:.1f} MB")
    stream_cpu_share = max((c / w for c, w in stream_cpu if w), default=0.0)
    print(f"Client: browsing process {client_cpu:.1f} CPU s; stream processes at most "
          f"{stream_cpu_share:.0%} of a core each ({len(stream_cpu)} processes)")

    p95 = {page: percentile(run.latencies.get(page, []), 95) for page in PAGES}
    base = p95["healthz"]
    # The ratio means something only below saturation: at saturation queueing inflates both sides
    # (every page, /healthz too, waits its turn) and the ratio drifts towards 1.
    timeouts = sum(n for kind, n in run.errors.items() if kind.split(": ")[-1] in ("ReadTimeout", "ConnectTimeout", "PoolTimeout"))
    below = achieved >= 0.95 * args.rate and timeouts == 0
    saturation = "" if below else f" (saturated: {achieved:.1f} of {args.rate:g}/s answered, {timeouts} timed out)"
    targets = [
        ("offered rate below saturation", below,
         f"{achieved:.1f} of {args.rate:g} requests/s answered, {timeouts} timed out"),
        ("zero errors", sum(errors.values()) == 0, f"{sum(errors.values())} errors"),
        ("every stream's first byte within 1 s", never == 0 and max(ttfb, default=99) < 1.0,
         f"max {ms(max(ttfb, default=math.nan))}, {never} streams without a byte"),
        ("p95(board) <= 10 x p95(" + run.cheapest + ")", below and p95["board"] <= 10 * base,
         (f"{ms(p95['board'])} vs {ms(base)} = {p95['board'] / base:.1f}x" if base else "no baseline") + saturation),
        ("p95(release page) <= 10 x p95(" + run.cheapest + ")", below and p95["release"] <= 10 * base,
         (f"{ms(p95['release'])} vs {ms(base)} = {p95['release'] / base:.1f}x" if base else "no baseline") + saturation),
        ("SSE lag p95 < 1 s", bool(lags) and percentile(lags, 95) < 1.0, f"p95 {ms(percentile(lags, 95))}"),
        ("sign-in burst p95 < 1 s", bool(run.signin) and percentile(run.signin, 95) < 1.0,
         f"p95 {ms(percentile(run.signin, 95))}"),
        ("web worker RSS < 300 MB", bool(web) and max(web) < 300 * 2**20,
         f"peak {max(web, default=0) / 2**20:.1f} MB"),
    ]
    print("\nTargets:")
    for name, ok, detail in targets:
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<42} {detail}")
    return all(ok for _name, ok, _detail in targets)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--make-run", action="store_true", help="run against `python -m relapp.run` (smaller)")
    parser.add_argument("--users", type=int, help="signed-in users (50; 20 with --make-run)")
    parser.add_argument("--streams", type=int, help="open SSE streams (500; 100 with --make-run)")
    parser.add_argument("--projects", type=int, default=5, help="projects in production mode (5)")
    parser.add_argument("--rate", type=float,
                        help="offered page requests per second (0.6 per user: 30; 12 with --make-run)")
    parser.add_argument("--duration", type=float, default=100.0, help="seconds of browsing (100)")
    parser.add_argument("--cut-every", type=float, default=6.0, help="seconds between two cuts (6)")
    parser.add_argument("--signin-window", type=float, default=5.0, help="seconds the sign-in burst spans (5)")
    parser.add_argument("--stream-ramp", type=float, default=5.0, help="seconds over which streams open (5)")
    parser.add_argument("--workers", type=int, default=2, help="worker.py processes without --queues (2)")
    parser.add_argument("--redis-db", type=int, default=11, help="the Redis database number (11; must be empty)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and its logs")
    args = parser.parse_args(argv)
    args.users = args.users or (20 if args.make_run else 50)
    args.streams = args.streams if args.streams is not None else (100 if args.make_run else 500)
    # Each user offers the same rate: 50 users 30 requests/s, make run's 20 users 12 (one web
    # worker there: 30 would be past its saturation, where the ratios mean nothing).
    args.rate = args.rate or PER_USER_RATE * args.users
    if args.duration < 15:
        parser.error("--duration must be at least 15 seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a `timeout`, a CI stop) unwinds like Ctrl-C, so the stack is stopped in `finally`.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    args.load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    t0 = time.monotonic()
    try:
        if args.make_run:
            stack = stacks.start_make_run(users=args.users, keep=args.keep)
        else:
            stack = stacks.start_production(users=args.users, projects=args.projects, workers=args.workers,
                                            redis_db=args.redis_db, keep=args.keep)
    except stacks.StackError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2
    sampler = RssSampler(stack.roots())
    sampler.start()
    try:
        run, streams, stream_cpu, client_cpu = asyncio.run(main_async(args, stack, sampler))
        sampler.halt.set()
        sampler.join()
        ok = report(args, stack, run, streams, stream_cpu, client_cpu, sampler)
    except stacks.StackError as exc:
        print(f"load: {exc}", file=sys.stderr)
        ok = False
    finally:
        sampler.halt.set()
        if args.keep:
            print(f"\nLogs and data kept in {stack.tmp}")
        stack.stop()
    print(f"\nWhole run: {time.monotonic() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
