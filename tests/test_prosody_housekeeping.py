"""Prosody runs the core's housekeeping pass from one timer (housekeeping_scenarios.py)."""

from harness.clock import ServerClock
from harness.prosody import Prosody
from housekeeping_scenarios import an_unusable_invite_is_purged_by_the_timer

HOST = "housekeeping.example"


def test_an_unusable_invite_is_purged_by_the_timer(tmp_path):
    clock = ServerClock(tmp_path)
    with Prosody(tmp_path / "prosody", host=HOST, server_env=clock.env) as server:
        an_unusable_invite_is_purged_by_the_timer(server.database, clock, HOST, server.log_text)
