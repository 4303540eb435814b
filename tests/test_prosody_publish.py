"""Publication on the real Prosody (0.12 or 13.0, per XH_SERVERS): the shared scenarios of
publish_scenarios.py on mod_xmpp_hosting_publish, and its prosodyctl commands."""

import pytest

from harness.common import run_cli
from harness.prosody import Prosody
from publish_scenarios import PublishScenarios, PublishServer

HOST = "publish.example"


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    server = Prosody(tmp_path_factory.mktemp("prosody-publish"), host=HOST,
                     host_modules=["xmpp_hosting_invites", "xmpp_hosting_publish"],
                     # Without mod_register (which brings mod_user_account_management), in-band
                     # deletion works only because mod_xmpp_hosting_publish keeps its promise.
                     options={"modules_disabled": ["register"]})
    # Hosted before the server starts, so no test races the modules' own ensure_hosted at load.
    run_cli(server.database, "domain", "add", HOST)
    with server:
        yield server


@pytest.fixture(scope="module")
def server(prosody):
    def publish_set(field, value):
        r = prosody.ctl("mod_xmpp_hosting_publish", "set", HOST, field, value)
        return r.returncode, r.stdout + r.stderr

    return PublishServer(f"prosody-{prosody.version}", prosody.host, prosody.c2s_port, prosody.http_port,
                         prosody.database, prosody.create_user, publish_set)


class TestProsodyPublish(PublishScenarios):
    pass


def test_prosodyctl_publish_commands(prosody, server):
    def ctl(*args):
        return prosody.ctl("mod_xmpp_hosting_publish", *args)

    r = ctl("set", HOST, "jurisdiction", "uk")
    assert r.returncode == 1 and "not an ISO 3166-1 country code" in r.stderr, r.stdout + r.stderr
    r = ctl("set", HOST, "organization", "club")
    assert r.returncode == 1 and "unknown variant" in r.stderr, r.stdout + r.stderr
    r = ctl("set", HOST, "since", "2019-05-01")
    assert r.returncode == 0 and 'since: "2019-05-01"' in r.stdout, r.stdout + r.stderr
    r = ctl("show", HOST)
    assert r.returncode == 0 and f"{HOST}: registration " in r.stdout, r.stdout + r.stderr
    r = ctl("provider-file", HOST)
    assert r.returncode == 0 and '"since": "2019-05-01"' in r.stdout, r.stdout + r.stderr
    r = ctl("page", HOST)
    assert r.returncode == 0 and "<!DOCTYPE html>" in r.stdout, r.stdout + r.stderr
    r = ctl("disco", HOST)
    assert r.returncode == 0 and "urn:x-xmpp-hosting:policy:0" in r.stdout, r.stdout + r.stderr
    r = ctl("show", "nope.example")
    assert r.returncode == 1 and "not found" in r.stderr, r.stdout + r.stderr
