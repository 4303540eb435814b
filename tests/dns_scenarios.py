"""What both servers do with customers' domains on their own, on a timer (see test_*_dns.py)."""

import json
import time
from pathlib import Path
from typing import Callable

from harness import client
from harness.clock import ServerClock
from harness.common import run_cli, wait_for_domain
from harness.knot import Knot, point_store_at, zone_text

ZONE = "customer.example"


def a_lost_domain_is_logged_and_told_to_the_admins(database: Path, clock: ServerClock, c2s_port: int,
                                                   admin: str, password: str, log_text: Callable[[], str],
                                                   workdir: Path):
    """A verified domain whose proof is removed from DNS becomes `lost` when the server's
    re-verification timer gets to it: a warning in the log and a chat message to the admin.

    The server's recheck timer runs every second; the core re-checks a verified domain a minute
    after its last check at the earliest, so the server's clock is moved ten minutes on instead
    of waiting."""
    run_cli(database, "provider", "set", "dns.recheck_interval", "60")  # the shortest the core allows
    run_cli(database, "provider", "set", "dns.grace_period", "86400")
    token = json.loads(run_cli(database, "--json", "domain", "claim", ZONE, "--account", "alice").stdout)["claim"]["token"]
    proof = f'xmpp-hosting-verification TXT "verify={token}"\n'
    with Knot(workdir / "knot", {ZONE: zone_text(ZONE, 1, proof)}) as knot:
        point_store_at(database, knot.nameserver)
        assert "verified" in run_cli(database, "domain", "verify", ZONE, "--account", "alice").stdout
        knot.replace(ZONE, zone_text(ZONE, 2, ""))
        text = f"Domain {ZONE} of alice is lost: its verification record is gone"
        body = client.message_after(c2s_port, admin, password, lambda: clock.set_offset(600), text)
        assert body == f"{text} (grace period running)"
        deadline = time.monotonic() + 10  # the servers' loggers write a moment later
        while text not in log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert text in log_text()
    history = run_cli(database, "domain", "history", ZONE).stdout
    assert "proof missing; grace period started" in history, history


def claim_state(database: Path, domain: str, account: str) -> str:
    claims = json.loads(run_cli(database, "--json", "domain", "claims", domain).stdout)
    return next(c["state"] for c in claims if c["account"] == account)


def wait_for_state(database: Path, account: str, state: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while (found := claim_state(database, ZONE, account)) != state and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def a_suspended_customer_domain_takes_no_registrations(database: Path, clock: ServerClock, c2s_port: int,
                                                       workdir: Path):
    """The server serves the customer's domain ZONE with open registration. When its proof is
    gone past the grace period the server's own timer suspends it, and registration stops until
    the customer proves the domain again; during the grace period nothing changes for users."""
    run_cli(database, "provider", "set", "dns.recheck_interval", "60")
    run_cli(database, "provider", "set", "dns.grace_period", "120")
    wait_for_domain(database, ZONE)  # the server's invites module adds it
    run_cli(database, "domain", "set", ZONE, "registration.policy", "open")
    token = json.loads(run_cli(database, "--json", "domain", "claim", ZONE, "--account", "alice").stdout)["claim"]["token"]
    proof = f'xmpp-hosting-verification TXT "verify={token}"\n'

    def register(user):
        return client.register(c2s_port, f"{user}@{ZONE}", "pw-123456")

    with Knot(workdir / "knot", {ZONE: zone_text(ZONE, 1, proof)}) as knot:
        point_store_at(database, knot.nameserver)
        assert "verified" in run_cli(database, "domain", "verify", ZONE, "--account", "alice").stdout
        assert register("before").ok
        knot.replace(ZONE, zone_text(ZONE, 2, ""))
        clock.set_offset(600)
        assert wait_for_state(database, "alice", "lost") == "lost"
        assert register("during").ok, "the grace period changes nothing for users"
        clock.set_offset(900)
        assert wait_for_state(database, "alice", "suspended") == "suspended"
        refused = register("after")
        assert refused.error[:2] == ("cancel", "not-allowed") and "suspended" in refused.error[2], refused
        knot.replace(ZONE, zone_text(ZONE, 3, proof))
        assert "verified" in run_cli(database, "domain", "verify", ZONE, "--account", "alice").stdout
        assert register("again").ok
