"""ejabberd runs the core's housekeeping pass from one timer (housekeeping_scenarios.py): the
invite purge, which ejabberd never ran before the pass was the core's, included."""

from harness.clock import ServerClock
from harness.ejabberd import Ejabberd
from housekeeping_scenarios import an_unusable_invite_is_purged_by_the_timer

HOST = "housekeeping.example"


def test_an_unusable_invite_is_purged_by_the_timer(tmp_path):
    clock = ServerClock(tmp_path)
    with Ejabberd(tmp_path / "ejabberd", host=HOST, install="config", server_env=clock.env) as node:
        an_unusable_invite_is_purged_by_the_timer(node.database, clock, HOST, lambda: node.log_file.read_text())
