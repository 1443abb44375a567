"""End-to-end deliveries through the real Exim 4.96 (exim4-daemon-heavy) with the shipped
fragments (packaging/exim), in the three variants: ${dlfunc} (mtasts-macros.conf,
mtasts-routers.conf and the module), ${readsocket} (mtasts-readsocket-*.conf and mtastsd's Exim
socket) and cdb for Exim light (mtasts-cdb-*.conf: the file mtastsd exports, warmed before each
message so Exim answers from it), with the same transports (mtasts-transports.conf) and retry
rule (mtasts-retry.conf).

Inside a network namespace the test world answers DNS and HTTPS and runs SMTP sinks on port 25
(e2e_helpers.py). Each case submits one real message (`exim4 -C cfg -odi -f sender rcpt`, the
queue in a spool of its own so no retry record of one case touches another) and checks where
it went: the sinks' log, Exim's main log and queue (`-bp`). Deferred messages are run again
with `-qff` (forced, ignoring retry times) and must still wait, with no bounce.

The only additions to the shipped fragments are the module path (MTASTS_MODULE) or mtastsd's
socket (MTASTS_SOCKET), the test CA (MTASTS_TLS_VERIFY_CERTIFICATES: the transports verify
against it, as they would against the system store) and a stand-in for Debian's normal dnslookup
router and remote_smtp transport. The case enforce-cnonly is why the enforce transport carries
an event_action: Exim/GnuTLS alone accepts a CN-only certificate for the MX name.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time

import pytest

import e2e_helpers as e2e
import exim_helpers as eh

MODULE = eh.module_path()
EXIM_USER = "Debian-exim"
MESSAGE_ID = r"\b([0-9A-Za-z]{6}-[0-9A-Za-z]{4,6}-[0-9A-Za-z]{2,4})"


def faketime_env(seconds: int) -> dict[str, str]:
    if eh.sanitized():
        # Debian's libfaketime deadlocks with the preloaded ASan runtime inside exim4.
        pytest.skip("libfaketime and the ASan runtime deadlock inside exim4")
    library = eh.faketime_library()
    if library is None:
        pytest.fail("libfaketime is not installed (apt-get install libfaketime)")
    preload = [library]
    if eh.sanitized() and (runtime := eh.asan_runtime()):
        preload.insert(0, runtime)
    return {"LD_PRELOAD": ":".join(preload), "FAKETIME": f"+{seconds}s",
            "ASAN_OPTIONS": "verify_asan_link_order=0:detect_leaks=0"}


class Exim:
    """One Exim configuration with its own spool and logs, using the shipped fragments of one
    variant: "dlfunc" (mtasts-macros.conf, mtasts-routers.conf and the module) or "readsocket"
    (mtasts-readsocket-macros.conf, mtasts-readsocket-routers.conf and mtastsd's Exim socket);
    the transports and the retry rule are the same."""

    def __init__(self, env: dict, name: str, variant: str = "dlfunc"):
        self.variant = variant
        if variant == "dlfunc" and eh.sanitized():
            # Exim re-executes itself for each delivery and, having given up root for -C, loses
            # LD_PRELOAD: the ASan-built module then cannot load. The release build covers it;
            # the sanitizer build still runs the readsocket variant and test_exim_dlfunc.py.
            pytest.skip("an ASan-built module cannot load in Exim's re-executed delivery process")
        self.env = env
        self.dir = env["work"] / "exim" / f"{variant}-{name}"
        self.dir.mkdir(parents=True)
        self.dir.chmod(0o755)
        if variant == "dlfunc":
            macros = {"MTASTS_MODULE": MODULE}
        elif variant == "readsocket":
            macros = {"MTASTS_SOCKET": env["daemon"]()["exim"]}
        else:  # cdb: the file mtastsd exports, readsocket for what it does not hold
            daemon = env["cdb_daemon"]()
            macros = {"MTASTS_SOCKET": daemon["exim"], "MTASTS_CDB_FILE": daemon["cdb"]}
        self.config = eh.write_packaged_exim_config(
            self.dir / "exim.conf", self.dir, variant, macros=macros, keep_env=False,
            main="\n".join([f"MTASTS_TLS_VERIFY_CERTIFICATES = {env['world'].ca_file}",
                            "keep_environment = MTASTS_CONFIG : FAKETIME"]))
        e2e.chown_tree(self.dir / "spool", EXIM_USER)
        e2e.chown_tree(self.dir / "log", EXIM_USER)

    def run(self, *args: str, stdin: str | None = None, env: dict | None = None) -> eh.Run:
        r = eh.exim(self.config, *args, env={"MTASTS_CONFIG": str(self.env["mtasts"]),
                                             **(env or {})},
                    netns=self.env["world"].ns, stdin=stdin, timeout=90)
        r.check_clean()
        return r

    def send(self, recipient: str, subject: str) -> eh.Run:
        if self.variant == "cdb":
            self.warm_cdb(recipient.rpartition("@")[2])
        r = self.run("-odi", "-f", e2e.SENDER, recipient,
                     stdin=e2e.message_text(subject, recipient))
        assert r.rc == 0, f"exim -odi: rc={r.rc}\n{r.out}\n{r.err}\n{self.mainlog()}"
        return r

    def warm_cdb(self, domain: str) -> None:
        """Has mtastsd look the domain up and waits until its export holds it, so that Exim
        answers from the file (the readsocket fallback is the readsocket variant's test). A
        domain with a policy must appear; one without may stay out (then Exim asks the
        socket)."""
        daemon = self.env["cdb_daemon"]()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(daemon["exim"]))
            s.sendall(f"getmta {domain}\n".encode())
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk

        def in_file() -> bool:
            return daemon["cdb"].exists() and subprocess.run(
                ["cdb", "-q", str(daemon["cdb"]), domain], capture_output=True).returncode == 0

        held = e2e.wait_for(in_file, 5)
        if answer.decode() in ("enforce", "testing"):
            assert held, f"{domain} ({answer!r}) is not in the cdb export {daemon['cdb']}"

    def queue(self) -> str:
        return self.run("-bp").out

    def queue_run(self, env: dict | None = None) -> eh.Run:
        return self.run("-qff", env=env)

    def mainlog(self) -> str:
        path = self.dir / "log" / "mainlog"
        return path.read_text(errors="replace") if path.exists() else ""

    def paniclog(self) -> str:
        path = self.dir / "log" / "paniclog"
        return path.read_text(errors="replace") if path.exists() else ""

    def message_id(self, subject: str) -> str:
        m = re.search(MESSAGE_ID + r" <= .*T=\"" + re.escape(subject) + '"', self.mainlog())
        assert m, f"no reception logged for {subject!r}:\n{self.mainlog()}"
        return m.group(1)

    def lines(self, message_id: str) -> list[str]:
        return [line for line in self.mainlog().splitlines() if f" {message_id} " in line]


@pytest.fixture(scope="module")
def env():
    eh.require_root_and_exim()
    eh.require_built(MODULE)
    work = e2e.workdir("mtasts-e2e-exim-")
    try:
        with e2e.e2e_world(work) as world:
            cache = work / "cache"
            cache.mkdir()
            e2e.chown_tree(cache, EXIM_USER)   # the module writes it as Exim's user
            mtasts = eh.write_mtasts_config(work / "mtasts.toml", cache=cache / "cache.mdb",
                                            world=world.info, extra="txt_max_ttl = 60")
            with contextlib.ExitStack() as stack:
                started = {}

                def daemon():
                    """mtastsd for the readsocket variant, started on first use."""
                    if "paths" not in started:
                        if not e2e.daemon_path().exists():
                            pytest.skip(f"mtastsd is not built ({e2e.daemon_path()}): the "
                                        "readsocket variant needs it")
                        started["paths"] = stack.enter_context(
                            e2e.mtastsd(world, work / "mtastsd"))
                    return started["paths"]

                def cdb_daemon():
                    """mtastsd exporting the cdb file, for the cdb variant."""
                    if "cdb" not in started:
                        if not e2e.daemon_path().exists():
                            pytest.skip(f"mtastsd is not built ({e2e.daemon_path()}): the "
                                        "cdb variant needs it")
                        cdb = work / "mtastsd-cdb" / "exim.cdb"
                        paths = stack.enter_context(e2e.mtastsd(
                            world, work / "mtastsd-cdb",
                            extra=f"cdb_export = {eh.toml_string(str(cdb))}\n"
                                  "cdb_export_interval = 1"))
                        started["cdb"] = {**paths, "cdb": cdb}
                    return started["cdb"]

                yield {"world": world, "work": work, "mtasts": mtasts, "daemon": daemon,
                       "cdb_daemon": cdb_daemon}
    finally:
        e2e.cleanup(work)


VARIANTS = ["dlfunc", "readsocket", "cdb"]


ROUTES = {   # (router, transport) that must carry each kind of case
    "enforce": ("mtasts_enforce", "mtasts_enforce_smtp"),
    "testing": ("mtasts_testing", "mtasts_testing_smtp"),
    "normal": ("normal_dnslookup", "remote_smtp"),
}


def expected_route(case: e2e.Case) -> tuple[str, str]:
    if case.effective_mode in ("enforce", "testing"):
        return ROUTES[case.effective_mode]
    return ROUTES["normal"]      # none, no policy, fetch failure without a cache (STS-25)


def check_no_bounce(exim: Exim, message_id: str) -> None:
    log = exim.mainlog()
    assert not re.search(r" \*\* ", log), f"a recipient failed permanently:\n{log}"
    assert " <= <> " not in log, f"a bounce was generated:\n{log}"
    assert f"{message_id} Completed" not in log, log
    queue = exim.queue()
    ids = re.findall(MESSAGE_ID, queue)
    assert ids == [message_id], f"the queue must hold the message and nothing else:\n{queue}"


DELIVER = [c for c in e2e.CASES if c.expect == "deliver"]
DEFER = [c for c in e2e.CASES if c.expect == "defer"]


@pytest.mark.parametrize("case", DELIVER, ids=[c.id for c in DELIVER])
@pytest.mark.parametrize("variant", VARIANTS)
def test_delivered(env, variant, case):
    world = env["world"]
    exim = Exim(env, case.id, variant)
    recipient = f"user@{case.domain}"
    subject = e2e.subject_for(case.id)
    exim.send(recipient, subject)
    message = e2e.wait_for(lambda: world.sinks.messages(subject=subject), 5)
    assert message, f"not delivered:\n{exim.mainlog()}\n{exim.paniclog()}"
    e2e.check_delivered(world, case, subject, recipient)
    message_id = exim.message_id(subject)
    router, transport = expected_route(case)
    delivered = [line for line in exim.lines(message_id) if " => " in line]
    assert len(delivered) == 1, exim.mainlog()
    line = delivered[0]
    assert f"R={router} T={transport} " in line, line
    assert f" H={case.sink} [{e2e.SINKS[case.sink]['address']}]:25 " in line, line
    if router == "mtasts_enforce":
        assert " CV=yes " in line, f"the enforce transport delivered unverified: {line}"
    assert f"{message_id} Completed" in exim.mainlog()
    assert exim.queue().strip() == "", exim.queue()


@pytest.mark.parametrize("case", DEFER, ids=[c.id for c in DEFER])
@pytest.mark.parametrize("variant", VARIANTS)
def test_enforce_defers_never_bounces(env, variant, case):
    world = env["world"]
    exim = Exim(env, case.id, variant)
    recipient = f"user@{case.domain}"
    subject = e2e.subject_for(case.id)
    started = time.time()
    exim.send(recipient, subject)
    e2e.check_not_delivered(world, subject)
    message_id = exim.message_id(subject)
    deferred = [line for line in exim.lines(message_id) if " == " in line]
    assert deferred, f"no deferral logged:\n{exim.mainlog()}"
    listed = [h for _, h in case.mx if h in case.policy_mx]
    if listed:
        # Listed hosts were tried over TLS by the enforce transport and refused.
        assert "R=mtasts_enforce T=mtasts_enforce_smtp defer" in deferred[-1], deferred
    else:
        assert "R=mtasts_enforce_defer defer" in deferred[-1], deferred
        assert "no MX host of" in deferred[-1], deferred
    # No unlisted MX was contacted: the policy filters them out at routing time.
    for _, host in case.mx:
        if host not in case.policy_mx:
            assert world.sinks.connections(sink=host, since=started) == [], host
    check_no_bounce(exim, message_id)
    # A forced queue run (retry times ignored) must not deliver or bounce it either.
    exim.queue_run()
    e2e.check_not_delivered(world, subject)
    check_no_bounce(exim, message_id)
    assert len([line for line in exim.lines(message_id) if " == " in line]) >= 2, \
        exim.mainlog()


@pytest.mark.parametrize("variant", VARIANTS)
def test_enforce_tls_failures_seen_by_the_sinks(env, variant):
    """The listed bad MX hosts were really tried (STS-39): each refused certificate shows up as
    a STARTTLS whose handshake the client broke off, and the host without STARTTLS saw a
    session that ended with no message (no clear-text fallback)."""
    world = env["world"]
    exim = Exim(env, "allbad-sinks", variant)
    case = e2e.CASES_BY_ID["enforce-allbad"]
    started = time.time()
    subject = e2e.subject_for(case.id)
    exim.send(f"user@{case.domain}", subject)
    e2e.check_not_delivered(world, subject)
    for host in ("expired.mx.test", "wrongname.mx.test", "untrusted.mx.test"):
        # A sink logs a connection when it ends: wait for it.
        seen = e2e.wait_for(lambda: world.sinks.connections(sink=host, since=started), 5)
        assert seen, f"{host} was not tried:\n{exim.mainlog()}"
        assert all(c["starttls"] and c["messages"] == 0 for c in seen), seen
        assert any(c["tls_error"] or not c["tls"] for c in seen), seen
        assert all(c["sni"] == host for c in seen if c["tls"] or c["sni"]), seen
    notls = e2e.wait_for(lambda: world.sinks.connections(sink="notls.mx.test", since=started), 5)
    assert notls and all(not c["starttls"] and c["messages"] == 0 for c in notls), notls
    assert world.sinks.connections(sink="outside.mx.test", since=started) == []


def test_new_policy_id_is_picked_up_on_retry(env):
    """STS-42: deferred under enforce; a new TXT id and a policy allowing the MX are published;
    the next queue run looks the TXT record up again, fetches the new policy and delivers. The
    module re-checks a cached policy's id once its TXT TTL (60 s here) has passed: the retry runs
    with Exim's clock 120 s on (libfaketime)."""
    world = env["world"]
    case = e2e.NEWID
    exim = Exim(env, case.id)
    recipient = f"user@{case.domain}"
    subject = e2e.subject_for(case.id)
    exim.send(recipient, subject)
    e2e.check_not_delivered(world, subject)
    message_id = exim.message_id(subject)
    check_no_bounce(exim, message_id)
    world.call("set_dns", f"_mta-sts.{case.domain}", {"TXT": [["v=STSv1; id=e2e2;"]]})
    world.call("set_https", f"mta-sts.{case.domain}", {"body": e2e.NEWID_POLICY})
    world.call("clear_log")
    exim.queue_run(env=faketime_env(120))
    log = world.call("log")
    assert any(q["name"] == f"_mta-sts.{case.domain}" and q["type"] == "TXT"
               for q in log["dns"]), log["dns"]
    assert any(r["sni"] == f"mta-sts.{case.domain}" for r in log["https"]), log["https"]
    got = e2e.wait_for(lambda: world.sinks.messages(subject=subject), 5)
    assert got and got[0]["sink"] == "outside.mx.test" and got[0]["tls"], \
        f"{got}\n{exim.mainlog()}"
    assert f"{message_id} Completed" in exim.mainlog()
    assert " <= <> " not in exim.mainlog()
