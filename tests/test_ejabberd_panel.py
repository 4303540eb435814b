"""The customer's web panel (issue 16) as ejabberd's request handler (mod_xmpp_hosting_panel at
/panel), with Knot on loopback: the scenarios shared with Prosody (panel_scenarios.py): login
checked by ejabberd's own authentication (ejabberd_auth) with the operator's admin from ejabberd's
ACL, CSRF, throttling after five wrong passwords, 403 on every route of the route table for
another customer's domain, claim + records + verify + DNS tester + certificate, and the headless
Chromium at phone width through every page (users created with ejabberd_auth, an invite
registered by slixmpp, usage after a mod_http_upload upload; screenshots in target/test-reports/).
Runs on 23.01 and 24.12."""

import pytest

import panel_scenarios as scenarios
from harness.ejabberd import Ejabberd
from harness.knot import point_store_at
from panel_scenarios import browser, downloads, knot  # noqa: F401 (the same module-scoped fixtures)

PROVIDER = scenarios.PROVIDER


def modules(docroot, http_port: int) -> str:
    """The operator's admins are who mod_xmpp_hosting_users' access_operator allows (the panel
    follows it where that module is loaded, else ejabberd's `configure` rule); invite registration
    and uploads on every host, so a.example's are real."""
    return f"""  mod_adhoc: {{}}
  mod_roster: {{}}
  mod_disco: {{}}
  mod_xmpp_hosting_users:
    access_operator:
      allow:
        user: "op@{PROVIDER}"
  mod_register:
    allow_modules: [mod_xmpp_hosting_invites]
  mod_xmpp_hosting_invites: {{}}
  mod_http_upload:
    put_url: "http://@HOST@:{http_port}/upload"
    docroot: "{docroot}"
    max_size: infinity
  mod_http_upload_quota: {{}}
  mod_xmpp_hosting_uploads: {{}}
"""


@pytest.fixture(scope="module")
def ejabberd(tmp_path_factory, knot):
    work = tmp_path_factory.mktemp("ejabberd-panel")
    node = Ejabberd(work, host=PROVIDER, extra_hosts=["a.example", "b.example"], install="config",
                    http_handlers={"/panel": "mod_xmpp_hosting_panel", "/upload": "mod_xmpp_hosting_uploads"},
                    extra_config="registration_timeout: infinity\n")
    node.extra_modules = modules(work / "upload", node.http_port)
    node.database.parent.mkdir(parents=True, exist_ok=True)
    scenarios.add_owned_domains(node.database)
    point_store_at(node.database, knot.nameserver)
    with node:
        for user, host in scenarios.USERS:
            node.register(user, scenarios.PW, host)
        yield node


def test_login_is_checked_by_ejabberd_and_gives_a_strict_http_only_cookie(ejabberd):
    c = scenarios.Client(ejabberd)
    assert c.get("api/session").json() == {"account": None}
    assert c.login("alice@a.example", "not-her-password").status_code == 401
    assert c.login("nobody@elsewhere.example").status_code == 401, "a host this node does not serve"
    r = c.login("Alice@A.example")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/panel" in cookie, cookie
    assert "Secure" not in cookie, "served over plain HTTP here"
    me = c.get("api/session").json()
    assert (me["account"], me["admin"]) == ("alice@a.example", False)
    domains = c.get("api/domains").json()["domains"]
    assert {"domain": "a.example", "role": "owner", "state": "verified"} in domains, domains
    assert c.get("api/domains/b.example/settings").status_code == 403
    assert c.post("api/logout").status_code == 200
    assert c.get("api/domains").status_code == 401
    op = scenarios.Client(ejabberd)
    assert op.login(f"op@{PROVIDER}").json()["admin"] is True, "the access rule names op as the operator"
    assert op.get("api/domains/b.example/settings").status_code == 200
    assert scenarios.Client(ejabberd).login(f"dora@{PROVIDER}").json()["admin"] is False


def test_without_mod_xmpp_hosting_users_the_operator_is_who_the_configure_rule_allows(tmp_path_factory):
    # ejabberd's usual rule for its own admin commands; the `admin` ACL names op.
    with Ejabberd(tmp_path_factory.mktemp("ejabberd-panel-configure"), host=PROVIDER, install="config",
                  http_handlers={"/panel": "mod_xmpp_hosting_panel"}, admins=[f"op@{PROVIDER}"],
                  extra_access_rules="  configure:\n    allow: admin\n") as node:
        for user in ("op", "dora"):
            node.register(user, scenarios.PW)
        assert scenarios.Client(node).login(f"op@{PROVIDER}").json()["admin"] is True
        assert scenarios.Client(node).login(f"dora@{PROVIDER}").json()["admin"] is False


def test_the_pages_come_with_their_own_types_and_a_strict_policy(ejabberd):
    c = scenarios.Client(ejabberd)
    bare = c.http.get(c.base.rstrip("/"), allow_redirects=False, timeout=30)
    assert (bare.status_code, bare.headers["Location"]) == (301, "/panel/"), "the links are relative to /panel/"
    page = c.get("")
    assert page.status_code == 200 and "panel.js" in page.text
    assert page.headers["Content-Type"].startswith("text/html"), page.headers
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    script = c.get("panel.js")
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"], script.headers
    assert c.get("no-such-file.js").status_code == 404
    # Bytes that are not UTF-8 (a path segment ejabberd percent-decoded, a cookie) get an answer, not
    # a dropped connection.
    assert c.get("%ff.js").status_code == 404
    assert c.http.get(c.base + "api/session", headers={"Cookie": b"xh=\xff"}, timeout=30).status_code == 200


def test_a_state_change_without_the_csrf_token_is_refused(ejabberd):
    scenarios.csrf_is_required(ejabberd)


def test_the_sixth_wrong_password_is_throttled(ejabberd):
    scenarios.sixth_wrong_password_is_throttled(ejabberd)


def test_a_customer_gets_403_on_every_route_of_another_customers_domain(ejabberd):
    scenarios.another_customers_domain_is_403_everywhere(ejabberd)


def test_claim_records_verify_and_dns_test(ejabberd, knot):
    scenarios.claim_verify_dns_and_certificate(ejabberd, knot)


def test_a_customer_uses_the_panel_in_a_browser_at_phone_width(ejabberd, knot, browser, downloads, tmp_path):
    series = ejabberd.target.series
    scenarios.uses_in_the_browser(ejabberd, knot, browser, downloads, f"ejabberd-{series}", "upload.a.example", tmp_path)
    assert (scenarios.REPORTS / f"panel-ejabberd-{series}-12-usage.png").stat().st_size > 0
