"""Postfix 3.7 run from an unpacked Debian package, for test_e2e_postfix.py.

Exim and Postfix conflict as Debian packages, so Postfix is never installed: scripts/
fetch-postfix.sh unpacks the postfix .deb (`apt-get download` + `dpkg -x`) into
/var/cache/mtasts-test/postfix, and this module runs a complete Postfix from that tree:

- its own configuration directory (main.cf, master.cf) naming the tree's programs
  (command_directory, daemon_directory, shlib_directory) and a queue in a scratch directory;
- LD_LIBRARY_PATH for the tree's libpostfix-*.so (the binaries' RUNPATH is /usr/lib/postfix),
  passed on by master(8) to its daemons through import_environment;
- `master -c DIR` in the foreground (it does not detach; `-d` only keeps stdio), inside the
  test's network namespace, under `timeout` and with a parent-death signal, so it never outlives
  the test; no chroot (master.cf column 5 "n"), so smtp(8) reaches a Unix socket anywhere;
- users that exist on any Debian system: mail_owner `nobody`, setgid_group `mail`,
  default_privs `daemon` (Postfix refuses root and wants the three distinct);
- mail submitted with the tree's sendmail(1) -C DIR (postdrop into the maildrop queue, picked up
  at once), the queue read with postqueue -p, deferred mail retried with postqueue -f;
- the log in a file (maillog_file, through postlogd), parsed per queue id.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import exim_helpers as eh

DEFAULT_TREE = Path(os.environ.get("MTASTS_POSTFIX_DIR", "/var/cache/mtasts-test/postfix"))
MAIL_OWNER = "nobody"
SETGID_GROUP = "mail"
DEFAULT_PRIVS = "daemon"
LIFETIME = 300          # seconds master may live at most

QUEUE_DIRS = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
              "maildrop", "pid", "private", "public", "saved", "trace")

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def tree() -> Path:
    """The unpacked Postfix, fetched on first use (fails the test when that is impossible)."""
    if (DEFAULT_TREE / "usr/lib/postfix/sbin/master").exists():
        return DEFAULT_TREE
    script = eh.source_dir() / "scripts" / "fetch-postfix.sh"
    r = subprocess.run(["bash", str(script), str(DEFAULT_TREE)], capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        pytest.fail(f"Postfix could not be fetched ({script}): {r.stderr.strip()[-500:]}")
    return DEFAULT_TREE


def version(root: Path) -> str:
    return (root / ".version").read_text().strip() if (root / ".version").exists() else "?"


class Postfix:
    """One Postfix instance: config directory, queue, log, and a running master(8)."""

    def __init__(self, work: Path, *, ns: str, ca_file: str, policy_maps: str | None = None,
                 main_extra: str = ""):
        self.root = tree()
        self.work = work
        self.ns = ns
        self.config_dir = work / "config"
        self.queue_dir = work / "queue"
        self.data_dir = work / "data"
        self.maillog = work / "maillog"
        self.proc: subprocess.Popen | None = None
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir(parents=True, exist_ok=True)
        work.chmod(0o755)
        self._make_queue()
        self.write_main(ca_file=ca_file, policy_maps=policy_maps, extra=main_extra)
        (self.config_dir / "master.cf").write_text(MASTER_CF)

    # -- files
    def _make_queue(self) -> None:
        import grp
        import pwd
        owner = pwd.getpwnam(MAIL_OWNER)
        sgid = grp.getgrnam(SETGID_GROUP).gr_gid
        self.queue_dir.chmod(0o755)
        for name in QUEUE_DIRS:
            d = self.queue_dir / name
            d.mkdir(exist_ok=True)
            if name == "pid":
                os.chown(d, 0, 0)
                d.chmod(0o755)
            elif name == "maildrop":
                os.chown(d, owner.pw_uid, sgid)
                d.chmod(0o1730)
            elif name == "public":
                os.chown(d, owner.pw_uid, sgid)
                d.chmod(0o710)
            else:
                os.chown(d, owner.pw_uid, owner.pw_gid)
                d.chmod(0o700)
        os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        self.data_dir.chmod(0o700)

    def write_main(self, *, ca_file: str, policy_maps: str | None, extra: str = "") -> None:
        """main.cf: the instance's paths and users, opportunistic TLS trusting ca_file, and
        smtp_tls_policy_maps = policy_maps unless None (then `extra` must set it)."""
        lib = self.root / "usr/lib/postfix"
        text = f"""\
# written by tests/integration/postfix_helpers.py
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {self.data_dir}
command_directory = {self.root / 'usr/sbin'}
daemon_directory = {lib / 'sbin'}
shlib_directory = {lib}
meta_directory = {self.root / 'etc/postfix'}
mail_owner = {MAIL_OWNER}
setgid_group = {SETGID_GROUP}
default_privs = {DEFAULT_PRIVS}
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH={lib}
export_environment = TZ MAIL_CONFIG LANG LD_LIBRARY_PATH={lib}
maillog_file = {self.maillog}
maillog_file_prefixes = {self.work}
myhostname = postfix-test.invalid
mydomain = postfix-test.invalid
myorigin = $myhostname
mydestination =
relayhost =
inet_interfaces = loopback-only
inet_protocols = ipv4
smtp_address_preference = ipv4
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtp_connect_timeout = 5s
smtp_helo_timeout = 10s
smtp_tls_security_level = may
smtp_tls_CAfile = {ca_file}
smtp_tls_loglevel = 1
smtp_tls_session_cache_database =
"""
        if policy_maps is not None:
            text += f"smtp_tls_policy_maps = {policy_maps}\n"
        text += extra + "\n"
        (self.config_dir / "main.cf").write_text(text)

    # -- processes
    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
                "LD_LIBRARY_PATH": str(self.root / "usr/lib/postfix")}

    def command(self, program: str, *args: str, netns: bool = True, stdin: str | None = None,
                timeout: float = 30) -> subprocess.CompletedProcess:
        path = self.root / "usr/sbin" / program
        cmd = [str(path), *args]
        if netns:
            cmd = ["ip", "netns", "exec", self.ns, *cmd]
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=self.env(),
                              timeout=timeout)

    def start(self) -> None:
        master = self.root / "usr/lib/postfix/sbin/master"
        cmd = ["ip", "netns", "exec", self.ns, "setpriv", "--pdeathsig", "TERM",
               "timeout", "-k", "5", str(LIFETIME), str(master), "-c", str(self.config_dir)]
        self.stdout = open(self.work / "master.out", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.stdout, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env())
        deadline = time.monotonic() + 20
        while not (self.queue_dir / "public" / "pickup").exists() or \
                "daemon started" not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"postfix master exited with {self.proc.returncode}:\n"
                                   f"{self.output()}\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix master did not start:\n{self.output()}\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc:
            eh.terminate(self.proc, 15)
            self.stdout.close()

    def output(self) -> str:
        path = self.work / "master.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    # -- mail
    def send(self, sender: str, recipient: str, text: str) -> None:
        r = self.command("sendmail", "-C", str(self.config_dir), "-f", sender, "--", recipient,
                         stdin=text, netns=False)
        assert r.returncode == 0, f"sendmail: {r.returncode} {r.stdout} {r.stderr}\n{self.log()}"

    def queue_id(self, message_id: str, timeout: float = 20) -> str:
        pattern = re.compile(r"postfix/cleanup\[\d+\]: ([0-9A-Za-z]+): message-id=" +
                             re.escape(message_id))
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.log())
            if m:
                return m.group(1)
            if time.monotonic() > deadline:
                raise AssertionError(f"{message_id} never reached cleanup:\n{self.log()}")
            time.sleep(0.05)

    def statuses(self, queue_id: str) -> list[str]:
        """The delivery result lines of one queue id (status=sent/deferred/bounced)."""
        return [line for line in self.log().splitlines()
                if f" {queue_id}: to=<" in line and " status=" in line]

    def wait_status(self, queue_id: str, count: int = 1, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.statuses(queue_id)
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"no delivery result for {queue_id}:\n{self.log()}")
            time.sleep(0.05)

    def lines(self, queue_id: str) -> list[str]:
        return [line for line in self.log().splitlines() if f" {queue_id}: " in line]

    def queue(self) -> str:
        r = self.command("postqueue", "-c", str(self.config_dir), "-p", netns=False)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def flush(self) -> None:
        r = self.command("postqueue", "-c", str(self.config_dir), "-f", netns=False)
        assert r.returncode == 0, r.stderr


def shipped_main_cf(ca_file: str) -> str:
    """The settings of packaging/postfix/main.cf as shipped, comments dropped, with the test CA
    in place of the system bundle (smtp_tls_CAfile)."""
    text = (eh.source_dir() / "packaging" / "postfix" / "main.cf").read_text()
    lines = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.split("=", 1)[0].strip() == "smtp_tls_CAfile":
            line = f"smtp_tls_CAfile = {ca_file}"
        lines.append(line)
    return "# packaging/postfix/main.cf\n" + "\n".join(lines) + "\n"


def shipped_policy_maps() -> str:
    """The smtp_tls_policy_maps value packaging/postfix/main.cf ships."""
    m = re.search(r"^smtp_tls_policy_maps\s*=\s*(\S+)", shipped_main_cf(""), re.M)
    assert m, "packaging/postfix/main.cf sets no smtp_tls_policy_maps"
    return m.group(1)


@contextlib.contextmanager
def running(work: Path, **kwargs) -> Iterator[Postfix]:
    postfix = Postfix(work, **kwargs)
    try:
        postfix.start()
        yield postfix
    finally:
        postfix.stop()


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("running Postfix (master, a queue owned by its mail_owner) needs root")
    if shutil.which("setpriv") is None or shutil.which("timeout") is None:
        pytest.fail("setpriv or timeout is not installed (apt-get install util-linux coreutils)")
