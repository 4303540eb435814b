"""The hosted domain's users (issue 14): the shared roster and the owner's ad-hoc commands, run
against every server (see test_prosody_users.py, test_ejabberd_users.py) with a real client.

Both servers take who may manage which accounts, and who is in whose roster, from the one core,
so a client must see the same answers from each. A test module provides a `server` fixture (a
UsersServer) with two hosted domains: `host`, owned by boss@host, and `other`, owned by
bob@other; `admin` is one of the operator's admins.
"""

import asyncio
import json
from dataclasses import dataclass
from typing import Callable
from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from harness import client
from harness.common import run_cli

COMMANDS = "http://jabber.org/protocol/commands"
DATA = "jabber:x:data"
NODE = "urn:xmpp-hosting:users#"
PASSWORD = "pw-123456-users"


class RosterPushes:
    """The roster pushes a client gets, as (jid, subscription) in arrival order, and a wait for
    one of them (the two shared-roster watcher scenarios follow a switch this way)."""

    def __init__(self, c):
        self.items, self._changed = [], asyncio.Event()
        # The last push of each contact: (subscription, ask), ask "subscribe" while a request
        # the user sent is pending.
        self.last = {}
        c.add_event_handler("roster_update", self._on_push)

    def _on_push(self, iq):
        for j, item in iq["roster"]["items"].items():
            self.items.append((str(j), item["subscription"]))
            self.last[str(j)] = (item["subscription"], item["ask"])
        self._changed.set()

    async def until(self, wanted):
        await self._until(lambda: wanted in self.items)

    async def until_last(self, contact, state):
        await self._until(lambda: self.last.get(contact) == state)

    async def _until(self, seen):
        while not seen():
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 60)  # a guard against a hang, not a measurement


@dataclass
class UsersServer:
    host: str
    other: str
    c2s_port: int
    database: object
    # add_user(username, password, host)
    add_user: Callable[[str, str, str], None]
    admin: str  # a bare JID the server counts as the operator's admin (password PASSWORD)


def jid(user, host):
    return f"{user}@{host}"


def cli(server, *args, check=True):
    return run_cli(server.database, *args, check=check)


def prepare(server: UsersServer):
    """Both domains hosted and owned, as after their owners' DNS proofs (recorded as the
    operator's override: no DNS on loopback), and their users created."""
    for domain, owner in ((server.host, "boss"), (server.other, "bob")):
        added = cli(server, "domain", "add", domain, check=False)
        assert added.returncode == 0 or "already exists" in added.stderr, added.stderr
        cli(server, "domain", "claim", domain, "--account", jid(owner, domain))
        cli(server, "domain", "override", domain, "--account", jid(owner, domain), "--reason", "test: proof on loopback")
        server.add_user(owner, PASSWORD, domain)
    for user in ("carol", "dave"):
        server.add_user(user, PASSWORD, server.host)
    server.add_user("eve", PASSWORD, server.other)


async def _command(c, to, node, action="execute", sessionid=None, fields=None):
    """One XEP-0050 request; the reply's <command/>, or ('error', condition, text)."""
    iq = c.Iq()
    iq["type"], iq["to"] = "set", to
    cmd = ET.Element(f"{{{COMMANDS}}}command", {"node": node, "action": action})
    if sessionid:
        cmd.set("sessionid", sessionid)
    if fields is not None:
        x = ET.SubElement(cmd, f"{{{DATA}}}x", {"type": "submit"})
        for var, value in fields.items():
            f = ET.SubElement(x, f"{{{DATA}}}field", {"var": var})
            ET.SubElement(f, f"{{{DATA}}}value").text = value
    iq.append(cmd)
    try:
        reply = await iq.send(timeout=15)
    except IqError as e:
        return ("error", e.iq["error"]["condition"], e.iq["error"]["text"])
    return reply.xml.find(f"{{{COMMANDS}}}command")


def _outcome(cmd) -> dict:
    if isinstance(cmd, tuple):
        return {"error": cmd[1], "text": cmd[2]}
    notes = [n.text for n in cmd.findall(f"{{{COMMANDS}}}note")]
    values = {f.get("var"): [v.text for v in f.findall(f"{{{DATA}}}value")] for f in cmd.iter(f"{{{DATA}}}field")}
    return {"status": cmd.get("status"), "notes": notes, "fields": values}


async def _run(c, to, node, fields=None):
    first = await _command(c, to, node)
    if isinstance(first, tuple) or fields is None or first.get("status") != "executing":
        return _outcome(first)
    return _outcome(await _command(c, to, node, "complete", first.get("sessionid"), fields))


def command(server, who: str, to: str, action: str, fields: dict | None = None, password=PASSWORD) -> dict:
    """`who` runs the users command `action` on `to`, submitting `fields` at the second stage."""
    return asyncio.run(client._session(server.c2s_port, who, password,
                                       lambda c: _run(c, to, NODE + action, fields), 30))


async def _roster_of(c):
    await c.get_roster()
    return {str(j): c.client_roster[j]["subscription"] for j in c.client_roster if str(j) != c.boundjid.bare}


def account_fields(user_jid, password=None, again=None):
    fields = {"FORM_TYPE": "http://jabber.org/protocol/admin", "accountjid": user_jid}
    if password is not None:
        fields["password"] = password
        fields["password-verify"] = again if again is not None else password
    return fields


def listed(server, who, to):
    out = command(server, who, to, "list")
    assert out.get("status") == "completed", out
    return out["fields"]["accountjids"]


def domain_settings(server, domain):
    return json.loads(cli(server, "--json", "domain", "show", domain).stdout)["settings"]


@pytest.fixture
def shared_roster_off(server):
    cli(server, "domain", "settings", server.host, "shared_roster", "off")
    cli(server, "domain", "settings", server.other, "shared_roster", "off")
    yield
    cli(server, "domain", "settings", server.host, "shared_roster", "off")


async def _online_together(server, users, online, meanwhile):
    """Keeps a session open for each of `users`, running `online(c, ready)` in it; once every
    one has called `ready()` (its own setup done), runs `meanwhile()` (the switch from another
    process). Returns what `meanwhile` returned and each user's `online` result; sessions still
    open on a failure are cancelled."""
    loop = asyncio.get_running_loop()
    ready = {w: loop.create_future() for w in users}

    async def session(c):
        return await online(c, lambda: ready[c.boundjid.bare].set_result(True))

    sessions = [asyncio.ensure_future(client._session(server.c2s_port, w, PASSWORD, session, 150)) for w in users]
    try:
        await asyncio.wait_for(asyncio.gather(*ready.values()), 30)
        during = await meanwhile()
        return during, dict(zip(users, await asyncio.gather(*sessions)))
    finally:
        for t in sessions:
            t.cancel()


class UsersScenarios:
    # ---- everyone is in everybody else's contact list -------------------------------------

    def test_everyone_sees_everyone_of_their_domain_when_switched_on(self, server, shared_roster_off):
        carol, dave, eve = jid("carol", server.host), jid("dave", server.host), jid("eve", server.other)
        assert dave not in client.roster(server.c2s_port, carol, PASSWORD)
        out = cli(server, "domain", "settings", server.host, "shared_roster", "on")
        assert "shared_roster" in out.stdout
        assert domain_settings(server, server.host)["shared_roster"] is True
        mine = client.roster(server.c2s_port, carol, PASSWORD)
        assert mine.get(dave) == "both" and mine.get(jid("boss", server.host)) == "both", mine
        assert eve not in mine and jid("bob", server.other) not in mine
        assert client.roster(server.c2s_port, dave, PASSWORD).get(carol) == "both"
        # The other domain did not switch it on: its users see nobody, least of all carol.
        assert client.roster(server.c2s_port, eve, PASSWORD) == {}
        # Switched off: gone at the next login.
        cli(server, "domain", "settings", server.host, "shared_roster", "off")
        assert client.roster(server.c2s_port, carol, PASSWORD) == {}
        assert client.roster(server.c2s_port, dave, PASSWORD) == {}

    def test_a_new_user_appears_in_an_online_roster_without_a_relogin(self, server, shared_roster_off):
        cli(server, "domain", "settings", server.host, "shared_roster", "on")
        carol, newbie = jid("carol", server.host), jid("newbie", server.host)
        pushed = []

        async def watch(c):
            seen = asyncio.get_running_loop().create_future()

            def on_push(iq):
                for item in iq["roster"]["items"].items():
                    pushed.append((str(item[0]), item[1]["subscription"]))
                if any(j == newbie for j, _ in pushed) and not seen.done():
                    seen.set_result(True)
            c.add_event_handler("roster_update", on_push)
            await c.get_roster()
            assert newbie not in [str(j) for j in c.client_roster]
            # The owner creates the account while carol is online, from a session of their own.
            created = await client._session(server.c2s_port, jid("boss", server.host), PASSWORD,
                                            lambda b: _run(b, server.host, NODE + "create",
                                                           account_fields(newbie, "newbie-pass")), 30)
            assert created.get("status") == "completed", created
            await asyncio.wait_for(seen, 20)  # a guard against a hang, not a measurement
            subscription = c.client_roster[newbie]["subscription"]
            assert (await client._session(server.c2s_port, newbie, "newbie-pass", _roster_of, 30)).get(carol) == "both"
            # Deleted while carol is online: pushed out of her roster too.
            gone = asyncio.get_running_loop().create_future()
            c.add_event_handler("roster_update", lambda iq: gone.done() or any(
                str(j) == newbie and i["subscription"] == "remove" for j, i in iq["roster"]["items"].items())
                and gone.set_result(True))
            deleted = await client._session(server.c2s_port, jid("boss", server.host), PASSWORD,
                                            lambda b: _run(b, server.host, NODE + "delete", account_fields(newbie)), 30)
            assert deleted.get("status") == "completed", deleted
            await asyncio.wait_for(gone, 20)  # a guard against a hang, not a measurement
            return subscription

        try:
            assert asyncio.run(client._session(server.c2s_port, carol, PASSWORD, watch, 90)) == "both"
            assert (newbie, "both") in pushed
            assert newbie not in client.roster(server.c2s_port, carol, PASSWORD)
        finally:
            if client.login(server.c2s_port, newbie, "newbie-pass"):
                command(server, jid("boss", server.host), server.host, "delete", account_fields(newbie))

    def test_switching_reaches_users_online_at_the_time(self, server, shared_roster_off):
        """The setting switched from another process (the CLI) while carol and dave are online:
        each is pushed the other (on), then pushed out again (off), without a re-login; a
        contact dave has in his own roster stays his when the shared roster goes, with the
        subscription request he sent still pending (ejabberd's push used to drop it)."""
        carol, dave, boss = jid("carol", server.host), jid("dave", server.host), jid("boss", server.host)
        last_of = {}

        async def scenario():
            loop = asyncio.get_running_loop()
            got_on = {w: loop.create_future() for w in (carol, dave)}
            switched_off = loop.create_future()

            async def online(c, ready):
                me = c.boundjid.bare
                other = dave if me == carol else carol
                pushed = RosterPushes(c)
                pushes, until = pushed.items, pushed.until
                await c.get_roster()
                if me == dave:  # an item of his own, made before the shared roster came
                    saved = c.update_roster(boss, name="Boss", groups=["Work"])
                    if saved is not None:
                        await saved
                    # and a request to see boss's presence, pending: boss stays offline
                    c.send_presence(pto=boss, ptype="subscribe")
                    await pushed.until_last(boss, ("none", "subscribe"))
                ready()
                await until((other, "both"))
                got_on[me].set_result(list(pushes))
                await switched_off
                await until((other, "remove"))
                if me == dave:
                    await pushed.until_last(boss, ("none", "subscribe"))
                last_of[me] = dict(pushed.last)
                return pushes

            async def switch_on_then_off():
                await asyncio.to_thread(cli, server, "domain", "settings", server.host, "shared_roster", "on")
                on = dict(zip((carol, dave), await asyncio.wait_for(asyncio.gather(*got_on.values()), 90)))
                await asyncio.to_thread(cli, server, "domain", "settings", server.host, "shared_roster", "off")
                switched_off.set_result(True)
                return on

            return await _online_together(server, (carol, dave), online, switch_on_then_off)

        try:
            on, everything = asyncio.run(scenario())
            assert (dave, "both") in on[carol] and (carol, "both") in on[dave], on
            assert all(j.endswith("@" + server.host) for pushes in on.values() for j, _ in pushes), on
            assert (dave, "remove") in everything[carol] and (carol, "remove") in everything[dave], everything
            assert (boss, "both") in everything[carol] and (boss, "remove") in everything[carol], everything
            assert (boss, "remove") not in everything[dave], everything[dave]
            assert last_of[dave][boss] == ("none", "subscribe"), last_of[dave]
            # The stored rosters agree with what was pushed: dave keeps his own item, nobody else.
            assert client.roster(server.c2s_port, dave, PASSWORD) == {boss: "none"}
            assert client.roster(server.c2s_port, carol, PASSWORD) == {}
        finally:
            async def forget_boss(c):
                await c.get_roster()
                removed = c.del_roster_item(boss)
                if removed is not None:
                    await removed
            asyncio.run(client._session(server.c2s_port, dave, PASSWORD, forget_boss, 30))

    def test_a_change_to_another_setting_pushes_nothing(self, server, shared_roster_off):
        """With the shared roster on and carol and dave online, a change to another setting of
        the domain (its published bus factor) pushes them nothing for a watcher's look and more
        (the watchers used to treat any settings change as a switch and push every contact to
        every online user); a real switch after it still reaches them."""
        carol, dave = jid("carol", server.host), jid("dave", server.host)
        bus_factor = (domain_settings(server, server.host)["publication"].get("bus_factor") or 0) + 1

        async def scenario():
            loop = asyncio.get_running_loop()
            got_on = {w: loop.create_future() for w in (carol, dave)}
            looked = loop.create_future()

            async def online(c, ready):
                me = c.boundjid.bare
                other = dave if me == carol else carol
                pushed = RosterPushes(c)
                pushes, until = pushed.items, pushed.until
                await c.get_roster()
                ready()
                await until((other, "both"))
                # The server sent the switch's pushes in one go: a round trip after the first
                # one has them all arrive before what comes next is counted.
                await c.get_roster()
                after_on = len(pushes)
                got_on[me].set_result(True)
                await looked
                before_switch = pushes[after_on:]
                await until((other, "remove"))
                return before_switch, pushes

            async def switch_on_change_another_then_off():
                await asyncio.to_thread(cli, server, "domain", "settings", server.host, "shared_roster", "on")
                await asyncio.wait_for(asyncio.gather(*got_on.values()), 90)
                await asyncio.to_thread(cli, server, "domain", "settings", server.host,
                                        "publication.bus_factor", str(bus_factor))
                # Two of the watchers' intervals (5 s, the core's SETTINGS_WATCH_INTERVAL) and a
                # margin: at least one look has seen the change, whatever the watcher's phase.
                await asyncio.sleep(11)
                looked.set_result(True)
                await asyncio.to_thread(cli, server, "domain", "settings", server.host, "shared_roster", "off")

            return (await _online_together(server, (carol, dave), online, switch_on_change_another_then_off))[1]

        seen = asyncio.run(scenario())
        assert domain_settings(server, server.host)["publication"]["bus_factor"] == bus_factor
        for who, (before_switch, everything) in seen.items():
            other = dave if who == carol else carol
            assert before_switch == [], f"{who} was pushed {before_switch} for a change of another setting"
            assert (other, "remove") in everything, (who, everything)

    # ---- the owner manages the domain's users -----------------------------------------------

    def test_the_commands_are_listed_only_to_who_may_run_them(self, server):
        """Both servers list the users commands (XEP-0050 disco#items) only to the domain's
        owner and the operator's admins, as the core decides; the commands refuse anyone else
        too (below)."""
        def listed_to(who, domain=server.host):
            async def nodes(c):
                c.register_plugin("xep_0030")
                items = await c.plugin["xep_0030"].get_items(jid=domain, node=COMMANDS, timeout=15)
                return {node for _, node, _ in items["disco_items"]["items"]}
            return asyncio.run(client._session(server.c2s_port, who, PASSWORD, nodes, 30))

        ours = {NODE + a for a in ("create", "list", "password", "delete", "registration")}
        assert ours <= listed_to(jid("boss", server.host))
        assert ours <= listed_to(server.admin)
        assert not ours & listed_to(jid("carol", server.host))
        assert not ours & listed_to(jid("bob", server.other))
        assert ours <= listed_to(jid("bob", server.other), server.other)  # bob's own domain

    def test_a_command_node_is_described_only_to_who_may_run_it(self, server):
        """disco#info on a users command node (XEP-0050 3.2): its identity and features for the
        owner, `forbidden` for a plain user of the domain."""
        async def info(c):
            c.register_plugin("xep_0030")
            try:
                reply = await c.plugin["xep_0030"].get_info(jid=server.host, node=NODE + "list", timeout=15)
            except IqError as e:
                return e.iq["error"]["condition"]
            return ([(i[0], i[1]) for i in reply["disco_info"]["identities"]],
                    set(reply["disco_info"]["features"]))

        def asked_by(who):
            return asyncio.run(client._session(server.c2s_port, who, PASSWORD, info, 30))

        identities, features = asked_by(jid("boss", server.host))
        assert identities == [("automation", "command-node")] and {COMMANDS, DATA} <= features, (identities, features)
        assert asked_by(jid("carol", server.host)) == "forbidden"
        assert asked_by(jid("bob", server.other)) == "forbidden"

    def test_the_owner_creates_lists_repasswords_and_deletes_a_user(self, server):
        boss, made = jid("boss", server.host), jid("made", server.host)
        out = command(server, boss, server.host, "create", account_fields(made, "first-pass"))
        assert out["status"] == "completed" and out["notes"] == [f"{made} created"], out
        assert client.login(server.c2s_port, made, "first-pass")
        accounts = listed(server, boss, server.host)
        assert made in accounts and jid("carol", server.host) in accounts
        assert all(a.endswith("@" + server.host) for a in accounts), accounts
        assert accounts == sorted(accounts)

        out = command(server, boss, server.host, "password", account_fields(made, "second-pass"))
        assert out["status"] == "completed", out
        assert client.login(server.c2s_port, made, "second-pass")
        assert not client.login(server.c2s_port, made, "first-pass")

        out = command(server, boss, server.host, "delete", account_fields(made))
        assert out["status"] == "completed" and out["notes"] == [f"{made} deleted"], out
        assert not client.login(server.c2s_port, made, "second-pass")
        assert made not in listed(server, boss, server.host)

    def test_the_servers_answers_for_an_account_that_is_there_or_not(self, server):
        boss = jid("boss", server.host)
        carol, ghost = jid("carol", server.host), jid("ghost", server.host)
        assert command(server, boss, server.host, "create", account_fields(carol, "x-pass"))["error"] == "conflict"
        assert client.login(server.c2s_port, carol, PASSWORD), "carol's password is unchanged"
        assert command(server, boss, server.host, "delete", account_fields(ghost))["error"] == "item-not-found"
        assert command(server, boss, server.host, "password", account_fields(ghost, "x-pass"))["error"] == \
            "item-not-found"
        out = command(server, boss, server.host, "create", account_fields(ghost, "one-pass", "two-pass"))
        assert (out["error"], out["text"]) == ("bad-request", "the two passwords differ")
        assert command(server, boss, server.host, "create", account_fields("a b", "x-pass"))["error"] == "bad-request"
        assert not client.login(server.c2s_port, ghost, "one-pass")
        # The owner's own account stays: deleting it would leave the domain without its manager.
        assert command(server, boss, server.host, "delete", account_fields(boss))["error"] == "not-allowed"
        assert client.login(server.c2s_port, boss, PASSWORD)

    def test_a_user_and_the_owner_of_another_domain_are_forbidden(self, server):
        carol, bob = jid("carol", server.host), jid("bob", server.other)
        dave = jid("dave", server.host)
        for who, to, action, fields in [
            (carol, server.host, "list", None),
            (carol, server.host, "delete", account_fields(dave)),
            (bob, server.host, "list", None),
            (bob, server.host, "create", account_fields(jid("intruder", server.host), "x-pass")),
            (bob, server.host, "password", account_fields(dave, "x-pass")),
            (bob, server.host, "registration", {"policy": "open"}),
            # Through his own domain, naming an account of the other.
            (bob, server.other, "delete", account_fields(dave)),
            (bob, server.other, "password", account_fields(dave, "x-pass")),
        ]:
            out = command(server, who, to, action, fields)
            assert out.get("error") == "forbidden", (who, to, action, out)
        assert client.login(server.c2s_port, dave, PASSWORD)
        assert not client.login(server.c2s_port, jid("intruder", server.host), "x-pass")
        # bob manages his own domain.
        assert jid("eve", server.other) in listed(server, bob, server.other)
        assert jid("carol", server.host) not in listed(server, bob, server.other)

    def test_the_operators_admin_manages_any_domain(self, server):
        for domain in (server.host, server.other):
            assert jid("boss" if domain == server.host else "bob", domain) in listed(server, server.admin, domain)

    def test_the_owner_sets_who_may_register(self, server):
        boss = jid("boss", server.host)
        try:
            out = command(server, boss, server.host, "registration", {"policy": "open"})
            assert out["status"] == "completed", out
            assert domain_settings(server, server.host)["registration"]["policy"] == "open"
            out = command(server, boss, server.host, "registration", {"policy": "sometimes"})
            assert out["error"] == "bad-request", out
            assert domain_settings(server, server.host)["registration"]["policy"] == "open"
        finally:
            cli(server, "domain", "set", server.host, "registration.policy", "invite")
