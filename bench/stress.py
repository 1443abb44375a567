#!/usr/bin/python3
"""The long runs of issue 5 (proof under stress): runs tests/integration/test_stress_*.py with
MTASTS_LONG=1 and prints the figures they report, labelled with the date and the machine. For
the cache, the CLI and the Exim module: crash consistency (120 trials of random SIGKILLs plus
every commit step), concurrency (64 processes x 300 messages), downgrade (every fault through
both triggers), bad environments. For mtastsd (part "daemon"): 120 trials of SIGKILLs while it
fetches, refreshes and purges, refreshing beside 64 processes x 100 messages, 3000 hostile
policy servers at once, 10 000 malformed requests per protocol and 1000 held connections.

    /usr/bin/python3 bench/stress.py --build-dir build [--only crash,concurrency,daemon] [--seed N]

As root (exim4 -C, setpriv, tmpfs). Exit status: pytest's (0 when every test passed or failed
as expected: the xfail markers document known bugs).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]
PARTS = ["crash", "concurrency", "downgrade", "environment", "daemon"]


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{os.cpu_count()} vCPU ({model or platform.processor()}){memory}, "
            f"Linux {platform.release()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=str(SOURCE / "build"))
    parser.add_argument("--only", default=",".join(PARTS),
                        help="comma-separated subset of " + ",".join(PARTS))
    parser.add_argument("--seed", type=int, default=0, help="crash trials' random seed")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")

    with tempfile.NamedTemporaryFile("r", prefix="mtasts-stress-", suffix=".txt") as report:
        env = dict(os.environ, MTASTS_LONG="1", MTASTS_STRESS_REPORT=report.name,
                   MTASTS_BUILD_DIR=str(Path(args.build_dir).resolve()),
                   MTASTS_SOURCE_DIR=str(SOURCE))
        env.setdefault("MTASTS_SANITIZE", "0")
        if args.seed:
            env["MTASTS_STRESS_SEED"] = str(args.seed)
        files = [str(SOURCE / "tests" / "integration" / f"test_stress_{p}.py") for p in parts]
        load_before = os.getloadavg()
        started = time.monotonic()
        run = subprocess.run(["/usr/bin/python3", "-m", "pytest", "-q", "-rxXf",
                              "-p", "no:cacheprovider", *files],
                             env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - started
        load_after = os.getloadavg()
        figures = Path(report.name).read_text()

    summary = [line for line in run.stdout.splitlines()
               if line.startswith(("XFAIL", "XPASS", "FAILED", "ERROR"))
               or " passed" in line or " failed" in line]
    print(f"mtasts stress long run, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {machine()}")
    print(f"build: {Path(args.build_dir).resolve()}; parts: {', '.join(parts)}; "
          f"wall time {elapsed:.0f} s")
    print(f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}: "
          "anything else running on the machine shows in the timings")
    print()
    print(figures.rstrip() or "(no figures: see the pytest output below)")
    print()
    print("\n".join(summary))
    if run.returncode != 0:
        print(run.stdout[-20000:], file=sys.stderr)
        print(run.stderr[-5000:], file=sys.stderr)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
