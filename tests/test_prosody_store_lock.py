"""Another process holding the store's write lock must not stall Prosody's event loop.

The CLI, ejabberd on the same store, or a backup may hold SQLite's write lock for seconds. A
registration then waits for it on the core's worker, not on the loop: other sessions keep being
served meanwhile, and the registration succeeds once the lock is released. A slot request is
decided on the loop when the lock is free and otherwise by the worker once it is: the slot is
granted then, and the same session's pings are answered meanwhile. Nor do the other writes made
on the loop wait: a login counted for the statistics, the admin shell's invite purge settling
registrations that never finished, the upload component registering its directory; each is done
by the core's worker once the lock is free; so is forgetting an account removed in the server,
and so are the admin shell's write commands (domain, invite, quota, retention, cert import; cert
generate runs on the worker anyway), which the shell waits for. So are the retention module's
registration of a host's archive, the start of a sweep of internal storage and the record of its
steps, and the web panel's requests (a login's session, a job's start), which the HTTP request
waits for. With `xmpp_hosting_store_lock_timeout` shorter than the lock is held, a write someone
waits for fails with an error that says why, and one nobody waits for is tried again until the
lock is free.
"""

import json
import re
import socket
import sqlite3
import subprocess
import threading
import time

import pytest
import requests

from cert_scenarios import ThrowawayCA
from harness.client import RawStream, error_condition, login, preauth_element, register
from harness.common import LOOPBACK, LUA_CPATH_DIR, run_cli, wait_for_domain
from harness.prosody import Prosody, upload_component
import store_lock
from store_lock import reply_to

HOST = "locked.example"
SHARE = f"share.{HOST}"
PASSWORD = "pw-lock-123"


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    with Prosody(tmp_path_factory.mktemp("prosody-lock"), host=HOST,
                 host_modules=["xmpp_hosting_invites", "xmpp_hosting_publish", "xmpp_hosting_panel"],
                 options={"admins": [f"uploader@{HOST}"], "http_default_host": HOST},
                 extra_config=upload_component(SHARE, xmpp_hosting_upload_check_interval=1)) as server:
        wait_for_domain(server.database, HOST, log=server.log)
        server.create_user("uploader", PASSWORD)
        server.create_user("activist", PASSWORD)
        yield server


def lock_holder(prosody) -> sqlite3.Connection:
    """Another process's write lock on the store (the upload component checks its slots every
    second, so taking it may wait a moment)."""
    return store_lock.lock_holder(prosody.database)


def register_iq(username: str) -> bytes:
    return (f"<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{username}</username>"
            "<password>pw-123456</password></query></iq>").encode()


def read_available(stream: RawStream):
    """Reads what arrived on the stream so far, without waiting."""
    stream.sock.setblocking(False)
    try:
        stream.buffer += stream.sock.recv(65536)
    except BlockingIOError:
        pass
    finally:
        stream.sock.setblocking(True)


def test_a_registration_waits_for_a_held_lock_off_the_loop_and_then_succeeds(prosody):
    token = json.loads(run_cli(prosody.database, "--json", "invite", "create", HOST).stdout)["token"]
    registrant = RawStream(prosody.c2s_port, HOST)
    registrant.send(f"<iq type='set' id='pa'>{preauth_element(token)}</iq>".encode())
    assert "result" in reply_to(registrant, "pa")

    holder = lock_holder(prosody)
    try:
        registrant.send(register_iq("patient"))
        # The registration is now waiting for the lock somewhere. Prosody must still serve a new
        # stream (which needs its loop) while the registration stays unanswered: a loop waiting
        # on the lock would answer the new stream only after failing the registration.
        registrant.sock.settimeout(0.5)
        try:
            registrant.buffer += registrant.sock.recv(65536)
        except socket.timeout:
            pass
        registrant.sock.settimeout(10)
        assert b"'reg'" not in registrant.buffer, f"answered while the lock was held: {registrant.buffer!r}"
        other = RawStream(prosody.c2s_port, HOST, timeout=10)
        assert "<stream:features" in other.features
        read_available(registrant)
        assert b"'reg'" not in registrant.buffer, f"answered while the lock was held: {registrant.buffer!r}"
        other.close()
    finally:
        holder.execute("COMMIT")
        holder.close()

    reply = reply_to(registrant, "reg")
    assert "type='result'" in reply or 'type="result"' in reply, (reply, error_condition(reply))
    registrant.close()
    assert login(prosody.c2s_port, f"patient@{HOST}", "pw-123456")


def logged_in(port: int, username: str) -> RawStream:
    """A raw stream authenticated (SASL PLAIN) as username@HOST, with a bound resource."""
    return store_lock.logged_in(port, HOST, username, PASSWORD)


def slot_request(iq_id: str, size: int) -> bytes:
    return (f"<iq type='get' id='{iq_id}' to='{SHARE}'><request xmlns='urn:xmpp:http:upload:0' "
            f"filename='held.bin' size='{size}' content-type='application/octet-stream'/></iq>").encode()


def ping(iq_id: str) -> bytes:
    return f"<iq type='get' id='{iq_id}' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()


def test_a_slot_request_is_granted_once_a_held_lock_is_released_and_pings_are_answered_meanwhile(prosody):
    client = logged_in(prosody.c2s_port, "uploader")
    # With the lock free, the decision is made at once.
    client.send(slot_request("free", 1000))
    assert "<slot" in reply_to(client, "free")

    holder = lock_holder(prosody)
    try:
        client.send(slot_request("held", 2000))
        # The same session's pings are answered while the slot request waits for the lock: the
        # loop (and the session) go on. A loop waiting for the lock itself would answer the
        # slot first, with an error, once its own wait gave up.
        for n in range(3):
            client.send(ping(f"ping{n}"))
            assert "result" in reply_to(client, f"ping{n}")
        read_available(client)
        assert b"'held'" not in client.buffer and b'"held"' not in client.buffer, \
            f"answered while the lock was held: {client.buffer!r}"
    finally:
        holder.execute("COMMIT")
        holder.close()

    reply = reply_to(client, "held")
    assert "type='result'" in reply or 'type="result"' in reply, (reply, error_condition(reply))
    assert "<slot" in reply and "<put" in reply, reply
    # Counted like any other grant: both slots hold their bytes.
    usage = json.loads(run_cli(prosody.database, "--json", "quota", "show", HOST, "--user", "uploader").stdout)
    assert usage["usage"]["reserved"] == 3000, usage
    client.close()


def log_after(prosody, offset: int, *needles: str, until=lambda: False, timeout: float = 15) -> str:
    """The Prosody log written since `offset` (characters), once it contains one of `needles`
    (or `until()` holds): the sign that the work was handed to the worker, or that it failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = prosody.log_text()[offset:]
        if any(n in text for n in needles) or until():
            return text
        time.sleep(0.05)
    raise TimeoutError(f"none of {needles!r} in the Prosody log since the test began:\n{text[-3000:]}")


def pings_answered(client: RawStream, prefix: str):
    for n in range(3):
        client.send(ping(f"{prefix}{n}"))
        assert "result" in reply_to(client, f"{prefix}{n}")


def daily_active(prosody) -> int:
    page = json.loads(run_cli(prosody.database, "--json", "publish", "page", HOST).stdout)
    return page["statistics"]["daily_active"]


def shell_output(prosody, command: str) -> str:
    done = prosody.shell(command)
    return done.stdout + done.stderr


def behind_a_held_lock(prosody, client: RawStream, prefix: str, needle: str, work):
    """Runs `work()` in a thread while another process holds the store's write lock: the Prosody
    log must say that the work waits for the lock (`needle`: it was handed to the core's worker),
    the work must not end while the lock is held, and `client`'s pings must be answered meanwhile.
    Returns what `work()` returned, once the lock is released. (Done on the loop, the work would
    fail once the loop's short busy timeout gave up, and be answered while the lock is held.)"""
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=work()))
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    try:
        thread.start()
        log_after(prosody, offset, needle, until=lambda: not thread.is_alive())
        assert thread.is_alive(), f"answered while the lock was held: {out}"
        pings_answered(client, prefix)
        assert thread.is_alive(), f"answered while the lock was held: {out}"
    finally:
        holder.execute("COMMIT")
        holder.close()
        thread.join(60)
    assert "result" in out, "the work failed: see the exception above"
    return out["result"]


def shell_ok(prosody, command: str):
    """Runs `command` in Prosody's admin shell; it must not answer with an error."""
    out = prosody.shell(command).stdout
    assert "error" not in out.lower(), out


def handed_to_the_worker(prosody, prefix: str, act, waiting: str, done: str, *failures: str, client=None):
    """Runs `act()` (it returns at once) while another process holds the store's write lock: the
    Prosody log must say its store write waits for the lock on the core's worker (`waiting`),
    never one of `failures`, and `client`'s pings (else the client `act()` returned) must be
    answered meanwhile; once the lock is released the log must say `done`. Returns what `act()`
    returned. (Done on the loop, the write would fail once the loop's short busy timeout gave up.)"""
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    try:
        got = act()
        text = log_after(prosody, offset, waiting, *failures)
        assert not any(f in text for f in failures), text
        pings_answered(client or got, prefix)
    finally:
        holder.execute("COMMIT")
        holder.close()
    text = log_after(prosody, offset, done, *failures)
    assert not any(f in text for f in failures), text
    return got


def test_a_login_is_counted_off_the_loop_while_the_lock_is_held(prosody):
    """Issue 15: the login counted for the active-account statistics waits for no lock on the loop."""
    assert daily_active(prosody) in (0, 10)  # only "uploader" may have logged in before
    # The login was tried without waiting and handed to the core's worker; the session goes on
    # meanwhile.
    client = handed_to_the_worker(prosody, "login-ping", lambda: logged_in(prosody.c2s_port, "activist"),
                                  f"the login of activist@{HOST} is counted once it is free",
                                  f"Login of activist@{HOST} counted", "Cannot count the login")
    assert daily_active(prosody) == 10  # 1 or 2 accounts, shown approximately
    client.close()


def test_the_admin_shells_purge_settles_registrations_off_the_loop_while_the_lock_is_held(prosody):
    """Issue 11: the admin shell's purge settles registrations that never finished (checked in
    Prosody's account store) on the core's worker when another process holds the lock."""
    # Two uses, so the purge keeps the invite for its second.
    invite = json.loads(run_cli(prosody.database, "--json", "invite", "create", HOST, "--uses", "2").stdout)
    token = invite["token"]
    db = sqlite3.connect(prosody.database, timeout=10)
    try:
        # The account is created but its outcome never reaches the store.
        db.execute("CREATE TRIGGER xh_test_fail_finish BEFORE UPDATE OF state ON registrations "
                   "WHEN NEW.state = 'created' BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        db.commit()
        assert register(prosody.c2s_port, f"unreported@{HOST}", "pw-123456", token=token).ok
    finally:
        db.execute("DROP TRIGGER IF EXISTS xh_test_fail_finish")
        db.commit()
    aged = db.execute("UPDATE registrations SET started_at = started_at - 700 "
                      "WHERE state = 'pending' AND username = 'unreported'").rowcount
    db.commit()
    db.close()
    assert aged == 1

    client = logged_in(prosody.c2s_port, "uploader")
    # The purge waits for the lock off the loop; waiting on the loop, it would fail once the
    # loop's short busy timeout gave up, and the shell would answer with the error.
    out = behind_a_held_lock(prosody, client, "purge-ping",
                             "registration(s) that never finished are settled once it is free",
                             lambda: shell_output(prosody, "xmpp_hosting:invite_purge()"))
    assert "settled 1 registration(s)" in out, out
    # The account exists, so its use stays spent.
    listed = {i["id"]: i for i in json.loads(run_cli(prosody.database, "--json", "invite", "list", HOST).stdout)}
    assert listed[invite["invite"]["id"]]["uses_left"] == 1, listed
    client.close()


def test_the_upload_directory_is_registered_off_the_loop_while_the_lock_is_held(prosody):
    """Issue 11: mod_xmpp_hosting_uploads names its directory to the store (at load) on the core's
    worker when another process holds the lock."""
    client = logged_in(prosody.c2s_port, "uploader")
    # Loaded again, the module names its directory at its first check (a second later).
    handed_to_the_worker(prosody, "root-ping", lambda: shell_ok(prosody, f'module:reload("xmpp_hosting_uploads", "{SHARE}")'),
                         "is registered once it is free", "Watching the upload directory",
                         "Cannot watch the upload directory", client=client)
    # Slot requests are still decided and issued by the reloaded module.
    client.send(slot_request("after-reload", 500))
    assert "<slot" in reply_to(client, "after-reload")
    client.close()


def test_a_removed_account_is_forgotten_off_the_loop_while_the_lock_is_held(prosody):
    """Issue 11: an account removed inside the server (admin shell, in-band) loses its upload
    exceptions and invites on the core's worker when another process holds the lock."""
    prosody.create_user("leaver", PASSWORD)
    run_cli(prosody.database, "quota", "set", HOST, "max_file_size", "1000", "--user", "leaver")
    client = logged_in(prosody.c2s_port, "uploader")
    handed_to_the_worker(prosody, "removed-ping", lambda: prosody.delete_user("leaver"),
                         f"removed account leaver@{HOST} is forgotten once it is free",
                         f"Account leaver@{HOST} removed: 0 invite(s) revoked, upload exceptions dropped",
                         "Cannot forget removed account", client=client)
    client.close()


def in_shell_thread(prosody, command: str, outputs: dict) -> threading.Thread:
    """An admin shell command run in a thread of its own; its output lands in outputs[command]."""
    def run():
        done = prosody.shell(command)
        outputs[command] = done.stdout + done.stderr

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_admin_shells_writes_wait_for_a_held_lock_off_the_loop(prosody):
    """Issue 11: the admin shell's write commands (domain, invite, quota, retention) are made by the
    core's worker once another process's lock is free; the shell waits for them, the loop does not."""
    commands = {
        f'xmpp_hosting:domain_set("{HOST}", "registration.users_may_invite", "true")': "set_domain_setting",
        f'xmpp_hosting:quota_set("{HOST}", "user_daily", "7654321")': "set_upload_limit",
        f'xmpp_hosting:retention_set("{HOST}", "archive", "45d")': "set_retention",
        f'xmpp_hosting:invite_create("{HOST}", {{note = "made behind a lock"}})': "create_invite",
    }
    client = logged_in(prosody.c2s_port, "uploader")
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    outputs, shells = {}, []
    try:
        for command, method in commands.items():
            shells.append(in_shell_thread(prosody, command, outputs))
            # Made on the loop, the write would fail once the loop's short busy timeout gave up,
            # and the shell would answer with 'database is locked' while the lock is still held.
            log_after(prosody, offset, f"{method} is made once it is free", until=lambda: command in outputs)
            assert command not in outputs, f"answered while the lock was held: {outputs}"
        pings_answered(client, "shell-ping")
        assert not outputs, f"answered while the lock was held: {outputs}"
    finally:
        holder.execute("COMMIT")
        holder.close()
        for shell in shells:
            shell.join(60)
    for command in commands:
        assert "database is locked" not in outputs.get(command, "") and "OK" in outputs.get(command, ""), outputs
    shown = json.loads(run_cli(prosody.database, "--json", "domain", "show", HOST).stdout)
    assert shown["settings"]["registration"]["users_may_invite"] is True, shown
    quota = run_cli(prosody.database, "quota", "show", HOST).stdout
    assert "7654321" in quota or "7.3 MiB" in quota or "7.65 MB" in quota, quota
    retention = json.loads(run_cli(prosody.database, "--json", "retention", "show", HOST).stdout)
    assert "45d" in json.dumps(retention), retention
    invites = json.loads(run_cli(prosody.database, "--json", "invite", "list", HOST).stdout)
    assert any(i.get("note") == "made behind a lock" for i in invites), invites
    client.close()


def test_the_admin_shells_cert_commands_wait_for_a_held_lock_off_the_loop(prosody, tmp_path):
    """Issue 11: `cert generate` (made on the core's worker) and `cert import` (tried on the loop
    without waiting, else made by the worker) wait for another process's lock off the loop; the
    shell waits for them, pings are answered meanwhile, and both are stored once it is free. (`cert
    csr`, `check`, `show` and the installation only read the store, which WAL lets them do.)"""
    client = logged_in(prosody.c2s_port, "uploader")
    generate = f'xmpp_hosting:cert_generate("{HOST}")'
    out = behind_a_held_lock(prosody, client, "generate-ping", f"the certificate of {HOST} is made on the core's worker",
                             lambda: shell_output(prosody, generate))
    assert "database is locked" not in out and "OK" in out, out
    generated = json.loads(run_cli(prosody.database, "--json", "cert", "show", HOST).stdout)
    assert generated["source"] == "self-signed", generated

    # The CA's certificate for the key just made, imported while the lock is held.
    chain = tmp_path / "chain.pem"
    chain.write_text(ThrowawayCA(tmp_path / "ca").sign(run_cli(prosody.database, "cert", "csr", HOST).stdout))
    imported = f'xmpp_hosting:cert_import("{HOST}", {{"{chain}"}})'
    out = behind_a_held_lock(prosody, client, "import-ping", "import_certificate is made once it is free",
                             lambda: shell_output(prosody, imported))
    assert "database is locked" not in out and "OK" in out, out
    shown = json.loads(run_cli(prosody.database, "--json", "cert", "show", HOST).stdout)
    assert shown["source"] == "imported", shown
    client.close()


def fire_from_a_timer(event: str, fields: str) -> str:
    """Admin-shell Lua (the leading '>' runs it in Prosody's own environment) that fires a global
    event from a timer, outside any runner, as the housekeeping pass fires xmpp-hosting/retention-due."""
    return (f'>require "util.timer".add_task(0, function() prosody.events.fire_event("{event}", {{{fields}}}) end)'
            ' return "fired"')


def test_the_retention_of_internal_storage_waits_for_a_held_lock_off_the_loop(prosody):
    """Issue 11: mod_xmpp_hosting_retention registers the host's archive as it loads, begins a sweep
    of internal storage (from the housekeeping pass's event, or the admin shell's command) and
    records each step on the core's worker while another process holds the lock."""
    run_cli(prosody.database, "retention", "set", HOST, "archive", "30d")
    client = logged_in(prosody.c2s_port, "uploader")
    out = prosody.shell(f'module:load("mam", "{HOST}")').stdout
    assert "error" not in out.lower(), out
    handed_to_the_worker(prosody, "register-ping",
                         lambda: shell_ok(prosody, f'module:load("xmpp_hosting_retention", "{HOST}")'),
                         f"the archive of {HOST} is registered for retention once it is free",
                         f"Retention of {HOST}: archive in prosody_internal", "Cannot register the archive",
                         client=client)

    def fired(event, fields):
        out = prosody.shell(fire_from_a_timer(event, fields))
        assert "fired" in out.stdout, out

    # The pass's event (fired outside any runner): the sweep begins once the lock is free.
    handed_to_the_worker(prosody, "due-ping",
                         lambda: fired("xmpp-hosting/retention-due", f'domain = "{HOST}", kind = "archive"'),
                         f"the sweep of {HOST} archive begins once it is free", "Retention: ",
                         f"Retention sweep of {HOST} archive:", "stopped:", client=client)

    # A dry run (begun at once: it writes nothing until its end): its last step's record waits
    # for the lock on the worker.
    handed_to_the_worker(prosody, "dry-ping",
                         lambda: fired("xmpp-hosting/retention-sweep-now",
                                       f'domain = "{HOST}", kind = "archive", dry_run = true'),
                         "is recorded once it is free", "Retention: ", "stopped:", client=client)

    # Fired in the admin shell's runner (as `retention sweep` does): the runner waits for the
    # sweep to begin, and answers with its number.
    out = behind_a_held_lock(prosody, client, "sweep-ping", f"the sweep of {HOST} archive begins once it is free",
                             lambda: shell_output(prosody, '>return prosody.events.fire_event('
                                                  f'"xmpp-hosting/retention-sweep-now", {{domain = "{HOST}", kind = "archive"}})'))
    assert re.search(r"\b\d+\b", out), out
    client.close()


def test_the_panels_login_and_job_start_wait_for_a_held_lock_off_the_loop(prosody):
    """Issue 11: the web panel's requests meet another process's lock without waiting on the loop:
    a login's session and a job's start are made by the core's worker once the lock is free, the
    HTTP request waits for that, and pings are answered meanwhile."""
    client = logged_in(prosody.c2s_port, "uploader")
    base = f"http://{LOOPBACK}:{prosody.http_port}/panel/"
    http = requests.Session()
    login = behind_a_held_lock(prosody, client, "login-ping", "the panel request is answered once it is free",
                               lambda: http.post(base + "api/login", json={"jid": f"uploader@{HOST}", "password": PASSWORD},
                                                 timeout=60))
    assert login.status_code == 200, login.text
    csrf = login.json()["csrf"]
    assert http.get(base + "api/session", timeout=30).json()["account"] == f"uploader@{HOST}"
    started = behind_a_held_lock(prosody, client, "job-ping", "the panel request is answered once it is free",
                                 lambda: http.post(base + f"api/domains/{HOST}/certificate/generate", json={},
                                                   headers={"X-CSRF-Token": csrf}, timeout=60))
    assert started.status_code == 202, started.text
    job = started.json()["job"]
    deadline = time.monotonic() + 60
    while (state := http.get(base + f"api/jobs/{job}", timeout=30).json())["state"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["state"] == "done", state
    client.close()


def test_a_host_loading_the_invite_module_is_added_off_the_loop_while_the_lock_is_held(prosody):
    """Issue 11: mod_xmpp_hosting_invites adds its host to the store as it loads (ensure_hosted) on
    the core's worker when another process holds the lock. Last in this file: it removes the host
    from the store first, so that loading must add it again."""
    run_cli(prosody.database, "domain", "remove", HOST)
    store_lock.past_the_removal_second(prosody.database, HOST)
    client = logged_in(prosody.c2s_port, "uploader")
    handed_to_the_worker(prosody, "hosted-ping", lambda: shell_ok(prosody, f'module:reload("xmpp_hosting_invites", "{HOST}")'),
                         f"{HOST} is added to it once it is free", f"Added {HOST} to the xmpp-hosting store",
                         "Cannot add", client=client)
    assert run_cli(prosody.database, "domain", "show", HOST, check=False).returncode == 0
    client.close()


def test_with_a_short_store_lock_timeout_waited_writes_fail_clearly_and_background_writes_are_made_later(
        tmp_path_factory):
    """Issue 11: `xmpp_hosting_store_lock_timeout` sets how long the core's worker waits for another
    process's lock. Past it, a write someone waits for (an admin command) fails with an error that
    says why, while pings are answered; a write nobody waits for (forgetting a removed account) is
    tried again by the worker and made once the lock is free, however long past the wait it was
    held. (A server of its own: the other tests here hold the lock longer than this wait.)"""
    with Prosody(tmp_path_factory.mktemp("prosody-lock-timeout"), host=HOST, host_modules=["xmpp_hosting_invites"],
                 options={"xmpp_hosting_store_lock_timeout": 1}) as server:
        wait_for_domain(server.database, HOST, log=server.log)
        server.create_user("uploader", PASSWORD)
        server.create_user("leaver", PASSWORD)
        run_cli(server.database, "quota", "set", HOST, "max_file_size", "1000", "--user", "leaver")
        client = logged_in(server.c2s_port, "uploader")
        forgotten = f"Account leaver@{HOST} removed: 0 invite(s) revoked, upload exceptions dropped"
        failed = "Cannot forget removed account"
        offset = len(server.log_text())
        holder = lock_holder(server)
        try:
            server.delete_user("leaver")
            text = log_after(server, offset, f"removed account leaver@{HOST} is forgotten once it is free", failed)
            assert failed not in text, text
            # Asked after the removal was handed to the worker, this command waits 1 s there and
            # fails: the removal's first try, older, has waited out its second too.
            out = shell_output(server, f'xmpp_hosting:domain_set("{HOST}", "registration.policy", "open")')
            assert "held elsewhere" in out and "for over 1 s" in out and "try it again" in out, out
            pings_answered(client, "timeout-ping")
            # Not given up, not made: it waits for the lock.
            assert failed not in server.log_text()[offset:], server.log_text()[offset:]
            assert forgotten not in server.log_text()[offset:]
        finally:
            holder.execute("COMMIT")
            holder.close()
        text = log_after(server, offset, forgotten, failed, timeout=90)
        assert failed not in text, text
        shown = json.loads(run_cli(server.database, "--json", "quota", "show", HOST, "--user", "leaver").stdout)
        assert "1000" not in json.dumps(shown.get("exceptions", shown)), shown
        # The command that failed changed nothing.
        policy = json.loads(run_cli(server.database, "--json", "domain", "show", HOST).stdout)
        assert policy["settings"]["registration"]["policy"] == "invite", policy
        client.close()


def test_a_store_lock_timeout_that_is_not_a_sane_number_of_seconds_is_refused_with_why(tmp_path):
    """The core checks `xmpp_hosting_store_lock_timeout`: nonsense leaves the store closed with a
    line that names the option and what it takes (here through prosodyctl, which reads it too)."""
    server = Prosody(tmp_path, host=HOST, options={"xmpp_hosting_store_lock_timeout": 0})
    done = server.ctl("mod_xmpp_hosting", "domain", "list")
    out = done.stdout + done.stderr
    assert "xmpp_hosting_store_lock_timeout is 0" in out and "from 0.1 to 3600" in out, out


LUA_RELEASE_BEHIND_A_LOCK = r"""
local xh = require "xmpp_hosting"
local h = assert(xh.open(arg[1], { busy_timeout = 0.01, lock_timeout = 0.1 }))
assert(h:add_domain("x.example"))
local grant = assert(h:authorize_upload("x.example", "alice", 1000))
assert(grant.decision == "granted", grant.decision)
io.write("granted\n"); io.flush()
assert(io.read("l") == "locked")
local pending = assert(h:release_upload_or_later(grant.id))
io.write("asked ", type(pending), "\n"); io.flush()
-- Well past the worker's 0.1 s wait for the lock before the lock is released.
os.execute("sleep 1")
io.write("waited\n"); io.flush()
assert(io.read("l") == "free")
while not pending:ready() do os.execute("sleep 0.05") end
print("result", pending:result())
print("reserved", h:upload_usage("x.example", "alice").reserved)
"""


def test_a_slots_release_behind_a_lock_held_past_the_workers_wait_is_made_once_it_is_free(tmp_path):
    """Issue 11.6: the upload module gives a slot's bytes back (mod_http_file_share did not issue
    it) through `release_upload_or_later`; behind a lock held longer than the worker's wait, the
    worker tries it again until the lock is free, instead of losing it and leaving the bytes
    reserved until the reservation expires. (Through the Lua binding the module calls.)"""
    script, db = tmp_path / "release.lua", tmp_path / "db.sqlite"
    script.write_text(LUA_RELEASE_BEHIND_A_LOCK)
    lua = subprocess.Popen(["lua5.4", str(script), str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           env={"LUA_CPATH_5_4": f"{LUA_CPATH_DIR}/?.so;;", "PATH": "/usr/bin:/bin"})
    try:
        assert lua.stdout.readline() == "granted\n", lua.stderr.read()
        holder = sqlite3.connect(db, timeout=30, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            lua.stdin.write("locked\n")
            lua.stdin.flush()
            assert lua.stdout.readline() == "asked userdata\n", "made at once although the lock was held"
            assert lua.stdout.readline() == "waited\n"
        finally:
            holder.execute("COMMIT")
            holder.close()
        out, err = lua.communicate("free\n", timeout=60)
    finally:
        lua.kill()
    assert lua.returncode == 0, err
    lines = dict(line.split("\t", 1) for line in out.splitlines())
    assert lines["result"] == "true", out
    assert lines["reserved"] == "0", out
