"""An ACME certificate (issue 14) served by the real Prosody (0.12 and 13.0): issued through the
customer's CNAME by pebble (see tests/test_acme.py for the lab), installed by the server's own
certificate upkeep, served over STARTTLS to a client trusting only pebble's root, and replaced by a
renewal without a restart: issued again through `prosodyctl mod_xmpp_hosting cert acme`, then
renewed by the server's own housekeeping pass once its clock (libfaketime) reaches the renewal
window; a missing CNAME refused by prosodyctl with the reason."""

import json
import time

from cert_scenarios import assert_no_key_material, wait_served
from harness.acme import AcmeLab, renewal_logged, trusted_starttls
from harness.clock import ServerClock
from harness.common import run_cli
from harness.prosody import Prosody

DAY = 86400

CUSTOMERS = "customers.example"
ACME_ZONE = "acme.provider.example"
DOMAIN = f"chat.{CUSTOMERS}"


def fingerprint(db):
    return json.loads(run_cli(db, "cert", "show", DOMAIN, "--json").stdout)["fingerprint"]["sha256_hex"]


def test_an_acme_certificate_is_served_and_a_renewal_replaces_it_without_restart(tmp_path):
    outputs = []
    clock = ServerClock(tmp_path)
    with AcmeLab(tmp_path / "lab", CUSTOMERS, ACME_ZONE, {"chat": f"{DOMAIN}.{ACME_ZONE}"}, clock=clock) as lab, \
            Prosody(tmp_path / "prosody", host=DOMAIN, server_env=clock.env,
                    options={"xmpp_hosting_certificates_interval": 1}) as server:
        db = server.database
        lab.configure(db)
        root = tmp_path / "pebble-root.pem"
        root.write_text(lab.pebble.root())
        run_cli(db, "domain", "add", DOMAIN)
        issued = run_cli(db, "cert", "acme", DOMAIN, check=False)
        outputs.append(issued.stdout + issued.stderr)
        assert issued.returncode == 0, issued.stderr + lab.pebble.log_text()[-2000:]
        first = json.loads(run_cli(db, "cert", "show", DOMAIN, "--json").stdout)
        assert first["acme"]["serving"] and first["names"] == [DOMAIN, f"*.{DOMAIN}"]
        wait_served(server.c2s_port, DOMAIN, first["fingerprint"]["sha256_hex"])
        # A client trusting only pebble's root accepts it: the served chain links up, the name fits.
        assert trusted_starttls(server.c2s_port, DOMAIN, root) == first["fingerprint"]["sha256_hex"]

        # Issued again (what a renewal does), this time by prosodyctl: installed at once and
        # served, no restart.
        again = server.ctl("mod_xmpp_hosting", "cert", "acme", DOMAIN)
        outputs.append(again.stdout + again.stderr)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Installed in" in again.stdout, again.stdout
        second = json.loads(run_cli(db, "cert", "show", DOMAIN, "--json").stdout)
        assert second["fingerprint"] != first["fingerprint"]
        wait_served(server.c2s_port, DOMAIN, second["fingerprint"]["sha256_hex"])

        # 11 days on, 29 of pebble's 40 days are left: the server's own housekeeping pass renews
        # (renewal at 30 days left) and installs; Prosody serves the new one.
        clock.set_offset(11 * DAY)
        renewed = second["fingerprint"]["sha256_hex"]
        for _ in range(180):
            renewed = fingerprint(db)
            if renewed != second["fingerprint"]["sha256_hex"]:
                break
            time.sleep(0.5)
        status = json.loads(run_cli(db, "cert", "show", DOMAIN, "--json").stdout)["acme"]
        assert renewed != second["fingerprint"]["sha256_hex"], (status, server.log.read_text()[-3000:])
        assert status["serving"] and status["failures"] == 0, status
        wait_served(server.c2s_port, DOMAIN, renewed)
        assert trusted_starttls(server.c2s_port, DOMAIN, root) == renewed
        # The pass says so in the log (a renewal by the CA sends nobody a notice).
        assert renewal_logged(server.log, DOMAIN, renewed), server.log.read_text(errors="replace")[-3000:]
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
