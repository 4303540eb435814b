"""The customer's web panel (issue 16): what both servers must do, as scenarios the Prosody and
ejabberd test files share (test_prosody_panel.py, test_ejabberd_panel.py). Each takes a `server`
with `http_port`, `c2s_port` and `database` (the harness's Prosody or Ejabberd) and the Knot on
loopback where DNS is involved.

API level: a state change without the CSRF token refused, the sixth wrong password throttled, a
customer of a.example refused (403) on every route of the core's route table that names
b.example, claim + records + "Verify now" + the DNS tester + certificate as polled jobs. Browser
level (one headless Chromium session, Debian's chromium and chromium-driver through Selenium,
at phone width): log in, claim and verify a domain, DNS tester, generate a certificate and
download its POSH file, upload a CA-signed certificate made in the test, registration policy and
shared roster, create / re-password / delete a user (checked by logging in over XMPP), create an
invite and register with its link through slixmpp, revoke another, see usage after a real
upload, choose a shorter retention. Screenshots go to target/test-reports/."""

import base64
import json
import re
import time
from pathlib import Path

import pytest
import requests

from cert_scenarios import ThrowawayCA
from harness import client
from harness.common import LOOPBACK, REPO, run_cli
from harness.knot import Knot, zone_text

PW = "pw-123456"
PROVIDER = "provider.example"
USERS = [("alice", "a.example"), ("carol", "a.example"), ("bob", "b.example"), ("dora", PROVIDER),
         ("eve", PROVIDER), ("fred", PROVIDER), ("op", PROVIDER)]
ZONES = ["customer.example", "web.example"]
REPORTS = REPO / "target" / "test-reports"
OWNERS = [("a.example", "alice@a.example"), ("b.example", "bob@b.example")]


def zone_with(origin: str, serial: int, token: str | None = None) -> str:
    body = "_xmpp-client._tcp SRV 1 1 5222 xmpp.provider.example.\n"
    if token:
        body += f'xmpp-hosting-verification TXT "verify={token}"\n'
    return zone_text(origin, serial, body)


@pytest.fixture(scope="module")
def knot(tmp_path_factory):
    with Knot(tmp_path_factory.mktemp("knot"), {z: zone_with(z, 1) for z in ZONES}) as k:
        yield k


def add_owned_domains(database: Path):
    """a.example owned by alice, b.example by bob (both verified by the operator's override)."""
    for domain, owner in OWNERS:
        run_cli(database, "domain", "add", domain, check=False)
        run_cli(database, "domain", "claim", domain, "--account", owner)
        run_cli(database, "domain", "override", domain, "--account", owner, "--reason", "panel test")


class Client:
    """A browser-like API client: keeps the session cookie and sends the CSRF token."""

    def __init__(self, server):
        self.base = f"http://{LOOPBACK}:{server.http_port}/panel/"
        self.http = requests.Session()
        self.csrf = None

    def login(self, jid: str, password: str = PW) -> requests.Response:
        r = self.http.post(self.base + "api/login", json={"jid": jid, "password": password}, timeout=30)
        if r.status_code == 200:
            self.csrf = r.json()["csrf"]
        return r

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.base + path, timeout=30)

    def post(self, path: str, body=None, csrf: bool = True) -> requests.Response:
        headers = {"X-CSRF-Token": self.csrf} if csrf and self.csrf else {}
        return self.http.post(self.base + path, json=body or {}, headers=headers, timeout=30)

    def job(self, started: requests.Response, timeout: float = 60) -> dict:
        """Polls a job to its end (the timeout only guards against a hang)."""
        assert started.status_code == 202, started.text
        job = started.json()["job"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.get(f"api/jobs/{job}")
            assert r.status_code == 200, r.text
            if r.json()["state"] != "running":
                return r.json()
            time.sleep(0.2)
        raise AssertionError(f"job {job} still running")


def csrf_is_required(server):
    c = Client(server)
    assert c.login("alice@a.example").status_code == 200
    before = len(c.get("api/domains/a.example/invites").json()["invites"])
    r = c.post("api/domains/a.example/invites", {"uses": 1}, csrf=False)
    assert (r.status_code, r.json()["error"]) == (403, "csrf")
    r = c.http.post(c.base + "api/domains/a.example/invites", data="uses=1",
                    headers={"X-CSRF-Token": c.csrf, "Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert r.status_code == 415
    assert c.post("api/domains/a.example/users", {"username": "csrf", "password": PW}, csrf=False).status_code == 403
    assert len(c.get("api/domains/a.example/invites").json()["invites"]) == before
    assert "csrf@a.example" not in c.get("api/domains/a.example/users").json()["users"]
    r = c.post("api/domains/a.example/invites", {"uses": 2, "expires_in": 86400})
    assert r.status_code == 201, r.text
    assert r.json()["uri"].startswith("xmpp:")
    listed = c.get("api/domains/a.example/invites").json()["invites"]
    assert len(listed) == before + 1 and all("token" not in i for i in listed)
    invite = r.json()["invite"]["id"]
    assert c.post(f"api/domains/a.example/invites/{invite}/revoke", csrf=False).status_code == 403
    r = c.post(f"api/domains/a.example/invites/{invite}/revoke")
    assert (r.status_code, r.json()["invite"]["revoked_at"] is not None) == (200, True), r.text


def sixth_wrong_password_is_throttled(server):
    c = Client(server)
    for attempt in range(5):
        r = c.login(f"eve@{PROVIDER}", "wrong")
        assert r.status_code == 401, (attempt, r.text)
    r = c.login(f"eve@{PROVIDER}", "wrong")
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) > 0
    r = c.login(f"eve@{PROVIDER}")
    assert r.status_code == 429, "while throttled even the right password waits"
    assert c.login("carol@a.example").status_code == 200, "other accounts from the same address still log in"


def another_customers_domain_is_403_everywhere(server):
    c = Client(server)
    routes = c.get("api/routes").json()["routes"]
    domain_routes = [r for r in routes if "{domain}" in r["path"]]
    assert len(domain_routes) >= 19, routes
    assert {"POST /api/domains/{domain}/users/{user}/delete", "GET /api/domains/{domain}/users"} <= \
        {f"{r['method']} {r['path']}" for r in domain_routes}, "the users routes are in the table"
    anonymous = Client(server)
    assert c.login("alice@a.example").status_code == 200
    for route in domain_routes:
        for other in ("b.example", "unknown.example"):
            path = route["path"].replace("{domain}", other).replace("{invite}", "1").replace("{user}", "bob")
            path = path.lstrip("/")
            r = c.post(path, {"username": "x", "password": PW}) if route["method"] == "POST" else c.get(path)
            assert r.status_code == 403, f"{route['method']} {path}: {r.status_code} {r.text}"
            r = anonymous.post(path, {}) if route["method"] == "POST" else anonymous.get(path)
            assert r.status_code == 401, f"anonymous {route['method']} {path}: {r.status_code}"
    bob = Client(server)
    assert bob.login("bob@b.example").status_code == 200
    assert "bob@b.example" in bob.get("api/domains/b.example/users").json()["users"], "nothing above touched b"
    carol = Client(server)
    assert carol.login("carol@a.example").status_code == 200
    usage = carol.get("api/domains/a.example/usage")
    assert usage.status_code == 200 and usage.json()["uploads"]["user"] == "carol", usage.text
    assert carol.get("api/domains/a.example/settings").status_code == 403, "a user is not the owner"
    assert carol.get("api/domains/a.example/users").status_code == 403, "nor manages the users"


def claim_verify_dns_and_certificate(server, knot):
    c = Client(server)
    assert c.login(f"dora@{PROVIDER}").status_code == 200
    r = c.post("api/domains", {"domain": "customer.example"})
    assert r.status_code == 201, r.text
    token = r.json()["claim"]["token"]
    records = c.get("api/domains/customer.example/records").json()
    assert records["name"] == "xmpp-hosting-verification.customer.example"
    assert records["txt"] == f"verify={token}"
    assert c.get("api/domains/customer.example/certificate").status_code == 403, "not the owner yet"
    # Before the record is published, the check says what it found instead.
    first = c.job(c.post("api/domains/customer.example/verify"))
    assert first["state"] == "done" and first["result"]["state"] == "pending", first
    assert first["result"]["finding"], first
    knot.replace("customer.example", zone_with("customer.example", 2, token))
    done = c.job(c.post("api/domains/customer.example/verify"))
    assert done["result"]["state"] == "verified", done
    status = c.get("api/domains/customer.example").json()
    assert (status["role"], status["hosted"], status["owner"]) == ("owner", True, f"dora@{PROVIDER}"), status
    report = c.job(c.post("api/domains/customer.example/dns-test"))["result"]
    rows = {row["name"]: row["status"] for row in report["rows"]}
    assert rows.get("_xmpp-client._tcp.customer.example") == "ok", report
    # Now the owner: a certificate, its POSH file and CSR.
    cert = c.job(c.post("api/domains/customer.example/certificate/generate"))
    assert cert["state"] == "done", cert
    info = c.get("api/domains/customer.example/certificate").json()["certificate"]
    assert info["domain"] == "customer.example" and "key_pem" not in info
    posh = c.get("api/domains/customer.example/certificate/posh").json()
    assert info["fingerprint"]["sha256_base64"] in posh["content"]
    assert "BEGIN CERTIFICATE REQUEST" in c.get("api/domains/customer.example/certificate/csr").json()["content"]
    refused = c.post("api/domains/customer.example/certificate/import", {"pem": "garbage"})
    assert refused.status_code == 422, refused.text
    # Its users cannot be managed here: customer.example is hosted in the store, not served by
    # this server, and the page is told so rather than shown an empty list.
    r = c.get("api/domains/customer.example/users")
    assert (r.status_code, r.json()["error"]) == (409, "not-served"), r.text


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=390,900"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def downloaded(directory: Path, name: str, timeout: float = 30) -> str:
    """The text of a file the browser saved, once it is whole (the timeout only guards a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = directory / name
        if path.exists() and not list(directory.glob("*.crdownload")) and path.stat().st_size > 0:
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{name} not downloaded; the folder has {sorted(p.name for p in directory.iterdir())}")


def token_of(link: str) -> str:
    return re.search(r"preauth=([^;&]+)", link).group(1)


def uses_in_the_browser(server, knot, browser, downloads, shot_name: str, upload_service: str, tmp: Path):
    """The whole panel through one logged-in browser session: alice owns a.example (a host of
    the server, so its accounts, invites and uploads are real) and claims web.example. A failure
    keeps a screenshot of the page as it was (`...-failed.png`) and says what the page showed."""
    try:
        _browser_steps(server, knot, browser, downloads, shot_name, upload_service, tmp)
    except Exception as e:
        REPORTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(REPORTS / f"panel-{shot_name}-failed.png"))
        body = browser.execute_script("return document.body ? document.body.innerText : ''")
        raise AssertionError(f"{type(e).__name__} at {browser.current_url}; the page said:\n{body}") from e


def _browser_steps(server, knot, browser, downloads, shot_name: str, upload_service: str, tmp: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def shot(name: str):
        REPORTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(REPORTS / f"panel-{shot_name}-{name}.png"))

    base = f"http://{LOOPBACK}:{server.http_port}/panel/"
    # Pages re-render parts of themselves (lists after a change): an element read while it is
    # replaced is looked up again.
    wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
    visible = lambda id_: wait.until(ec.visibility_of_element_located((By.ID, id_)))  # noqa: E731
    clickable = lambda id_: wait.until(ec.element_to_be_clickable((By.ID, id_)))  # noqa: E731

    def page_text():
        return browser.find_element(By.ID, "page").text

    def open_tab(domain: str, tab: str, ready: str):
        browser.get(f"{base}#/d/{domain}/{tab}")
        return visible(ready)

    def fits_a_phone():
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), \
            "the page is wider than a phone's screen"

    browser.get(base)
    visible("login-jid").send_keys("alice@a.example")
    browser.find_element(By.ID, "login-password").send_keys(PW)
    shot("01-login")
    browser.find_element(By.ID, "login-submit").click()

    # Claim web.example, read the records off the page, publish them, verify, test DNS.
    visible("claim-domain").send_keys("web.example")
    browser.find_element(By.ID, "claim-submit").click()
    txt = visible("record-txt").text
    assert txt.startswith("verify="), txt
    assert "Verification\npending" in page_text() and "[object" not in page_text(), page_text()
    fits_a_phone()
    shot("02-records")
    knot.replace("web.example", zone_with("web.example", 2, txt.removeprefix("verify=")))
    browser.find_element(By.ID, "verify-now").click()
    state = visible("verify-state")
    assert state.text.startswith("Verified"), state.text
    # The summary above the records follows the check (it said "pending" until refreshed).
    wait.until(lambda b: "Verification\nverified" in page_text())
    assert "Hosted here\nyes" in page_text()
    shot("03-verified")
    table = open_tab("web.example", "dns", "dns-table")
    assert "_xmpp-client._tcp.web.example" in table.text
    shot("04-dns-tester")

    # Certificate: generate one, download its POSH file, then replace it with a CA-signed one
    # made here from the CSR the page downloads.
    browser.get(f"{base}#/d/web.example/certificate")
    clickable("cert-generate").click()
    fingerprint = visible("cert-fingerprint").text
    assert fingerprint.count(":") == 31, fingerprint
    clickable("cert-posh").click()
    posh = json.loads(downloaded(downloads, "xmpp-client.json"))
    sha256 = base64.b64encode(bytes.fromhex(fingerprint.replace(":", ""))).decode()
    assert sha256 in json.dumps(posh), (fingerprint, posh)
    clickable("cert-csr").click()
    csr = downloaded(downloads, "web.example.csr")
    assert "BEGIN CERTIFICATE REQUEST" in csr
    shot("05-certificate")
    signed = ThrowawayCA(tmp / "ca", "Panel Test CA").sign(csr)
    pem = browser.find_element(By.ID, "cert-pem")
    pem.send_keys("not a certificate")
    browser.find_element(By.CSS_SELECTOR, "#cert-upload button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "cert-message"), "Refused:"))
    pem.clear()
    # The textarea takes the PEM as typed; set it whole (send_keys of a long text is slow).
    browser.execute_script("arguments[0].value = arguments[1]", pem, signed)
    browser.find_element(By.CSS_SELECTOR, "#cert-upload button[type=submit]").click()
    wait.until(lambda b: "imported" in b.find_element(By.ID, "cert-info").text.lower()
               and b.find_element(By.ID, "cert-fingerprint").text != fingerprint)
    shown = json.loads(run_cli(server.database, "cert", "show", "web.example", "--json").stdout)
    assert "imported" in json.dumps(shown).lower(), shown
    shot("06-certificate-imported")

    # Settings: registration open, and everyone in everybody else's contact list.
    policy = open_tab("web.example", "settings", "set-policy")
    policy.find_element(By.CSS_SELECTOR, "option[value=open]").click()
    roster = browser.find_element(By.ID, "set-shared-roster")
    assert not roster.is_selected()
    roster.click()
    browser.find_element(By.ID, "set-save").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "page"), "Saved."))
    shown = json.loads(run_cli(server.database, "--json", "domain", "show", "web.example").stdout)
    assert shown["settings"]["registration"]["policy"] == "open", shown
    assert shown["settings"]["shared_roster"] is True, shown
    shot("07-settings")

    # Users of a.example: created, re-passworded and deleted by the server's own accounts.
    port = server.c2s_port
    open_tab("a.example", "users", "user-new-name").send_keys("anna")
    browser.find_element(By.ID, "user-new-password").send_keys("anna-first-pw")
    browser.find_element(By.ID, "user-create").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "user-list"), "anna@a.example"))
    assert "anna@a.example created" in browser.find_element(By.ID, "users-message").text
    assert client.login(port, "anna@a.example", "anna-first-pw"), "the account is the server's"
    fits_a_phone()
    shot("08-user-created")
    row_input = browser.find_element(By.CSS_SELECTOR, "input.user-password[data-user='anna@a.example']")
    row_input.send_keys("anna-second-pw")
    browser.find_element(By.CSS_SELECTOR, "button.user-set-password[data-user='anna@a.example']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "users-message"), "password of anna@a.example is changed"))
    assert client.login(port, "anna@a.example", "anna-second-pw")
    assert not client.login(port, "anna@a.example", "anna-first-pw")
    delete = browser.find_element(By.CSS_SELECTOR, "button.user-delete[data-user='anna@a.example']")
    delete.click()
    assert "Really delete" in delete.text, "deleting asks again first"
    delete.click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "users-message"), "anna@a.example deleted"))
    wait.until(lambda b: "anna@a.example" not in b.find_element(By.ID, "user-list").text)
    assert not client.login(port, "anna@a.example", "anna-second-pw")
    assert not browser.find_elements(By.CSS_SELECTOR, "button.user-delete[data-user='alice@a.example']"), \
        "the owner's own account has no delete button"
    shot("09-user-deleted")

    # Invites of a.example: one registers a real client through its link, another is revoked.
    clickable_invite = open_tab("a.example", "invites", "invite-create")
    clickable_invite.click()
    link = visible("invite-link").text
    assert link.startswith("xmpp:a.example?register;preauth="), link
    qr = visible("invite-qr")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", qr), \
        "the QR code image is drawn"
    fits_a_phone()
    shot("10-invite-qr")
    assert client.register(port, "newbie@a.example", "newbie-pw-1", token=token_of(link)).ok
    assert client.login(port, "newbie@a.example", "newbie-pw-1")
    browser.find_element(By.ID, "invite-create").click()
    wait.until(lambda b: b.find_element(By.ID, "invite-link").text not in ("", link))
    second = browser.find_element(By.ID, "invite-link").text
    revoke = wait.until(ec.element_to_be_clickable(
        (By.XPATH, "//div[@id='invite-list']//tr[td[2][text()='active']]//button[text()='Revoke']")))
    revoke.click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "invite-list"), "revoked"))
    shot("11-invite-revoked")
    assert not client.register(port, "late@a.example", "late-pw-1", token=token_of(second)).ok
    assert not client.login(port, "late@a.example", "late-pw-1")

    # Usage of a.example after a real upload by alice (the owner sees the whole domain), against
    # the domain's storage limit.
    run_cli(server.database, "quota", "set", "a.example", "domain_storage", "1000000")
    body = b"x" * 4321
    [slot] = client.request_slots(port, "alice@a.example", PW, upload_service,
                                  [{"filename": "panel.txt", "size": len(body), "content-type": "text/plain"}])
    assert slot.ok, slot
    assert client.http_put(server.http_port, slot.put_url, slot.headers, body) == 201
    # The server counts a finished upload when it next looks at its slots (Prosody every
    # xmpp_hosting_upload_check_interval): reload the page until it shows (the deadline is a guard).
    open_tab("a.example", "usage", "usage")
    deadline = time.monotonic() + 60
    while "4.3 kB" not in (usage := visible("usage").text) and time.monotonic() < deadline:
        time.sleep(0.5)
        browser.refresh()
    assert "Stored 4.3 kB of 1 MB" in usage, usage
    assert browser.find_element(By.CSS_SELECTOR, "#usage progress").get_attribute("value") == "0", \
        "4.3 kB of 1 MB is under one percent"
    assert "Uploaded in the last 24 hours 4.3 kB" in usage, usage
    shot("12-usage")

    # Retention: what applies, and alice's own shorter archive.
    run_cli(server.database, "retention", "set", "a.example", "archive", "90d")
    own = open_tab("a.example", "retention", "retention-own")
    assert "One-to-one message archives 90d" in browser.find_element(By.ID, "retention-table").text
    own.clear()
    own.send_keys("400d")
    browser.find_element(By.ID, "retention-save").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "retention-message"), "90d"))
    own.clear()
    own.send_keys("30d")
    browser.find_element(By.ID, "retention-save").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "retention-own-now"), "30d"))
    shot("13-retention")

    # Nothing on the page came from anywhere but the panel (the policy forbids it; check too).
    sources = browser.execute_script(
        "return [...document.querySelectorAll('script[src],link[href]')].map(e => e.src || e.href)")
    assert all(s.startswith(base) for s in sources), sources
