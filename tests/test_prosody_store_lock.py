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
generate runs on the worker anyway), which the shell waits for.
"""

import base64
import json
import re
import socket
import sqlite3
import threading
import time

import pytest

from cert_scenarios import ThrowawayCA
from harness.client import RawStream, error_condition, login, preauth_element, register
from harness.common import run_cli
from harness.prosody import Prosody, upload_component

HOST = "locked.example"
SHARE = f"share.{HOST}"
PASSWORD = "pw-lock-123"


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    with Prosody(tmp_path_factory.mktemp("prosody-lock"), host=HOST,
                 host_modules=["xmpp_hosting_invites", "xmpp_hosting_publish"],
                 extra_config=upload_component(SHARE, xmpp_hosting_upload_check_interval=1)) as server:
        # The module adds its host to the store as it loads, which may finish after the port opens.
        for _ in range(100):
            if run_cli(server.database, "domain", "show", HOST, check=False).returncode == 0:
                break
            time.sleep(0.1)
        server.create_user("uploader", PASSWORD)
        server.create_user("activist", PASSWORD)
        yield server


def lock_holder(prosody) -> sqlite3.Connection:
    """Another process's write lock on the store, held until COMMIT. Taking it may wait a moment
    for a write of the server's own (the upload component checks its slots every second)."""
    holder = sqlite3.connect(prosody.database, timeout=30, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def register_iq(username: str) -> bytes:
    return (f"<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{username}</username>"
            "<password>pw-123456</password></query></iq>").encode()


def reply_to(stream: RawStream, iq_id: str) -> str:
    """The whole IQ reply with `iq_id`, self-closing (a result) or not (an error)."""
    pattern = re.compile(rb"<iq[^>]*id=['\"]" + iq_id.encode() + rb"['\"][^>]*?(/>|>.*?</iq>)", re.S)
    while not (m := pattern.search(stream.buffer)):
        chunk = stream.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"stream closed before the reply to {iq_id}: {stream.buffer[-500:]!r}")
        stream.buffer += chunk
    return m.group(0).decode(errors="replace")


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
    stream = RawStream(port, HOST)
    plain = base64.b64encode(f"\0{username}\0{PASSWORD}".encode()).decode()
    stream.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
    stream.read_until(b"<success")
    stream.send(f"<?xml version='1.0'?><stream:stream to='{HOST}' xmlns='jabber:client' "
                "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".encode())
    stream.read_until(b"</stream:features>")
    stream.send(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert "result" in reply_to(stream, "bind")
    return stream


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


def test_a_login_is_counted_off_the_loop_while_the_lock_is_held(prosody):
    """Issue 15: the login counted for the active-account statistics waits for no lock on the loop."""
    assert daily_active(prosody) in (0, 10)  # only "uploader" may have logged in before
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    try:
        client = logged_in(prosody.c2s_port, "activist")
        # The login was tried without waiting and handed to the core's worker; the session
        # goes on meanwhile.
        text = log_after(prosody, offset, f"the login of activist@{HOST} is counted once it is free",
                         "Cannot count the login")
        assert "Cannot count the login" not in text, text
        pings_answered(client, "login-ping")
    finally:
        holder.execute("COMMIT")
        holder.close()
    text = log_after(prosody, offset, f"Login of activist@{HOST} counted")
    assert "Cannot count the login" not in text, text
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
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    purge = {}

    def run_purge():
        done = prosody.shell("xmpp_hosting:invite_purge()")
        purge.update(out=done.stdout + done.stderr)

    shell = threading.Thread(target=run_purge)
    try:
        shell.start()
        # The purge waits for the lock off the loop; waiting on the loop, it would fail once the
        # loop's short busy timeout gave up, and the shell would answer with the error.
        log_after(prosody, offset, "registration(s) that never finished are settled once it is free",
                  until=lambda: not shell.is_alive())
        assert shell.is_alive(), f"the purge finished while the lock was held: {purge}"
        pings_answered(client, "purge-ping")
        assert shell.is_alive(), f"the purge finished while the lock was held: {purge}"
    finally:
        holder.execute("COMMIT")
        holder.close()
        shell.join(60)
    assert "settled 1 registration(s)" in purge.get("out", ""), purge
    # The account exists, so its use stays spent.
    listed = {i["id"]: i for i in json.loads(run_cli(prosody.database, "--json", "invite", "list", HOST).stdout)}
    assert listed[invite["invite"]["id"]]["uses_left"] == 1, listed
    client.close()


def test_the_upload_directory_is_registered_off_the_loop_while_the_lock_is_held(prosody):
    """Issue 11: mod_xmpp_hosting_uploads names its directory to the store (at load) on the core's
    worker when another process holds the lock."""
    client = logged_in(prosody.c2s_port, "uploader")
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    try:
        # Loaded again, the module names its directory at its first check (a second later).
        out = prosody.shell(f'module:reload("xmpp_hosting_uploads", "{SHARE}")').stdout
        assert "error" not in out.lower(), out
        text = log_after(prosody, offset, "is registered once it is free", "Cannot watch the upload directory")
        assert "Cannot watch the upload directory" not in text, text
        pings_answered(client, "root-ping")
    finally:
        holder.execute("COMMIT")
        holder.close()
    text = log_after(prosody, offset, "Watching the upload directory")
    assert "Cannot watch the upload directory" not in text, text
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
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    try:
        prosody.delete_user("leaver")
        text = log_after(prosody, offset, f"removed account leaver@{HOST} is forgotten once it is free",
                         "Cannot forget removed account")
        assert "Cannot forget removed account" not in text, text
        pings_answered(client, "removed-ping")
    finally:
        holder.execute("COMMIT")
        holder.close()
    text = log_after(prosody, offset, f"Account leaver@{HOST} removed: 0 invite(s) revoked, upload exceptions dropped",
                     "Cannot forget removed account")
    assert "Cannot forget removed account" not in text, text
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
    outputs = {}
    generate = f'xmpp_hosting:cert_generate("{HOST}")'
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    try:
        shell = in_shell_thread(prosody, generate, outputs)
        log_after(prosody, offset, f"the certificate of {HOST} is made on the core's worker",
                  until=lambda: generate in outputs)
        pings_answered(client, "generate-ping")
        assert generate not in outputs, f"answered while the lock was held: {outputs}"
    finally:
        holder.execute("COMMIT")
        holder.close()
        shell.join(60)
    assert "database is locked" not in outputs.get(generate, "") and "OK" in outputs.get(generate, ""), outputs
    generated = json.loads(run_cli(prosody.database, "--json", "cert", "show", HOST).stdout)
    assert generated["source"] == "self-signed", generated

    # The CA's certificate for the key just made, imported while the lock is held.
    chain = tmp_path / "chain.pem"
    chain.write_text(ThrowawayCA(tmp_path / "ca").sign(run_cli(prosody.database, "cert", "csr", HOST).stdout))
    imported = f'xmpp_hosting:cert_import("{HOST}", {{"{chain}"}})'
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    try:
        shell = in_shell_thread(prosody, imported, outputs)
        # Made on the loop, the import would fail once the loop's short busy timeout gave up, and
        # the shell would answer 'database is locked' while the lock is still held.
        log_after(prosody, offset, "import_certificate is made once it is free", until=lambda: imported in outputs)
        assert imported not in outputs, f"answered while the lock was held: {outputs}"
        pings_answered(client, "import-ping")
        assert imported not in outputs, f"answered while the lock was held: {outputs}"
    finally:
        holder.execute("COMMIT")
        holder.close()
        shell.join(60)
    assert "database is locked" not in outputs.get(imported, "") and "OK" in outputs.get(imported, ""), outputs
    shown = json.loads(run_cli(prosody.database, "--json", "cert", "show", HOST).stdout)
    assert shown["source"] == "imported", shown
    client.close()


def test_a_host_loading_the_invite_module_is_added_off_the_loop_while_the_lock_is_held(prosody):
    """Issue 11: mod_xmpp_hosting_invites adds its host to the store as it loads (ensure_hosted) on
    the core's worker when another process holds the lock. Last in this file: it removes the host
    from the store first, so that loading must add it again."""
    run_cli(prosody.database, "domain", "remove", HOST)
    client = logged_in(prosody.c2s_port, "uploader")
    offset = len(prosody.log_text())
    holder = lock_holder(prosody)
    try:
        out = prosody.shell(f'module:reload("xmpp_hosting_invites", "{HOST}")').stdout
        assert "error" not in out.lower(), out
        text = log_after(prosody, offset, f"{HOST} is added to it once it is free", "Cannot add")
        assert "Cannot add" not in text, text
        pings_answered(client, "hosted-ping")
    finally:
        holder.execute("COMMIT")
        holder.close()
    text = log_after(prosody, offset, f"Added {HOST} to the xmpp-hosting store", "Cannot add")
    assert "Cannot add" not in text, text
    assert run_cli(prosody.database, "domain", "show", HOST, check=False).returncode == 0
    client.close()
