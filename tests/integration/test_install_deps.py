"""The README's test command on a fresh Debian 12 machine: every external program, library and
Python module the tests use must come from a package that scripts/install-deps.sh installs, and
no test may skip because one is missing (issue 10).

USES below names each one with the Debian package that ships it.
- test_the_table_lists_everything_the_tests_use scans the test sources (tests/: integration
  tests, the test world, the unit tests) for what they run or load: the program of a
  subprocess call, shutil.which(), ctypes.util.find_library(), absolute paths of programs and
  libraries, third-party imports (also in the Python scripts the tests pass to `python3 -c`).
  Anything the table does not list fails, and so does an entry nothing uses any more.
- test_install_deps_installs_every_package: each package of the table is in install-deps.sh's
  lists (`scripts/install-deps.sh --list`).
- test_each_package_ships_what_the_tests_use: on this machine (after install-deps.sh) each
  program, path, library and module is there, and dpkg says the declared package ships it, so
  the table cannot name the wrong package.
- test_no_test_skips_for_want_of_a_package: a missing program or package fails the test that
  needs it, naming the package, instead of a skip that CI would report as a pass.
"""

from __future__ import annotations

import ast
import ctypes.util
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SOURCE = Path(os.environ.get("MTASTS_SOURCE_DIR", Path(__file__).resolve().parents[2]))
TESTS = SOURCE / "tests"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# What the tests use, by kind, and the Debian package that ships it (dpkg -S).
USES: dict[str, dict[str, str]] = {
    # run by name, from PATH
    "program": {
        "bash": "bash",                          # scripts/fetch-postfix.sh
        "cdb": "tinycdb",                        # reads mtastsd's cdb export
        "dpkg-query": "dpkg",                    # this check
        "exim4": "exim4-daemon-heavy",           # ${dlfunc} needs the heavy daemon
        "g++": "g++",                            # where the ASan runtime is
        "gcc": "gcc",                            # stand-in modules, the kill shim
        "ip": "iproute2",                        # network namespaces
        "ldconfig": "libc-bin",                  # this check
        "mdb_dump": "lmdb-utils",
        "mdb_stat": "lmdb-utils",
        "mount": "mount",
        "nm": "binutils",
        "setpriv": "util-linux",
        "systemd-analyze": "systemd",
        "systemd-socket-activate": "systemd",
        "timeout": "coreutils",
        "tmux": "tmux",                          # a terminal for `mtasts warm`'s progress
        "umount": "mount",
        "unbound": "unbound",                    # the MTAs' validating resolver (DANE)
        "unbound-host": "unbound-host",
        "unshare": "util-linux",
    },
    # absolute paths of programs and libraries
    "path": {
        "/bin/sh": "dash",
        "/usr/bin/mdb_dump": "lmdb-utils",
        "/usr/bin/mdb_stat": "lmdb-utils",
        "/usr/bin/redis-server": "redis-server",
        "/usr/bin/redis-sentinel": "redis-sentinel",
        "/usr/bin/python3": "python3-minimal",   # Debian's, with python3-dnslib & co.
        "/usr/lib/aarch64-linux-gnu/faketime": "libfaketime",
        "/usr/lib/faketime": "libfaketime",
        "/usr/lib/x86_64-linux-gnu/faketime": "libfaketime",
        "/usr/sbin/exim4": "exim4-daemon-heavy",
    },
    # ctypes.util.find_library(NAME)
    "library": {
        "unbound": "libunbound8",
    },
    # third-party Python modules
    "module": {
        "cryptography": "python3-cryptography",
        "dnslib": "python3-dnslib",
        "redis": "python3-redis",
        "jsonschema": "python3-jsonschema",
        "pytest": "python3-pytest",
    },
}
# Paths the tests name that are not dependencies: where the packaging installs mtasts itself.
OURS = {"/usr/sbin/mtastsd"}

SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
ABSOLUTE = re.compile(r"(?<![\w.~/-])/(?:usr/)?(?:s?bin|lib|libexec)/[\w.+-]+(?:/[\w.+-]+)*")
IMPORT = re.compile(r"^\s*import\s+([\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*)"
                    r"\s*(?:#.*)?$|^\s*from\s+([\w.]+)\s+import\s")


def dotted(node: ast.AST) -> str:
    """'subprocess.run' for the expression subprocess.run, '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def not_used(tree: ast.AST) -> set[int]:
    """ids of the strings that name nothing the tests run: docstrings, and this file's tables
    (which must not count as uses of what they list)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and text(body[0].value) is not None:
                out.add(id(body[0].value))
        target = node.target if isinstance(node, ast.AnnAssign) else \
            node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(target, ast.Name) and target.id in ("USES", "OURS") and node.value:
            out |= {id(n) for n in ast.walk(node.value)}
    return out


def scan_python(path: Path, found: dict) -> None:
    source = path.read_text()
    where = str(path.relative_to(SOURCE))
    tree = ast.parse(source, filename=str(path))
    prose = not_used(tree)
    # Names bound to program names (`for compiler in ("g++", "gcc")`, `tool = "cdb"`) and to
    # command lines (`NOBODY = ["setpriv", ...]`, `cmd = ["unshare", ...]`).
    bound: dict[str, list[str]] = defaultdict(list)
    lists: dict[str, list[ast.AST]] = defaultdict(list)
    commands: list[tuple[ast.AST, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and \
                isinstance(node.iter, (ast.Tuple, ast.List)):
            bound[node.target.id] += [t for t in map(text, node.iter.elts) if t]
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            if text(node.value):
                bound[target].append(text(node.value))
            elif isinstance(node.value, (ast.List, ast.Tuple)) and node.value.elts:
                lists[target].append(node.value.elts[0])
                if target in ("cmd", "command", "argv"):
                    commands.append((node.value, node.lineno))
        elif isinstance(node, ast.Call) and dotted(node.func).startswith("subprocess.") and \
                dotted(node.func).rpartition(".")[2] in SUBPROCESS_CALLS and node.args and \
                isinstance(node.args[0], (ast.List, ast.Tuple)) and node.args[0].elts:
            commands.append((node.args[0], node.lineno))

    def program(node: ast.AST, line: int) -> None:
        if isinstance(node, ast.Starred) and isinstance(node.value, ast.Name):
            for first in lists.get(node.value.id, []):  # [*NOBODY, ...]
                if not isinstance(first, ast.Starred):
                    program(first, line)
            return
        names = [text(node)] if text(node) else bound.get(getattr(node, "id", ""), [])
        for name in names:
            if "/" not in name:  # absolute paths are found below
                found["program"][name].add(f"{where}:{line}")

    for command, line in commands:
        program(command.elts[0], line)
        # ["ip", "netns", "exec", NS, PROGRAM, ...]
        words = [text(e) for e in command.elts]
        if words[:3] == ["ip", "netns", "exec"] and len(command.elts) > 4:
            program(command.elts[4], line)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            first = node.args[0] if node.args else None
            if name.endswith("shutil.which") and first is not None and text(first):
                found["program"][text(first)].add(f"{where}:{node.lineno}")
            elif name.endswith("find_library") and first is not None and text(first):
                found["library"][text(first)].add(f"{where}:{node.lineno}")
        elif text(node) is not None and id(node) not in prose:
            for match in ABSOLUTE.findall(text(node)):
                found["path"][match.rstrip(".")].add(f"{where}:{node.lineno}")
    # Imports by line, so that the scripts embedded in strings count too.
    local = {p.stem for p in TESTS.rglob("*.py")}
    for number, line in enumerate(source.splitlines(), 1):
        m = IMPORT.match(line)
        if not m:
            continue
        modules = [m.group(2)] if m.group(2) else [
            part.split()[0] for part in m.group(1).split(",")]
        for module in modules:
            top = module.split(".")[0]
            if top and top not in sys.stdlib_module_names and top not in local \
                    and top != "__future__":
                found["module"][top].add(f"{where}:{number}")


def scan_cpp(path: Path, found: dict) -> None:
    where = str(path.relative_to(SOURCE))
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("//"):
            continue
        for literal in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
            for match in ABSOLUTE.findall(literal):
                found["path"][match].add(f"{where}:{number}")


def scan() -> dict[str, dict[str, set[str]]]:
    """kind -> name -> where the tests use it."""
    found: dict = {kind: defaultdict(set) for kind in USES}
    for path in sorted(TESTS.rglob("*")):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        if path.suffix == ".py":
            scan_python(path, found)
        elif path.suffix in (".cpp", ".hpp", ".h", ".cc"):
            scan_cpp(path, found)
    for path in OURS:
        found["path"].pop(path, None)
    return found


def listed_packages() -> set[str]:
    r = subprocess.run(["bash", str(SOURCE / "scripts" / "install-deps.sh"), "--list"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def candidates(path: str) -> list[str]:
    """Where dpkg may have recorded `path`: itself or its target, each with and without /usr
    (the merged /usr: dpkg knows /bin/ip, PATH finds /usr/bin/ip)."""
    out = []
    for p in (path, os.path.realpath(path)):
        out += [p, p.removeprefix("/usr") if p.startswith("/usr/") else "/usr" + p]
    return out


def owners(paths: list[str]) -> dict[str, set[str]]:
    """path -> the packages dpkg says ship it, by one dpkg-query for all of them."""
    wanted = {c: p for p in paths for c in candidates(p)}
    r = subprocess.run(["dpkg-query", "-S", *wanted], capture_output=True, text=True)
    out: dict[str, set[str]] = defaultdict(set)
    for line in r.stdout.splitlines():
        packages, _, shipped = line.rpartition(": ")
        if shipped in wanted and not packages.startswith("diversion"):
            out[wanted[shipped]] |= {p.strip().split(":")[0] for p in packages.split(",")}
    return out


def test_the_table_lists_everything_the_tests_use():
    found = scan()
    # The scan must see what we know the tests use, or it has gone blind.
    assert "cdb" in found["program"] and "dnslib" in found["module"], found
    unlisted = [f"{kind} {name!r} (used at {', '.join(sorted(found[kind][name])[:3])})"
                for kind in USES for name in sorted(found[kind]) if name not in USES[kind]]
    assert unlisted == [], (
        "the tests use what tests/integration/test_install_deps.py's USES does not list: add "
        "each with the Debian package that ships it (dpkg -S PATH) and add that package to "
        "scripts/install-deps.sh:\n  " + "\n  ".join(unlisted))
    stale = [f"{kind} {name!r}" for kind in USES for name in USES[kind] if name not in found[kind]]
    assert stale == [], f"USES lists what no test uses any more: {stale}"


def test_install_deps_installs_every_package():
    listed = listed_packages()
    wanted = {package: f"{kind} {name}" for kind in USES for name, package in USES[kind].items()}
    missing = sorted(f"{package} (for {why})" for package, why in wanted.items()
                     if package not in listed)
    assert missing == [], f"scripts/install-deps.sh does not install: {missing}"


def test_each_package_ships_what_the_tests_use():
    """After install-deps.sh: each program, path, library and module is there and is shipped
    by the package the table names."""
    found: list[tuple[str, str | None, str]] = []  # (what, path or None, package)
    for name, package in USES["program"].items():
        found.append((f"program {name}", shutil.which(name, path=SYSTEM_PATH), package))
    by_package = defaultdict(list)
    for path, package in USES["path"].items():
        by_package[package].append(path)
    for package, paths in by_package.items():
        present = [p for p in paths if os.path.exists(p)]
        if not present:  # architecture-specific alternatives: one of them
            found.append((" or ".join(paths), None, package))
        found += [(path, path, package) for path in present]
    for name, package in USES["library"].items():
        soname = ctypes.util.find_library(name)
        path = None
        if soname:
            r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True)
            path = next((line.rpartition(" => ")[2] for line in r.stdout.splitlines()
                         if line.strip().startswith(soname + " ")), None)
        found.append((f"library {name}", path, package))
    for name, package in USES["module"].items():
        spec = importlib.util.find_spec(name)
        found.append((f"Python module {name} (for {sys.executable})", spec and spec.origin,
                      package))

    shipped = owners([path for _, path, _ in found if path])
    problems = []
    for what, path, package in found:
        if path is None:
            problems.append(f"{what} is not installed (apt-get install {package}; "
                            "scripts/install-deps.sh installs it)")
        elif package not in shipped[path]:
            problems.append(f"{what} ({path}) is shipped by {sorted(shipped[path]) or 'no package'}"
                            f", not by {package} as USES says")
    assert problems == [], "\n".join(problems)


# Words of a skip reason that mean "something is not installed". Skips that remain: not root,
# the sanitizer build's known incompatibilities, mtastsd not built, limits of the machine.
MISSING = re.compile(r"install|\bneeded\b|\bmissing\b|not found|could not be fetched|"
                     r"no C compiler", re.IGNORECASE)


def test_no_test_skips_for_want_of_a_package():
    """pytest.skip / skipif / importorskip on a missing program or package would let CI pass
    without running the test: such tests fail instead, naming the package."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = dotted(node.func)
            where = f"{path.relative_to(SOURCE)}:{node.lineno}"
            if name.endswith("importorskip"):
                offenders.append(f"{where}: importorskip")
            elif name.endswith(("pytest.skip", "mark.skipif", "mark.skip")):
                reason = " ".join(c.value for c in ast.walk(node)
                                  if isinstance(c, ast.Constant) and isinstance(c.value, str))
                if MISSING.search(reason):
                    offenders.append(f"{where}: {reason!r}")
    assert offenders == [], ("skips for something not installed (pytest.fail with the package "
                             "to install instead):\n  " + "\n  ".join(offenders))
