"""The hosted domain's users on the real Prosody (0.12 or 13.0, as the session's target): the
shared roster and the owner's ad-hoc commands, driven by a real client (slixmpp). The scenarios
are shared with ejabberd (users_scenarios.py)."""

import asyncio
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from harness import client

from harness.common import run_cli
from harness.prosody import Prosody, lua_string
from users_scenarios import PASSWORD, UsersScenarios, UsersServer, prepare, shared_roster_off  # noqa: F401

HOST = "users.example"
OTHER = "other-users.example"
MODULES = ["xmpp_hosting_roster", "xmpp_hosting_users"]
# A host whose auth provider cannot list its accounts (mod_auth_insecure has no users()).
UNLISTED = "unlisted-users.example"


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    other = f"\nVirtualHost {lua_string(OTHER)}\n  modules_enabled = {{ {', '.join(map(lua_string, MODULES))} }}\n"
    other += (f"\nVirtualHost {lua_string(UNLISTED)}\n  modules_enabled = {{ {', '.join(map(lua_string, MODULES))} }}\n"
              "  authentication = \"insecure\"\n"
              "  insecure_open_authentication = \"Yes please, I know what I'm doing!\"\n")
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



def test_a_host_that_cannot_list_its_accounts_does_not_stop_the_watch(prosody, server, shared_roster_off):
    """The shared roster switched on a host whose auth provider cannot list accounts, with a user
    online there: the error is logged and the watcher goes on, so a switch on another host still
    reaches carol (an error used to end the timer for every host until a reload)."""
    carol, dave = f"carol@{HOST}", f"dave@{HOST}"

    async def scenario():
        loop = asyncio.get_running_loop()
        ready, done = {"open": loop.create_future(), "carol": loop.create_future()}, loop.create_future()

        async def stay(c):
            ready["open"].set_result(True)
            await done

        async def watch_pushes(c):
            pushes, changed = [], asyncio.Event()

            def on_push(iq):
                pushes.extend((str(j), item["subscription"]) for j, item in iq["roster"]["items"].items())
                changed.set()

            c.add_event_handler("roster_update", on_push)
            await c.get_roster()
            ready["carol"].set_result(True)
            while (dave, "both") not in pushes:
                changed.clear()
                await asyncio.wait_for(changed.wait(), 60)  # a guard against a hang, not a measurement
            return pushes

        sessions = [asyncio.ensure_future(client._session(prosody.c2s_port, f"anyone@{UNLISTED}", "any", stay, 150)),
                    asyncio.ensure_future(client._session(prosody.c2s_port, carol, PASSWORD, watch_pushes, 150))]
        try:
            await asyncio.wait_for(asyncio.gather(*ready.values()), 30)
            run_cli(prosody.database, "domain", "add", UNLISTED, check=False)
            run_cli(prosody.database, "domain", "settings", UNLISTED, "shared_roster", "on")
            run_cli(prosody.database, "domain", "settings", HOST, "shared_roster", "on")
            return await sessions[1]
        finally:
            done.done() or done.set_result(True)
            for t in sessions:
                t.cancel()

    try:
        assert (dave, "both") in asyncio.run(scenario())
        # Said in Prosody's log (the looks go in revision order: it came before carol's push).
        prosody.wait_for_log(f"Cannot bring online rosters of {UNLISTED}", 30)
    finally:
        run_cli(prosody.database, "domain", "remove", UNLISTED, check=False)


def test_listing_the_users_of_a_host_that_cannot_list_its_accounts_is_refused(prosody, server):
    """The owner's "List users" on a host whose auth provider has no users(): a stanza error that
    says why (the command used to call nil: a traceback in the log, and the IQ never answered)."""
    run_cli(prosody.database, "domain", "add", UNLISTED, check=False)

    async def list_users(c):
        iq = c.Iq()
        iq["type"], iq["to"] = "set", UNLISTED
        iq.append(ET.fromstring("<command xmlns='http://jabber.org/protocol/commands' "
                                "node='urn:xmpp-hosting:users#list' action='execute'/>"))
        try:
            await iq.send(timeout=10)
        except IqError as e:
            return (e.iq["error"]["type"], e.iq["error"]["condition"], e.iq["error"]["text"])
        return "answered without an error"

    try:
        said = asyncio.run(client._session(prosody.c2s_port, f"admin@{HOST}", PASSWORD, list_users, 30))
        assert said == ("cancel", "feature-not-implemented", "This server's authentication cannot list its accounts"), said
        assert "Traceback" not in prosody.log_text()
    finally:
        run_cli(prosody.database, "domain", "remove", UNLISTED, check=False)
