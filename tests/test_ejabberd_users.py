"""The hosted domain's users on the real ejabberd (23.01 or 24.12, as the session's target): the
shared roster (mod_shared_roster with @all@, kept in line by mod_xmpp_hosting_roster) and the
owner's ad-hoc commands (mod_xmpp_hosting_users), driven by a real client (slixmpp). The
scenarios are shared with Prosody (users_scenarios.py)."""

import pytest

from harness import client

from harness.ejabberd import Ejabberd
from users_scenarios import PASSWORD, UsersScenarios, UsersServer, prepare, shared_roster_off  # noqa: F401

HOST = "users.example"
OTHER = "other-users.example"

MODULES = f"""  mod_roster: {{}}
  mod_disco: {{}}
  mod_adhoc: {{}}
  mod_shared_roster: {{}}
  mod_xmpp_hosting_roster: {{}}
  mod_xmpp_hosting_users:
    access_operator:
      allow:
        user: "admin@{HOST}"
"""


@pytest.fixture(scope="module")
def ej(tmp_path_factory):
    with Ejabberd(tmp_path_factory.mktemp("ejabberd-users"), host=HOST, extra_hosts=[OTHER], install="config",
                  extra_modules=MODULES) as node:
        yield node


@pytest.fixture(scope="module")
def server(ej):
    s = UsersServer(HOST, OTHER, ej.c2s_port, ej.database, lambda u, p, h: ej.register(u, p, h), f"admin@{HOST}")
    prepare(s)
    ej.register("admin", PASSWORD, HOST)
    return s


class TestEjabberdUsers(UsersScenarios):
    pass


def test_ejabberdctl_switches_the_shared_roster(ej, server, shared_roster_off):
    carol, dave = f"carol@{HOST}", f"dave@{HOST}"
    ej.ctl("xmpp_hosting_domain_set", HOST, "shared_roster", "on")
    assert client.roster(ej.c2s_port, carol, PASSWORD).get(dave) == "both"
    r = ej.ctl("xmpp_hosting_domain_set", HOST, "shared_roster", "maybe", check=False)
    assert r.returncode != 0 and "is not on or off" in r.stdout + r.stderr
    ej.ctl("xmpp_hosting_domain_set", HOST, "shared_roster", "off")
    assert dave not in client.roster(ej.c2s_port, carol, PASSWORD)

