"""The hosted domain's users on the real Prosody (0.12 or 13.0, as the session's target): the
shared roster and the owner's ad-hoc commands, driven by a real client (slixmpp). The scenarios
are shared with ejabberd (users_scenarios.py)."""

import pytest

from harness import client

from harness.prosody import Prosody, lua_string
from users_scenarios import PASSWORD, UsersScenarios, UsersServer, prepare, shared_roster_off  # noqa: F401

HOST = "users.example"
OTHER = "other-users.example"
MODULES = ["xmpp_hosting_roster", "xmpp_hosting_users"]


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    other = f"\nVirtualHost {lua_string(OTHER)}\n  modules_enabled = {{ {', '.join(map(lua_string, MODULES))} }}\n"
    with Prosody(tmp_path_factory.mktemp("prosody-users"), host=HOST, host_modules=MODULES,
                 options={"admins": [f"admin@{HOST}"]}, extra_config=other) as server:
        yield server


@pytest.fixture(scope="module")
def server(prosody):
    def add_user(user, password, host):
        r = prosody.ctl("register", user, host, password)
        assert r.returncode == 0, r.stdout + r.stderr

    s = UsersServer(HOST, OTHER, prosody.c2s_port, prosody.database, add_user, f"admin@{HOST}")
    prepare(s)
    add_user("admin", PASSWORD, HOST)
    return s


class TestProsodyUsers(UsersScenarios):
    pass


def test_prosodyctl_switches_the_shared_roster(prosody, server, shared_roster_off):
    carol, dave = f"carol@{HOST}", f"dave@{HOST}"
    assert prosody.ctl("mod_xmpp_hosting", "domain", "set", HOST, "shared_roster", "on").returncode == 0
    assert client.roster(prosody.c2s_port, carol, PASSWORD).get(dave) == "both"
    r = prosody.ctl("mod_xmpp_hosting", "domain", "set", HOST, "shared_roster", "maybe")
    assert r.returncode != 0 and "is not on or off" in r.stdout + r.stderr
    assert prosody.ctl("mod_xmpp_hosting", "domain", "set", HOST, "shared_roster", "off").returncode == 0
    assert dave not in client.roster(prosody.c2s_port, carol, PASSWORD)

