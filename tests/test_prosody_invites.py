"""Invite-only registration on the real Prosody 0.12, driven by a real client (slixmpp).

The scenarios shared with ejabberd are in invite_scenarios.py; Prosody's own extras (ad-hoc
commands, prosodyctl and the admin shell) are here.
"""

import ctypes
import json
import sqlite3
import subprocess
import time
from contextlib import closing

import pytest

from harness import client
from harness.client import RawStream, error_condition, preauth_element, register
from harness.common import LUA_CPATH_DIR, run_cli
from harness.prosody import Prosody
from invite_scenarios import InviteScenarios, ServerUnderTest, invite_only  # noqa: F401 (autouse fixture)
import store_lock

HOST = "invites.example"
PASSWORD = "pw-invites-123"


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    with Prosody(tmp_path_factory.mktemp("prosody-invites"), host=HOST, host_modules=["xmpp_hosting_invites"],
                 options={"admins": [f"admin@{HOST}"]}) as server:
        server.create_user("admin", "admin-pass")
        # The first housekeeping pass (a second after start) purges invites and settles stale
        # registrations too: the scenarios that age a registration must not race it.
        server.wait_for_log("Housekeeping pass done")
        yield server


@pytest.fixture(scope="module")
def server(prosody):
    return ServerUnderTest(prosody.host, prosody.c2s_port, prosody.database, prosody.create_user,
                           prosody.delete_user, prosody.running,
                           purge_invites=lambda: prosody.shell("xmpp_hosting:invite_purge()").stdout,
                           list_invites=lambda: prosody.ctl("mod_xmpp_hosting", "invite", "list", HOST).stdout,
                           log_text=prosody.log_text)


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


def test_a_roster_invite_from_an_account_deleted_by_prosodyctl_leaves_no_subscription_to_the_gone_inviter(prosody):
    """0.12's prosodyctl deluser runs in a process of its own, without the module, so the store
    still holds the invite: the new account registers, and no roster entry names the gone
    inviter. 13.0's runs user:delete in the running server, which the module sees: the invite
    goes with its inviter, as for any removal in the server."""
    prosody.create_user("offline-gone", "pw-123456")
    inv = json.loads(cli(prosody, "--json", "invite", "create", HOST, "--kind", "roster",
                         "--inviter", jid("offline-gone")).stdout)
    prosody.delete_user("offline-gone", in_server=False)
    arrival = register(prosody.c2s_port, jid("arrival"), "pw-123456", token=inv["token"])
    if prosody.deluser_runs_in_server:
        assert not arrival.ok and "The invite is not valid" in str(arrival.preauth), arrival
    else:
        assert arrival.ok, arrival
        assert client.roster(prosody.c2s_port, jid("arrival"), "pw-123456") == {}
    # The admin tells the store afterwards; nothing is left to revoke either way.
    assert "0 invite(s) revoked" in cli(prosody, "account", "removed", HOST, "offline-gone").stdout


def libexpat_defers_reparse() -> bool:
    """Whether the system libexpat, which Prosody parses with, holds back a tag that arrived over
    several reads until the input waiting for it has about doubled (the CVE-2023-52425 fix, Debian
    2.5.0-1+deb12u2 and later). Such a libexpat exports the switch that turns this off."""
    return hasattr(ctypes.CDLL("libexpat.so.1"), "XML_SetReparseDeferralEnabled")


def test_a_10_kb_token_alone_meets_prosodys_limit_for_streams_not_logged_in(prosody):
    """What a client sees when it sends a 10 KB token and nothing after it (the shared scenario adds
    whitespace so the token itself is judged). Prosody caps a stanza on a stream that has not logged
    in at c2s_unauthed_stanza_size_limit (10,000 bytes by default) and checks the cap against the
    bytes its parser has not consumed. With a deferring libexpat the 10.3 KB tag stays unconsumed,
    so the stream is closed with policy-violation; an older libexpat consumes it at once, the cap
    never sees it, and the token is refused as unknown. Either way the server goes on."""
    mod_c2s = prosody.target.path("usr/lib/prosody/modules/mod_c2s.lua")
    has_cap = "c2s_unauthed_stanza_size_limit" in mod_c2s.read_text()
    defers = libexpat_defers_reparse()
    if defers and not has_cap:
        pytest.skip("this Prosody has no cap for streams not logged in: the tag waits for more input")
    s = RawStream(prosody.c2s_port, HOST)
    try:
        s.send(f"<iq type='set' id='big'>{preauth_element('A' * 10_240)}</iq>".encode())
        if defers:
            assert s.closed_by_server()
            text = s.buffer.decode(errors="replace")
            assert "<policy-violation" in text and "<stanza-too-big" in text, text[-300:]
        else:
            assert error_condition(s.reply("big")) == "item-not-found"
    finally:
        s.close()
    assert prosody.running()
    assert client.login(prosody.c2s_port, jid("admin"), "admin-pass")


@pytest.mark.parametrize("args, message", [
    # Issue 10.3: each was a Lua traceback or serde's words ("untagged enum ExpiryRepr", a list of
    # internal field names); each is now one line in the admin's words, exit 1.
    (["revoke", HOST, "1.5"], 'an invite id is a whole number from 1 up, not "1.5"'),
    (["revoke", HOST, "99999999999999999999"], "an invite id is a whole number"),
    (["create", HOST, "--expires-in", "-5"], 'from 1 to 315360000 (ten years), or "never", not "-5"'),
    (["create", HOST, "--expires-in", "99999999999999"], "(ten years)"),
    (["create", HOST, "--bogusflag", "1"], 'unknown option "--bogusflag"; invite create takes --kind, --uses'),
    (["create", HOST, "--uses", "99999999999999999999"], "uses is a whole number from 1 to 100000"),
    (["create", HOST, "--uses"], "the option --uses needs a value"),
])
def test_prosodyctl_refuses_bad_invite_input_in_words(prosody, args, message):
    r = prosody.ctl("mod_xmpp_hosting", "invite", *args)
    assert r.returncode == 1, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    assert "traceback" not in (r.stdout + r.stderr).lower() and "ExpiryRepr" not in r.stderr
    assert "created_by" not in r.stderr


LUA_INVITE_BAD_INPUT = r"""
local xh = require "xmpp_hosting"
local h = assert(xh.open(arg[1]))
assert(h:add_domain("x.example"))
local function check(label, ok, ...) print(label, ok, ...) end
check("options-bogus", true, h:create_invite_from_options("x.example", { "--bogusflag", "1" }))
check("options-nil", pcall(h.create_invite_from_options, h, "x.example", nil))
check("revoke-float", true, h:revoke_invite("x.example", 1.5))
check("revoke-text", true, h:revoke_invite("x.example", "1.5"))
check("revoke-table", true, h:revoke_invite("x.example", {}))
check("settle-bad", true, h:settle_stale_registrations({ { id = "x", account_exists = true } }))
check("settle-empty", true, h:settle_stale_registrations({}))
check("stale", true, #h:stale_registrations(5))
check("hosted", true, h:ensure_hosted("x.example").added)
check("hosted-bad", true, h:ensure_hosted("a..b"))
print("survived")
"""


def test_lua_invite_calls_take_bad_input_cleanly(tmp_path):
    """The Lua calls behind prosodyctl's invite commands and the module: bad values are the core's
    words (nil, message, code), never a conversion error or a crash."""
    script = tmp_path / "bad.lua"
    script.write_text(LUA_INVITE_BAD_INPUT)
    r = subprocess.run(["lua5.4", str(script), str(tmp_path / "db.sqlite")], capture_output=True, text=True,
                       env={"LUA_CPATH_5_4": f"{LUA_CPATH_DIR}/?.so;;", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("\t", 1) for line in r.stdout.splitlines() if "\t" in line)
    assert 'unknown option "--bogusflag"' in lines["options-bogus"] and lines["options-bogus"].endswith("invalid-argument")
    assert lines["options-nil"].startswith("false\t")
    for label in ("revoke-float", "revoke-text", "revoke-table"):
        assert "an invite id is a whole number" in lines[label] and lines[label].endswith("invalid-argument"), lines[label]
    assert lines["settle-bad"].endswith("invalid-argument")
    assert lines["settle-empty"] == "true\t0"
    assert lines["stale"] == "true\t0"
    assert lines["hosted"] == "true\tfalse"
    assert lines["hosted-bad"].endswith("invalid-domain")
    assert "survived" in r.stdout


def presence_subscribe(to: str, token: str) -> bytes:
    return f"<presence to='{to}' type='subscribe'>{preauth_element(token)}</presence>".encode()


def ping_time(stream, iq_id: str) -> float:
    """Seconds until Prosody answers a ping sent on `stream`."""
    started = time.monotonic()
    stream.send(f"<iq type='get' id='{iq_id}' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>".encode())
    assert "result" in store_lock.reply_to(stream, iq_id)
    return time.monotonic() - started


def test_a_subscription_token_never_makes_the_loop_wait_for_another_process_lock(tmp_path):
    """XEP-0379 tokens come from anyone on the federation. While another process (the CLI, a
    backup) holds the store's write lock, a token that approves nothing is answered from a read,
    and one that does is approved by the core's worker once the lock is free; the loop serves
    the sender's ping meanwhile. (Before, every well-formed token waited on the loop for the
    lock, here for the 3 s busy timeout, and a valid one then failed: the request was left to
    the inviter.)"""
    with Prosody(tmp_path / "prosody", host=HOST, host_modules=["xmpp_hosting_invites"],
                 options={"xmpp_hosting_busy_timeout": 3}) as server:
        server.wait_for_log("Housekeeping pass done")
        for user in ("inviter", "sender"):
            server.create_user(user, PASSWORD)
        cli(server, "domain", "set", HOST, "registration.users_may_invite", "true")
        inv = json.loads(cli(server, "--json", "invite", "create", HOST, "--kind", "roster",
                             "--inviter", jid("inviter")).stdout)
        sender = store_lock.logged_in(server.c2s_port, HOST, "sender", PASSWORD)
        assert ping_time(sender, "warm") < 1.5
        holder = store_lock.lock_holder(server.database)
        try:
            sender.send(presence_subscribe(jid("inviter"), "AAAAAAAAAAAAAAAA"))
            took = ping_time(sender, "unknown")
            assert took < 1.5, f"the ping after an unknown token waited {took:.2f} s"
            sender.send(presence_subscribe(jid("inviter"), inv["token"]))
            took = ping_time(sender, "valid")
            assert took < 1.5, f"the ping after a valid token waited {took:.2f} s"
            assert "Cannot check the subscription token" not in server.log_text()
        finally:
            holder.execute("COMMIT")
            holder.close()
        deadline = time.monotonic() + 15
        while (got := client.roster(server.c2s_port, jid("inviter"), PASSWORD)) != {jid("sender"): "from"}:
            assert time.monotonic() < deadline, got
            time.sleep(0.2)
        listed = json.loads(cli(server, "--json", "invite", "list", HOST).stdout)
        assert [i["uses_left"] for i in listed if i["id"] == inv["invite"]["id"]] == [0]
        sender.close()


def test_a_store_failure_checking_a_token_is_a_server_error_and_logged(prosody):
    """A valid invite met by a failing store is not 'unknown, expired or already used': the
    client is told to try again later (wait/internal-server-error) and the log says why. The
    failure: the invites table renamed away by another connection for a moment."""
    token = json.loads(cli(prosody, "--json", "invite", "create", HOST).stdout)["token"]
    offset = len(prosody.log_text())
    with closing(sqlite3.connect(prosody.database, timeout=30, isolation_level=None)) as db:
        db.execute("ALTER TABLE invites RENAME TO invites_away")
        try:
            s = RawStream(prosody.c2s_port, HOST)
            try:
                reply = s.iq("pa", preauth_element(token))
            finally:
                s.close()
        finally:
            db.execute("ALTER TABLE invites_away RENAME TO invites")
    assert "type='wait'" in reply or 'type="wait"' in reply, reply
    assert error_condition(reply) == "internal-server-error", reply
    logged = prosody.log_text()[offset:]
    assert "Cannot check an invite token on" in logged and "invites" in logged, logged[-2000:]
    # The store back, the same token is good.
    assert register(prosody.c2s_port, jid("afterfailure"), "pw-123456", token=token).ok


def test_a_registration_another_module_refused_is_not_begun(tmp_path):
    """mod_register_limits (loaded by mod_register_ibr) refuses 127.0.0.1 here: its answer reaches
    the client, and the store begins no registration (no attempt counted, no invite use held and
    given back). Before, ours ran in no fixed order beside it and began one either way."""
    with Prosody(tmp_path / "prosody", host=HOST, host_modules=["xmpp_hosting_invites"],
                 options={"registration_blocklist": ["127.0.0.1", "::1", "::ffff:127.0.0.1"]}) as server:
        server.wait_for_log("Housekeeping pass done")
        inv = json.loads(cli(server, "--json", "invite", "create", HOST).stdout)

        def refused_by_the_blocklist(token):
            r = register(server.c2s_port, jid("blocked"), "pw-123456", token=token)
            assert not r.ok and r.error and r.error[1] == "forbidden", r
            assert "blocklisted" in (r.error[2] or ""), r

        refused_by_the_blocklist(inv["token"])
        with closing(sqlite3.connect(server.database, timeout=30)) as db:
            assert db.execute("SELECT count(*) FROM registrations").fetchone() == (0,)
        audit = json.loads(cli(server, "--json", "invite", "audit", HOST).stdout)
        assert [a["action"] for a in audit if a["invite_id"] == inv["invite"]["id"]] == ["created"], audit
        # Without a token our refusal (an invite is needed) does not replace theirs.
        refused_by_the_blocklist(None)
        assert "Registration of blocked" not in server.log_text()
