"""Hosted domains' certificates in the real ejabberd (23.01 and 24.12, issue 14): installed into
certificates_dir and handed to ejabberd_pkix without a certfiles glob or a restart, served over
STARTTLS, replaced by an import at once, gone when the domain is, renewed when close to expiry
(the node's clock moved with libfaketime) and warned about at 31/7/1 days; key files 0600 and
no key material in any output or log."""

import re
import time

from cert_scenarios import (ThrowawayCA, assert_no_key_material, fingerprint_in, mode_of, served_fingerprint,
                            wait_served)
from harness.clock import ServerClock
from harness.ejabberd import Ejabberd

DOMAIN = "cust.example"
DAY = 86400


class StarttlsEjabberd(Ejabberd):
    """The harness's node with STARTTLS offered on its client listener (`starttls: true`), as a
    deployment serving certificates has it."""

    def write_config(self):
        super().write_config()
        conf = self.conf_dir / "ejabberd.yml"
        text = conf.read_text()
        assert "    starttls_required: false\n" in text
        conf.write_text(text.replace("    starttls_required: false\n",
                                     "    starttls: true\n    starttls_required: false\n", 1))


def node(tmp_path, clock=None):
    return StarttlsEjabberd(tmp_path / "ejabberd", host=DOMAIN, install="config",
                    module_options={"certificates_interval": 1},
                    server_env=clock.env if clock else None, admins=[f"admin@{DOMAIN}"])


def pem_of(text):
    return text[text.index("-----BEGIN"):]


def test_a_generated_then_imported_certificate_is_served_without_restart_and_removed_with_the_domain(tmp_path):
    outputs = []
    with node(tmp_path) as server:
        certs = server.spool / "xmpp-hosting-certs"
        server.ctl("xmpp_hosting_domain_add", DOMAIN)
        made = server.ctl("xmpp_hosting_cert_generate", DOMAIN, "ecdsa", "0")
        outputs.append(made.stdout + made.stderr)
        first = fingerprint_in(made.stdout)
        assert "Installed for cust.example" in made.stdout, made.stdout
        assert mode_of(certs / f"{DOMAIN}.pem") == 0o600
        wait_served(server.c2s_port, DOMAIN, first)

        for args in (["xmpp_hosting_cert_show", DOMAIN], ["xmpp_hosting_cert_pem", DOMAIN],
                     ["xmpp_hosting_cert_posh", DOMAIN, "client"]):
            outputs.append(server.ctl(*args).stdout)
        assert fingerprint_in(outputs[-3]) == first
        csr = pem_of(server.ctl("xmpp_hosting_cert_csr", DOMAIN).stdout)
        outputs.append(csr)

        chain = tmp_path / "chain.pem"
        chain.write_text(ThrowawayCA(tmp_path / "ca").sign(csr))
        imported = server.ctl("xmpp_hosting_cert_import", DOMAIN, str(chain))
        outputs.append(imported.stdout)
        second = fingerprint_in(imported.stdout)
        assert second != first and "imported" in imported.stdout
        wait_served(server.c2s_port, DOMAIN, second)

        refused = server.ctl("xmpp_hosting_cert_import", DOMAIN, str(tmp_path / "ca" / "ca.crt"), check=False)
        outputs.append(refused.stdout + refused.stderr)
        assert refused.returncode != 0 and ("another key" in refused.stdout or "another domain" in refused.stdout), \
            refused.stdout
        assert served_fingerprint(server.c2s_port, DOMAIN) == second, "a refused import changes nothing"

        checked = server.ctl("xmpp_hosting_cert_check")
        assert DOMAIN in checked.stdout, checked.stdout

        server.ctl("xmpp_hosting_domain_remove", DOMAIN)
        wait_served(server.c2s_port, DOMAIN, lambda fp: fp != second)
        assert not (certs / f"{DOMAIN}.pem").exists()
        log = server.log_file.read_text()
    assert_no_key_material([], *outputs, log)
    assert not re.search(r"BEGIN [A-Z ]*PRIVATE KEY", log)


def test_keys_never_reach_outputs_or_the_log(tmp_path):
    with node(tmp_path) as server:
        certs = server.spool / "xmpp-hosting-certs"
        server.ctl("xmpp_hosting_domain_add", DOMAIN)
        outputs = [server.ctl("xmpp_hosting_cert_generate", DOMAIN, "rsa", "30").stdout]
        wait_served(server.c2s_port, DOMAIN, fingerprint_in(outputs[0]))
        for args in (["xmpp_hosting_cert_show", DOMAIN], ["xmpp_hosting_cert_pem", DOMAIN],
                     ["xmpp_hosting_cert_csr", DOMAIN], ["xmpp_hosting_cert_posh", DOMAIN, "server"],
                     ["xmpp_hosting_cert_check"]):
            r = server.ctl(*args, check=False)
            outputs.append(r.stdout + r.stderr)
        pem = server.ctl("xmpp_hosting_cert_pem", DOMAIN).stdout
        assert_no_key_material([certs / f"{DOMAIN}.pem"], *outputs, server.log_file.read_text(), public=pem)


def test_self_signed_is_renewed_before_expiry_and_served_and_an_import_is_only_warned_about(tmp_path):
    clock = ServerClock(tmp_path)
    with node(tmp_path, clock) as server:
        server.ctl("xmpp_hosting_domain_add", DOMAIN)
        first = fingerprint_in(server.ctl("xmpp_hosting_cert_generate", DOMAIN, "ecdsa", "0").stdout)
        wait_served(server.c2s_port, DOMAIN, first)

        clock.set_offset(334 * DAY + 3600)
        deadline_log = ""
        for _ in range(120):
            deadline_log = server.log_file.read_text()
            if "was renewed: its SHA-256 fingerprint is now" in deadline_log:
                break
            time.sleep(0.5)
        renewed = re.search(r"fingerprint is now ([0-9A-F:]{95})", deadline_log).group(1)
        assert renewed != first
        wait_served(server.c2s_port, DOMAIN, renewed)
        assert fingerprint_in(server.ctl("xmpp_hosting_cert_show", DOMAIN).stdout) == renewed

        # The node's clock says 334 days on: `cert check` there counts from it.
        check = server.ctl("xmpp_hosting_cert_check", check=False)
        assert check.returncode == 0, check.stdout

        clock.set_offset(0)
        csr = pem_of(server.ctl("xmpp_hosting_cert_csr", DOMAIN).stdout)
        chain = tmp_path / "chain.pem"
        chain.write_text(ThrowawayCA(tmp_path / "ca").sign(csr, days=60))
        imported = fingerprint_in(server.ctl("xmpp_hosting_cert_import", DOMAIN, str(chain)).stdout)
        wait_served(server.c2s_port, DOMAIN, imported)
        for offset, words in ((29, "expires in 31 days"), (53, "expires in 7 days"), (59, "expires in 1 day,")):
            clock.set_offset(offset * DAY - 3600)
            for _ in range(120):
                if f"The imported certificate of {DOMAIN} {words}" in server.log_file.read_text():
                    break
                time.sleep(0.5)
            assert f"The imported certificate of {DOMAIN} {words}" in server.log_file.read_text(), words
        assert server.log_file.read_text().count(f"The imported certificate of {DOMAIN} expires in 31 days") == 1
        assert fingerprint_in(server.ctl("xmpp_hosting_cert_show", DOMAIN).stdout) == imported
        # Under 7 days left on the node's clock: cert check says so, exit 1.
        check = server.ctl("xmpp_hosting_cert_check", check=False)
        assert check.returncode == 1 and "expiring within 7 days: cust.example" in check.stdout, \
            (check.returncode, check.stdout)
