"""The shipped systemd units (packaging/systemd) as systemd reads them.

This machine runs no systemd as PID 1, so the units cannot be started here; what can be checked
without it is checked: `systemd-analyze verify` reads both units with no warning (an unknown or
misspelt hardening key is only a warning to systemd, and silently drops the protection), the
ExecStart command line is one mtastsd accepts, the sockets of mtastsd.socket are the defaults
mtastsd looks for (it tells activated sockets apart by path), and the hardening the unit
promises is there. Socket activation and sd_notify themselves are driven by
test_daemon_protocols.py::test_socket_activation_and_notify (systemd-socket-activate).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

import exim_helpers as eh

PACKAGING = eh.source_dir() / "packaging" / "systemd"
DAEMON = eh.build_dir() / "src" / "daemon" / "mtastsd"


def unit(name: str) -> dict[str, list[str]]:
    """section.key -> values, in order (systemd allows a key more than once)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in (PACKAGING / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


def test_systemd_analyze_verify_reads_both_units_without_a_warning(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed (apt-get install systemd)")
    if not DAEMON.exists():
        pytest.skip(f"mtastsd is not built ({DAEMON})")
    for name in ("mtastsd.service", "mtastsd.socket"):
        text = (PACKAGING / name).read_text()
        # verify checks that ExecStart's binary exists: point it at the built one.
        (tmp_path / name).write_text(text.replace("/usr/sbin/mtastsd", str(DAEMON)))
    p = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "mtastsd.socket"),
                        str(tmp_path / "mtastsd.service")], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr


def test_execstart_is_a_command_line_mtastsd_accepts(tmp_path):
    if not DAEMON.exists():
        pytest.skip(f"mtastsd is not built ({DAEMON})")
    argv = shlex.split(unit("mtastsd.service")["Service.ExecStart"][0])
    assert argv[0] == "/usr/sbin/mtastsd", argv
    config = tmp_path / "mtasts.toml"
    config.write_text(f'cache = "{tmp_path / "cache.mdb"}"\n')
    args = [str(config) if a == "/etc/mtasts/mtasts.toml" else a for a in argv[1:]]
    p = subprocess.run([str(DAEMON), *args, "--check-config"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "configuration is valid" in p.stdout


def test_socket_unit_listens_where_mtastsd_looks_by_default():
    listen = unit("mtastsd.socket")["Socket.ListenStream"]
    header = (eh.source_dir() / "src" / "service" / "config.hpp").read_text()
    defaults = {key: re.search(rf'std::string {key} = "([^"]+)";', header).group(1)
                for key in ("exim_socket", "socketmap_socket")}
    assert sorted(listen) == sorted(defaults.values()), (listen, defaults)
    socket = unit("mtastsd.socket")
    assert socket["Socket.SocketMode"] == ["0660"]
    assert socket["Socket.SocketUser"] == ["mtasts"] and socket["Socket.SocketGroup"] == ["mtasts"]


def test_service_runs_unprivileged_and_hardened():
    service = unit("mtastsd.service")

    def one(key: str) -> str:
        assert key in service, f"mtastsd.service lacks {key}"
        return service[key][-1]

    assert one("Service.Type") == "notify"            # sd_notify readiness
    assert one("Service.User") == "mtasts" and one("Service.Group") == "mtasts"
    assert one("Service.ExecReload").endswith("kill -HUP $MAINPID")
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
                "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute",
                "RestrictRealtime", "RestrictNamespaces"):
        assert one(f"Service.{key}") == "yes", key
    assert one("Service.ProtectSystem") == "strict"
    assert one("Service.CapabilityBoundingSet") == ""
    assert set(one("Service.RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET",
                                                                    "AF_INET6"}
    # The cache (state directory) is the only place it writes, and the MTAs' group may read it.
    assert one("Service.StateDirectory") == "mtasts"
    # Stop: longer than mtastsd's own drain (shutdown_timeout_ms 10 s + lookup_timeout_ms).
    seconds = int(one("Service.TimeoutStopSec").rstrip("s"))
    assert seconds >= 30, seconds
