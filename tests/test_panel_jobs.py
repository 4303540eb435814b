"""The web panel's jobs (issue 16) outlive the server process that ran them: on the real Prosody
and ejabberd, with Knot on loopback, a customer runs the DNS tester to its end, then starts another
whose nameserver never answers (a loopback UDP socket that reads nothing), and the server goes
down while that one runs: Prosody killed with SIGKILL, ejabberd stopped cleanly. On the same
store, the restarted server answers the same session cookie (sessions are in the store) with the
first job's result as it was, and the second as `interrupted`, saying to run it again; run again
with the nameserver back, it ends `done`. A headless Chromium (panel_scenarios' browser) has the DNS
tester page open through the restart: the page keeps polling while the server is away and then
shows the interruption's message (screenshot in target/test-reports/). The panel's other tests are
in test_prosody_panel.py, test_ejabberd_panel.py and panel_scenarios.py (whose Client and browser
this reuses); each test here names its server with the `server` mark, so it runs in the sessions
of that server's generations."""

import socket
import time

import pytest

from harness.common import LOOPBACK, run_cli, wait_for_port
from harness.ejabberd import Ejabberd
from harness.knot import Knot, point_store_at
from harness.prosody import Prosody
from panel_scenarios import PW, REPORTS, Client, browser, downloads, zone_with  # noqa: F401 (fixtures)

PROVIDER = "provider.example"
CUSTOMER = "a.example"
ALICE = f"alice@{CUSTOMER}"


@pytest.fixture(scope="module")
def knot(tmp_path_factory):
    with Knot(tmp_path_factory.mktemp("knot"), {CUSTOMER: zone_with(CUSTOMER, 1)}) as k:
        yield k


@pytest.fixture
def silent_nameserver():
    """`address:port` of a nameserver that takes queries and never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    yield f"{LOOPBACK}:{s.getsockname()[1]}"
    s.close()


def own_domain(database):
    run_cli(database, "domain", "add", CUSTOMER, check=False)
    run_cli(database, "domain", "claim", CUSTOMER, "--account", ALICE)
    run_cli(database, "domain", "override", CUSTOMER, "--account", ALICE, "--reason", "panel jobs test")


def state_of(c: Client, job: str) -> dict:
    r = c.get(f"api/jobs/{job}")
    assert r.status_code == 200, r.text
    return r.json()


def start_dns_test(c: Client) -> str:
    r = c.post(f"api/domains/{CUSTOMER}/dns-test")
    assert r.status_code == 202, r.text
    return r.json()["job"]


def until_ended(c: Client, job: str, timeout: float = 60) -> dict:
    """Polls a job to its end (the timeout only guards against a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = state_of(c, job)
        if v["state"] != "running":
            return v
        time.sleep(0.2)
    raise AssertionError(f"job {job} still running")


def page_shows_the_dns_test_running(server, browser):
    """Logs alice in and opens a.example's DNS tester, which starts a test and polls it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base = f"http://{LOOPBACK}:{server.http_port}/panel/"
    wait = WebDriverWait(browser, 60)
    browser.get(base)
    wait.until(ec.visibility_of_element_located((By.ID, "login-jid"))).send_keys(ALICE)
    browser.find_element(By.ID, "login-password").send_keys(PW)
    browser.find_element(By.ID, "login-submit").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "who-account"), ALICE))
    browser.get(f"{base}#/d/{CUSTOMER}/dns")
    wait.until(ec.text_to_be_present_in_element((By.ID, "dns-result"), "Testing"))


def page_shows_the_interruption(browser, shot_name: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 90).until(lambda b: "interrupted" in b.find_element(By.ID, "dns-result").text)
    REPORTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(REPORTS / f"panel-jobs-{shot_name}-interrupted.png"))
    return browser.find_element(By.ID, "dns-result").text


def jobs_survive_a_restart(server, knot, silent: str, restart, browser, shot_name: str):
    """The scenario, on any server with `http_port` and `database`; `restart` takes the server down
    and brings it back on the same store."""
    c = Client(server)
    assert c.login(ALICE).status_code == 200
    finished = start_dns_test(c)
    before = until_ended(c, finished)
    assert before["state"] == "done", before
    assert before["result"]["domain"] == CUSTOMER, before
    point_store_at(server.database, silent, timeout_ms=120_000)
    cut = start_dns_test(c)
    time.sleep(0.5)
    assert state_of(c, cut)["state"] == "running", "the silent nameserver keeps the job running"
    page_shows_the_dns_test_running(server, browser)
    restart()
    wait_for_port(server.http_port, timeout=60)
    after = state_of(c, finished)
    assert (after["state"], after["result"], after["finished_at"]) == ("done", before["result"], before["finished_at"])
    interrupted = state_of(c, cut)
    assert interrupted["state"] == "interrupted", interrupted
    assert interrupted["error"]["error"] == "interrupted"
    message = interrupted["error"]["message"]
    assert message.startswith("The DNS test was interrupted") and message.endswith("Run it again."), message
    assert page_shows_the_interruption(browser, shot_name) == message
    # Another account does not see it, after the restart as before.
    other = Client(server)
    assert other.login(f"dora@{PROVIDER}").status_code == 200
    assert other.get(f"api/jobs/{cut}").status_code == 404
    point_store_at(server.database, knot.nameserver)
    again = until_ended(c, start_dns_test(c))
    assert again["state"] == "done" and again["result"]["domain"] == CUSTOMER, again


@pytest.mark.server("prosody")
def test_prosody_jobs_survive_a_kill_and_restart(tmp_path, knot, silent_nameserver, browser):
    extra = f'VirtualHost "{CUSTOMER}"\n'
    with Prosody(tmp_path / "prosody", host=PROVIDER, host_modules=["xmpp_hosting_panel"],
                 options={"http_default_host": PROVIDER}, extra_config=extra) as server:
        wait_for_port(server.http_port, server.proc, log=server.log)
        for user, host in [("alice", CUSTOMER), ("dora", PROVIDER)]:
            r = server.ctl("register", user, host, PW)
            assert r.returncode == 0, r.stdout + r.stderr
        own_domain(server.database)
        point_store_at(server.database, knot.nameserver)

        def crash_and_start():
            server.proc.kill()
            server.proc.wait(timeout=30)
            server.proc = None
            server.start()

        jobs_survive_a_restart(server, knot, silent_nameserver, crash_and_start, browser,
                               f"prosody-{server.target.series}")


@pytest.mark.server("ejabberd")
def test_ejabberd_jobs_survive_a_restart(tmp_path, knot, silent_nameserver, browser):
    node = Ejabberd(tmp_path / "ejabberd", host=PROVIDER, extra_hosts=[CUSTOMER], install="config",
                    http_handlers={"/panel": "mod_xmpp_hosting_panel"})
    node.database.parent.mkdir(parents=True, exist_ok=True)
    own_domain(node.database)
    point_store_at(node.database, knot.nameserver)
    with node:
        node.register("alice", PW, CUSTOMER)
        node.register("dora", PW, PROVIDER)

        def restart():
            node.stop()
            node.start()

        jobs_survive_a_restart(node, knot, silent_nameserver, restart, browser, f"ejabberd-{node.target.series}")
