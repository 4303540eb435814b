"""Hosted domains' certificates in the real Prosody (0.12 and 13.0, issue 14): installed where its
certmanager reads them, served over STARTTLS, accepted by `prosodyctl check certs`, replaced by an
import without a restart, gone when the domain is, renewed when close to expiry (the server's clock
moved with libfaketime) and warned about at 31/7/1 days; keys 0600 and nowhere in any output or log."""

import re

from cert_scenarios import (ThrowawayCA, assert_no_key_material, fingerprint_in, mode_of, served_fingerprint,
                            wait_served)
from harness.clock import ServerClock
from harness.prosody import Prosody

DOMAIN = "cust.example"
DAY = 86400


def ctl(server, *args, ok=True):
    r = server.ctl("mod_xmpp_hosting", *args)
    if ok:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def pem_of(text):
    """The PEM in a command's output (prosodyctl may print a log line of the store before it)."""
    return text[text.index("-----BEGIN"):]


def start(tmp_path, clock=None, **kw):
    options = {"xmpp_hosting_certificates_interval": 1, "admins": [f"admin@{DOMAIN}"]}
    return Prosody(tmp_path / "prosody", host=DOMAIN, options=options,
                   server_env=clock.env if clock else None, **kw)


def test_a_generated_then_imported_certificate_is_served_without_restart_and_removed_with_the_domain(tmp_path):
    outputs = []
    with start(tmp_path) as server:
        certs = server.dir / "certs" / "xmpp-hosting"
        ctl(server, "domain", "add", DOMAIN)
        made = ctl(server, "cert", "generate", DOMAIN)
        outputs.append(made.stdout + made.stderr)
        first = fingerprint_in(made.stdout)
        assert f"Installed in {certs}" in made.stdout, made.stdout
        assert mode_of(certs / f"{DOMAIN}.key") == 0o600
        assert mode_of(certs / f"{DOMAIN}.crt") == 0o644
        wait_served(server.c2s_port, DOMAIN, first)

        check = server.ctl("check", "certs")
        outputs.append(check.stdout + check.stderr)
        assert f"Certificate: {certs}/{DOMAIN}.crt" in check.stdout or "All certificates loaded ok" in \
            check.stdout, check.stdout
        assert "No certificate" not in check.stdout and "not valid" not in check.stdout.lower(), check.stdout

        shown = ctl(server, "cert", "show", DOMAIN)
        outputs.append(shown.stdout)
        assert fingerprint_in(shown.stdout) == first
        pem = ctl(server, "cert", "show", DOMAIN, "--pem").stdout
        csr = pem_of(ctl(server, "cert", "csr", DOMAIN).stdout)
        posh = ctl(server, "cert", "posh", DOMAIN).stdout
        outputs += [pem, csr, posh]
        assert csr.startswith("-----BEGIN CERTIFICATE REQUEST-----")
        assert '"sha-256"' in posh

        # A certificate signed by a CA made here, from the domain's CSR: served at once.
        chain = tmp_path / "chain.pem"
        chain.write_text(ThrowawayCA(tmp_path / "ca").sign(csr))
        imported = ctl(server, "cert", "import", DOMAIN, str(chain))
        outputs.append(imported.stdout)
        second = fingerprint_in(imported.stdout)
        assert second != first and "imported" in imported.stdout
        wait_served(server.c2s_port, DOMAIN, second)

        refused = ctl(server, "cert", "import", DOMAIN, str(tmp_path / "ca" / "ca.crt"), ok=False)
        outputs.append(refused.stdout + refused.stderr)
        assert refused.returncode == 1, refused.stdout
        assert "another key" in refused.stderr or "another domain" in refused.stderr, refused.stderr
        assert served_fingerprint(server.c2s_port, DOMAIN) == second, "a refused import changes nothing"

        checked = ctl(server, "cert", "check")
        assert checked.returncode == 0 and DOMAIN in checked.stdout, checked.stdout

        # The domain removed: its files go at the next housekeeping pass, and with them the certificate.
        ctl(server, "domain", "remove", DOMAIN)
        wait_served(server.c2s_port, DOMAIN, lambda fp: fp != second)
        assert not (certs / f"{DOMAIN}.key").exists() and not (certs / f"{DOMAIN}.crt").exists()
        log = server.wait_for_log(f"Certificates installed for none; removed for {DOMAIN}")
    assert_no_key_material([], *outputs, log)
    assert not re.search(r"BEGIN [A-Z ]*PRIVATE KEY", log)


def test_keys_never_reach_outputs_or_the_log(tmp_path):
    with start(tmp_path) as server:
        certs = server.dir / "certs" / "xmpp-hosting"
        ctl(server, "domain", "add", DOMAIN)
        outputs = [ctl(server, "cert", "generate", DOMAIN, "--key", "rsa", "--days", "30").stdout]
        wait_served(server.c2s_port, DOMAIN, fingerprint_in(outputs[0]))
        for args in (["cert", "show", DOMAIN], ["cert", "show", DOMAIN, "--pem"], ["cert", "csr", DOMAIN],
                     ["cert", "posh", DOMAIN, "--service", "server"], ["cert", "check"]):
            r = server.ctl("mod_xmpp_hosting", *args)
            outputs.append(r.stdout + r.stderr)
        assert_no_key_material([certs / f"{DOMAIN}.key"], *outputs, server.log_text(),
                               public=(certs / f"{DOMAIN}.crt").read_text())


def test_self_signed_is_renewed_before_expiry_and_served_and_an_import_is_only_warned_about(tmp_path):
    clock = ServerClock(tmp_path)
    with start(tmp_path, clock) as server:
        ctl(server, "domain", "add", DOMAIN)
        ctl(server, "domain", "set", DOMAIN, "owner", f"owner@{DOMAIN}")
        first = fingerprint_in(ctl(server, "cert", "generate", DOMAIN).stdout)
        wait_served(server.c2s_port, DOMAIN, first)

        # 334 days on (31 days left), the pass renews it with the same key and serves it.
        clock.set_offset(334 * DAY + 3600)
        log = server.wait_for_log("was renewed: its SHA-256 fingerprint is now", timeout=30)
        renewed = re.search(r"fingerprint is now ([0-9A-F:]{95})", log).group(1)
        assert renewed != first
        wait_served(server.c2s_port, DOMAIN, renewed)
        shown = ctl(server, "cert", "show", DOMAIN).stdout
        assert fingerprint_in(shown) == renewed

        # An imported certificate is never replaced: the admins and the owner hear at 31, 7, 1 days.
        clock.set_offset(0)
        chain = tmp_path / "chain.pem"
        chain.write_text(ThrowawayCA(tmp_path / "ca").sign(pem_of(ctl(server, "cert", "csr", DOMAIN).stdout), days=60))
        imported = fingerprint_in(ctl(server, "cert", "import", DOMAIN, str(chain)).stdout)
        wait_served(server.c2s_port, DOMAIN, imported)
        for offset, words in ((29, "expires in 31 days"), (53, "expires in 7 days"), (59, "expires in 1 day,")):
            clock.set_offset(offset * DAY - 3600)
            server.wait_for_log(f"The imported certificate of {DOMAIN} {words}", timeout=30)
        assert server.log_text().count(f"The imported certificate of {DOMAIN} expires in 31 days") == 1
        assert fingerprint_in(ctl(server, "cert", "show", DOMAIN).stdout) == imported
        check = ctl(server, "cert", "check", ok=False)
        assert check.returncode == 0, "prosodyctl runs on the real clock: 60 days left"
