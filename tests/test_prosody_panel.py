"""The customer's web panel (issue 16) served by the real Prosody's mod_http, with Knot on loopback
for verification and the DNS tester. The scenarios are shared with ejabberd (panel_scenarios.py);
Prosody's own setup is here: a.example and b.example are VirtualHosts (a.example with invite
registration and an upload service, so the browser's users, invites and usage are real)."""

import pytest

import panel_scenarios as scenarios
from harness.common import wait_for_port
from harness.knot import point_store_at
from harness.prosody import Prosody, upload_component
# The fixtures, and the names test_panel_jobs.py takes from here (they live in panel_scenarios.py).
from panel_scenarios import PROVIDER, PW, USERS, Client, browser, downloads, knot, zone_with  # noqa: F401

SHARE = "share.a.example"


@pytest.fixture(scope="module")
def prosody(tmp_path_factory, knot):
    extra = ('VirtualHost "a.example"\n  modules_enabled = { "xmpp_hosting_invites" }\n'
             'VirtualHost "b.example"\n' + upload_component(SHARE, xmpp_hosting_upload_check_interval=0.5))
    with Prosody(tmp_path_factory.mktemp("panel") / "prosody", host=PROVIDER, host_modules=["xmpp_hosting_panel"],
                 options={"admins": [f"op@{PROVIDER}"], "http_default_host": PROVIDER}, extra_config=extra) as server:
        wait_for_port(server.http_port, server.proc, log=server.log)
        for user, host in USERS:
            r = server.ctl("register", user, host, PW)
            assert r.returncode == 0, r.stdout + r.stderr
        scenarios.add_owned_domains(server.database)
        point_store_at(server.database, knot.nameserver)
        yield server


def test_login_is_checked_by_prosody_and_gives_a_strict_http_only_cookie(prosody):
    c = Client(prosody)
    assert c.get("api/session").json() == {"account": None}
    assert c.login("alice@a.example", "not-her-password").status_code == 401
    assert c.login("nobody@elsewhere.example").status_code == 401, "a host this server does not serve"
    r = c.login("Alice@A.example")
    assert r.status_code == 200, r.text
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/panel" in cookie, cookie
    assert "Secure" not in cookie, "served over plain HTTP here"
    me = c.get("api/session").json()
    assert (me["account"], me["admin"]) == ("alice@a.example", False)
    domains = c.get("api/domains").json()["domains"]
    assert {"domain": "a.example", "role": "owner", "state": "verified"} in domains, domains
    assert c.post("api/logout").status_code == 200
    assert c.get("api/domains").status_code == 401
    op = Client(prosody)
    assert op.login(f"op@{PROVIDER}").json()["admin"] is True
    assert op.get("api/domains/b.example/settings").status_code == 200


def test_a_login_on_a_component_is_a_wrong_login_like_any_other(prosody):
    """The upload service's host is served here but has no accounts (nor an auth provider, which
    once made the password check fail with an error: HTTP 500, the login never finished)."""
    c = Client(prosody)
    r = c.login(f"alice@{SHARE}")
    assert r.status_code == 401, (r.status_code, r.text)
    assert "Traceback" not in prosody.log_text()
    assert c.login("alice@a.example").status_code == 200


def test_a_state_change_without_the_csrf_token_is_refused(prosody):
    scenarios.csrf_is_required(prosody)


def test_the_sixth_wrong_password_is_throttled(prosody):
    scenarios.sixth_wrong_password_is_throttled(prosody)


def test_a_customer_gets_403_on_every_route_of_another_customers_domain(prosody):
    scenarios.another_customers_domain_is_403_everywhere(prosody)


def test_claim_records_verify_and_dns_test(prosody, knot):
    scenarios.claim_verify_dns_and_certificate(prosody, knot)


def test_a_customer_uses_the_panel_in_a_browser_at_phone_width(prosody, knot, browser, downloads, tmp_path):
    scenarios.uses_in_the_browser(prosody, knot, browser, downloads, f"prosody-{prosody.target.series}", SHARE,
                                  tmp_path)
