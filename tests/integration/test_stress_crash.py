"""Issue 5 §1, crash consistency of the LMDB cache under the CLI and the Exim module.

Each trial starts, on one cache file, every kind of writer at once and kills each of them with
SIGKILL at a random moment of its run:
  - two `mtasts getmta` on domains never seen (DNS + policy fetch + one store);
  - `mtasts refresh` of a cached domain whose TXT id and policy the world has just changed
    (fetch + store of the new policy over the old one);
  - `mtasts purge` of a cached domain (one delete transaction);
  - the module in a ctypes harness (HARNESS in stress_helpers.py) resolving six new domains in
    a row, printing each answer once the call returned (its store committed);
  - the module in the real `exim4 -be`, three new domains in one expansion.
The random kill moments are drawn up to the run time of each kind of writer, measured (x1.2)
in the first, undisturbed trials, so most kills land mid-run. Just before each kill
/proc/<pid>/task/*/syscall says whether a thread sat in a write or sync call on the cache (the
commit's writev/fdatasync/pwrite64), which is counted and reported. A commit lasts well under
a millisecond of a writer's ~100 ms, so random kills seldom land inside one:
test_sigkill_at_each_step_of_a_commit then kills every kind of writer exactly at each step of
a commit, through an LD_PRELOAD shim (stress_helpers.KILL_SHIM_C).

After every trial, before anything else touches the file:
  - nothing was moved aside (no cache.mdb.corrupt-*), mdb_dump reads the whole file with no
    complaint, and `mtasts dump --json` opens it without a recovery notice and agrees with the
    raw keys: the file needs no recovery step;
  - every domain is whole: seed keys <d>:mode/mx/expire/id all present or all absent, and equal
    to the policy in its extras record `_mtasts:<d>` (stress_helpers.check_cache);
  - every domain no writer touched is byte-for-byte what it was before the trial;
  - a touched domain holds its old entry or a complete new one, and the new one whenever its
    writer reported success before the kill (a printed answer, exit status 0): what was
    committed before the kill is intact; every policy in the cache is one the world served;
  - the next write takes the writer lock at once (a writer killed holding LMDB's robust
    mutex must not block the next one).

CI: 20 trials; MTASTS_LONG=1: 120 trials (bench/stress.py); MTASTS_SANITIZE=1: 3.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import exim_helpers as eh
import sts_helpers as sh
import stress_helpers as st

TRIALS = st.counts(ci=20, long=120, sanitize=3)
CLI_MISSES = 2
HARNESS_DOMAINS = 6
EXIM_DOMAINS = 3
PER_TRIAL = CLI_MISSES + HARNESS_DOMAINS + EXIM_DOMAINS
SEED = int(os.environ.get("MTASTS_STRESS_SEED", "0")) or int(time.time())


def fresh_site(n: int) -> st.Site:
    mode = ("enforce", "enforce", "testing", "none")[n % 4]
    domain = f"crash-{n:05d}.example"
    mx = (f"mx1.{domain}",) if n % 3 else (f"mx1.{domain}", f"*.backup.{domain}",
                                           f"mx{n % 7}.provider.example")
    return st.Site(domain, policy_id=f"c{n}", mode=mode, mx=mx)


@dataclass(eq=False)
class Writer:
    kind: str                   # cli-miss | cli-refresh | cli-purge | harness | exim
    domains: list[str]
    process: subprocess.Popen
    started: float
    kill_at: float = 0.0        # seconds after start
    killed: bool = False
    in_write: str | None = None
    duration: float = 0.0
    out: str = ""
    stdin: bool = False         # exim: the expression came through standard input

    def finished_ok(self) -> bool:
        return not self.killed and self.process.returncode == 0


@dataclass
class Figures:
    trials: int = 0
    processes: Counter = field(default_factory=Counter)
    killed: Counter = field(default_factory=Counter)
    in_write: Counter = field(default_factory=Counter)
    write_calls: Counter = field(default_factory=Counter)
    completed_before_kill: int = 0
    domains_checked: int = 0
    next_write_max: float = 0.0
    trial_seconds: list[float] = field(default_factory=list)


class CrashRun:
    def __init__(self, world, workdir: Path, exim_config: Path):
        self.world = world
        self.workdir = workdir
        self.exim_config = exim_config
        self.cache = workdir / "cache.mdb"
        self.config = st.write_config(workdir / "mtasts.toml", cache=self.cache, world=world,
                                      dns_timeout_ms=3000, fetch_timeout_ms=5000,
                                      lookup_timeout_ms=10000)
        self.harness = st.write_harness(workdir)
        self.sites: dict[str, st.Site] = {}
        self.served: dict[str, set[tuple[str, str, str]]] = {}
        self.fresh = (fresh_site(n) for n in itertools.count())
        self.pool: list[str] = []           # domains with a committed policy
        self.bounds: dict[str, float] = {}  # kind -> run time of an undisturbed run
        self.figures = Figures()
        self.rng = random.Random(SEED)

    def take_fresh(self, count: int) -> list[str]:
        out = []
        for _ in range(count):
            site = next(self.fresh)
            self.sites[site.domain] = site
            self.served[site.domain] = {(site.policy_id, site.mode, ":".join(site.mx))}
            out.append(site.domain)
        return out

    # -- the writers
    def start(self, kind: str, domains: list[str], kill_at: tuple[str, int] | None = None,
              shim: Path | None = None) -> Writer:
        """Starts one writer; `kill_at` = (step, n): the kill shim (stress_helpers.KILL_SHIM_C)
        sends it SIGKILL at that step of its n-th commit."""
        env = st.base_env()
        text, stdin_path = None, os.devnull
        if kind == "cli-miss":
            cmd = [str(st.CLI), "--config", str(self.config), "getmta", "--", domains[0]]
        elif kind == "cli-refresh":
            cmd = [str(st.CLI), "--config", str(self.config), "refresh", "--json", domains[0]]
        elif kind == "cli-purge":
            cmd = [str(st.CLI), "--config", str(self.config), "purge", domains[0]]
        elif kind == "harness":
            cmd = [eh.PYTHON, str(self.harness), "sequence", str(st.MODULE), *domains]
            env = st.harness_env(self.config)
        else:
            expression, text = st.be_arguments([("getmta", d) for d in domains])
            cmd = [eh.EXIM, "-C", str(self.exim_config), "-be", *expression]
            env = eh.exim_env({"MTASTS_CONFIG": str(self.config)})
            if text is not None:   # a long expression goes through standard input
                stdin_path = self.workdir / "exim-stdin.txt"
                stdin_path.write_text(text)
        if kill_at:
            step, n = kill_at
            env = st.preload(dict(env), shim)
            env["MTASTS_KILL_AT"] = f"{step}:{n}:{self.cache}"
        with open(stdin_path) as stdin:
            process = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env)
        return Writer(kind, domains, process, time.monotonic(), stdin=text is not None)

    def trial(self) -> None:
        figures = self.figures
        began = time.monotonic()
        before = st.check_cache(st.mdb_dump(self.cache)[0]) if self.cache.exists() else None
        plan: list[tuple[str, list[str]]] = [("cli-miss", self.take_fresh(1))
                                             for _ in range(CLI_MISSES)]
        plan.append(("harness", self.take_fresh(HARNESS_DOMAINS)))
        plan.append(("exim", self.take_fresh(EXIM_DOMAINS)))
        candidates = [d for d in self.pool]
        self.rng.shuffle(candidates)
        if len(candidates) >= 2:
            refreshed, purged = candidates[0], candidates[1]
            site = self.sites[refreshed]
            site.policy_id = f"r{figures.trials}x{self.rng.randrange(1 << 20)}"
            site.mx = (f"mx{figures.trials}.{refreshed}",)
            site.mode = self.rng.choice(("enforce", "testing"))
            site.publish(self.world)
            self.served[refreshed].add((site.policy_id, site.mode, ":".join(site.mx)))
            plan += [("cli-refresh", [refreshed]), ("cli-purge", [purged])]

        writers = [self.start(kind, domains) for kind, domains in plan]
        # A kind of writer seen for the first time runs undisturbed, to measure its run time;
        # later ones are killed at a random moment of that time, in time order.
        doomed = [w for w in writers if w.kind in self.bounds]
        for w in doomed:
            w.kill_at = self.rng.uniform(0, self.bounds[w.kind])
        for w in sorted(doomed, key=lambda w: w.kill_at):
            delay = w.started + w.kill_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if w.process.poll() is None:
                w.in_write = st.syscall_on(w.process.pid, [str(self.cache)])
                w.process.send_signal(signal.SIGKILL)
                w.killed = True
        for w in writers:
            try:
                w.out, err = w.process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                w.process.kill()
                raise AssertionError(f"{w.kind} {w.domains} hung")
            w.duration = time.monotonic() - w.started
            assert "Sanitizer" not in err, err
            if w.killed and w.process.returncode != -signal.SIGKILL:
                w.killed = False  # it exited by itself just before the signal
            if not w.killed:
                assert w.process.returncode == 0, (w.kind, w.domains, w.process.returncode, err)
            figures.processes[w.kind] += 1
            if w.killed:
                figures.killed[w.kind] += 1
            if w.in_write:
                figures.in_write[w.kind] += 1
                figures.write_calls[w.in_write.split()[0]] += 1
        for w in writers:
            if w not in doomed:
                self.bounds[w.kind] = w.duration * 1.2

        self.check(before, writers)
        # The next writer must get LMDB's write lock at once, even if a killed writer held it.
        start = time.monotonic()
        p = st.cli(self.config, "purge", "never-cached.example", timeout=30)
        assert p.returncode == 0 and "was not cached" in p.stderr, p
        figures.next_write_max = max(figures.next_write_max, time.monotonic() - start)
        figures.trials += 1
        figures.trial_seconds.append(time.monotonic() - began)

    # -- the checks
    def check(self, before: st.CacheState | None, writers: list[Writer]) -> None:
        state = st.check_cache_file(self.cache, self.config)
        assert state.problems == [], "\n".join(state.problems)
        touched = {d for w in writers for d in w.domains}
        if before is not None:
            for domain in set(before.extras) - touched:
                assert state.raw_of(domain) == before.raw_of(domain), \
                    f"{domain} changed although no writer touched it"
        for domain, policy in state.policies.items():
            if policy is not None:
                assert policy in self.served.get(domain, set()), \
                    f"{domain}: cached {policy}, never served by the world"

        for w in writers:
            done = self.completed(w)
            self.figures.completed_before_kill += len(done) if w.killed else 0
            for domain in w.domains:
                site = self.sites[domain]
                now = state.policies.get(domain, "absent")
                old = before.policies.get(domain, "absent") if before else "absent"
                new = (site.policy_id, site.mode, ":".join(site.mx))
                if w.kind == "cli-purge":
                    if domain in done:
                        assert domain not in state.extras, f"purged {domain} is back: {now}"
                    else:
                        assert domain not in state.extras or \
                            state.raw_of(domain) == before.raw_of(domain), \
                            f"{domain}: half-purged"
                    continue
                if domain in done:
                    # Answered before the kill: its store was committed and must be intact.
                    assert now == new, f"{w.kind} answered {domain} but the cache has {now}"
                else:
                    assert now in ("absent", old, new), f"{domain}: {now} is neither old nor new"
                    if now == old and old != "absent" and w.kind != "cli-refresh":
                        assert state.raw_of(domain) == before.raw_of(domain)
        self.figures.domains_checked += len(state.extras)
        self.pool = [d for d, p in state.policies.items() if p is not None and d in self.sites]

    def completed(self, w: Writer) -> set[str]:
        """Domains whose call returned (answer seen) before the kill, answers checked."""
        out = set()
        if w.kind == "harness":
            for line in w.out.splitlines():
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[0] == "done":
                    domain, rc, answer = parts[1], parts[2], parts[3] if len(parts) > 3 else ""
                    assert (rc, answer) == ("0", self.sites[domain].mode), line
                    out.add(domain)
            return out
        if not w.finished_ok():
            return out
        if w.kind == "exim":
            answers = eh.be_output(w.out, "" if w.stdin else None).split(sh.SEPARATOR)
            assert answers == [self.sites[d].mode for d in w.domains], w.out
        elif w.kind == "cli-miss":
            assert w.out == self.sites[w.domains[0]].mode, w.out
        return set(w.domains)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    eh.require_root_and_exim()
    eh.require_built(st.CLI, st.MODULE)
    if not os.path.exists("/usr/bin/mdb_dump"):
        pytest.fail("mdb_dump is not installed (apt-get install lmdb-utils)")
    work = tmp_path_factory.mktemp("stress-crash")
    work.chmod(0o755)
    sites = [fresh_site(n) for n in range((TRIALS + 3) * PER_TRIAL + 300)]
    with st.start_world(work / "w", sites) as world:
        exim_config = sh.write_exim_config(work / "exim")
        yield CrashRun(world, work, exim_config)


def test_sigkill_during_writes_leaves_a_consistent_cache(run):
    while len(run.bounds) < 5:  # undisturbed runs measure how long each kind of writer runs
        run.trial()
    calibration = run.figures.trials
    for _ in range(TRIALS):
        run.trial()
    f = run.figures
    killed = sum(f.killed.values())
    stale = subprocess.run(["mdb_stat", "-n", "-rr", str(run.cache)], capture_output=True,
                           text=True).stdout
    st.report(f"crash consistency (seed {SEED})", [
        f"trials: {f.trials - calibration} with random SIGKILLs (+{calibration} calibration)",
        f"writer processes: {dict(f.processes)}",
        f"killed mid-run: {killed} {dict(f.killed)}",
        f"killed inside a write/sync system call on the cache: {sum(f.in_write.values())} "
        f"{dict(f.in_write)} by call {dict(f.write_calls)}",
        f"calls that completed (and were checked as committed) in processes later killed: "
        f"{f.completed_before_kill}",
        f"entries checked after kills: {f.domains_checked}; problems found: 0",
        f"kill bounds (s): { {k: round(v, 3) for k, v in run.bounds.items()} }",
        f"first write after a trial took at most {st.ms(f.next_write_max)}",
        f"trial wall time: median {st.ms(st.percentile(f.trial_seconds, 50))}, "
        f"max {st.ms(max(f.trial_seconds))}",
        f"cache file: {run.cache.stat().st_size} bytes; stale reader slots at the end: "
        f"{' '.join(l.strip() for l in stale.splitlines() if 'stale' in l) or 'none reported'}",
    ])
    assert killed >= TRIALS, f"only {killed} kills landed mid-run: the bounds are off"


# The steps of a commit (see KILL_SHIM_C in stress_helpers.py).
COMMIT_STEPS = {
    "data": "before the dirty data pages are written",
    "sync": "data pages written, not yet durable (fdatasync), meta page untouched",
    "meta": "data pages durable, the meta page (the commit proper) not yet written",
    "committed": "right after the meta page was written, before the call returned",
}
STEP_CASES = [(kind, step) for kind in ("cli-miss", "cli-refresh", "cli-purge", "harness", "exim")
              for step in COMMIT_STEPS]
if eh.sanitized():
    STEP_CASES = [(kind, step) for kind, step in STEP_CASES if step in ("sync", "committed")]


@pytest.mark.parametrize("kind,step", STEP_CASES)
def test_sigkill_at_each_step_of_a_commit(run, kill_shim, kind, step):
    """The writer is killed exactly at one step of a commit: the file must open with no
    recovery, hold the state before that commit (after the meta page: the new entry), keep
    every earlier commit of the same process, and take the next write at once."""
    while len(run.pool) < 2:
        fresh = run.take_fresh(1)[0]
        assert st.cli(run.config, "getmta", "--", fresh).returncode == 0
        run.pool.append(fresh)
    before = st.check_cache(st.mdb_dump(run.cache)[0])
    if kind in ("harness", "exim"):
        domains = run.take_fresh(3)
    elif kind == "cli-miss":
        domains = run.take_fresh(1)
    else:
        domains = [run.pool.pop(0)]
        if kind == "cli-refresh":
            site = run.sites[domains[0]]
            site.policy_id = f"s{run.rng.randrange(1 << 30)}"
            site.mx = (f"mx-step.{site.domain}",)
            site.publish(run.world)
            run.served[site.domain].add((site.policy_id, site.mode, ":".join(site.mx)))
    # harness and exim store three domains: the first commit completes, the second is cut.
    nth = 2 if kind in ("harness", "exim") else 1
    w = run.start(kind, domains, kill_at=(step, nth), shim=kill_shim)
    w.out, err = w.process.communicate(timeout=60)
    assert "Sanitizer" not in err, err
    assert w.process.returncode == -signal.SIGKILL, (w.process.returncode, w.out, err)

    state = st.check_cache_file(run.cache, run.config)
    assert state.problems == [], "\n".join(state.problems)
    for domain in set(before.extras) - set(domains):
        assert state.raw_of(domain) == before.raw_of(domain), f"{domain} changed"
    committed = domains[:nth] if step == "committed" else domains[:nth - 1]
    for domain in domains:
        site = run.sites[domain]
        if domain not in committed:
            assert state.raw_of(domain) == before.raw_of(domain), \
                f"{domain}: the cut commit left {state.raw_of(domain)}"
        elif kind == "cli-purge":
            assert domain not in state.extras, state.raw_of(domain)
        else:
            assert state.policies.get(domain) == (site.policy_id, site.mode, ":".join(site.mx)), \
                f"{domain}: committed before the kill, but the cache has {state.raw_of(domain)}"

    # The next writer is not blocked, and the same work now goes through.
    again = run.start(kind, domains)
    again.out, err = again.process.communicate(timeout=60)
    assert again.process.returncode == 0, (again.out, err)
    state = st.check_cache_file(run.cache, run.config)
    assert state.problems == [], "\n".join(state.problems)
    for domain in domains:
        site = run.sites[domain]
        if kind == "cli-purge":
            assert domain not in state.extras
        else:
            assert state.policies.get(domain) == (site.policy_id, site.mode, ":".join(site.mx))
            run.pool.append(domain)
