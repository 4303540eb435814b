"""An ACME certificate (issue 14) served by the real Prosody (0.12 and 13.0): issued through the
customer's CNAME by pebble (see tests/test_acme.py for the lab), installed by the server's own
certificate upkeep, served over STARTTLS, and replaced by a renewal without a restart; the same
through `prosodyctl mod_xmpp_hosting cert acme`, and a missing CNAME refused there with the reason."""

import json

from cert_scenarios import assert_no_key_material, wait_served
from harness.acme import AcmeLab
from harness.common import run_cli
from harness.prosody import Prosody

CUSTOMERS = "customers.example"
ACME_ZONE = "acme.provider.example"
DOMAIN = f"chat.{CUSTOMERS}"


def test_an_acme_certificate_is_served_and_a_renewal_replaces_it_without_restart(tmp_path):
    outputs = []
    with AcmeLab(tmp_path / "lab", CUSTOMERS, ACME_ZONE, {"chat": f"{DOMAIN}.{ACME_ZONE}"}) as lab, \
            Prosody(tmp_path / "prosody", host=DOMAIN,
                    options={"xmpp_hosting_certificates_interval": 1}) as server:
        db = server.database
        lab.configure(db)
        run_cli(db, "domain", "add", DOMAIN)
        issued = run_cli(db, "cert", "acme", DOMAIN, check=False)
        outputs.append(issued.stdout + issued.stderr)
        assert issued.returncode == 0, issued.stderr + lab.pebble.log_text()[-2000:]
        first = json.loads(run_cli(db, "cert", "show", DOMAIN, "--json").stdout)
        assert first["acme"]["serving"] and first["names"] == [DOMAIN, f"*.{DOMAIN}"]
        wait_served(server.c2s_port, DOMAIN, first["fingerprint"]["sha256_hex"])

        # Issued again (what a renewal does), this time by prosodyctl: installed at once and
        # served, no restart.
        again = server.ctl("mod_xmpp_hosting", "cert", "acme", DOMAIN)
        outputs.append(again.stdout + again.stderr)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Installed in" in again.stdout, again.stdout
        second = json.loads(run_cli(db, "cert", "show", DOMAIN, "--json").stdout)
        assert second["fingerprint"] != first["fingerprint"]
        wait_served(server.c2s_port, DOMAIN, second["fingerprint"]["sha256_hex"])
        assert server.proc.poll() is None, "the server was not restarted"
        # A domain whose customer has not added the CNAME: refused with the reason, by prosodyctl too.
        run_cli(db, "domain", "add", f"nocname.{CUSTOMERS}")
        refused = server.ctl("mod_xmpp_hosting", "cert", "acme", f"nocname.{CUSTOMERS}")
        outputs.append(refused.stdout + refused.stderr)
        assert refused.returncode != 0
        assert f"no CNAME at _acme-challenge.nocname.{CUSTOMERS}" in refused.stdout + refused.stderr, refused.stdout
        outputs.append(server.log.read_text(errors="replace"))
        public = run_cli(db, "cert", "show", DOMAIN, "--pem").stdout
        key = server.dir / "certs" / "xmpp-hosting" / f"{DOMAIN}.key"
    assert_no_key_material([key], *outputs, public=public)
