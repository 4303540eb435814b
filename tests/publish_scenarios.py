"""Publication (issue 15) on a real server, the same scenarios for Prosody and ejabberd: the
provider file and the policy page served over the server's own HTTP, the XEP-0157 / XEP-0128
forms in disco#info read by a real client (slixmpp), in-band account deletion with registration
closed, and the page rendered by headless Chromium at phone size.

A test file provides a `server` fixture (PublishServer) and subclasses PublishScenarios.
"""

import asyncio
import http.client
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree as ET

import pytest
import slixmpp

from harness import client
from harness.common import LOOPBACK, REPO, run_cli

REPORTS = REPO / "target" / "test-reports"
SERVERINFO = "http://jabber.org/network/serverinfo"
POLICY_FORM = "urn:x-xmpp-hosting:policy:0"
DATA = "jabber:x:data"


@dataclass
class PublishServer:
    name: str  # "prosody-0.12", "ejabberd-24.12": names the screenshot
    host: str
    c2s_port: int
    http_port: int
    database: Path
    register: Callable[[str, str], None]
    # The server's own `publish set` (prosodyctl, ejabberdctl) for this host: (FIELD, VALUE) ->
    # (exit status, what it printed).
    publish_set: Callable[[str, str], tuple[int, str]]


def cli(server, *args, check=True):
    r = run_cli(server.database, *args, check=False)
    assert r.returncode == 0 or not check, f"xmpp-hosting {' '.join(args)}: {r.stderr}"
    return r


def get(server, path, language=None):
    """GET `path` from the server's HTTP listener as a browser on the domain would ask."""
    conn = http.client.HTTPConnection(LOOPBACK, server.http_port, timeout=20)
    headers = {"Host": server.host}
    if language:
        headers["Accept-Language"] = language
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def provider_file(server):
    status, headers, body = get(server, "/.well-known/xmpp-provider-v2.json")
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("application/json"), headers
    return json.loads(body)


def disco_forms(server, jid, password):
    """The data forms of the domain's disco#info as {FORM_TYPE: {var: [values]}}, read by slixmpp."""
    async def ask(c: slixmpp.ClientXMPP):
        c.register_plugin("xep_0030")
        info = await c.plugin["xep_0030"].get_info(jid=server.host, timeout=15)
        forms = {}
        for x in info.xml.iter(f"{{{DATA}}}x"):
            fields = {f.get("var"): [v.text or "" for v in f.findall(f"{{{DATA}}}value")]
                      for f in x.findall(f"{{{DATA}}}field")}
            forms[fields.pop("FORM_TYPE", [""])[0]] = fields
        return forms
    return asyncio.run(client._session(server.c2s_port, jid, password, ask, 30))


def remove_own_account(server, jid, password):
    """Sends XEP-0077 <remove/> from the logged-in account; the server's answer ("result", or the
    error condition). The server may close the stream right after answering."""
    async def remove(c: slixmpp.ClientXMPP):
        iq = c.Iq()
        iq["type"] = "set"
        iq.append(ET.fromstring("<query xmlns='jabber:iq:register'><remove/></query>"))
        try:
            await iq.send(timeout=15)
            return "result"
        except slixmpp.exceptions.IqError as e:
            return e.iq["error"]["condition"]
    try:
        return asyncio.run(client._session(server.c2s_port, jid, password, remove, 30))
    except ConnectionError:
        return "disconnected"


def bookmarks(server, jid, password):
    """The account's XEP-0402 bookmarks as {room: {name, autojoin}}, read from its PEP by slixmpp."""
    async def fetch(c: slixmpp.ClientXMPP):
        c.register_plugin("xep_0060")
        result = await c.plugin["xep_0060"].get_items(c.boundjid.bare, "urn:xmpp:bookmarks:1", timeout=15)
        out = {}
        for item in result.xml.iter("{http://jabber.org/protocol/pubsub}item"):
            conference = item.find("{urn:xmpp:bookmarks:1}conference")
            out[item.get("id")] = {"name": conference.get("name"), "autojoin": conference.get("autojoin")}
        return out
    return asyncio.run(client._session(server.c2s_port, jid, password, fetch, 30))


DESCRIPTION = {
    "website": '{"en": "https://example.org/"}',
    "alternative_jids": '["example.net"]',
    "bus_factor": "2",
    "organization": "non-governmental",
    "password_reset": '{"en": "https://example.org/reset"}',
    "server_testing": "true",
    "professional_hosting": "false",
    "free_of_charge": "true",
    "legal_notice": '{"en": "https://example.org/legal"}',
    "server_locations": '["DE", "fr"]',
    "since": "2016-02-29",
    "jurisdiction": "de",
    "contacts.abuse": '["mailto:abuse@example.org", "xmpp:abuse@example.org"]',
    "contacts.support": '["xmpp:support@chat.example.org?join"]',
    "rules": '{"en": ["Be kind to each other.", "No spam, no scams, no harassment.", "Report abuse to the address below."]}',
    "description": '{"en": "<script>alert(\\"pwned\\")</script> A small server run by a club."}',
    "support_room": "support@chat.example.org",
    "terms": '{"en": "https://example.org/terms"}',
    "privacy": '{"en": "https://example.org/privacy"}',
}


class PublishScenarios:
    @pytest.fixture(autouse=True)
    def described(self, server):
        for field, value in DESCRIPTION.items():
            cli(server, "publish", "set", server.host, field, value)
        cli(server, "domain", "set", server.host, "registration.policy", "invite")
        cli(server, "retention", "set", server.host, "archive", "1y")
        cli(server, "retention", "set", server.host, "uploads", "30d")
        cli(server, "quota", "set", server.host, "user_storage", "104857600")
        yield

    def test_the_provider_file_has_the_formats_fields_and_units(self, server):
        assert provider_file(server) == {
            "website": {"en": "https://example.org/"},
            "alternativeJids": ["example.net"],
            "busFactor": 2,
            "organization": "non-governmental",
            "passwordReset": {"en": "https://example.org/reset"},
            "serverTesting": True,
            "maximumHttpFileUploadTotalSize": 104,
            "maximumHttpFileUploadStorageTime": 30,
            "maximumMessageArchiveManagementStorageTime": 365,
            "professionalHosting": False,
            "freeOfCharge": True,
            "legalNotice": {"en": "https://example.org/legal"},
            "serverLocations": ["de", "fr"],
            "since": "2016-02-29",
        }
        status, headers, _ = get(server, "/.well-known/xmpp-provider-v2.json")
        assert headers.get("access-control-allow-origin") == "*", headers

    def test_a_changed_retention_or_upload_limit_is_published_by_the_next_request(self, server):
        assert provider_file(server)["maximumMessageArchiveManagementStorageTime"] == 365
        cli(server, "retention", "set", server.host, "archive", "2w")
        assert provider_file(server)["maximumMessageArchiveManagementStorageTime"] == 14
        cli(server, "retention", "set", server.host, "archive", "6h")
        assert provider_file(server)["maximumMessageArchiveManagementStorageTime"] == -1
        cli(server, "quota", "set", server.host, "user_storage", "5000000000")
        assert provider_file(server)["maximumHttpFileUploadTotalSize"] == 5000
        cli(server, "quota", "set", server.host, "user_storage", "null")
        assert provider_file(server)["maximumHttpFileUploadTotalSize"] == 0
        cli(server, "retention", "set", server.host, "uploads", "never")
        assert provider_file(server)["maximumHttpFileUploadStorageTime"] == 0

    def test_a_client_reads_the_contact_addresses_and_the_policy_from_disco(self, server):
        server.register("reader", "reader-pass-123")
        jid = f"reader@{server.host}"
        forms = disco_forms(server, jid, "reader-pass-123")
        assert forms[SERVERINFO] == {
            "abuse-addresses": ["mailto:abuse@example.org", "xmpp:abuse@example.org"],
            "support-addresses": ["xmpp:support@chat.example.org?join"],
        }
        policy = forms[POLICY_FORM]
        assert policy["registration"] == ["invite"]
        assert policy["max-archive-storage-days"] == ["365"]
        assert policy["jurisdiction"] == ["de"]
        # A change made elsewhere (the CLI) is in the next answer.
        cli(server, "publish", "set", server.host, "contacts.security", '["mailto:security@example.org"]')
        cli(server, "domain", "set", server.host, "registration.policy", "closed")
        forms = disco_forms(server, jid, "reader-pass-123")
        assert forms[SERVERINFO]["security-addresses"] == ["mailto:security@example.org"]
        assert forms[POLICY_FORM]["registration"] == ["closed"]
        cli(server, "publish", "set", server.host, "contacts.security", "[]")

    def test_one_language_is_set_and_removed_through_the_servers_command(self, server):
        """Issue 15: FIELD.LANG through prosodyctl / ejabberdctl (the core's one call), checked as
        the whole map is, served at the next request; null removes that language alone."""
        status, out = server.publish_set("password_reset.de", "https://example.org/de/reset")
        assert status == 0, out
        assert provider_file(server)["passwordReset"] == {
            "en": "https://example.org/reset", "de": "https://example.org/de/reset"}
        for field, value, reason in [("password_reset.fr", "http://example.org/fr", "must be an https:// address"),
                                     ("terms.english", "https://example.org/t", "not a BCP 47 language tag"),
                                     ("since", "2999-01-01", "is in the future")]:
            status, out = server.publish_set(field, value)
            assert status != 0 and reason in out, (field, value, out)
        status, out = server.publish_set("password_reset.de", "null")
        assert status == 0, out
        assert provider_file(server)["passwordReset"] == {"en": "https://example.org/reset"}
        assert provider_file(server)["since"] == "2016-02-29"

    def test_an_account_is_deleted_in_band_while_registration_is_closed(self, server):
        server.register("leaver", "leaver-pass-123")
        cli(server, "domain", "set", server.host, "registration.policy", "closed")
        jid = f"leaver@{server.host}"
        assert client.login(server.c2s_port, jid, "leaver-pass-123")
        assert remove_own_account(server, jid, "leaver-pass-123") in ("result", "disconnected")
        assert not client.login(server.c2s_port, jid, "leaver-pass-123"), "the account is gone"
        # And registration stays closed: the same name cannot come back in-band.
        assert not client.register(server.c2s_port, jid, "leaver-pass-123").ok
        status, _, page = get(server, "/policy")
        assert status == 200 and "even while registration is closed" in page, (status, page[:300])
        assert "Registration is closed" in page, page

    def test_a_new_account_gets_the_support_room_as_a_bookmark(self, server):
        cli(server, "domain", "set", server.host, "registration.policy", "open")
        jid = f"newcomer@{server.host}"
        assert client.register(server.c2s_port, jid, "newcomer-pass-123").ok
        items = bookmarks(server, jid, "newcomer-pass-123")
        assert items == {"support@chat.example.org": {"name": f"{server.host} support", "autojoin": "true"}}, items

    def test_the_policy_json_is_the_page_for_portals(self, server):
        server.register("active", "active-pass-123")
        assert client.login(server.c2s_port, f"active@{server.host}", "active-pass-123")
        status, headers, body = get(server, "/policy/json")
        assert status == 200 and headers["content-type"].startswith("application/json"), (status, headers)
        doc = json.loads(body)
        assert doc["domain"] == server.host and doc["rules"][0] == "Be kind to each other."
        assert doc["enforced"]["archive_retention"] == "1y" and doc["enforced"]["registration"] == "invite"
        stats = doc["statistics"]
        assert stats["accounts"] is not None and stats["accounts"] > 0, f"the server counted its accounts: {stats}"
        # The login just made is reported by the server; a handful shows as "about 10".
        assert stats["daily_active"] == 10 and stats["monthly_active"] == 10, stats

    def test_the_page_validates_and_renders_on_a_phone_with_the_rules_first(self, server):
        status, headers, html = get(server, "/policy", language="en-GB,en;q=0.8")
        assert status == 200 and headers["content-type"].startswith("text/html"), (status, headers)
        assert "default-src 'none'" in headers.get("content-security-policy", ""), headers
        import html5lib
        html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)  # raises on any parse error
        assert "<script" not in html and "&lt;script&gt;" in html
        shot = render_on_a_phone(server, html)
        assert shot["width"] == 360 and shot["scroll_width"] <= 360, shot
        assert shot["rules_bottom"] <= 740, f"the rules do not fit the first screen: {shot}"
        assert shot["scripts"] == 0 and shot["alerted"] is False, shot
        assert '<script>alert("pwned")</script>' in shot["lead"], shot
        for shown in ("1 year", "30 days", "104 MB", "invite"):
            assert shown in shot["text"], f"{shown} not on the page"
        assert shot["external"] == [], shot


def render_on_a_phone(server, html_text):
    """Loads the page from the server in Debian's headless Chromium at 360×740 and reports what a
    phone shows; keeps a screenshot under target/test-reports/."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--host-resolver-rules=MAP {server.host} {LOOPBACK}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": True})
        driver.get(f"http://{server.host}:{server.http_port}/policy")
        driver.execute_script("window.alert = function() { window.__alerted = true; };")
        REPORTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(REPORTS / f"policy-page-{server.name}.png"))
        return driver.execute_script("""
            const rules = document.getElementById('rules').getBoundingClientRect();
            const lead = document.querySelector('.lead');
            const external = performance.getEntriesByType('resource').map(e => e.name);
            return {width: window.innerWidth, scroll_width: document.documentElement.scrollWidth,
                    rules_bottom: rules.bottom, scripts: document.scripts.length,
                    alerted: window.__alerted === true, lead: lead ? lead.textContent : '',
                    text: document.body.innerText, external: external};
        """)
    finally:
        driver.quit()
