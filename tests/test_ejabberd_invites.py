"""Invite-only registration on the real ejabberd 23.01, driven by a real client (slixmpp).

The same scenarios as tests/test_prosody_invites.py: both servers take their decisions from the
one Rust core, so a client sees the same answers.
"""

import asyncio
import json
import time

import pytest

from harness import client
from harness.client import RawStream, error_condition, preauth_element, register
from harness.common import run_cli
from harness.ejabberd import Ejabberd

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


@pytest.fixture(autouse=True)
def invite_policy(ej):
    """Every test starts on the default policy: invite only."""
    cli(ej, "domain", "set", HOST, "registration", json.dumps({}))
    yield


def cli(ej, *args):
    return run_cli(ej.database, *args)


def invite(ej, *args) -> dict:
    return json.loads(cli(ej, "--json", "invite", "create", HOST, *args).stdout)


def jid(user):
    return f"{user}@{HOST}"


def uses_left(ej, invite_id):
    return [i["uses_left"] for i in json.loads(cli(ej, "--json", "invite", "list", HOST).stdout) if i["id"] == invite_id]


def test_module_added_its_host_to_the_store(ej):
    assert HOST in [d["name"] for d in json.loads(cli(ej, "--json", "domain", "list").stdout)]


def test_stream_features_announce_invites(ej):
    s = RawStream(ej.c2s_port, HOST)
    try:
        assert "urn:xmpp:invite" in s.features and "urn:xmpp:ibr-token:0" in s.features
    finally:
        s.close()


def test_registration_without_a_token_is_refused(ej):
    r = register(ej.c2s_port, jid("noinvite"), "pw-123456")
    assert r.error[:2] == ("cancel", "not-allowed")
    assert "requires an invite" in r.error[2]


def test_valid_token_registers_once(ej):
    inv = invite(ej)
    r = register(ej.c2s_port, jid("alice"), "alice-pass", token=inv["token"])
    assert (r.preauth, r.ok) == ("result", True), r
    assert client.login(ej.c2s_port, jid("alice"), "alice-pass")
    again = register(ej.c2s_port, jid("alice2"), "pw-123456", token=inv["token"])
    assert again.preauth[:2] == ("cancel", "item-not-found")
    assert again.error[:2] == ("cancel", "not-allowed")
    assert uses_left(ej, inv["invite"]["id"]) == [0]
    audit = json.loads(cli(ej, "--json", "invite", "audit", HOST).stdout)
    assert {"action": "redeemed", "actor": jid("alice")}.items() <= audit[0].items()


def test_failed_registration_gives_the_use_back(ej):
    ej.register("taken", "pw-123456")
    inv = invite(ej)
    r = register(ej.c2s_port, jid("taken"), "other-pass", token=inv["token"])
    assert r.error[:2] == ("cancel", "conflict")
    assert uses_left(ej, inv["invite"]["id"]) == [1]
    assert register(ej.c2s_port, jid("nottaken"), "pw-123456", token=inv["token"]).ok


def test_expired_token_is_refused(ej):
    inv = invite(ej, "--expires-in", "1")
    time.sleep(1.2)
    r = register(ej.c2s_port, jid("late"), "pw-123456", token=inv["token"])
    assert r.preauth[:2] == ("cancel", "item-not-found")
    assert not r.ok


def test_reserved_username_only_with_its_invite(ej):
    cli(ej, "domain", "set", HOST, "registration.policy", "open")
    inv = invite(ej, "--username", "carol")
    assert register(ej.c2s_port, jid("carol"), "pw-123456").error[:2] == ("cancel", "conflict")
    other = invite(ej)
    assert register(ej.c2s_port, jid("carol"), "pw-123456", token=other["token"]).error[:2] == ("cancel", "conflict")
    assert register(ej.c2s_port, jid("carol"), "pw-123456", token=inv["token"]).ok


def test_roster_invite_ends_with_mutual_subscription(ej):
    ej.register("inviter", "inviter-pass")
    inv = invite(ej, "--kind", "roster", "--inviter", jid("inviter"))
    assert register(ej.c2s_port, jid("friend"), "friend-pass", token=inv["token"]).ok
    assert client.roster(ej.c2s_port, jid("friend"), "friend-pass") == {jid("inviter"): "both"}
    assert client.roster(ej.c2s_port, jid("inviter"), "inviter-pass") == {jid("friend"): "both"}


def test_group_invite_admits_exactly_its_uses(ej):
    inv = invite(ej, "--uses", "3")
    results = [register(ej.c2s_port, jid(f"group{i}"), "pw-123456", token=inv["token"]).ok for i in range(4)]
    assert results == [True, True, True, False]


def test_closed_refuses_everything(ej):
    inv = invite(ej)
    cli(ej, "domain", "set", HOST, "registration.policy", "closed")
    r = register(ej.c2s_port, jid("closed1"), "pw-123456", token=inv["token"])
    assert r.error[:2] == ("cancel", "not-allowed") and "closed" in r.error[2]
    assert register(ej.c2s_port, jid("closed2"), "pw-123456").error[:2] == ("cancel", "not-allowed")


def test_open_obeys_the_per_ip_limits(ej):
    cli(ej, "domain", "set", HOST, "registration.policy", "open")
    cli(ej, "domain", "set", HOST, "registration.min_seconds_between_per_ip", "3600")
    assert register(ej.c2s_port, jid("open1"), "pw-123456").ok
    assert register(ej.c2s_port, jid("open2"), "pw-123456").error[:2] == ("wait", "policy-violation")
    assert register(ej.c2s_port, jid("open3"), "pw-123456", token=invite(ej)["token"]).ok


def test_password_reset_invite_sets_a_new_password(ej):
    ej.register("forgetful", "old-pass")
    inv = invite(ej, "--kind", "reset", "--username", "forgetful")
    assert register(ej.c2s_port, jid("forgetful"), "new-pass", token=inv["token"]).ok
    assert client.login(ej.c2s_port, jid("forgetful"), "new-pass")
    assert not client.login(ej.c2s_port, jid("forgetful"), "old-pass")
    assert not register(ej.c2s_port, jid("forgetful"), "third-pass", token=inv["token"]).ok


def test_racing_clients_with_one_single_use_token_create_one_account(ej):
    inv = invite(ej)

    async def race():
        return await asyncio.gather(*(client._register(ej.c2s_port, jid(f"racer{i}"), "pw-123456",
                                                       preauth_element(inv["token"]), 60) for i in range(32)))

    results = asyncio.run(race())
    assert sum(r.ok for r in results) == 1
    winner = next(i for i, r in enumerate(results) if r.ok)
    assert client.login(ej.c2s_port, jid(f"racer{winner}"), "pw-123456")


@pytest.mark.parametrize("token", ["garbage", "A" * 10_240, "' OR 1=1; DROP TABLE invites; --", "&lt;x&gt;"])
def test_bad_tokens_are_refused_cleanly(ej, token):
    r = register(ej.c2s_port, jid("badtoken"), "pw-123456",
                 preauth_xml=f"<preauth xmlns='urn:xmpp:pars:0' token=\"{token}\"/>")
    assert r.preauth[:2] == ("cancel", "item-not-found")
    assert r.error[:2] == ("cancel", "not-allowed")
    assert ej.is_running()


def test_missing_token_attribute_is_a_bad_request(ej):
    s = RawStream(ej.c2s_port, HOST)
    try:
        reply = s.iq("p1", "<preauth xmlns='urn:xmpp:pars:0'/>")
        assert error_condition(reply) == "bad-request"
    finally:
        s.close()


def test_non_utf8_bytes_close_only_that_stream(ej):
    s = RawStream(ej.c2s_port, HOST)
    s.send(b"<iq type='set' id='x'><preauth xmlns='urn:xmpp:pars:0' token='\xff\xfe\xfd'/></iq>")
    assert s.closed_by_server()
    s.close()
    ej.register("survivor", "pw-123456")
    assert client.login(ej.c2s_port, jid("survivor"), "pw-123456")


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
