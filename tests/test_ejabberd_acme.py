"""An ACME certificate (issue 14) served by the real ejabberd (23.01 and 24.12): issued through the
customer's CNAME by pebble (see tests/test_acme.py for the lab) with `ejabberdctl
xmpp_hosting_cert_acme`, handed to ejabberd_pkix at once and served over STARTTLS to a client that
trusts only pebble's root; then renewed by the node's own housekeeping pass once the node's clock
(libfaketime) reaches the renewal window, and the new certificate served without a restart; a
missing CNAME refused there with the reason; no key material in any output or the log.

Why the last session's draft of this test saw no STARTTLS: the harness's client listener has no
`starttls: true` (ejabberd offers STARTTLS only when told to, whatever certificates it holds),
the same node with it serves the ACME certificate at once; the STARTTLS node of
tests/test_ejabberd_certs.py is used here. mod_xmpp_hosting now says so at start when no client
listener offers TLS (last test)."""

import json
import time

from cert_scenarios import assert_no_key_material, fingerprint_in, wait_served
from harness.acme import AcmeLab, renewal_logged, trusted_starttls
from harness.clock import ServerClock
from harness.common import run_cli
from harness.ejabberd import Ejabberd
from test_ejabberd_certs import StarttlsEjabberd

CUSTOMERS = "customers.example"
ACME_ZONE = "acme.provider.example"
DOMAIN = f"chat.{CUSTOMERS}"
DAY = 86400


NO_TLS_WARNING = "certificates are installed but never served"


def shown(db, domain=DOMAIN):
    return json.loads(run_cli(db, "cert", "show", domain, "--json").stdout)


def test_an_acme_certificate_is_served_and_renewed_by_the_housekeeping_pass_without_restart(tmp_path):
    outputs = []
    clock = ServerClock(tmp_path)
    with AcmeLab(tmp_path / "lab", CUSTOMERS, ACME_ZONE, {"chat": f"{DOMAIN}.{ACME_ZONE}"}, clock=clock) as lab:
        # ejabberd_pkix checks chains against its ca_file: the CA's root belongs there, as Let's
        # Encrypt's is in the system bundle ca_file defaults to.
        root = tmp_path / "pebble-root.pem"
        root.write_text(lab.pebble.root())
        with StarttlsEjabberd(tmp_path / "ejabberd", host=DOMAIN, install="config", admins=[f"admin@{DOMAIN}"],
                              module_options={"certificates_interval": 1}, server_env=clock.env,
                              extra_config=f'ca_file: "{root}"\n') as server:
            db = server.database
            lab.configure(db)
            server.ctl("xmpp_hosting_domain_add", DOMAIN)
            issued = server.ctl("xmpp_hosting_cert_acme", DOMAIN, check=False)
            outputs.append(issued.stdout + issued.stderr)
            assert issued.returncode == 0, issued.stdout + issued.stderr + lab.pebble.log_text()[-2000:]
            assert f"Installed for {DOMAIN}" in issued.stdout, issued.stdout
            first = fingerprint_in(issued.stdout)
            info = shown(db)
            assert info["acme"]["serving"] and info["names"] == [DOMAIN, f"*.{DOMAIN}"]
            assert info["fingerprint"]["sha256_hex"] == first
            wait_served(server.c2s_port, DOMAIN, first)
            # A client trusting only pebble's root accepts what is served: the chain links up and
            # the certificate names the domain.
            assert trusted_starttls(server.c2s_port, DOMAIN, root) == first
            # pkix found the chain good against its ca_file (without pebble's root there it logs
            # "certificate is signed by unknown CA" and serves it all the same).
            log = server.log_file.read_text(errors="replace")
            assert "signed by unknown CA" not in log
            assert NO_TLS_WARNING not in log, "the listener offers STARTTLS"

            # 11 days on, 29 of the 40 days are left: the housekeeping pass renews (renewal at
            # 30 days left) with pebble, installs and hands the new file to pkix.
            clock.set_offset(11 * DAY)
            renewed = None
            for _ in range(180):
                info = shown(db)
                if info["fingerprint"]["sha256_hex"] != first:
                    renewed = info["fingerprint"]["sha256_hex"]
                    break
                time.sleep(0.5)
            assert renewed, (info, server.log_file.read_text(errors="replace")[-3000:])
            assert info["acme"]["serving"] and info["acme"]["failures"] == 0, info["acme"]
            wait_served(server.c2s_port, DOMAIN, renewed)
            assert trusted_starttls(server.c2s_port, DOMAIN, root) == renewed
            # The pass says so in the log (a renewal by the CA sends nobody a notice).
            assert renewal_logged(server.log_file, DOMAIN, renewed), server.log_file.read_text(errors="replace")[-3000:]
            assert server.proc.poll() is None, "the node was not restarted"

            run_cli(db, "domain", "add", f"nocname.{CUSTOMERS}")
            refused = server.ctl("xmpp_hosting_cert_acme", f"nocname.{CUSTOMERS}", check=False)
            outputs.append(refused.stdout + refused.stderr)
            assert refused.returncode != 0
            assert f"no CNAME at _acme-challenge.nocname.{CUSTOMERS}" in refused.stdout + refused.stderr, \
                refused.stdout
            outputs.append(server.log_file.read_text(errors="replace"))
            public = run_cli(db, "cert", "show", DOMAIN, "--pem").stdout
            key = server.spool / "xmpp-hosting-certs" / f"{DOMAIN}.pem"
            assert_no_key_material([key], *outputs, public=public)


def test_a_node_whose_client_listener_offers_no_tls_is_told_at_start(tmp_path):
    """The harness's own node (no `starttls: true`): certificates would be installed and never
    served; the admin reads why in the log instead of guessing."""
    with Ejabberd(tmp_path / "ejabberd", host=DOMAIN, install="config",
                  module_options={"certificates_interval": 1}) as server:
        for _ in range(60):
            log = server.log_file.read_text(errors="replace")
            if NO_TLS_WARNING in log:
                break
            time.sleep(0.5)
        assert f"so the hosted domains' {NO_TLS_WARNING}; add starttls: true to the client listener" in log, \
            log[-3000:]
