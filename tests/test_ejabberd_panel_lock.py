"""The customer's web panel and the owner's users commands while another process holds the
store's write lock (the CLI, Prosody on the same store, a backup): on ejabberd their store calls
that may write (a panel request touching its session or changing a setting, a login's session
begun, the registration policy set by the users command) are tried at once without waiting for
the lock; while it is held, the core's worker makes them once it is free and the request's own
process waits for the answer in xmpp_hosting_nif:answer/1 (in `receive`, holding no scheduler).
Before, each waited up to the 2 s busy timeout on a dirty I/O scheduler (where OTP's file I/O runs
too) and then failed: the panel answered 503, the command `internal`."""

import threading
import time

import pytest

import store_lock
from harness.ejabberd import Ejabberd
from panel_scenarios import Client
from users_scenarios import PASSWORD, UsersServer, cli, command, domain_settings, prepare

HOST = "panel-lock.example"
OTHER = "other-panel-lock.example"

MODULES = f"""  mod_disco: {{}}
  mod_adhoc: {{}}
  mod_xmpp_hosting_users:
    access_operator:
      allow:
        user: "admin@{HOST}"
"""

@pytest.fixture(scope="module")
def ej(tmp_path_factory):
    with Ejabberd(tmp_path_factory.mktemp("ejabberd-panel-lock"), host=HOST, extra_hosts=[OTHER], install="config",
                  extra_modules=MODULES, http_handlers={"/panel": "mod_xmpp_hosting_panel"}) as node:
        yield node


@pytest.fixture(scope="module")
def server(ej):
    """HOST owned by boss, OTHER by bob (users_scenarios.prepare)."""
    s = UsersServer(HOST, OTHER, ej.c2s_port, ej.database, lambda u, p, h: ej.register(u, p, h), f"admin@{HOST}")
    prepare(s)
    return s


def in_background(call):
    """Runs `call` on a thread of its own: the thread and a dict that gets its `value` (or `error`)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 (shown by the test)
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def until_a_process_waits_in_answer(ej, timeout: float = 20):
    waiting = store_lock.processes_in_answer(ej, 1, timeout)
    assert waiting >= 1, f"no process of the node waits in xmpp_hosting_nif:answer/1: {store_lock.current_functions(ej)}"


def answered_once_the_lock_is_free(ej, call):
    """`call`'s value: made while another process holds the store's write lock, kept past a wait on
    a dirty scheduler (2 s, after which the old calls failed) without an answer, then answered
    once the lock is free."""
    holder = store_lock.lock_holder(ej.database)
    try:
        thread, outcome = in_background(call)
        until_a_process_waits_in_answer(ej)
        time.sleep(2.5)
        assert thread.is_alive() and not outcome, f"answered while the lock was held: {outcome}"
    finally:
        holder.execute("COMMIT")
        holder.close()
    thread.join(timeout=60)
    assert "value" in outcome, outcome
    return outcome["value"]


def test_a_panel_login_and_a_setting_changed_wait_for_a_held_lock_and_then_succeed(ej, server):
    c = Client(ej)
    r = answered_once_the_lock_is_free(ej, lambda: c.login(f"boss@{HOST}", PASSWORD))
    assert r.status_code == 200, r.text
    assert (r.json()["account"], r.json()["admin"]) == (f"boss@{HOST}", False), r.json()
    try:
        r = answered_once_the_lock_is_free(
            ej, lambda: c.post(f"api/domains/{HOST}/settings", {"registration.policy": "open"}))
        assert r.status_code == 200, r.text
        assert r.json()["settings"]["registration.policy"] == "open", r.json()
        assert domain_settings(server, HOST)["registration"]["policy"] == "open"
        # With the lock free, the session goes on as usual.
        assert c.get(f"api/domains/{HOST}/settings").json()["settings"]["registration.policy"] == "open"
    finally:
        cli(server, "domain", "set", HOST, "registration.policy", "invite")


def test_the_owners_registration_command_waits_for_a_held_lock_and_then_succeeds(ej, server):
    boss = f"boss@{HOST}"
    try:
        out = answered_once_the_lock_is_free(ej, lambda: command(server, boss, HOST, "registration",
                                                                 {"policy": "closed"}))
        assert out.get("status") == "completed", out
        assert any("closed" in (n or "") for n in out["notes"]), out
        assert domain_settings(server, HOST)["registration"]["policy"] == "closed"
    finally:
        cli(server, "domain", "set", HOST, "registration.policy", "invite")
