"""Prosody runs the core's housekeeping pass from one timer (housekeeping_scenarios.py)."""

import time

from harness.clock import ServerClock
from harness.common import REPO, run_cli
from harness.prosody import HARNESS_PLUGINS, Prosody
from housekeeping_scenarios import an_unusable_invite_is_purged_by_the_timer

HOST = "housekeeping.example"


def test_an_unusable_invite_is_purged_by_the_timer(tmp_path):
    clock = ServerClock(tmp_path)
    with Prosody(tmp_path / "prosody", host=HOST, server_env=clock.env) as server:
        an_unusable_invite_is_purged_by_the_timer(server.database, clock, HOST, server.log_text)


FAILING_HANDLER = """
-- A module whose handler of the pass's retention event fails, as a broken module's would.
module:hook_global("xmpp-hosting/retention-due", function(event)
    error("failing on purpose for " .. tostring(event.domain));
end, 1000);
"""


def test_an_error_in_a_handler_of_the_pass_report_does_not_stop_the_timer(tmp_path):
    """mod_xmpp_hosting handles the pass's report in a watchfd callback and schedules the next pass
    at its end: an error there (here a retention-due handler's) used to end the callback before
    that, and no pass ever ran again."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "mod_harness_failing_due.lua").write_text(FAILING_HANDLER)
    server = Prosody(tmp_path / "prosody", host=HOST, host_modules=["mam", "xmpp_hosting_retention"],
                     global_modules=["harness_failing_due"],
                     options={"plugin_paths": [str(REPO / "lua"), str(HARNESS_PLUGINS), str(plugins)],
                              "storage": "internal", "archive_expires_after": "never",
                              "xmpp_hosting_retention_interval": 1, "xmpp_hosting_checkpoint_interval": 1})
    # Hosted with a policy before the server starts: the retention module registers the archive
    # at load, and the first pass finds its sweep due.
    server.write_config()
    run_cli(server.database, "domain", "add", HOST)
    run_cli(server.database, "retention", "set", HOST, "archive", "1d")
    with server:
        server.wait_for_log("failing on purpose for " + HOST, timeout=20)
        text = server.log_text()
        after = text[text.index("failing on purpose"):]
        deadline = time.monotonic() + 20
        while "Housekeeping pass done" not in after and time.monotonic() < deadline:
            time.sleep(0.2)
            text = server.log_text()
            after = text[text.index("failing on purpose"):]
        assert "Housekeeping pass done" in after, text[-3000:]
        assert "Error in" not in text, text[-3000:]
