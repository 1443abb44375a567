"""Who may talk to mtastsd (issue 3: socket owner, group and mode; issue 5: wrong socket
permissions are a clear error).

mtastsd creates its Unix sockets owner-only, gives them socket_owner / socket_group, then opens
them up to socket_mode (default 0660), and drops to `user` / `group`. A client outside the
owner and group is refused by the kernel; one in the group is answered. Settings that cannot
work (an unknown group, a socket in a missing directory) stop the start with a message naming
the setting or path. No lookup is needed: address literals are answered without one.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import exim_helpers as eh

DAEMON = eh.build_dir() / "src" / "daemon" / "mtastsd"

# A client that asks one question over the Exim protocol and prints the answer, or the error.
CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(f"connect: {e.strerror}")
    sys.exit(0)
s.sendall(b"getmta [192.0.2.1]\n")
s.shutdown(socket.SHUT_WR)
data = b""
while chunk := s.recv(4096):
    data += chunk
print(f"answer: {data.decode()}")
"""


def require() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (socket ownership, setpriv)")
    if not DAEMON.exists():
        pytest.skip(f"mtastsd is not built ({DAEMON})")
    for name in ("nobody", "daemon"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            pytest.skip(f"no user {name}")
    try:
        grp.getgrnam("nogroup")
    except KeyError:
        pytest.skip("no group nogroup")


def write_config(work: Path, daemon_keys: str, socket: Path | None = None) -> Path:
    socket = socket or work / "run" / "exim.sock"
    config = work / "mtasts.toml"
    config.write_text("\n".join([
        f"cache = {eh.toml_string(str(work / 'cache' / 'cache.mdb'))}",
        'resolver = ["127.0.0.1:9"]',      # nothing answers: no lookup may be needed
        'log_level = "info"',
        "[daemon]",
        f"exim_socket = {eh.toml_string(str(socket))}",
        'socketmap_socket = ""',
        daemon_keys,
    ]) + "\n")
    return config


@pytest.fixture
def work():
    """A directory the daemon's user can reach (pytest's work sits in a 0700 tree)."""
    path = Path(tempfile.mkdtemp(prefix="mtasts-sockets-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def prepare(work: Path) -> None:
    work.chmod(0o755)
    for sub in ("run", "cache"):
        (work / sub).mkdir()
        os.chown(work / sub, pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)


def ask_as(user: str, group: str, socket: Path) -> str:
    r = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups",
                        sys.executable, "-c", CLIENT, str(socket)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def start(config: Path, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([str(DAEMON), "--config", str(config)], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while "ready:" not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"mtastsd exited {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return proc


def test_default_mode_admits_the_group_and_refuses_others(work):
    require()
    prepare(work)
    config = write_config(work, 'user = "nobody"\ngroup = "nogroup"\n'
                                    'socket_owner = "nobody"\nsocket_group = "nogroup"')
    proc = start(config, work / "mtastsd.log")
    try:
        socket = work / "run" / "exim.sock"
        st = socket.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)      # the default
        assert st.st_uid == pwd.getpwnam("nobody").pw_uid
        assert st.st_gid == grp.getgrnam("nogroup").gr_gid
        # Dropped privileges: the daemon runs as nobody.
        status = Path(f"/proc/{proc.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert set(uid_line.split()[1:]) == {str(pwd.getpwnam("nobody").pw_uid)}, uid_line
        # In the group: answered. Neither owner nor in the group: refused by the kernel.
        assert ask_as("daemon", "nogroup", socket) == "answer: none"
        assert ask_as("daemon", "daemon", socket) == "connect: Permission denied"
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_socket_mode_is_applied(work):
    require()
    prepare(work)
    config = write_config(work, 'user = "nobody"\ngroup = "nogroup"\n'
                                    'socket_owner = "nobody"\nsocket_group = "nogroup"\n'
                                    'socket_mode = "0600"')
    proc = start(config, work / "mtastsd.log")
    try:
        socket = work / "run" / "exim.sock"
        assert stat.S_IMODE(socket.stat().st_mode) == 0o600
        assert ask_as("daemon", "nogroup", socket) == "connect: Permission denied"
        assert ask_as("nobody", "nogroup", socket) == "answer: none"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("keys,expected", [
    ('socket_group = "no-such-group-mtasts"', "socket_group"),
    ('socket_owner = "no-such-user-mtasts"', "socket_owner"),
    ('user = "no-such-user-mtasts"', "no-such-user-mtasts"),
])
def test_unknown_owner_group_or_user_stops_the_start(work, keys, expected):
    require()
    prepare(work)
    config = write_config(work, keys)
    r = subprocess.run([str(DAEMON), "--config", str(config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0, r
    assert expected in r.stderr, r.stderr
    assert not (work / "run" / "exim.sock").exists()


def test_socket_in_a_missing_directory_stops_the_start(work):
    require()
    prepare(work)
    socket = work / "missing" / "exim.sock"
    config = write_config(work, "", socket=socket)
    r = subprocess.run([str(DAEMON), "--config", str(config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0, r
    assert str(socket) in r.stderr and "No such file or directory" in r.stderr, r.stderr
