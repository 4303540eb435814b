"""Which ejabberd the modules run in: mod_xmpp_hosting names the version and the API it uses at
start, and refuses to start on a version it was not built and tested for (supported: 23.01 to
24.12), which at boot stops the node as for any module that cannot start.

Runs on the session's ejabberd (XH_SERVERS); scripts/test runs it on both generations.
"""

import time

import pytest

from harness import client
from harness.ejabberd import Ejabberd

HOST = "versions.example"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node with the module for the tests that only read what it logged (a start is the
    costliest step of these tests)."""
    with Ejabberd(tmp_path_factory.mktemp("ejabberd-versions"), host=HOST, install="config") as node:
        yield node


def test_the_module_names_the_ejabberd_version_and_the_api_it_uses(node):
    log = node.log_file.read_text()
    line = next(x for x in log.splitlines() if f"xmpp_hosting {HOST}: ejabberd " in x)
    otp = node.eval("erlang:system_info(otp_release).").strip('"')
    assert f"xmpp_hosting {HOST}: ejabberd {node.version} on OTP {otp}: one code path for 23.01 to 24.12" in line
    assert node.module_loaded()


@pytest.mark.parametrize("vsn", ["22.10", "26.07-1"])  # older, and the Debian 13 backports one
def test_an_unsupported_ejabberd_version_is_refused_with_a_clear_log_line(tmp_path, vsn):
    node = Ejabberd(tmp_path / "node", host=HOST, install="config", app_vsn=vsn)
    with pytest.raises((RuntimeError, TimeoutError)):
        with node:
            pass
    log = node.log_file.read_text()
    assert f"xmpp_hosting {HOST}: xmpp-hosting supports ejabberd 23.01 to 24.12; this is ejabberd {vsn}: not loading" in log
    assert f"xmpp_hosting {HOST}: store " not in log  # refused before it opened anything
    assert node.stray_processes() == []


def test_harness_logins_authenticate_at_the_first_attempt(node):
    """The test client speaks PLAIN over plain TCP on every version (harness.client._plain): a
    SCRAM attempt there sends the gs2 flag "y", which 24.12's xmpp library refuses as a channel
    binding downgrade before PLAIN succeeds, a failed login in the log for every test login."""
    node.register("alice", "pw-123456")
    assert client.login(node.c2s_port, f"alice@{HOST}", "pw-123456")
    deadline = time.monotonic() + 60  # the logger writes a moment later (a guard against a hang)
    while f"Accepted c2s PLAIN authentication for alice@{HOST}" not in node.log_file.read_text():
        assert time.monotonic() < deadline, node.logs_tail()
        time.sleep(0.1)
    log = node.log_file.read_text()
    assert "Failed c2s" not in log and "channel binding" not in log
