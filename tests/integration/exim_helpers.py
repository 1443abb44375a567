"""Helpers and fixtures for the Exim integration tests (test_exim_*.py) and bench/exim_bench.py,
and the pieces every integration test shares: the build's paths, the mtasts TOML config
(`write_mtasts_config`), Exim configs with the shipped fragments (`write_packaged_exim_config`),
libfaketime, stopping a process (`terminate`), the test world and network namespaces.

Findings about Exim 4.96 (Debian exim4-daemon-heavy) that these helpers rely on:

- ``exim4 -C FILE`` as root: root may always name another configuration and keeps its
  privilege (spec, -C). Debian builds with TRUSTED_CONFIG_LIST=/etc/exim4/trusted_configs,
  which only matters for callers other than root (the Exim user), and without
  ALT_CONFIG_PREFIX, so any path works. Because root privilege is kept, Exim checks the file:
  owned by root (Debian: "Configure owner: 0:0") and not group- or world-writable, else
  "Exim configuration file ... has the wrong owner, group, or mode". Files written here are
  0644 root, so the tests must run as root (they skip otherwise).
- Environment: Exim empties its environment at start-up except for the variables matched by
  the main option ``keep_environment`` (a list of names or patterns, not expanded, macro names
  substituted first). ``keep_environment = MTASTS_CONFIG`` passes the test's config path to the
  module; ``add_environment = MTASTS_CONFIG=/path`` sets it from the config instead.
  LD_PRELOAD and ASAN_OPTIONS are read by the loader and ASan before Exim clears anything, so
  they work without being kept. LD_PRELOAD into the setuid exim4 works only because the caller
  is root (no secure-execution mode when real and effective uid are equal).
- ``-be`` prints the expansion, or ``Failed: <message>`` when it fails (exit status still 0). A
  dlfunc returning FAIL gives "Failed: <its yield>" with nothing in the panic log; DEFER and
  ERROR also log to the panic log.
- ``-bt`` routes as root in the calling process, using the resolver of the calling network
  namespace (``ip netns exec`` bind-mounts /etc/netns/<name>/resolv.conf on /etc/resolv.conf).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest

EXIM = shutil.which("exim4", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/exim4"
PYTHON = "/usr/bin/python3"
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


# --------------------------------------------------------------------------------------------
# Paths and the build


def source_dir() -> Path:
    env = os.environ.get("MTASTS_SOURCE_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    env = os.environ.get("MTASTS_BUILD_DIR")
    return Path(env) if env else source_dir() / "build"


def sanitized() -> bool:
    return os.environ.get("MTASTS_SANITIZE", "0").strip().lower() in ("1", "on", "true", "yes")


def module_path(build: Path | None = None) -> Path:
    return (build or build_dir()) / "src" / "exim" / "mtasts_exim.so"


def cli_path(build: Path | None = None) -> Path:
    return (build or build_dir()) / "src" / "cli" / "mtasts"


def asan_runtime() -> str | None:
    """The ASan runtime to LD_PRELOAD into exim4 when the module is instrumented."""
    for compiler in ("g++", "gcc"):
        try:
            out = subprocess.run([compiler, "-print-file-name=libasan.so"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if out and os.path.isabs(out) and os.path.exists(out):
            return os.path.realpath(out)
    return None


def faketime_library(name: str = "libfaketime.so.1") -> str | None:
    """The path of libfaketime's preload library `name` (libfaketimeMT.so.1 for programs with
    threads), or None when libfaketime is not installed."""
    for directory in ("/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime",
                      "/usr/lib/faketime", "/usr/local/lib/faketime"):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


def faketime_env(library: str, settings: Mapping[str, str], *,
                 starts_programs: bool = False) -> dict[str, str]:
    """LD_PRELOAD of libfaketime `library` with its FAKETIME* `settings`, for an mtasts program.

    In an ASan build the ASan runtime is preloaded too, but after libfaketime: with libasan
    first, every uninstrumented program started under both (the sendmail a TLSRPT report goes
    to, Exim, a shell) deadlocks while loading. ASan is told not to insist on coming first.
    `starts_programs`: LeakSanitizer is turned off as well, since those programs are not
    instrumented and their memory at exit would be reported as leaks."""
    env = dict(settings)
    preload = [library]
    if sanitized() and (runtime := asan_runtime()):
        preload.append(runtime)
        options = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
        if starts_programs:
            options = [o for o in options if not o.startswith("detect_leaks=")]
            options.append("detect_leaks=0")
        options.append("verify_asan_link_order=0")
        env["ASAN_OPTIONS"] = ":".join(options)
    env["LD_PRELOAD"] = ":".join(preload)
    return env


def terminate(proc: subprocess.Popen, timeout: float) -> bool:
    """SIGTERM, then SIGKILL when `proc` has not exited `timeout` seconds later; False when it
    had to be killed."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return False


def exim_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for running exim4 (or anything else that loads the module)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
    if sanitized():
        runtime = asan_runtime()
        if runtime is None:
            pytest.fail("MTASTS_SANITIZE=1 but the ASan runtime (g++ -print-file-name=libasan.so) "
                        "was not found, so exim4 cannot load the instrumented module")
        env["LD_PRELOAD"] = runtime
        # Exim and Perl are not instrumented: their allocations look like leaks to LSan.
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:halt_on_error=1"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    if extra:
        env.update(extra)
    return env


def require_root_and_exim() -> None:
    if os.geteuid() != 0:
        pytest.skip("exim4 -C with the module needs root (Exim keeps root for -C only for root)")
    if not os.path.exists(EXIM):
        pytest.fail("exim4 is not installed (apt-get install exim4-daemon-heavy; "
                    "scripts/install-deps.sh installs it)")
    bv = subprocess.run([EXIM, "-C", "/dev/null", "-bV"], capture_output=True, text=True)
    if "Expand_dlfunc" not in bv.stdout:
        pytest.fail("this exim4 has no ${dlfunc} (apt-get install exim4-daemon-heavy)")


def require_built(*paths: Path) -> None:
    for p in paths:
        if not p.exists():
            pytest.fail(f"{p} is not built (ninja -C {build_dir()} mtasts_exim mtasts)")


# --------------------------------------------------------------------------------------------
# Configuration files


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string for these paths


def write_mtasts_config(path: Path, *, cache: Path, world, strict: bool | None = False,
                        dns_timeout_ms: int = 2000, fetch_timeout_ms: int = 3000,
                        lookup_timeout_ms: int = 6000, log_level: str = "debug",
                        log_target: str | None = "stderr", ca_file: str | None = None,
                        extra: str = "", daemon: Sequence[str] | None = None) -> Path:
    """An mtasts TOML config (src/service/config.hpp) pointing at a running test world: its
    world.json (a Mapping) or a client.World. `strict` / `log_target` None leave the key out,
    `ca_file` replaces the world's CA file, `extra` adds top-level keys, and `daemon` (lines)
    a [daemon] table after them."""
    info = world if isinstance(world, Mapping) else world.info
    lines = [
        f"cache = {toml_string(str(cache))}",
        f"resolver = [{toml_string(info['dns'])}]",
        f"ca_file = {toml_string(ca_file if ca_file is not None else info['ca_file'])}",
        f"https_port = {int(info['https_port'])}",
    ]
    if strict is not None:
        lines.append(f"strict = {'true' if strict else 'false'}")
    lines += [
        f"dns_timeout_ms = {dns_timeout_ms}",
        f"fetch_timeout_ms = {fetch_timeout_ms}",
        f"lookup_timeout_ms = {lookup_timeout_ms}",
        f"log_level = {toml_string(log_level)}",
    ]
    if log_target is not None:
        lines.append(f"log_target = {toml_string(log_target)}")
    if extra:
        lines.append(extra)
    if daemon is not None:
        lines += ["[daemon]", *daemon]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)
    return path


def write_normal_and_strict(work: Path, world) -> dict[str, dict[str, str]]:
    """mtasts-normal.toml and mtasts-strict.toml in `work` (caches cache-<name>.mdb there):
    {"normal" | "strict": the environment naming it to the module (MTASTS_CONFIG)}."""
    env = {}
    for name, strict in (("normal", False), ("strict", True)):
        config = write_mtasts_config(work / f"mtasts-{name}.toml",
                                     cache=work / f"cache-{name}.mdb", world=world, strict=strict)
        env[name] = {"MTASTS_CONFIG": str(config)}
    return env


def write_exim_config(path: Path, workdir: Path, *, main: str = "", routers: str = "",
                      transports: str = "", retry: str = "", keep_env: bool = True) -> Path:
    """A self-contained Exim config for -be / -bt. `main` goes into the main section."""
    (workdir / "spool").mkdir(parents=True, exist_ok=True)
    (workdir / "log").mkdir(parents=True, exist_ok=True)
    text = [
        "# written by tests/integration/exim_helpers.py",
        "primary_hostname = mtasts-test.invalid",
        "domainlist local_domains = @ : localhost",
        f"spool_directory = {workdir / 'spool'}",
        f"log_file_path = {workdir / 'log'}/%slog",
        "log_selector = +all",
        # -bt in a namespace: 127.0.0.1 must not count as this host, or an MX on it makes the
        # router complain that the lowest MX points to the local host (router option `self`).
        "local_interfaces = <; 127.0.0.254",
    ]
    if keep_env:
        text.append("keep_environment = MTASTS_CONFIG")
    text.append(main)
    text += ["", "begin routers", routers, "", "begin transports", transports, "",
             "begin retry", retry or "*  *  F,2h,15m; G,16h,1h,1.5; F,4d,6h", ""]
    path.write_text("\n".join(text))
    path.chmod(0o644)
    return path


# The shipped Exim fragments (packaging/exim) of each variant: macro files, router file.
PACKAGED_VARIANTS = {
    "dlfunc": (("mtasts-macros.conf",), "mtasts-routers.conf"),
    "readsocket": (("mtasts-readsocket-macros.conf",), "mtasts-readsocket-routers.conf"),
    "cdb": (("mtasts-readsocket-macros.conf", "mtasts-cdb-macros.conf"),
            "mtasts-cdb-routers.conf"),
}

# Stand-ins for what Debian's exim4-config has after the fragments.
NORMAL_ROUTER = """\
# stand-in for Debian's dnslookup router (200_exim4-config_primary)
normal_dnslookup:
  driver = dnslookup
  domains = ! +local_domains
  transport = remote_smtp
  same_domain_copy_routing = yes
  no_more"""
REMOTE_SMTP_TRANSPORT = """\
# stand-in for Debian's remote_smtp (30_exim4-config_remote_smtp)
remote_smtp:
  driver = smtp"""
# TLSRPT (packaging/exim/mtasts-tlsrpt.conf): remote_smtp reports its TLS sessions too.
REMOTE_SMTP_TLSRPT_TRANSPORT = REMOTE_SMTP_TRANSPORT + """
  event_action = MTASTS_TLSRPT_REMOTE_EVENT"""


def write_packaged_exim_config(path: Path, workdir: Path, variant: str = "dlfunc", *,
                               macros: Mapping[str, object], main: str = "",
                               keep_env: bool = True, tlsrpt: bool = False) -> Path:
    """write_exim_config() with the shipped fragments of `variant` (PACKAGED_VARIANTS) as an
    administrator includes them: `macros` (MTASTS_MODULE, MTASTS_SOCKET...) before the macro
    files, then `main`; the router file then Debian's normal dnslookup router; the shipped
    transports then Debian's remote_smtp; the shipped retry rule. `tlsrpt` adds TLSRPT as
    packaging/exim/README.md says: mtasts-tlsrpt.conf before the macro files, and
    MTASTS_TLSRPT_REMOTE_EVENT on remote_smtp."""
    packaging = source_dir() / "packaging" / "exim"
    macro_files, router_file = PACKAGED_VARIANTS[variant]
    if tlsrpt:
        macro_files = ("mtasts-tlsrpt.conf", *macro_files)
    main_lines = [*(f"{name} = {value}" for name, value in macros.items()),
                  *(f".include {packaging / name}" for name in macro_files)]
    if main:
        main_lines.append(main)
    routers = "\n".join([f".include {packaging / router_file}", "", NORMAL_ROUTER])
    transports = "\n".join([f".include {packaging / 'mtasts-transports.conf'}", "",
                            REMOTE_SMTP_TLSRPT_TRANSPORT if tlsrpt else REMOTE_SMTP_TRANSPORT])
    return write_exim_config(path, workdir, main="\n".join(main_lines), routers=routers,
                             transports=transports,
                             retry=(packaging / "mtasts-retry.conf").read_text(),
                             keep_env=keep_env)


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def check_clean(self) -> None:
        """No sanitizer report, no crash."""
        assert "Sanitizer" not in self.err, self.err
        assert self.rc >= 0, f"killed by signal {-self.rc}: {self.err}"


def exim(config: Path, *args: str, env: Mapping[str, str] | None = None,
         netns: str | None = None, timeout: float = 60, stdin: str | None = None,
         nobody: bool = False) -> Run:
    """`exim4 -C config args...` (as nobody when asked); never raises on a non-zero exit."""
    cmd = [EXIM, "-C", str(config), *args]
    if nobody:
        cmd = [*NOBODY, *cmd]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, env=exim_env(env), timeout=timeout,
                       input=stdin)
    return Run(p.returncode, p.stdout, p.stderr)


# Exim 4.96 refuses command-line arguments after the options that are longer than 256 bytes
# ("length limit exceeded (374 > 256) for: recipient"), -be expressions included; longer
# expressions go through standard input, where each line is one expansion, printed after "> ".
MAX_ARGUMENT = 256


def be_arguments(expression: str) -> tuple[list[str], str | None]:
    """-be arguments: the expression itself, or nothing and the expression on standard input
    when it is longer than MAX_ARGUMENT or holds a newline."""
    if len(expression.encode()) <= MAX_ARGUMENT and "\n" not in expression:
        return [expression], None
    return [], expression + "\n"


def be_output(stdout: str, stdin: str | None) -> str:
    """The expansion printed by `exim4 -be` given be_arguments(): without its newline, and
    without the "> " prompts when it came through standard input."""
    if stdin is None:
        return stdout.rstrip("\n")
    if stdout.endswith("> \n"):  # the prompt printed at end of input
        stdout = stdout[:-3]
    return stdout.removeprefix("> ").rstrip("\n")


def exim_be(config: Path, expression: str, env: Mapping[str, str] | None = None,
            netns: str | None = None, *, nobody: bool = False, timeout: float = 60) -> Run:
    """`exim4 -C config -be expression`; out is the expansion (or "Failed: ...") without its
    newline."""
    arguments, stdin = be_arguments(expression)
    r = exim(config, "-be", *arguments, env=env, netns=netns, timeout=timeout, stdin=stdin,
             nobody=nobody)
    r.out = be_output(r.out, stdin)
    return r


def dlfunc(module: Path, function: str, *args: str) -> str:
    """The ${dlfunc} expansion text; arguments are given as Exim expansion text."""
    return "${dlfunc{%s}{%s}%s}" % (module, function, "".join("{%s}" % a for a in args))


def exim_escape(text: str) -> str:
    """Literal text inside an Exim expansion (-be): backslash-escape $, {, } and backslash."""
    out = []
    for c in text:
        if c in "\\${}":
            out.append("\\")
        out.append(c)
    return "".join(out)


# getmta D H for every H (issue 10; RFC 8461 §4.1 and Appendix B): H comes from an MX record
# someone else published, so every face matches it and never refuses it. enforce.example allows
# mx1.enforce.example and *.mail.enforce.example. (H, answer for enforce.example); none of them
# holds a blank or is empty, so the readsocket line protocol can carry them too.
WEIRD_MX_HOSTS = [
    (".mail.enforce.example", "0"),                  # the wildcard label is never empty
    ("mx1.enforce.example..", "0"),                  # only one root dot is stripped
    ("mx_1.mail.enforce.example", ""),               # one label under *., whatever its octets
    ("MX_1.Mail.Enforce.Example.", ""),
    ("mx_1.enforce.example", "0"),
    ("-mx.mail.enforce.example", ""),
    ("-mx1.enforce.example", "0"),
    ("mx-.mail.enforce.example", ""),
    ("x" * 64 + ".mail.enforce.example", ""),
    ("x" * 64 + ".enforce.example", "0"),
    ("com", "0"),                                    # one label
    ("*.mail.enforce.example", ""),                  # App. B: equal to a pattern
    ("*.enforce.example", "0"),
    ("[192.0.2.1]", "0"),
]


# --------------------------------------------------------------------------------------------
# The test world (tests/world/world.py), started through its documented command line so it can
# run inside a network namespace too.


def manifest_path() -> Path:
    return source_dir() / "tests" / "world" / "manifest.json"


def load_manifest(path: Path | None = None) -> dict:
    p = path or manifest_path()
    if not p.exists():
        pytest.skip(f"{p} does not exist yet (the test world is not in the tree)")
    return json.loads(p.read_text())


@contextlib.contextmanager
def world(state_dir: Path, *, manifest: Path | None = None, netns: str | None = None,
          dns_port: int = 0, https_port: int = 0, listen: str = "127.0.0.1",
          lifetime: int = 900, smtp_port: int | None = None) -> Iterator[dict]:
    """Starts tests/world/world.py and yields its world.json; stops it on exit. With smtp_port
    the world also runs the SMTP sinks of the manifest's "smtp" section on that port."""
    script = source_dir() / "tests" / "world" / "world.py"
    if not script.exists():
        pytest.skip(f"{script} does not exist yet")
    state_dir.mkdir(parents=True, exist_ok=True)
    info_file = state_dir / "world.json"
    cmd = [PYTHON, str(script), "--state-dir", str(state_dir), "--listen", listen,
           "--dns-port", str(dns_port), "--https-port", str(https_port),
           "--lifetime", str(lifetime)]
    if manifest is not None:
        cmd += ["--manifest", str(manifest)]
    if smtp_port is not None:
        cmd += ["--smtp-port", str(smtp_port)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    log = open(state_dir / "world.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not info_file.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"world exited with {proc.returncode}: "
                                   f"{(state_dir / 'world.log').read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError("world did not write world.json within 30 s")
            time.sleep(0.05)
        yield json.loads(info_file.read_text())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


# --------------------------------------------------------------------------------------------
# Network namespaces


@contextlib.contextmanager
def network_namespace(prefix: str = "mtasts-exim") -> Iterator[str]:
    """A fresh network namespace with lo up and /etc/netns/<name>/resolv.conf naming
    127.0.0.1; removed (with its resolv.conf) however the test ends."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.fail("ip is not installed (apt-get install iproute2; scripts/install-deps.sh "
                    "installs it)")
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    etc = Path("/etc/netns") / name
    created = False
    try:
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {r.stderr.strip()}")
        created = True
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
        yield name
    finally:
        if created:
            # Anything still running inside (a world that did not stop) would keep it alive.
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Fixtures (imported by conftest.py)


@pytest.fixture
def exim_workdir() -> Iterator[Path]:
    """A root-owned scratch directory that survives nothing."""
    d = Path(tempfile.mkdtemp(prefix="mtasts-exim-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
