"""`xmpp-hosting cert`: a self-signed certificate that OpenSSL reads as the issue asks (names,
XmppAddr, SRV-ID, CN, self-verifying), the CSR, POSH, the import of a chain made here with a
throwaway OpenSSL CA (accepted, `openssl verify` agreeing) and every refusal with its reason, the
exported files' modes, and no private key in any output."""

import base64
import hashlib
import json
import os
import stat
import subprocess

from harness.common import run_cli


def openssl(*args, input=None, cwd=None):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True, input=input, cwd=cwd)


def no_key(*texts):
    for t in texts:
        assert "PRIVATE KEY" not in t, t


CA_CONF = """
[ca]
default_ca = testca
[testca]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
email_in_dn = no
[anything]
commonName = supplied
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth, clientAuth
"""


class CA:
    """A throwaway CA run with `openssl ca` (which, unlike `openssl x509` in OpenSSL 3.0, takes
    any start and end date, for the expired and not-yet-valid certificates)."""

    def __init__(self, base, name, parent=None):
        self.dir = base / name.replace(" ", "_")
        self.dir.mkdir()
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        self.conf = self.dir / "ca.cnf"
        self.conf.write_text(CA_CONF.format(dir=self.dir))
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.crt"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(self.key))
        if parent is None:
            openssl("req", "-new", "-x509", "-key", str(self.key), "-subj", f"/CN={name}", "-days", "3650",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                    "-out", str(self.cert))
        else:
            csr = self.dir / "ca.csr"
            openssl("req", "-new", "-key", str(self.key), "-subj", f"/CN={name}", "-out", str(csr))
            parent.sign(csr, self.cert, extensions="v3_ca")

    def sign(self, csr, out, start=None, end=None, extensions="leaf"):
        dates = ["-startdate", start, "-enddate", end] if start else ["-days", "90"]
        openssl("ca", "-batch", "-config", str(self.conf), "-keyfile", str(self.key), "-cert", str(self.cert),
                "-extensions", extensions, "-in", str(csr), "-out", str(out), "-notext", *dates)
        return out


def generated(tmp_path, domain="example.org"):
    db = tmp_path / "store.sqlite"
    if not db.exists() or domain not in run_cli(db, "domain", "list").stdout:
        run_cli(db, "domain", "add", domain)
    run_cli(db, "cert", "generate", domain)
    return db


def test_self_signed_certificate_as_openssl_reads_it(tmp_path):
    db = generated(tmp_path)
    r = run_cli(db, "cert", "show", "example.org")
    # Days left round down: a second after generating, 364 of the 365 remain whole.
    assert "self-signed" in r.stdout and ("365 days left" in r.stdout or "364 days left" in r.stdout), r.stdout
    pem = run_cli(db, "cert", "show", "example.org", "--pem").stdout
    crt = tmp_path / "c.pem"
    crt.write_text(pem)
    text = openssl("x509", "-in", str(crt), "-noout", "-text").stdout
    for name in ["DNS:example.org", "DNS:conference.example.org", "DNS:share.example.org", "DNS:proxy.example.org",
                 "othername: XmppAddr::example.org", "othername: XmppAddr::conference.example.org",
                 "othername: SRVName::_xmpp-client.example.org", "othername: SRVName::_xmpp-server.example.org",
                 "Subject: CN = example.org", "ecdsa-with-SHA256", "TLS Web Server Authentication"]:
        assert name in text, (name, text)
    assert openssl("verify", "-CAfile", str(crt), str(crt)).stdout.strip() == f"{crt}: OK"
    # The fingerprints people compare, as OpenSSL computes them.
    der = subprocess.run(["openssl", "x509", "-in", str(crt), "-outform", "DER"], capture_output=True,
                         check=True).stdout
    shown = json.loads(run_cli(db, "--json", "cert", "show", "example.org").stdout)
    assert shown["fingerprint"]["sha256_base64"] == base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert shown["fingerprint"]["sha256_hex"] == \
        openssl("x509", "-in", str(crt), "-noout", "-fingerprint", "-sha256").stdout.strip().split("=", 1)[1]
    posh = json.loads(run_cli(db, "cert", "posh", "example.org", "--service", "server").stdout)
    assert posh["fingerprints"] == [{"sha-256": shown["fingerprint"]["sha256_base64"]}]
    assert 0 < posh["expires"] <= 7 * 86400
    # RSA on request.
    r = run_cli(db, "cert", "generate", "example.org", "--key", "rsa", "--days", "30")
    assert "rsa" in r.stdout and "30 days left" in r.stdout, r.stdout
    crt.write_text(run_cli(db, "cert", "show", "example.org", "--pem").stdout)
    assert "Public-Key: (2048 bit)" in openssl("x509", "-in", str(crt), "-noout", "-text").stdout
    no_key(r.stdout, pem, json.dumps(shown))


def test_csr_and_posh_check(tmp_path):
    db = generated(tmp_path)
    csr = run_cli(db, "cert", "csr", "example.org").stdout
    req = tmp_path / "r.pem"
    req.write_text(csr)
    r = subprocess.run(["openssl", "req", "-in", str(req), "-verify", "-noout", "-text"],
                       capture_output=True, text=True, check=True)
    assert "verify OK" in r.stdout + r.stderr
    assert "DNS:share.example.org" in r.stdout and "othername: XmppAddr::example.org" in r.stdout, r.stdout
    published = tmp_path / "xmpp-client.json"
    published.write_text(run_cli(db, "cert", "posh", "example.org").stdout)
    r = run_cli(db, "cert", "posh", "example.org", "--check", str(published))
    assert "matches (sha-256)" in r.stdout, r.stdout
    run_cli(db, "cert", "generate", "example.org")  # a new certificate: the published file is stale
    r = run_cli(db, "cert", "posh", "example.org", "--check", str(published), check=False)
    assert r.returncode == 3 and "does not match" in r.stdout, (r.returncode, r.stdout)
    published.write_text("<html>not found</html>")
    r = run_cli(db, "cert", "posh", "example.org", "--check", str(published), check=False)
    assert r.returncode == 1 and "not a POSH file" in r.stderr, r.stderr
    r = run_cli(db, "cert", "csr", "nothere.org", check=False)
    assert r.returncode == 1 and "not found" in r.stderr, r.stderr


def test_import_of_a_chain_and_every_refusal(tmp_path):
    db = generated(tmp_path)
    run_cli(db, "domain", "add", "other.org")
    run_cli(db, "cert", "generate", "other.org")
    root = CA(tmp_path, "Test Root")
    inter = CA(tmp_path, "Test Intermediate", parent=root)
    req = tmp_path / "example.csr"
    req.write_text(run_cli(db, "cert", "csr", "example.org").stdout)
    leaf = inter.sign(req, tmp_path / "leaf.pem")
    chain = tmp_path / "chain.pem"
    chain.write_text(leaf.read_text() + inter.cert.read_text())
    # OpenSSL agrees the chain links up to the root.
    assert openssl("verify", "-CAfile", str(root.cert), "-untrusted", str(inter.cert), str(leaf)).stdout.strip() \
        .endswith(": OK")

    def served():
        shown = json.loads(run_cli(db, "--json", "cert", "show", "example.org").stdout)
        del shown["days_left"]  # counts down with the clock between two calls
        return shown

    def refused(path, says):
        before = served()
        r = run_cli(db, "cert", "import", "example.org", str(path), check=False)
        assert r.returncode == 1 and says in r.stderr, (says, r.stderr)
        assert served() == before, "a refused import changed the served certificate"

    # Another domain's certificate (its CSR, its key).
    other_req = tmp_path / "other.csr"
    other_req.write_text(run_cli(db, "cert", "csr", "other.org").stdout)
    refused(inter.sign(other_req, tmp_path / "other.pem"), "for another domain: it covers other.org")
    # Another key with the right names.
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(tmp_path / "k.pem"))
    openssl("req", "-new", "-key", str(tmp_path / "k.pem"), "-subj", "/CN=example.org",
            "-addext", "subjectAltName=DNS:example.org", "-out", str(tmp_path / "k.csr"))
    refused(inter.sign(tmp_path / "k.csr", tmp_path / "otherkey.pem"), "issued for another key")
    refused(inter.sign(req, tmp_path / "old.pem", "20200101000000Z", "20200301000000Z"), "expired on 2020-03-01")
    refused(inter.sign(req, tmp_path / "new.pem", "20990101000000Z", "20990301000000Z"), "not valid before 2099")
    # The leaf with an intermediate that did not sign it.
    stranger = CA(tmp_path, "Stranger Intermediate", parent=CA(tmp_path, "Stranger Root"))
    broken = tmp_path / "broken.pem"
    broken.write_text(leaf.read_text() + stranger.cert.read_text())
    refused(broken, "the chain does not link")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    refused(garbage, "not a PEM certificate")
    refused(tmp_path / "missing.pem", "cannot read")

    r = run_cli(db, "cert", "import", "example.org", str(chain))
    assert "imported" in r.stdout and "share.example.org" in r.stdout, r.stdout
    shown = json.loads(run_cli(db, "--json", "cert", "show", "example.org").stdout)
    assert shown["source"] == "imported" and shown["chain_length"] == 1
    assert shown["services_covered"] == ["conference.example.org", "proxy.example.org", "share.example.org"]
    served = tmp_path / "served.pem"
    served.write_text(run_cli(db, "cert", "show", "example.org", "--pem").stdout)
    assert openssl("verify", "-CAfile", str(root.cert), "-untrusted", str(served), str(served)).stdout \
        .strip().endswith(": OK")
    no_key(r.stdout, served.read_text())

    checked = json.loads(run_cli(db, "--json", "cert", "check").stdout)
    left = {c["domain"]: c["days_left"] for c in checked}
    # `openssl ca -days 90` counts from its own "now", a moment before the CLI's.
    assert left["other.org"] in (364, 365) and left["example.org"] in (89, 90), checked
    fine = run_cli(db, "cert", "check")
    assert fine.stdout.rstrip().endswith("2 certificate(s), none expiring within 7 days"), fine.stdout
    run_cli(db, "cert", "generate", "other.org", "--days", "3")
    # A failed check, as `prosodyctl check certs` and ejabberdctl's check exit: 1 (not the "no"
    # answer's 3), the table printed and the verdict naming the domain.
    failed = run_cli(db, "cert", "check", check=False)
    assert failed.returncode == 1, (failed.returncode, failed.stdout, failed.stderr)
    assert failed.stdout.rstrip().endswith("expiring within 7 days: other.org"), failed.stdout
    assert "other.org" in failed.stdout.splitlines()[1] and failed.stderr == "", failed
    assert run_cli(db, "--json", "cert", "check", check=False).returncode == 1


def test_export_writes_each_servers_files_with_their_modes(tmp_path):
    db = generated(tmp_path)
    out = tmp_path / "certs"
    out.mkdir()
    r = run_cli(db, "cert", "export", "example.org", "--dir", str(out), "--layout", "prosody")
    no_key(r.stdout)
    assert stat.S_IMODE(os.stat(out / "example.org.crt").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(out / "example.org.key").st_mode) == 0o600
    # The key and certificate belong together, as OpenSSL sees them.
    pub_key = openssl("pkey", "-in", str(out / "example.org.key"), "-pubout").stdout
    pub_crt = openssl("x509", "-in", str(out / "example.org.crt"), "-noout", "-pubkey").stdout
    assert pub_key == pub_crt
    run_cli(db, "cert", "export", "example.org", "--dir", str(out), "--layout", "ejabberd")
    assert stat.S_IMODE(os.stat(out / "example.org.pem").st_mode) == 0o600
    text = (out / "example.org.pem").read_text()
    assert "BEGIN CERTIFICATE" in text and "BEGIN PRIVATE KEY" in text
    r = run_cli(db, "cert", "export", "example.org", "--dir", str(tmp_path / "nope"), "--layout", "prosody",
                check=False)
    assert r.returncode == 1 and "is not a directory" in r.stderr, r.stderr
    r = run_cli(db, "cert", "generate", "example.org", "--key", "dsa", check=False)
    assert r.returncode == 1 and "unknown key type" in r.stderr, r.stderr
    r = run_cli(db, "cert", "generate", "example.org", "--days", "0", check=False)
    assert r.returncode == 1 and "give 1 to 3650 days" in r.stderr, r.stderr
