"""Invite-only registration on the real Prosody 0.12, driven by a real client (slixmpp).

The scenarios shared with ejabberd are in invite_scenarios.py; Prosody's own extras (ad-hoc
commands, prosodyctl and the admin shell) are here.
"""

import json

import pytest

from harness import client
from harness.client import register
from harness.common import run_cli
from harness.prosody import Prosody
from invite_scenarios import InviteScenarios, ServerUnderTest, invite_only  # noqa: F401 (autouse fixture)

HOST = "invites.example"


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    with Prosody(tmp_path_factory.mktemp("prosody-invites"), host=HOST, host_modules=["xmpp_hosting_invites"],
                 options={"admins": [f"admin@{HOST}"]}) as server:
        server.create_user("admin", "admin-pass")
        yield server


@pytest.fixture(scope="module")
def server(prosody):
    return ServerUnderTest(prosody.host, prosody.c2s_port, prosody.database, prosody.create_user,
                           prosody.delete_user, prosody.running)


class TestProsodyInvites(InviteScenarios):
    pass


def cli(prosody, *args):
    return run_cli(prosody.database, *args)


def jid(user):
    return f"{user}@{HOST}"

def test_adhoc_create_account_invite_for_admins(prosody):
    fields = client.adhoc(prosody.c2s_port, jid("admin"), "admin-pass", "urn:xmpp:invite#create-account", HOST)
    uri = fields["uri"]
    assert uri.startswith(f"xmpp:{HOST}?register;preauth=")
    token = uri.rsplit("=", 1)[1]
    assert register(prosody.c2s_port, jid("viaadhoc"), "pw-123456", token=token).ok

def test_adhoc_contact_invite_needs_the_domain_to_allow_users(prosody):
    prosody.create_user("user1", "user1-pass")
    fields = client.adhoc(prosody.c2s_port, jid("user1"), "user1-pass", "urn:xmpp:invite#invite", HOST)
    assert "may not create invites" in fields.get("error", "")
    cli(prosody, "domain", "set", HOST, "registration.users_may_invite", "true")
    fields = client.adhoc(prosody.c2s_port, jid("user1"), "user1-pass", "urn:xmpp:invite#invite", HOST)
    assert fields["uri"].startswith(f"xmpp:{jid('user1')}?roster;preauth=")
    token = fields["uri"].split("preauth=")[1].split(";")[0]
    assert register(prosody.c2s_port, jid("user1friend"), "pw-123456", token=token).ok
    assert client.roster(prosody.c2s_port, jid("user1"), "user1-pass") == {jid("user1friend"): "both"}

def test_prosodyctl_invite_commands(prosody):
    r = prosody.ctl("mod_xmpp_hosting", "invite", "create", HOST, "--uses", "2", "--note", "family")
    assert r.returncode == 0, r.stderr
    assert "2 use(s)" in r.stdout and f"URI: xmpp:{HOST}?register;preauth=" in r.stdout
    invite_id = r.stdout.split("Invite ", 1)[1].split(" ", 1)[0]
    assert "family" in prosody.ctl("mod_xmpp_hosting", "invite", "list", HOST).stdout
    assert prosody.ctl("mod_xmpp_hosting", "invite", "revoke", HOST, invite_id).returncode == 0
    r = prosody.ctl("mod_xmpp_hosting", "invite", "create", HOST, "--uses", "zero")
    assert r.returncode == 1 and "invalid argument" in r.stderr
    r = prosody.shell(f'xmpp_hosting:invite_create("{HOST}", {{uses = 1}})')
    assert "OK: Invite" in r.stdout


def test_a_roster_invite_from_an_account_deleted_by_prosodyctl_registers_without_a_subscription(prosody):
    """prosodyctl deluser runs without the module, so the store still holds the invite: the new
    account registers, and no roster entry names the gone inviter."""
    prosody.create_user("offline-gone", "pw-123456")
    inv = json.loads(cli(prosody, "--json", "invite", "create", HOST, "--kind", "roster",
                         "--inviter", jid("offline-gone")).stdout)
    prosody.delete_user("offline-gone", in_server=False)
    assert register(prosody.c2s_port, jid("arrival"), "pw-123456", token=inv["token"]).ok
    assert client.roster(prosody.c2s_port, jid("arrival"), "pw-123456") == {}
    # The admin tells the store afterwards; nothing is left to revoke once the invite is used.
    assert "0 invite(s) revoked" in cli(prosody, "account", "removed", HOST, "offline-gone").stdout
