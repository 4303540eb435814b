"""Invite-only registration scenarios, run against every server (see test_*_invites.py).

Both servers take their decisions from the one core, so a client must see the same answers from
each; one list of scenarios keeps that promise checked. A test module subclasses InviteScenarios,
provides a `server` fixture (a ServerUnderTest) and imports `invite_only`, which resets the
domain to the default policy before each of its tests.
"""

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from harness import client
from harness.client import RawStream, error_condition, preauth_element, register, register_unreported
from harness.common import run_cli


@dataclass
class ServerUnderTest:
    """What the scenarios need from a server."""

    host: str
    c2s_port: int
    database: Path
    add_user: Callable[[str, str], None]
    remove_user: Callable[[str], None]
    running: Callable[[], bool]
    # The invite purge run inside the server (admin shell, ejabberdctl), and the server's own
    # invite listing; both print text.
    purge_invites: Callable[[], str] | None = None
    list_invites: Callable[[], str] | None = None
    # The server's log so far.
    log_text: Callable[[], str] | None = None

    def jid(self, user: str) -> str:
        return f"{user}@{self.host}"


@pytest.fixture(autouse=True)
def invite_only(server):
    """Every test starts on the default policy: invite only."""
    run_cli(server.database, "domain", "set", server.host, "registration", json.dumps({}))


class InviteScenarios:
    @staticmethod
    def cli(server, *args):
        return run_cli(server.database, *args)

    def invite(self, server, *args) -> dict:
        return json.loads(self.cli(server, "--json", "invite", "create", server.host, *args).stdout)

    def uses_left(self, server, invite_id):
        listed = json.loads(self.cli(server, "--json", "invite", "list", server.host).stdout)
        return [i["uses_left"] for i in listed if i["id"] == invite_id]

    def test_module_added_its_host_to_the_store(self, server):
        names = [d["name"] for d in json.loads(self.cli(server, "--json", "domain", "list").stdout)]
        assert server.host in names

    @staticmethod
    def raw_register(server, username: str, token: str | None = None) -> str:
        """Registers with exactly these characters (slixmpp would nodeprep the name first, as a
        well-behaved client does; an attacker's client does not). Returns the reply's condition,
        or "ok"."""
        s = RawStream(server.c2s_port, server.host)
        try:
            preauth = f"<iq type='set' id='pre'>{preauth_element(token)}</iq>" if token is not None else ""
            s.send((preauth + "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>" + username
                    + "</username><password>pw-123456-look</password></query></iq>").encode())
            # A result may be a self-closed <iq/>: read until the reply to 'reg' is whole.
            whole = re.compile(r"<iq\b[^>]*\bid=['\"]reg['\"][^>]*?(?:/>|>.*?</iq>)", re.S)
            while not (m := whole.search(s.buffer.decode(errors="replace"))):
                chunk = s.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(s.buffer[-300:])
                s.buffer += chunk
            return error_condition(m.group(0)) or "ok"
        finally:
            s.close()

    def test_look_alike_usernames_meet_reserved_blocked_and_held_names(self, server):
        """Issue 11.3: ejabberd registered admin+U+00AD, ro+U+200B+ot and carol+U+00AD as admin,
        root and carol, around the reserved and blocked lists and carol's named invite (here
        dora's: another scenario registers carol)."""
        self.cli(server, "domain", "set", server.host, "registration", json.dumps(
            {"policy": "open", "reserved_usernames": ["admin"], "blocked_usernames": ["root"]}))
        dora = self.invite(server, "--username", "dora")
        other = self.invite(server)
        assert self.raw_register(server, "admin\u00ad") == "conflict"
        assert self.raw_register(server, "ro\u200bot") == "conflict"
        assert self.raw_register(server, "dora\u00ad") == "conflict"
        assert self.raw_register(server, "DORA\u00ad", token=other["token"]) == "conflict"
        for name in ("admin", "root", "dora"):
            assert not client.login(server.c2s_port, server.jid(name), "pw-123456-look"), name
        # The invitee's own look-alike is the invited name, created as such.
        assert self.raw_register(server, "Dora\u00ad", token=dora["token"]) == "ok"
        assert client.login(server.c2s_port, server.jid("dora"), "pw-123456-look")

    def test_a_failed_report_never_gives_a_single_use_back(self, server):
        """Issue 11.7: the account was created but reporting it failed; once the registration is
        stale, the purge asks the server's account store and keeps the use spent."""
        inv = self.invite(server)
        register_unreported(server.c2s_port, server.jid("reported"), "pw-123456", inv["token"], server.database)
        # The admin reads why reporting failed, in the store's words (ejabberd prints the term
        # {store, <<"...">>} over two lines).
        why = r"(?i)cannot finish registration \d+: \W*(store\W+)?store error: injected failure"
        assert re.search(why, server.log_text()), server.log_text()[-3000:]
        out = server.purge_invites()
        assert "settled 1 registration(s)" in out, out
        r = register(server.c2s_port, server.jid("second"), "pw-123456", token=inv["token"])
        assert r.preauth[:2] == ("cancel", "item-not-found") and not r.ok
        assert client.login(server.c2s_port, server.jid("reported"), "pw-123456")
        assert not client.login(server.c2s_port, server.jid("second"), "pw-123456")

    def test_the_servers_listing_says_each_status_as_the_core_does(self, server):
        """Issue 10.4: the status and the line are the core's, on both servers and the CLI alike."""
        server.add_user("listinviter", "pw-123456")
        active = self.invite(server, "--expires-in", "3600", "--note", "family")
        used = self.invite(server)
        revoked = self.invite(server)
        self.cli(server, "invite", "revoke", server.host, str(revoked["invite"]["id"]))
        assert register(server.c2s_port, server.jid("listused"), "pw-123456", token=used["token"]).ok
        listed = {i["id"]: i for i in json.loads(self.cli(server, "--json", "invite", "list", server.host).stdout)}
        assert listed[active["invite"]["id"]]["status"] == "active"
        assert listed[used["invite"]["id"]]["status"] == "used-up"
        assert listed[revoked["invite"]["id"]]["status"] == "revoked"
        out = server.list_invites()
        for inv in (active, used, revoked):
            assert listed[inv["invite"]["id"]]["line"] in out, out
        line = listed[active["invite"]["id"]]["line"]
        assert " account active, 1/1 left, expires 20" in line and "Z, by admin" in line and "note: family" in line

    def test_stream_features_announce_invites(self, server):
        s = RawStream(server.c2s_port, server.host)
        try:
            assert "urn:xmpp:invite" in s.features and "urn:xmpp:ibr-token:0" in s.features
        finally:
            s.close()

    def test_registration_without_a_token_is_refused(self, server):
        r = register(server.c2s_port, server.jid("noinvite"), "pw-123456")
        assert r.error[:2] == ("cancel", "not-allowed")
        assert "requires an invite" in r.error[2]

    def test_valid_token_registers_once(self, server):
        inv = self.invite(server)
        r = register(server.c2s_port, server.jid("alice"), "alice-pass", token=inv["token"])
        assert (r.preauth, r.ok) == ("result", True), r
        assert client.login(server.c2s_port, server.jid("alice"), "alice-pass")
        again = register(server.c2s_port, server.jid("alice2"), "pw-123456", token=inv["token"])
        assert again.preauth[:2] == ("cancel", "item-not-found")
        assert again.error[:2] == ("cancel", "not-allowed")
        assert self.uses_left(server, inv["invite"]["id"]) == [0]
        audit = json.loads(self.cli(server, "--json", "invite", "audit", server.host).stdout)
        assert {"action": "redeemed", "actor": server.jid("alice")}.items() <= audit[0].items()

    def test_failed_registration_gives_the_use_back(self, server):
        server.add_user("taken", "pw-123456")
        inv = self.invite(server)
        r = register(server.c2s_port, server.jid("taken"), "other-pass", token=inv["token"])
        assert r.error[:2] == ("cancel", "conflict")
        deadline = time.monotonic() + 5
        while self.uses_left(server, inv["invite"]["id"]) != [1] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.uses_left(server, inv["invite"]["id"]) == [1]
        assert register(server.c2s_port, server.jid("nottaken"), "pw-123456", token=inv["token"]).ok

    def test_expired_token_is_refused(self, server):
        inv = self.invite(server, "--expires-in", "1")
        time.sleep(1.2)
        r = register(server.c2s_port, server.jid("late"), "pw-123456", token=inv["token"])
        assert r.preauth[:2] == ("cancel", "item-not-found")
        assert not r.ok

    def test_reserved_username_only_with_its_invite(self, server):
        self.cli(server, "domain", "set", server.host, "registration.policy", "open")
        inv = self.invite(server, "--username", "carol")
        assert inv["uri"] == f"xmpp:carol@{server.host}?register;preauth={inv['token']}"
        assert register(server.c2s_port, server.jid("carol"), "pw-123456").error[:2] == ("cancel", "conflict")
        other = self.invite(server)
        r = register(server.c2s_port, server.jid("carol"), "pw-123456", token=other["token"])
        assert r.error[:2] == ("cancel", "conflict")
        assert register(server.c2s_port, server.jid("carol"), "pw-123456", token=inv["token"]).ok

    def test_roster_invite_ends_with_mutual_subscription(self, server):
        server.add_user("inviter", "inviter-pass")
        inv = self.invite(server, "--kind", "roster", "--inviter", server.jid("inviter"))
        assert inv["uri"] == f"xmpp:{server.jid('inviter')}?roster;preauth={inv['token']};ibr=y"
        assert register(server.c2s_port, server.jid("friend"), "friend-pass", token=inv["token"]).ok
        assert client.roster(server.c2s_port, server.jid("friend"), "friend-pass") == {server.jid("inviter"): "both"}
        assert client.roster(server.c2s_port, server.jid("inviter"), "inviter-pass") == {server.jid("friend"): "both"}

    def test_existing_account_subscribes_with_a_roster_invite(self, server):
        """XEP-0379: someone with an account opens the invite; no question reaches the inviter."""
        server.add_user("inviter2", "inviter-pass")
        server.add_user("known", "known-pass")
        inv = self.invite(server, "--kind", "roster", "--inviter", server.jid("inviter2"))
        got = client.subscribe_with_token(server.c2s_port, server.jid("known"), "known-pass",
                                          server.jid("inviter2"), inv["token"], until="both")
        assert got == "both"
        assert client.roster(server.c2s_port, server.jid("inviter2"), "inviter-pass") == {server.jid("known"): "both"}
        assert self.uses_left(server, inv["invite"]["id"]) == [0]
        audit = json.loads(self.cli(server, "--json", "invite", "audit", server.host).stdout)
        redeemed = [a["actor"] for a in audit if a["invite_id"] == inv["invite"]["id"] and a["action"] == "redeemed"]
        assert redeemed == [server.jid("known")]

    def test_a_spent_or_foreign_token_leaves_the_request_to_the_inviter(self, server):
        server.add_user("inviter3", "inviter-pass")
        server.add_user("someone", "someone-pass")
        server.add_user("stranger", "stranger-pass")
        inv = self.invite(server, "--kind", "roster", "--inviter", server.jid("someone"))
        # A token from someone else's invite: the request waits for inviter3, and the use is kept.
        with pytest.raises(TimeoutError):
            client.subscribe_with_token(server.c2s_port, server.jid("stranger"), "stranger-pass",
                                        server.jid("inviter3"), inv["token"], until="both", timeout=3)
        assert client.subscription_request_from(server.c2s_port, server.jid("inviter3"), "inviter-pass",
                                                server.jid("stranger"))
        assert client.roster(server.c2s_port, server.jid("inviter3"), "inviter-pass") == {}
        assert self.uses_left(server, inv["invite"]["id"]) == [1]

    def test_a_removed_account_leaves_no_invite_acting_for_it(self, server):
        server.add_user("leaving", "leaving-pass")
        server.add_user("late", "late-pass")
        into_roster = self.invite(server, "--kind", "roster", "--inviter", server.jid("leaving"))
        reset = self.invite(server, "--kind", "reset", "--username", "leaving")
        other = self.invite(server)
        server.remove_user("leaving")
        listed = {i["id"]: i for i in json.loads(self.cli(server, "--json", "invite", "list", server.host).stdout)}
        assert listed[into_roster["invite"]["id"]]["revoked_by"] == "server"
        assert listed[reset["invite"]["id"]]["revoked_by"] == "server"
        assert listed[other["invite"]["id"]]["revoked_at"] is None
        with pytest.raises(TimeoutError):
            client.subscribe_with_token(server.c2s_port, server.jid("late"), "late-pass",
                                        server.jid("leaving"), into_roster["token"], until="both", timeout=3)
        r = register(server.c2s_port, server.jid("newcomer"), "pw-123456", token=into_roster["token"])
        assert r.preauth[:2] == ("cancel", "item-not-found") and not r.ok
        # A new account of the same name gets no password reset meant for the old one.
        server.add_user("leaving", "new-pass-123")
        assert not register(server.c2s_port, server.jid("leaving"), "reset-pass-1", token=reset["token"]).ok
        assert client.login(server.c2s_port, server.jid("leaving"), "new-pass-123")

    def test_group_invite_admits_exactly_its_uses(self, server):
        inv = self.invite(server, "--uses", "3")
        results = [register(server.c2s_port, server.jid(f"group{i}"), "pw-123456", token=inv["token"]).ok
                   for i in range(4)]
        assert results == [True, True, True, False]

    def test_closed_refuses_everything(self, server):
        inv = self.invite(server)
        self.cli(server, "domain", "set", server.host, "registration.policy", "closed")
        r = register(server.c2s_port, server.jid("closed1"), "pw-123456", token=inv["token"])
        assert r.error[:2] == ("cancel", "not-allowed") and "closed" in r.error[2]
        assert register(server.c2s_port, server.jid("closed2"), "pw-123456").error[:2] == ("cancel", "not-allowed")

    def test_open_obeys_the_per_ip_limits(self, server):
        self.cli(server, "domain", "set", server.host, "registration.policy", "open")
        self.cli(server, "domain", "set", server.host, "registration.min_seconds_between_per_ip", "3600")
        assert register(server.c2s_port, server.jid("open1"), "pw-123456").ok
        assert register(server.c2s_port, server.jid("open2"), "pw-123456").error[:2] == ("wait", "policy-violation")
        # An invite is not subject to the per-IP limits of open registration.
        assert register(server.c2s_port, server.jid("open3"), "pw-123456", token=self.invite(server)["token"]).ok

    def test_password_reset_invite_sets_a_new_password(self, server):
        server.add_user("forgetful", "old-pass")
        inv = self.invite(server, "--kind", "reset", "--username", "forgetful")
        # Without the reset invite, the name is simply taken.
        r = register(server.c2s_port, server.jid("forgetful"), "new-pass", token=self.invite(server)["token"])
        assert r.error[:2] == ("cancel", "conflict")
        assert register(server.c2s_port, server.jid("forgetful"), "new-pass", token=inv["token"]).ok
        assert client.login(server.c2s_port, server.jid("forgetful"), "new-pass")
        assert not client.login(server.c2s_port, server.jid("forgetful"), "old-pass")
        assert not register(server.c2s_port, server.jid("forgetful"), "third-pass", token=inv["token"]).ok

    def test_racing_clients_with_one_single_use_token_create_one_account(self, server):
        inv = self.invite(server)

        async def race():
            return await asyncio.gather(*(client._register(server.c2s_port, server.jid(f"racer{i}"), "pw-123456",
                                                           preauth_element(inv["token"]), 60) for i in range(32)))

        results = asyncio.run(race())
        assert sum(r.ok for r in results) == 1
        winner = next(i for i, r in enumerate(results) if r.ok)
        assert client.login(server.c2s_port, server.jid(f"racer{winner}"), "pw-123456")

    @pytest.mark.parametrize("token", ["garbage", "' OR 1=1; DROP TABLE invites; --", "&lt;x&gt;"])
    def test_bad_tokens_are_refused_cleanly(self, server, token):
        r = register(server.c2s_port, server.jid("badtoken"), "pw-123456",
                     preauth_xml=f"<preauth xmlns='urn:xmpp:pars:0' token=\"{token}\"/>")
        assert r.preauth[:2] == ("cancel", "item-not-found")
        assert r.error[:2] == ("cancel", "not-allowed")
        assert server.running()

    def test_a_10_kb_token_is_refused_cleanly(self, server):
        """A 10 KB token reaches the module, is refused as unknown, and the stream and server go on.

        The whitespace after it is what makes this hold on every libexpat: since Debian's
        2.5.0-1+deb12u2 (the CVE-2023-52425 fix), a tag that arrives over several reads of the
        socket is parsed again only once the input waiting for it has about doubled. Prosody reads
        8 KiB at a time and ejabberd less, so the 10 KB tag waits. A client that sends nothing more
        gets no answer from ejabberd, which closes the stream as idle after 30 s (one-byte
        keepalives do not release the tag, nor does a following ping); Prosody closes it at once
        with policy-violation, as the unparsed bytes pass its 10,000-byte cap for a stream not yet
        logged in (test_prosody_invites.py checks that).
        Whitespace between stanzas is valid XMPP (it is what keepalives are) and gives the parser
        that input, so the token, not the parser's schedule, decides the answer."""
        s = RawStream(server.c2s_port, server.host)
        try:
            s.send(f"<iq type='set' id='big'>{preauth_element('A' * 10_240)}</iq>".encode() + b" " * 65_536)
            reply = s.reply("big")
            assert "type='error'" in reply or 'type="error"' in reply, reply[-300:]
            assert error_condition(reply) == "item-not-found" and "type='cancel'" in reply.replace('"', "'")
            # The same stream is still served: a registration without a valid token is refused as usual.
            reg = s.iq("reg", "<query xmlns='jabber:iq:register'><username>badtoken</username>"
                              "<password>pw-123456</password></query>")
            assert error_condition(reg) == "not-allowed"
        finally:
            s.close()
        assert server.running()

    def test_missing_token_attribute_is_a_bad_request(self, server):
        s = RawStream(server.c2s_port, server.host)
        try:
            assert error_condition(s.iq("p1", "<preauth xmlns='urn:xmpp:pars:0'/>")) == "bad-request"
        finally:
            s.close()

    def test_non_utf8_bytes_close_only_that_stream(self, server):
        s = RawStream(server.c2s_port, server.host)
        s.send(b"<iq type='set' id='x'><preauth xmlns='urn:xmpp:pars:0' token='\xff\xfe\xfd'/></iq>")
        assert s.closed_by_server()
        s.close()
        # Other clients are still served.
        server.add_user("survivor", "pw-123456")
        assert client.login(server.c2s_port, server.jid("survivor"), "pw-123456")
        assert server.running()
