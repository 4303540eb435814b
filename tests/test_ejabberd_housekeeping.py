"""ejabberd runs the core's housekeeping pass from one timer (housekeeping_scenarios.py): the
invite purge, which ejabberd never ran before the pass was the core's, included."""

import pytest

from harness.clock import ServerClock
from harness.ejabberd import Ejabberd
from housekeeping_scenarios import an_unusable_invite_is_purged_by_the_timer
from upload_scenarios import wait_for

HOST = "housekeeping.example"


def test_an_unusable_invite_is_purged_by_the_timer(tmp_path):
    clock = ServerClock(tmp_path)
    with Ejabberd(tmp_path / "ejabberd", host=HOST, install="config", server_env=clock.env) as node:
        an_unusable_invite_is_purged_by_the_timer(node.database, clock, HOST, lambda: node.log_file.read_text())


# ---- intervals the core refuses --------------------------------------------------------------
# econf's timeout takes any length; the core's schedule at most a week. Before, such a value
# made every housekeeping pass fail to start (all of housekeeping stopped), logged only as
# 'housekeeping cannot start' every 60 s. ejabberd refuses an invalid option at start: so does
# the module, in the core's words.

def refused_at_start(node: Ejabberd) -> str:
    with pytest.raises((RuntimeError, TimeoutError)):
        with node:
            pass
    assert node.stray_processes() == []
    return node.log_file.read_text(errors="replace")


def test_a_purge_interval_over_a_week_stops_the_start_with_the_cores_words(tmp_path):
    node = Ejabberd(tmp_path / "ejabberd", host=HOST, install="config",
                    module_options={"purge_interval": "30 days"})
    log = refused_at_start(node)
    assert (f"xmpp_hosting {HOST}: option purge_interval: invalid argument: the invite_purge interval is more than 0 "
            "and at most 604800 seconds (a week), not 2592000") in log, log[-3000:]


def test_an_upload_sweep_interval_over_a_week_stops_the_start_with_the_cores_words(tmp_path):
    modules = f"""  mod_http_upload:
    put_url: "http://{HOST}:5443/upload"
    docroot: "{tmp_path / 'upload'}"
  mod_xmpp_hosting_uploads:
    sweep_interval: "8 days"
"""
    node = Ejabberd(tmp_path / "ejabberd", host=HOST, install="config", extra_modules=modules)
    log = refused_at_start(node)
    assert (f"xmpp_hosting {HOST}: option sweep_interval: invalid argument: the upload_upkeep interval is more than 0 "
            "and at most 604800 seconds (a week), not 691200") in log, log[-3000:]


def test_a_reload_with_an_interval_over_a_week_says_the_cores_words_and_housekeeping_goes_on(tmp_path):
    """At a reload the module says why and keeps the schedule it has: an error returned from
    reload/3 would abort the reload of the modules after it."""
    with Ejabberd(tmp_path / "ejabberd", host=HOST, install="config") as node:
        node.module_options["checkpoint_interval"] = "14 days"
        node.write_config()
        node.ctl("reload_config")
        words = (f"xmpp_hosting {HOST}: option checkpoint_interval: invalid argument: the checkpoint interval is "
                 "more than 0 and at most 604800 seconds (a week), not 1209600")
        assert wait_for(lambda: words in node.log_file.read_text(errors="replace")), node.logs_tail()
        log = node.log_file.read_text(errors="replace")
        assert "Hook config_reloaded crashed" not in log, log[-3000:]
        assert node.ctl("xmpp_hosting_domain_list").returncode == 0
