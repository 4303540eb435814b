"""ACME on loopback: Debian's pebble (Let's Encrypt's test CA) resolving DNS-01 challenges through
a real recursive resolver (unbound) that asks the test Knot, whose provider ACME zone takes
TSIG-signed RFC 2136 updates.

Why unbound in between: pebble asks its `-dnsserver` once and reads TXT records from the answer;
Knot, being authoritative, answers `_acme-challenge.<customer>` with the CNAME only (the target
lives in another zone), as any authoritative server does. A CA's validator is a recursive
resolver that follows the CNAME, and so is unbound here.
"""

import base64
import json
import os
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from .common import LOOPBACK, free_port, stop_process_group, tail, wait_for_port
from .knot import Knot, zone_text

TSIG_KEY = "acme-update"


def tsig_secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def acme_knot(workdir: Path, zones: dict[str, str], acme_zone: str, secret: str, algorithm="hmac-sha256",
              env: dict | None = None) -> Knot:
    """A Knot serving `zones`, where `acme_zone` accepts updates signed with the TSIG key."""
    extra = [
        "key:", f"  - id: {TSIG_KEY}", f"    algorithm: {algorithm}", f"    secret: {secret}",
        "acl:", f"  - id: {TSIG_KEY}", f"    key: {TSIG_KEY}", "    action: update",
    ]
    return Knot(workdir, zones, extra_conf=extra, zone_conf={acme_zone: [f"acl: {TSIG_KEY}"]}, env=env)


class Unbound:
    """A recursive resolver on loopback that knows only the given zones, each served by `ns`
    (address@port), and caches nothing (a renewal's new TXT must be seen at once)."""

    def __init__(self, workdir: Path, zones: list[str], ns: str):
        self.dir = Path(workdir)
        self.zones = zones
        self.ns = ns
        self.port = free_port()
        self.log = self.dir / "unbound.log"
        self.proc = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def __enter__(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "server:", f"  interface: {LOOPBACK}", f"  port: {self.port}", "  do-ip6: no",
            "  do-not-query-localhost: no", f"  access-control: {LOOPBACK}/8 allow",
            '  username: ""', '  chroot: ""', f'  directory: "{self.dir}"', f'  pidfile: "{self.dir}/unbound.pid"',
            "  use-syslog: no", f'  logfile: "{self.log}"', "  verbosity: 1", "  num-threads: 1",
            '  module-config: "iterator"', "  cache-max-ttl: 0", "  cache-max-negative-ttl: 0",
            "  qname-minimisation: no",
        ]
        for z in self.zones:
            lines += [f'  local-zone: "{z}." transparent']
        for z in self.zones:
            lines += ["stub-zone:", f'  name: "{z}."', f"  stub-addr: {self.ns}"]
        conf = self.dir / "unbound.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["unbound", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "unbound.stderr", "w"), start_new_session=True)
        try:
            wait_for_port(self.port, self.proc, log=self.dir / "unbound.stderr")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None


def make_tls(dir: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1/localhost signed by it, for pebble's https:
    (ca.pem, cert.pem, key.pem)."""
    dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (dir / n for n in ("ca.key", "ca.pem", "key.pem", "cert.csr", "cert.pem"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(ca_key),
        "-out", str(ca), "-days", "3650", "-subj", "/CN=pebble https test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
        str(csr), "-subj", "/CN=localhost")
    ext = dir / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out",
        str(cert), "-days", "3650", "-extfile", str(ext))
    return ca, cert, key


class Pebble:
    """pebble with a fresh throwaway root, validating DNS-01 through `dns` (address:port)."""

    def __init__(self, workdir: Path, dns: str, validity_seconds: int = 40 * 86400):
        self.dir = Path(workdir)
        self.dns = dns
        self.validity = validity_seconds
        self.port = free_port()
        self.mgmt = free_port()
        self.log = self.dir / "pebble.log"
        self.proc = None

    @property
    def directory_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/dir"

    def __enter__(self):
        self.tls_ca, cert, key = make_tls(self.dir / "tls")
        conf = self.dir / "pebble.json"
        conf.write_text(json.dumps({"pebble": {
            "listenAddress": f"{LOOPBACK}:{self.port}",
            "managementListenAddress": f"{LOOPBACK}:{self.mgmt}",
            "certificate": str(cert), "privateKey": str(key),
            "httpPort": free_port(), "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
            "certificateValidityPeriod": self.validity,
        }}))
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
        self.proc = subprocess.Popen(["pebble", "-config", str(conf), "-dnsserver", self.dns],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        try:
            wait_for_port(self.port, self.proc, log=self.log)
            wait_for_port(self.mgmt, self.proc, log=self.log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _get(self, path: str) -> str:
        ctx = ssl.create_default_context(cafile=str(self.tls_ca))
        with urllib.request.urlopen(f"https://{LOOPBACK}:{self.mgmt}{path}", context=ctx, timeout=10) as r:
            return r.read().decode()

    def root(self) -> str:
        """The throwaway root that signs this run's certificates (PEM)."""
        return self._get("/roots/0")

    def intermediate(self) -> str:
        return self._get("/intermediates/0")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __exit__(self, *exc):
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None


def trusted_starttls(port: int, domain: str, root: Path, timeout: float = 10.0) -> str | None:
    """What a client trusting only `root` (a CA's root, PEM file) sees after STARTTLS for
    `domain` on 127.0.0.1:`port`: the served certificate's colon-separated SHA-256 when the
    handshake verifies (the chain the server sends links up to `root`, and the certificate names
    `domain`, as Python's default client checks do), None when no STARTTLS is offered; an
    ssl.SSLCertVerificationError when it does not verify."""
    import hashlib
    import re
    import socket

    from cert_scenarios import STARTTLS, STREAM

    def read_until(sock, pattern):
        data = b""
        while not re.search(pattern, data) and len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    with socket.create_connection((LOOPBACK, port), timeout=timeout) as raw:
        raw.sendall(STREAM.format(domain=domain).encode())
        if b"urn:ietf:params:xml:ns:xmpp-tls" not in read_until(raw, rb"</stream:features>|</stream:stream>"):
            return None
        raw.sendall(STARTTLS.encode())
        if b"<proceed" not in read_until(raw, rb"<proceed|<failure"):
            return None
        ctx = ssl.create_default_context(cafile=str(root))
        with ctx.wrap_socket(raw, server_hostname=domain) as tls:
            der = tls.getpeercert(binary_form=True)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def renewal_logged(log: Path, domain: str, fingerprint: str, timeout: float = 30.0) -> list[str]:
    """Waits for the housekeeping pass's line for an ACME renewal of `domain` ("Renewed the
    certificate of D by ACME: valid until …, SHA-256 <fingerprint>") in a server's log; returns
    the matching lines (empty when it never came: the caller's assert shows the log)."""
    line = f"Renewed the certificate of {domain} by ACME: valid until "
    deadline = time.monotonic() + timeout
    while True:
        found = [x for x in log.read_text(errors="replace").splitlines() if line in x and x.endswith(fingerprint)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def customer_zone(origin: str, serial: int, cnames: dict[str, str]) -> str:
    """The customers' zone: `_acme-challenge.<label> CNAME <target>.` for each entry."""
    body = "\n".join(f"_acme-challenge.{label} CNAME {target}." for label, target in cnames.items())
    return zone_text(origin, serial, body)


class AcmeLab:
    """Knot (the customers' zone with their CNAMEs, and the provider's ACME zone taking TSIG-signed
    updates), unbound and pebble, started together; `configure(db)` points a store at them.

    `clock`: the ServerClock of a server whose clock the test moves (a renewal inside the running
    server). Knot then runs on that clock too: TSIG signs the update with the signer's time and
    Knot refuses one more than 300 s off its own, as a provider's DNS server and XMPP server,
    both on true time, never are. pebble and unbound stay on the real clock (nothing of theirs
    here depends on it)."""

    def __init__(self, workdir: Path, customers: str, acme_zone: str, cnames: dict[str, str], clock=None):
        self.dir = Path(workdir)
        self.customers, self.acme_zone, self.cnames = customers, acme_zone, dict(cnames)
        self.clock = clock
        self.secret = tsig_secret()
        self._stack = []

    def good_cname(self, label: str) -> str:
        return f"{label}.{self.customers}.{self.acme_zone}"

    def __enter__(self):
        zones = {self.customers: customer_zone(self.customers, 1, self.cnames),
                 self.acme_zone: zone_text(self.acme_zone, 1, "")}
        try:
            self.knot = acme_knot(self.dir / "knot", zones, self.acme_zone, self.secret,
                                  env=self.clock.env if self.clock else None).__enter__()
            self._stack.append(self.knot)
            self.unbound = Unbound(self.dir / "unbound", [self.customers, self.acme_zone],
                                   f"{LOOPBACK}@{self.knot.port}").__enter__()
            self._stack.append(self.unbound)
            self.pebble = Pebble(self.dir / "pebble", self.unbound.address).__enter__()
            self._stack.append(self.pebble)
        except BaseException:
            self.__exit__()
            raise
        self.secret_file = self.dir / "tsig.secret"
        self.secret_file.write_text(self.secret + "\n")
        os.chmod(self.secret_file, 0o600)
        return self

    def settings(self) -> list[tuple[str, str]]:
        """The provider settings (`provider set KEY VALUE`) for this lab."""
        return [
            ("dns.nameservers", json.dumps([self.knot.nameserver])),
            ("dns.timeout_ms", "2000"),
            ("dns.attempts", "1"),
            ("acme.directory_url", self.pebble.directory_url),
            ("acme.ca_file", str(self.pebble.tls_ca)),
            ("acme.contact", "hostmaster@provider.example"),
            ("acme.zone", self.acme_zone),
            ("acme.dns_server", self.knot.nameserver),
            ("acme.tsig_key_name", TSIG_KEY),
            ("acme.tsig_secret_file", str(self.secret_file)),
            ("acme.propagation_timeout", "30"),
        ]

    def configure(self, db: Path):
        from .common import run_cli
        for key, value in self.settings():
            run_cli(db, "provider", "set", key, value)

    def __exit__(self, *exc):
        while self._stack:
            self._stack.pop().__exit__(None, None, None)


__all__ = ["AcmeLab", "Pebble", "Unbound", "acme_knot", "customer_zone", "trusted_starttls", "tsig_secret", "zone_text",
           "TSIG_KEY", "tail"]
