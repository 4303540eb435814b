"""What both servers must do with a hosted domain's certificate (issue 14), as helpers the Prosody
and ejabberd tests share: a STARTTLS client that reports the certificate a server presents for a
domain, a throwaway OpenSSL CA that signs the domain's CSR, and the key-material checks."""

import base64
import hashlib
import os
import re
import socket
import ssl
import stat
import subprocess
import time
from pathlib import Path

STREAM = ("<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams'>")
STARTTLS = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


def _read_until(sock, pattern, limit=65536):
    data = b""
    while not re.search(pattern, data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            break
    return data


def served_fingerprint(port: int, domain: str, timeout: float = 10.0) -> str | None:
    """The colon-separated SHA-256 of the certificate the server presents for `domain` after
    STARTTLS on 127.0.0.1:`port` (SNI = domain, as clients send it), or None when the server
    offers no STARTTLS for it. Nothing is verified: the tests compare fingerprints."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        raw.sendall(STREAM.format(domain=domain).encode())
        features = _read_until(raw, rb"</stream:features>|</features>|</stream:stream>")
        if b"urn:ietf:params:xml:ns:xmpp-tls" not in features:
            return None
        raw.sendall(STARTTLS.encode())
        answer = _read_until(raw, rb"<proceed|<failure")
        if b"<proceed" not in answer:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw, server_hostname=domain) as tls:
            der = tls.getpeercert(binary_form=True)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def wait_served(port: int, domain: str, want, timeout: float = 30.0):
    """Polls until the fingerprint served for `domain` satisfies `want` (a value to equal, or a
    predicate); returns it. The servers reload on their own schedule, so this waits for an
    outcome, it does not time anything."""
    check = want if callable(want) else (lambda fp: fp == want)
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = served_fingerprint(port, domain)
        except (OSError, ssl.SSLError) as e:
            seen = f"error: {e}"
        if check(seen):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{domain}: served {seen!r}, not what was expected within {timeout} s")


def fingerprint_in(text: str) -> str:
    """The SHA-256 fingerprint a `cert show`/`generate` description prints."""
    m = re.search(r"sha-256\s+([0-9A-F]{2}(?::[0-9A-F]{2}){31})", text)
    assert m, text
    return m.group(1)


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True, input=input)


class ThrowawayCA:
    """A CA made for one test: signs the domain's CSR (made by the server's own command) with the
    names the CSR asks for."""

    def __init__(self, base: Path, name: str = "Throwaway Test CA"):
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = self.dir / "ca.key", self.dir / "ca.crt"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(self.key))
        openssl("req", "-new", "-x509", "-key", str(self.key), "-subj", f"/CN={name}", "-days", "3650",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                "-out", str(self.cert))

    def sign(self, csr_pem: str, days: int = 90) -> str:
        """The certificate for `csr_pem` followed by this CA's certificate (the chain to import)."""
        csr, out, ext = self.dir / "leaf.csr", self.dir / "leaf.crt", self.dir / "leaf.ext"
        csr.write_text(csr_pem)
        names = re.findall(r"DNS:([^,\s]+)", openssl("req", "-in", str(csr), "-noout", "-text").stdout)
        ext.write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
                       f"subjectAltName={','.join('DNS:' + n for n in names)}\n")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key), "-CAcreateserial",
                "-days", str(days), "-extfile", str(ext), "-out", str(out))
        return out.read_text() + self.cert.read_text()


def key_body(key_file: Path) -> str:
    """The base64 body of a private key file, for looking for it in outputs and logs."""
    return "".join(l for l in key_file.read_text().splitlines() if not l.startswith("-----"))


def assert_no_key_material(key_files, *texts, public=""):
    """No text holds a PRIVATE KEY block or any 40-character piece of the keys' base64. An RSA
    private key holds the public modulus too, which the certificate shows: pieces also found in
    `public` (the certificates) are not secret."""
    pieces = []
    for f in key_files:
        body = key_body(Path(f))
        pieces += [p for p in (body[i:i + 40] for i in range(0, len(body) - 40, 40)) if p not in public]
    assert pieces or not key_files, "nothing left to look for"
    for t in texts:
        assert "PRIVATE KEY" not in t
        for p in pieces:
            assert p not in t, "a piece of a private key was found in an output or log"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def der_sha256_b64(pem: str) -> str:
    der = subprocess.run(["openssl", "x509", "-outform", "DER"], input=pem.encode(), capture_output=True,
                         check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()
