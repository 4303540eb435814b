"""The customer's web panel (issue 16) served by the real Prosody's mod_http, with Knot on loopback
for verification and the DNS tester.

API level: login checked by Prosody's own authentication, the session cookie's flags, a state
change without the CSRF token refused, the sixth wrong password throttled, a customer of a.example
refused (403) on every route of the core's route table that names b.example, and claim + records +
"Verify now" + the DNS tester as polled jobs. Then a headless Chromium (Debian's chromium and
chromium-driver, through Selenium) logs in, claims a domain, reads the records off the page,
verifies it and runs the DNS tester; screenshots go to target/test-reports/."""

import json
import time
from pathlib import Path

import pytest
import requests

from harness.common import LOOPBACK, REPO, run_cli, wait_for_port
from harness.knot import Knot, point_store_at, zone_text
from harness.prosody import Prosody

PW = "pw-123456"
PROVIDER = "provider.example"
USERS = [("alice", "a.example"), ("carol", "a.example"), ("bob", "b.example"), ("dora", PROVIDER),
         ("eve", PROVIDER), ("fred", PROVIDER), ("op", PROVIDER)]
ZONES = ["customer.example", "web.example"]
REPORTS = REPO / "target" / "test-reports"


def zone_with(origin: str, serial: int, token: str | None = None) -> str:
    body = "_xmpp-client._tcp SRV 1 1 5222 xmpp.provider.example.\n"
    if token:
        body += f'xmpp-hosting-verification TXT "verify={token}"\n'
    return zone_text(origin, serial, body)


@pytest.fixture(scope="module")
def knot(tmp_path_factory):
    with Knot(tmp_path_factory.mktemp("knot"), {z: zone_with(z, 1) for z in ZONES}) as k:
        yield k


@pytest.fixture(scope="module")
def prosody(tmp_path_factory, knot):
    extra = "".join(f'VirtualHost "{h}"\n' for h in ("a.example", "b.example"))
    with Prosody(tmp_path_factory.mktemp("panel") / "prosody", host=PROVIDER, host_modules=["xmpp_hosting_panel"],
                 options={"admins": [f"op@{PROVIDER}"], "http_default_host": PROVIDER}, extra_config=extra) as server:
        wait_for_port(server.http_port, server.proc, log=server.log)
        for user, host in USERS:
            r = server.ctl("register", user, host, PW)
            assert r.returncode == 0, r.stdout + r.stderr
        for domain, owner in [("a.example", "alice@a.example"), ("b.example", "bob@b.example")]:
            run_cli(server.database, "domain", "add", domain, check=False)
            run_cli(server.database, "domain", "claim", domain, "--account", owner)
            run_cli(server.database, "domain", "override", domain, "--account", owner, "--reason", "panel test")
        point_store_at(server.database, knot.nameserver)
        yield server


class Client:
    """A browser-like API client: keeps the session cookie and sends the CSRF token."""

    def __init__(self, server: Prosody):
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


def test_a_state_change_without_the_csrf_token_is_refused(prosody):
    c = Client(prosody)
    assert c.login("alice@a.example").status_code == 200
    before = len(c.get("api/domains/a.example/invites").json()["invites"])
    r = c.post("api/domains/a.example/invites", {"uses": 1}, csrf=False)
    assert (r.status_code, r.json()["error"]) == (403, "csrf")
    r = c.http.post(c.base + "api/domains/a.example/invites", data="uses=1",
                    headers={"X-CSRF-Token": c.csrf, "Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert r.status_code == 415
    assert len(c.get("api/domains/a.example/invites").json()["invites"]) == before
    r = c.post("api/domains/a.example/invites", {"uses": 2, "expires_in": 86400})
    assert r.status_code == 201, r.text
    assert r.json()["uri"].startswith("xmpp:")
    listed = c.get("api/domains/a.example/invites").json()["invites"]
    assert len(listed) == before + 1 and all("token" not in i for i in listed)
    invite = r.json()["invite"]["id"]
    assert c.post(f"api/domains/a.example/invites/{invite}/revoke", csrf=False).status_code == 403
    r = c.post(f"api/domains/a.example/invites/{invite}/revoke")
    assert (r.status_code, r.json()["invite"]["revoked_at"] is not None) == (200, True), r.text


def test_the_sixth_wrong_password_is_throttled(prosody):
    c = Client(prosody)
    for attempt in range(5):
        r = c.login(f"eve@{PROVIDER}", "wrong")
        assert r.status_code == 401, (attempt, r.text)
    r = c.login(f"eve@{PROVIDER}", "wrong")
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) > 0
    r = c.login(f"eve@{PROVIDER}")
    assert r.status_code == 429, "while throttled even the right password waits"
    assert c.login("carol@a.example").status_code == 200, "other accounts from the same address still log in"


def test_a_customer_gets_403_on_every_route_of_another_customers_domain(prosody):
    c = Client(prosody)
    routes = c.get("api/routes").json()["routes"]
    domain_routes = [r for r in routes if "{domain}" in r["path"]]
    assert len(domain_routes) >= 15, routes
    anonymous = Client(prosody)
    assert c.login("alice@a.example").status_code == 200
    for route in domain_routes:
        for other in ("b.example", "unknown.example"):
            path = route["path"].replace("{domain}", other).replace("{invite}", "1").lstrip("/")
            r = c.post(path, {}) if route["method"] == "POST" else c.get(path)
            assert r.status_code == 403, f"{route['method']} {path}: {r.status_code} {r.text}"
            r = anonymous.post(path, {}) if route["method"] == "POST" else anonymous.get(path)
            assert r.status_code == 401, f"anonymous {route['method']} {path}: {r.status_code}"
    carol = Client(prosody)
    assert carol.login("carol@a.example").status_code == 200
    usage = carol.get("api/domains/a.example/usage")
    assert usage.status_code == 200 and usage.json()["uploads"]["user"] == "carol", usage.text
    assert carol.get("api/domains/a.example/settings").status_code == 403, "a user is not the owner"


def test_claim_records_verify_and_dns_test(prosody, knot):
    c = Client(prosody)
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


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=390,900"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name: str):
    REPORTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(REPORTS / f"panel-{Path(__file__).stem}-{name}.png"))


def test_a_customer_uses_the_panel_in_a_browser_at_phone_width(prosody, knot, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"http://{LOOPBACK}:{prosody.http_port}/panel/")
    wait.until(ec.visibility_of_element_located((By.ID, "login-jid"))).send_keys(f"fred@{PROVIDER}")
    browser.find_element(By.ID, "login-password").send_keys(PW)
    shot(browser, "1-login")
    browser.find_element(By.ID, "login-submit").click()
    wait.until(ec.visibility_of_element_located((By.ID, "claim-domain"))).send_keys("web.example")
    browser.find_element(By.ID, "claim-submit").click()
    txt = wait.until(ec.visibility_of_element_located((By.ID, "record-txt"))).text
    assert txt.startswith("verify="), txt
    page = browser.find_element(By.ID, "page").text
    assert "Verification\npending" in page and "[object" not in page, page
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), \
        "the page is wider than a phone's screen"
    shot(browser, "2-records")
    knot.replace("web.example", zone_with("web.example", 2, txt.removeprefix("verify=")))
    browser.find_element(By.ID, "verify-now").click()
    state = wait.until(ec.visibility_of_element_located((By.ID, "verify-state")))
    assert state.text.startswith("Verified"), state.text
    # The summary above the records follows the check (it said "pending" until refreshed).
    wait.until(lambda b: "Verification\nverified" in b.find_element(By.ID, "page").text)
    assert "Hosted here\nyes" in browser.find_element(By.ID, "page").text
    shot(browser, "3-verified")
    browser.get(f"http://{LOOPBACK}:{prosody.http_port}/panel/#/d/web.example/dns")
    table = wait.until(ec.visibility_of_element_located((By.ID, "dns-table")))
    assert "_xmpp-client._tcp.web.example" in table.text
    shot(browser, "4-dns-tester")
    # The owner's pages: a certificate, the registration policy, an invite made and revoked.
    browser.get(f"http://{LOOPBACK}:{prosody.http_port}/panel/#/d/web.example/certificate")
    try:
        wait.until(ec.element_to_be_clickable((By.ID, "cert-generate"))).click()
    except Exception:
        shot(browser, "5-certificate-failed")
        raise AssertionError(browser.find_element(By.TAG_NAME, "body").text) from None
    fingerprint = wait.until(ec.visibility_of_element_located((By.ID, "cert-fingerprint"))).text
    assert fingerprint.count(":") == 31, fingerprint
    assert browser.find_element(By.ID, "cert-posh").is_displayed() and browser.find_element(By.ID, "cert-csr").is_displayed()
    shot(browser, "5-certificate")
    browser.get(f"http://{LOOPBACK}:{prosody.http_port}/panel/#/d/web.example/settings")
    policy = wait.until(ec.visibility_of_element_located((By.ID, "set-policy")))
    policy.find_element(By.CSS_SELECTOR, "option[value=open]").click()
    browser.find_element(By.ID, "set-save").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "page"), "Saved."))
    shown = json.loads(run_cli(prosody.database, "--json", "domain", "show", "web.example").stdout)
    assert shown["settings"]["registration"]["policy"] == "open", shown
    browser.get(f"http://{LOOPBACK}:{prosody.http_port}/panel/#/d/web.example/invites")
    wait.until(ec.element_to_be_clickable((By.ID, "invite-create"))).click()
    link = wait.until(ec.visibility_of_element_located((By.ID, "invite-link"))).text
    assert link.startswith("xmpp:") and "web.example" in link, link
    revoke = wait.until(ec.element_to_be_clickable((By.XPATH, "//div[@id='invite-list']//button[text()='Revoke']")))
    shot(browser, "6-invite")
    revoke.click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "invite-list"), "revoked"))
    # Nothing on the page came from anywhere but the panel (the policy forbids it; check too).
    sources = browser.execute_script(
        "return [...document.querySelectorAll('script[src],link[href]')].map(e => e.src || e.href)")
    assert all(s.startswith(f"http://{LOOPBACK}:{prosody.http_port}/panel/") for s in sources), sources
