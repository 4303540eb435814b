"""Trusted certificates by ACME DNS-01 through the customer's one CNAME (issue 14), end to end on
loopback: Debian's pebble as the CA, validating through unbound (a recursive resolver, as a CA's
validator is) that asks the test Knot; the provider's ACME zone in Knot takes TSIG-signed RFC 2136
updates, the customers' zone holds their `_acme-challenge` CNAMEs.

Checked: a certificate issued through the CNAME, accepted by `openssl verify` against pebble's
root; the challenge TXT gone afterwards; the CNAME row in the DNS tester; a renewal that replaces
the certificate; a missing or wrong CNAME refused with what was found, before the CA is asked; a
failed renewal recorded with its notice and backed off; no private key in any output."""

import json
import os
import re
import subprocess

import pytest

from harness.acme import AcmeLab, customer_zone as zone_of
from harness.clock import ServerClock
from harness.common import CLI, LOOPBACK, run_cli

CUSTOMERS = "customers.example"
ACME_ZONE = "acme.provider.example"


def customer_zone(serial: int, cnames: dict[str, str]) -> str:
    return zone_of(CUSTOMERS, serial, cnames)


def good_cnames(*labels):
    return {label: f"{label}.{CUSTOMERS}.{ACME_ZONE}" for label in labels}


# Every customer domain of the tests, with its CNAME as the module starts.
START = {**good_cnames("good", "renew", "backoff", "tsig"), "wrong": "elsewhere.provider.example"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("acme")
    with AcmeLab(base, CUSTOMERS, ACME_ZONE, START) as lab:
        db = base / "store.db"
        lab.configure(db)
        for label in ["good", "renew", "backoff", "tsig", "missing", "wrong"]:
            run_cli(db, "domain", "add", f"{label}.{CUSTOMERS}")
        yield {"db": db, "knot": lab.knot, "pebble": lab.pebble, "base": base, "secret": lab.secret}


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, input=input)


def no_key(*texts):
    for t in texts:
        assert "PRIVATE KEY" not in t, t


def show(env, domain):
    return json.loads(run_cli(env["db"], "cert", "show", domain, "--json").stdout)


def verify_against_pebble(env, domain):
    """openssl verify of the served certificate, with the chain it is served with, against this
    pebble's root (fetched from its management interface); also checks the chain's intermediate
    is pebble's."""
    pem = run_cli(env["db"], "cert", "show", domain, "--pem").stdout
    no_key(pem)
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", pem, re.S)
    assert len(blocks) == 2, pem
    base = env["base"]
    (base / "root.pem").write_text(env["pebble"].root())
    (base / "chain.pem").write_text(blocks[1])
    (base / "leaf.pem").write_text(blocks[0])
    inter = openssl("x509", "-noout", "-fingerprint", "-sha256", input=env["pebble"].intermediate()).stdout
    served_inter = openssl("x509", "-noout", "-fingerprint", "-sha256", input=blocks[1]).stdout
    assert inter == served_inter
    out = openssl("verify", "-CAfile", str(base / "root.pem"), "-untrusted", str(base / "chain.pem"),
                  str(base / "leaf.pem"))
    assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
    # Not trusted without pebble's root: the check above is the root's doing.
    alone = openssl("verify", "-CAfile", str(base / "chain.pem"), str(base / "leaf.pem"))
    assert alone.returncode != 0
    return blocks[0]


def txt_at(env, name):
    out = subprocess.run(["kdig", f"@{LOOPBACK}", "-p", str(env["knot"].port), "+short", "TXT", name],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_certificate_is_issued_through_the_customers_cname(env):
    domain = f"good.{CUSTOMERS}"
    # The CNAME is shown with the records the DNS tester checks.
    report = json.loads(run_cli(env["db"], "dns", "check", domain, "--json", check=False).stdout)
    row = next(r for r in report["rows"] if r["name"] == f"_acme-challenge.{domain}")
    assert (row["type"], row["expected"], row["status"]) == ("CNAME", f"{domain}.{ACME_ZONE}", "ok")

    issued = run_cli(env["db"], "cert", "acme", domain, check=False)
    assert issued.returncode == 0, issued.stderr + env["pebble"].log_text()[-3000:]
    no_key(issued.stdout, issued.stderr)
    info = show(env, domain)
    assert info["source"] == "imported"
    assert info["names"] == [domain, f"*.{domain}"]
    assert info["services_not_covered"] == [] and f"conference.{domain}" in info["services_covered"]
    assert info["acme"]["serving"] is True and info["acme"]["failures"] == 0
    assert info["acme"]["cname"] == {"name": f"_acme-challenge.{domain}", "target": f"{domain}.{ACME_ZONE}"}
    # Pebble issues for 40 days here; the renewal is 30 days before the end.
    assert info["days_left"] in (39, 40)
    assert info["acme"]["renew_at"] == info["not_after"] - 30 * 86400
    text = run_cli(env["db"], "cert", "show", domain).stdout
    assert "acme  issued " in text and "renews from" in text, text
    verify_against_pebble(env, domain)
    # The challenge TXT was removed from the provider's zone once the CA had looked.
    assert txt_at(env, f"{domain}.{ACME_ZONE}") == ""
    # The account key and the domain's key stay in the store: no output carries them.
    no_key(json.dumps(info), run_cli(env["db"], "provider", "show", check=False).stdout)
    assert env["secret"] not in run_cli(env["db"], "provider", "show", check=False).stdout


def test_a_renewal_replaces_the_certificate(env):
    domain = f"renew.{CUSTOMERS}"
    assert run_cli(env["db"], "cert", "acme", domain, check=False).returncode == 0
    before = show(env, domain)
    # Not due with 40 days left and renewal at 30 days.
    due = run_cli(env["db"], "cert", "acme", "--due", "--json")
    assert [r["domain"] for r in json.loads(due.stdout)] == []
    try:
        # Due once the renewal window reaches the certificate's end.
        run_cli(env["db"], "provider", "set", "acme.renew_days", "45")
        due = run_cli(env["db"], "cert", "acme", "--due", "--json", check=False)
        assert due.returncode == 0, due.stdout + due.stderr
        renewed = {r["domain"]: r for r in json.loads(due.stdout)}
        assert renewed[domain]["error"] is None and renewed[domain]["renewed"] is not None
        # The new certificate is inside the renewal window too: renewing it at every pass would
        # hammer the CA, so the next attempt waits a day and the admin is told why.
        status = show(env, domain)["acme"]
        assert status["next_attempt_at"] - status["last_attempt_at"] in range(86395, 86405)
        assert "within acme.renew_days (45): renewed at most daily" in status["last_error"], status
        again = run_cli(env["db"], "cert", "acme", "--due", "--json")
        assert domain not in [r["domain"] for r in json.loads(again.stdout)]
    finally:
        run_cli(env["db"], "provider", "set", "acme.renew_days", "30")
    after = show(env, domain)
    assert after["fingerprint"] != before["fingerprint"]
    assert after["acme"]["serving"] is True
    assert after["not_after"] >= before["not_after"]
    verify_against_pebble(env, domain)


def test_a_missing_or_wrong_cname_is_refused_before_the_ca_is_asked(env):
    orders_before = env["pebble"].log_text().count("POST /order-plz")
    missing = run_cli(env["db"], "cert", "acme", f"missing.{CUSTOMERS}", check=False)
    assert missing.returncode == 1
    assert (f"no CNAME at _acme-challenge.missing.{CUSTOMERS}: the customer must add "
            f"`_acme-challenge.missing.{CUSTOMERS}. CNAME missing.{CUSTOMERS}.{ACME_ZONE}.` first; "
            "nothing was asked of the CA") in missing.stderr, missing.stderr
    wrong = run_cli(env["db"], "cert", "acme", f"wrong.{CUSTOMERS}", check=False)
    assert wrong.returncode == 1
    assert (f"_acme-challenge.wrong.{CUSTOMERS} is a CNAME to elsewhere.provider.example, "
            f"not to wrong.{CUSTOMERS}.{ACME_ZONE}") in wrong.stderr, wrong.stderr
    # The CA saw no order for either: pebble logs every request it serves and the names of every
    # authorization it validates, and neither name is there.
    log = env["pebble"].log_text()
    assert log.count("POST /order-plz") == orders_before
    assert f"missing.{CUSTOMERS}" not in log and f"wrong.{CUSTOMERS}" not in log
    for label in ["missing", "wrong"]:
        # Nothing served, the refusal kept for `cert show`'s status.
        assert run_cli(env["db"], "cert", "show", f"{label}.{CUSTOMERS}", check=False).returncode == 1
    # The DNS tester says the same.
    report = json.loads(run_cli(env["db"], "dns", "check", f"wrong.{CUSTOMERS}", "--json", check=False).stdout)
    row = next(r for r in report["rows"] if r["name"] == f"_acme-challenge.wrong.{CUSTOMERS}")
    assert (row["status"], row["found"]) == ("wrong", ["elsewhere.provider.example"])


def test_a_failed_renewal_is_reported_and_backed_off(env):
    domain = f"backoff.{CUSTOMERS}"
    assert run_cli(env["db"], "cert", "acme", domain, check=False).returncode == 0
    served = show(env, domain)
    # The customer removed the CNAME: the renewal cannot happen.
    env["knot"].replace(CUSTOMERS, customer_zone(2, {k: v for k, v in START.items() if k != "backoff"}))
    try:
        run_cli(env["db"], "provider", "set", "acme.renew_days", "45")
        due = run_cli(env["db"], "cert", "acme", "--due", check=False)
        assert due.returncode == 3, due.stdout + due.stderr
        assert f"Renewal of {domain}'s certificate by ACME failed" in due.stdout, due.stdout
        assert f"no CNAME at _acme-challenge.{domain}" in due.stdout and "Next attempt at" in due.stdout
        status = show(env, domain)
        assert status["fingerprint"] == served["fingerprint"], "the served certificate stays"
        assert status["acme"]["failures"] == 1
        assert status["acme"]["next_attempt_at"] > status["acme"]["last_attempt_at"]
        # Backed off: the next pass leaves it alone.
        again = run_cli(env["db"], "cert", "acme", "--due", "--json")
        assert domain not in [r["domain"] for r in json.loads(again.stdout)]
    finally:
        run_cli(env["db"], "provider", "set", "acme.renew_days", "30")
        env["knot"].replace(CUSTOMERS, customer_zone(3, START))


def test_a_refused_tsig_update_says_why(env, tmp_path):
    """Knot's TSIG refusals come back in the admin's words, not as the client's protocol error:
    another secret (BADSIG), and a clock more than 300 s off the DNS server's (BADTIME: the CLI
    run under libfaketime an hour ahead)."""
    domain = f"tsig.{CUSTOMERS}"
    other = tmp_path / "other.secret"
    other.write_text("b3RoZXIgc2VjcmV0IG9mIHRoaXJ0eS10d28gYnl0ZXMhIQ==\n")
    os.chmod(other, 0o600)
    settings = json.loads(run_cli(env["db"], "--json", "provider", "show").stdout)
    assert settings["acme"]["tsig_secret_file"] != str(other)
    try:
        run_cli(env["db"], "provider", "set", "acme.tsig_secret_file", str(other))
        r = run_cli(env["db"], "cert", "acme", domain, check=False)
        # Knot answers BADSIG unsigned (RFC 8945), which the client cannot verify: said in words.
        assert r.returncode == 1 and "it refused the update's signature" in r.stderr, r.stderr
        assert "the secret in acme.tsig_secret_file is the server's" in r.stderr, r.stderr
    finally:
        run_cli(env["db"], "provider", "set", "acme.tsig_secret_file", settings["acme"]["tsig_secret_file"])
    clock = ServerClock(tmp_path)
    clock.set_offset(3600)
    r = subprocess.run([str(CLI), "--db", str(env["db"]), "cert", "acme", domain], capture_output=True, text=True,
                       env={**os.environ, **clock.env}, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "TSIG BADTIME" in r.stderr and "more than 300 s off the server's clock" in r.stderr, r.stderr
    no_key(r.stdout, r.stderr)
    # On a right clock, with the right secret, the same domain is issued.
    assert run_cli(env["db"], "cert", "acme", domain, check=False).returncode == 0
