"""Invite-only registration on the real Prosody 0.12, driven by a real client (slixmpp)."""

import asyncio
import json
import time

import pytest

from harness import client
from harness.client import RawStream, error_condition, preauth_element, register
from harness.common import run_cli
from harness.prosody import Prosody

HOST = "invites.example"


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    with Prosody(tmp_path_factory.mktemp("prosody-invites"), host=HOST, host_modules=["xmpp_hosting_invites"],
                 options={"admins": [f"admin@{HOST}"]}) as server:
        server.create_user("admin", "admin-pass")
        yield server


@pytest.fixture(autouse=True)
def invite_policy(prosody):
    """Every test starts on the default policy: invite only."""
    cli(prosody, "domain", "set", HOST, "registration", json.dumps({}))
    yield


def cli(prosody, *args):
    return run_cli(prosody.database, *args)


def invite(prosody, *args) -> dict:
    return json.loads(cli(prosody, "--json", "invite", "create", HOST, *args).stdout)


def jid(user):
    return f"{user}@{HOST}"


def test_module_added_its_host_to_the_store(prosody):
    names = [d["name"] for d in json.loads(cli(prosody, "--json", "domain", "list").stdout)]
    assert HOST in names


def test_stream_features_announce_invites(prosody):
    s = RawStream(prosody.c2s_port, HOST)
    try:
        assert "urn:xmpp:invite" in s.features and "urn:xmpp:ibr-token:0" in s.features
    finally:
        s.close()


def test_registration_without_a_token_is_refused(prosody):
    r = register(prosody.c2s_port, jid("noinvite"), "pw-123456")
    assert not r.ok
    assert r.error[:2] == ("cancel", "not-allowed")
    assert "requires an invite" in r.error[2]


def test_valid_token_registers_once(prosody):
    inv = invite(prosody)
    r = register(prosody.c2s_port, jid("alice"), "alice-pass", token=inv["token"])
    assert (r.preauth, r.ok) == ("result", True), r
    assert client.login(prosody.c2s_port, jid("alice"), "alice-pass")
    again = register(prosody.c2s_port, jid("alice2"), "pw-123456", token=inv["token"])
    assert again.preauth[:2] == ("cancel", "item-not-found")
    assert again.error[:2] == ("cancel", "not-allowed")
    listed = json.loads(cli(prosody, "--json", "invite", "list", HOST).stdout)
    assert [i["uses_left"] for i in listed if i["id"] == inv["invite"]["id"]] == [0]
    audit = json.loads(cli(prosody, "--json", "invite", "audit", HOST).stdout)
    assert {"action": "redeemed", "actor": jid("alice")}.items() <= audit[0].items()


def test_failed_registration_gives_the_use_back(prosody):
    prosody.create_user("taken", "pw-123456")
    inv = invite(prosody)
    r = register(prosody.c2s_port, jid("taken"), "other-pass", token=inv["token"])
    assert r.error[:2] == ("cancel", "conflict")
    time.sleep(0.3)
    listed = json.loads(cli(prosody, "--json", "invite", "list", HOST).stdout)
    assert [i["uses_left"] for i in listed if i["id"] == inv["invite"]["id"]] == [1]
    assert register(prosody.c2s_port, jid("nottaken"), "pw-123456", token=inv["token"]).ok


def test_expired_token_is_refused(prosody):
    inv = invite(prosody, "--expires-in", "1")
    time.sleep(1.2)
    r = register(prosody.c2s_port, jid("late"), "pw-123456", token=inv["token"])
    assert r.preauth[:2] == ("cancel", "item-not-found")
    assert not r.ok


def test_reserved_username_only_with_its_invite(prosody):
    cli(prosody, "domain", "set", HOST, "registration.policy", "open")
    inv = invite(prosody, "--username", "carol")
    assert inv["uri"] == f"xmpp:carol@{HOST}?register;preauth={inv['token']}"
    r = register(prosody.c2s_port, jid("carol"), "pw-123456")
    assert r.error[:2] == ("cancel", "conflict")
    other = invite(prosody)
    assert register(prosody.c2s_port, jid("carol"), "pw-123456", token=other["token"]).error[:2] == ("cancel", "conflict")
    assert register(prosody.c2s_port, jid("carol"), "pw-123456", token=inv["token"]).ok


def test_roster_invite_ends_with_mutual_subscription(prosody):
    prosody.create_user("inviter", "inviter-pass")
    inv = invite(prosody, "--kind", "roster", "--inviter", jid("inviter"))
    assert inv["uri"] == f"xmpp:{jid('inviter')}?roster;preauth={inv['token']};ibr=y"
    assert register(prosody.c2s_port, jid("friend"), "friend-pass", token=inv["token"]).ok
    assert client.roster(prosody.c2s_port, jid("friend"), "friend-pass") == {jid("inviter"): "both"}
    assert client.roster(prosody.c2s_port, jid("inviter"), "inviter-pass") == {jid("friend"): "both"}


def test_group_invite_admits_exactly_its_uses(prosody):
    inv = invite(prosody, "--uses", "3")
    results = [register(prosody.c2s_port, jid(f"group{i}"), "pw-123456", token=inv["token"]).ok for i in range(4)]
    assert results == [True, True, True, False]


def test_closed_refuses_everything(prosody):
    inv = invite(prosody)
    cli(prosody, "domain", "set", HOST, "registration.policy", "closed")
    r = register(prosody.c2s_port, jid("closed1"), "pw-123456", token=inv["token"])
    assert r.error[:2] == ("cancel", "not-allowed") and "closed" in r.error[2]
    assert register(prosody.c2s_port, jid("closed2"), "pw-123456").error[:2] == ("cancel", "not-allowed")


def test_open_obeys_the_per_ip_limits(prosody):
    cli(prosody, "domain", "set", HOST, "registration.policy", "open")
    cli(prosody, "domain", "set", HOST, "registration.min_seconds_between_per_ip", "3600")
    assert register(prosody.c2s_port, jid("open1"), "pw-123456").ok
    r = register(prosody.c2s_port, jid("open2"), "pw-123456")
    assert r.error[:2] == ("wait", "policy-violation")
    # An invite is not subject to the per-IP limits of open registration.
    assert register(prosody.c2s_port, jid("open3"), "pw-123456", token=invite(prosody)["token"]).ok


def test_racing_clients_with_one_single_use_token_create_one_account(prosody):
    inv = invite(prosody)

    async def race():
        return await asyncio.gather(*(client._register(prosody.c2s_port, jid(f"racer{i}"), "pw-123456",
                                                       preauth_element(inv["token"]), 60) for i in range(32)))

    results = asyncio.run(race())
    assert sum(r.ok for r in results) == 1
    winners = [i for i, r in enumerate(results) if r.ok]
    assert client.login(prosody.c2s_port, jid(f"racer{winners[0]}"), "pw-123456")


@pytest.mark.parametrize("token", ["garbage", "A" * 10_240, "' OR 1=1; DROP TABLE invites; --", "&lt;x&gt;"])
def test_bad_tokens_are_refused_cleanly(prosody, token):
    r = register(prosody.c2s_port, jid("badtoken"), "pw-123456", preauth_xml=f"<preauth xmlns='urn:xmpp:pars:0' token=\"{token}\"/>")
    assert r.preauth[:2] == ("cancel", "item-not-found")
    assert r.error[:2] == ("cancel", "not-allowed")
    assert prosody.running()


def test_missing_token_attribute_is_a_bad_request(prosody):
    s = RawStream(prosody.c2s_port, HOST)
    try:
        reply = s.iq("p1", "<preauth xmlns='urn:xmpp:pars:0'/>")
        assert "type='error'" in reply or 'type="error"' in reply
        assert error_condition(reply) == "bad-request"
    finally:
        s.close()


def test_non_utf8_bytes_close_only_that_stream(prosody):
    s = RawStream(prosody.c2s_port, HOST)
    s.send(b"<iq type='set' id='x'><preauth xmlns='urn:xmpp:pars:0' token='\xff\xfe\xfd'/></iq>")
    assert s.closed_by_server()
    assert "not-well-formed" in s.buffer.decode(errors="replace") or s.buffer == b""
    s.close()
    # Other clients are still served.
    assert client.login(prosody.c2s_port, jid("admin"), "admin-pass")
    assert prosody.running()


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


def test_password_reset_invite_sets_a_new_password(prosody):
    prosody.create_user("forgetful", "old-pass")
    inv = invite(prosody, "--kind", "reset", "--username", "forgetful")
    # Without the invite, the name is simply taken.
    assert register(prosody.c2s_port, jid("forgetful"), "new-pass", token=invite(prosody)["token"]).error[:2] == (
        "cancel", "conflict")
    r = register(prosody.c2s_port, jid("forgetful"), "new-pass", token=inv["token"])
    assert r.ok, r
    assert client.login(prosody.c2s_port, jid("forgetful"), "new-pass")
    assert not client.login(prosody.c2s_port, jid("forgetful"), "old-pass")
    # Spent: a second reset with the same token is refused.
    assert not register(prosody.c2s_port, jid("forgetful"), "third-pass", token=inv["token"]).ok
