"""Python side of the test world: start world.py, talk to its control API, stop it.

    with World() as world:
        world.set_dns("_mta-sts.example.test", {"TXT": [["v=STSv1; id=1;"]]})
        ... run mtasts with --dns world.dns --ca-file world.ca_file ...
        assert world.dns_queries("_mta-sts.example.test", "TXT")
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

PYTHON = "/usr/bin/python3"      # Debian's: python3-dnslib and python3-cryptography live there
WORLD_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "world.py")
START_TIMEOUT = 20


class WorldError(RuntimeError):
    pass


class World:
    """A running world.py in a temporary (or given) state directory."""

    def __init__(self, manifest=None, state_dir=None, lifetime=3600, listen="127.0.0.1",
                 dns_port=0, https_port=0, control_port=0, start_timeout=START_TIMEOUT):
        self._own_dir = state_dir is None
        self.state_dir = state_dir
        self.command = [PYTHON, WORLD_PY, "--listen", listen, "--dns-port", str(dns_port),
                        "--https-port", str(https_port), "--control-port", str(control_port),
                        "--lifetime", str(lifetime)]
        if manifest:
            self.command += ["--manifest", manifest]
        self.start_timeout = start_timeout
        self.process = None
        self.info = None

    @classmethod
    def attach(cls, info):
        """A handle on a world started elsewhere (its world.json as `info`), for the control
        API; it does not stop that world."""
        world = cls()
        world.info = info
        return world

    # -- lifecycle
    def start(self):
        if self._own_dir:
            self.state_dir = tempfile.mkdtemp(prefix="mtasts-world-")
        os.makedirs(self.state_dir, exist_ok=True)
        with open(self.log_file, "wb") as output:
            self.process = subprocess.Popen(
                self.command + ["--state-dir", self.state_dir], stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT)
        try:
            self.info = self._wait_for_world_json()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_world_json(self):
        path = os.path.join(self.state_dir, "world.json")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    return json.load(f)
            if self.process.poll() is not None:
                raise WorldError(f"world.py exited with {self.process.returncode}:\n"
                                 + self.output())
            time.sleep(0.05)
        raise WorldError(f"world.py wrote no world.json in {self.start_timeout} s:\n"
                         + self.output())

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._own_dir and self.state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def log_file(self):
        """world.py's own stdout and stderr (for debugging a failed start)."""
        return os.path.join(self.state_dir, "world.log")

    def output(self):
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- what world.json says
    @property
    def dns(self):
        """"ADDR:PORT" of the DNS server (UDP and TCP)."""
        return self.info["dns"]

    @property
    def dns_address(self):
        """(addr, port) of the DNS server."""
        host, port = self.info["dns"].rsplit(":", 1)
        return host, int(port)

    @property
    def https_port(self):
        return self.info["https_port"]

    @property
    def ca_file(self):
        return self.info["ca_file"]

    @property
    def untrusted_ca_file(self):
        return self.info["untrusted_ca_file"]

    @property
    def control(self):
        return self.info["control"]

    @property
    def listen(self):
        return self.info["listen"]

    @property
    def pid(self):
        return self.info["pid"]

    # -- control API
    def request(self, method, path, document=None):
        """One control API call; returns (status, decoded JSON)."""
        host, port = self.control.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            body = None if document is None else json.dumps(document)
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def _call(self, method, path, document=None, allow=(200,)):
        status, answer = self.request(method, path, document)
        if status not in allow:
            raise WorldError(f"{method} {path}: {status} {answer}")
        return answer

    @staticmethod
    def _path(collection, name):
        return f"/{collection}/{urllib.parse.quote(name, safe='')}"

    def get_dns(self, name):
        """The data of one name as stored; None when it has none."""
        status, answer = self.request("GET", self._path("dns", name))
        if status == 404:
            return None
        if status != 200:
            raise WorldError(f"GET dns {name}: {status} {answer}")
        return answer

    def set_ttl(self, name, ttl):
        """Serves the data of `name` (if any) with `ttl` from now on."""
        data = self.get_dns(name)
        if data is not None:
            self.set_dns(name, {**data, "ttl": int(ttl)})

    def set_dns(self, name, data):
        """Replace the data of one name, e.g. {"TXT": [["v=STSv1; id=1;"]]}."""
        self._call("PUT", self._path("dns", name), data)

    def delete_dns(self, name):
        """Remove a name (it becomes NXDOMAIN); quietly nothing if it was not there."""
        self._call("DELETE", self._path("dns", name), allow=(200, 404))

    def set_https(self, host, spec):
        """Replace a policy host, spec as in the manifest's "https" section."""
        self._call("PUT", self._path("https", host), spec)

    def delete_https(self, host):
        self._call("DELETE", self._path("https", host), allow=(200, 404))

    def log(self):
        """{"dns": [...], "https": [...], "connections": [...]} as in README.md."""
        return self._call("GET", "/log")

    def clear_log(self):
        self._call("POST", "/log/clear")

    def dns_queries(self, name=None, qtype=None):
        """Logged DNS queries, optionally only for name (any case, trailing dot or not) and
        type (e.g. "TXT")."""
        entries = self.log()["dns"]
        if name is not None:
            name = name.lower().rstrip(".")
            entries = [e for e in entries if e["name"] == name]
        if qtype is not None:
            entries = [e for e in entries if e["type"] == qtype.upper()]
        return entries

    def https_requests(self, host=None):
        """Logged HTTPS requests, optionally only those for host (by SNI or Host header)."""
        entries = self.log()["https"]
        if host is not None:
            host = host.lower().rstrip(".")
            entries = [e for e in entries
                       if e["sni"] == host or _without_port(e["host"]) == host]
        return entries

    def connections(self, sni=None):
        """Logged TLS ClientHellos (and black-hole connections), optionally for one SNI."""
        entries = self.log()["connections"]
        if sni is not None:
            entries = [e for e in entries if e["sni"] == sni.lower().rstrip(".")]
        return entries


def _without_port(host):
    if not host:
        return None
    host = host.lower()
    return host.rsplit(":", 1)[0] if not host.endswith("]") else host
