"""Invite-only registration on the real ejabberd 23.01, driven by a real client (slixmpp).

The scenarios are those of Prosody (invite_scenarios.py): both servers take their decisions from
the one core, so a client must see the same answers. ejabberdctl's commands are tested here.
"""

import pytest

from harness.client import register
from harness.ejabberd import Ejabberd
from invite_scenarios import InviteScenarios, ServerUnderTest, invite_only  # noqa: F401 (autouse fixture)

HOST = "invites.example"

MODULES = """  mod_roster: {}
  mod_register:
    allow_modules: [mod_xmpp_hosting_invites]
  mod_xmpp_hosting_invites: {}
"""


@pytest.fixture(scope="module")
def ej(tmp_path_factory):
    with Ejabberd(tmp_path_factory.mktemp("ejabberd-invites"), host=HOST, install="config",
                  extra_modules=MODULES, extra_config="registration_timeout: infinity\n") as node:
        yield node


@pytest.fixture(scope="module")
def server(ej):
    return ServerUnderTest(ej.host, ej.c2s_port, ej.database, ej.register, ej.is_running)


class TestEjabberdInvites(InviteScenarios):
    pass


def jid(user):
    return f"{user}@{HOST}"

def test_ejabberdctl_invite_commands(ej):
    r = ej.ctl("xmpp_hosting_invite_create", HOST, "2", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    token = r.stdout.split(" token ")[1].split()[0]
    assert f"uri xmpp:{HOST}?register;preauth={token}" in r.stdout
    invite_id = r.stdout.split()[1]
    assert f"{invite_id} account 2/2 left" in ej.ctl("xmpp_hosting_invite_list", HOST).stdout
    assert register(ej.c2s_port, jid("viactl"), "pw-123456", token=token).ok
    assert ej.ctl("xmpp_hosting_invite_revoke", HOST, invite_id).returncode == 0
    assert not register(ej.c2s_port, jid("viactl2"), "pw-123456", token=token).ok
    r = ej.ctl("xmpp_hosting_domain_set", HOST, "registration.policy", "sometimes", check=False)
    assert r.returncode == 1 and "invalid_argument" in r.stdout + r.stderr
    assert ej.ctl("xmpp_hosting_invite_purge").returncode == 0
