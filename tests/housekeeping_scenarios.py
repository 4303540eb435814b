"""What both servers' one housekeeping timer does on its own (see test_*_housekeeping.py).

Each server runs the core's housekeeping pass from a single timer with the core's schedule: the
scenarios leave every interval at its default and move the server's clock (libfaketime) instead
of waiting."""

import json
import time
from pathlib import Path
from typing import Callable

from harness.clock import ServerClock
from harness.common import run_cli


def invite_ids(database: Path, domain: str) -> set[int]:
    return {i["id"] for i in json.loads(run_cli(database, "--json", "invite", "list", domain).stdout)}


def create_invite(database: Path, domain: str, *options: str) -> dict:
    r = run_cli(database, "--json", "invite", "create", domain, *options, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def an_unusable_invite_is_purged_by_the_timer(database: Path, clock: ServerClock, domain: str,
                                               log_text: Callable[[], str]):
    """An invite that expired is deleted by the server's own timer once the core's invite purge
    is due (hourly): the server's clock is moved two hours on, then two more; nothing else is
    configured. An invite still usable stays."""
    # The server creates the store as it starts, maybe while this runs: a migration the CLI and
    # the server race on fails one of them, so try again until the store is there.
    deadline = time.monotonic() + 10
    while (added := run_cli(database, "domain", "add", domain, check=False)).returncode != 0:
        if "domain already exists" in added.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert added.returncode == 0 or "domain already exists" in added.stderr, added.stderr
    short = create_invite(database, domain, "--expires-in", "60")
    kept = create_invite(database, domain, "--expires-in", str(30 * 24 * 3600))
    short_id, kept_id = short["invite"]["id"], kept["invite"]["id"]
    assert {short_id, kept_id} <= invite_ids(database, domain)
    clock.set_offset(2 * 3600)
    assert purged(database, domain, short_id), "the expired invite was not purged by the server's timer"
    # The next purge comes an hour after this one, on the same timer: an invite that expired
    # meanwhile goes when the server's clock has moved on past it.
    later = create_invite(database, domain, "--expires-in", "60")["invite"]["id"]
    clock.set_offset(4 * 3600)
    assert purged(database, domain, later), "the hourly purge did not come round again"
    assert kept_id in invite_ids(database, domain), "a usable invite must stay"
    deadline = time.monotonic() + 10  # the servers' loggers write a moment later
    while log_text().count("Purged 1 unusable invite(s)") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log_text().count("Purged 1 unusable invite(s)") == 2, log_text()
    # Passes that find only the checkpoint due finish at once: their reports must arrive too (the
    # NIF once panicked sending a result that was in before it was asked for).
    assert "housekeeping failed" not in log_text().lower(), log_text()


def purged(database: Path, domain: str, invite_id: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while invite_id in invite_ids(database, domain) and time.monotonic() < deadline:
        time.sleep(0.2)
    return invite_id not in invite_ids(database, domain)
