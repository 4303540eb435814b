"""Upload quotas on the real Prosody 0.12 with mod_http_file_share, driven by a real client and
real HTTP uploads. The scenarios are those of ejabberd (upload_scenarios.py); what only Prosody
does (slots awaited across a restart, disco#info) is tested here."""

import base64
import json
import socket
import time
from urllib.parse import unquote, urlsplit

import pytest

from harness.client import http_put, upload_max_file_size
from harness.clock import ServerClock
from harness.common import LOOPBACK, run_cli, wait_for_port
from harness.prosody import Prosody, upload_component
from upload_scenarios import PASSWORD, USERS, UploadScenarios, UploadServer, no_limits, wait_for  # noqa: F401

HOST = "uploads.example"
SHARE = f"share.{HOST}"

COMPONENT = upload_component(
    SHARE,
    # Slots outlive a restart only with a fixed secret (the default is random per start).
    http_file_share_secret="a-test-secret-that-outlives-restarts",
    xmpp_hosting_upload_check_interval=0.2,
    xmpp_hosting_upload_sweep_interval=0.5,
)


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    work = tmp_path_factory.mktemp("prosody-uploads")
    clock = ServerClock(work)
    server = Prosody(work, host=HOST, extra_config=COMPONENT, server_env=clock.env)
    server.clock = clock
    with server:
        run_cli(server.database, "domain", "add", HOST)
        for user in USERS:
            server.create_user(user, PASSWORD)
        yield server


def stored_file(p: Prosody, put_url: str):
    slot_id = put_url.rsplit("/", 2)[1]
    # Prosody's datamanager percent-encodes file names (base64url's - and _ included).
    [found] = [f for f in p.data.rglob("*.bin") if unquote(f.name) == f"{slot_id}.bin"]
    return found


def restart(p: Prosody):
    """Stops and starts Prosody; it opens its HTTP port after c2s on a restart, so both are
    waited for before a client uploads."""
    p.stop()
    p.start()
    wait_for_port(p.http_port, p.proc, log=p.log)


@pytest.fixture(scope="module")
def server(prosody):
    def restart_server():
        restart(prosody)

    return UploadServer(
        host=HOST, share=SHARE, c2s_port=prosody.c2s_port, http_port=prosody.http_port,
        database=prosody.database, clock=prosody.clock, running=prosody.running, restart=restart_server,
        file_of=lambda url: stored_file(prosody, url),
        # The datamanager encodes the host's dots in the directory name.
        commands_at=SHARE,
        files_root=prosody.data / SHARE.replace(".", "%2e") / "http_file_share",
    )


class TestProsodyUploads(UploadScenarios):
    pass


def test_a_slot_granted_before_a_restart_is_counted_after_it(prosody, server):
    scenarios = UploadScenarios()
    [slot] = scenarios.slots(server, "bob", {"filename": "late.bin", "size": 5})
    stored = scenarios.usage(server, "bob")["stored"]
    restart(prosody)
    assert http_put(prosody.http_port, slot.put_url, slot.headers, b"12345") == 201
    assert wait_for(lambda: scenarios.usage(server, "bob")["stored"] == stored + 5)


def test_disco_advertises_the_max_file_size_that_applies_to_the_user(prosody, server):
    def advertised(user):
        return upload_max_file_size(prosody.c2s_port, f"{user}@{HOST}", PASSWORD, SHARE)

    # The default largest file of every domain (100 MiB), below mod_http_file_share's 1e9.
    assert advertised("alice") == 104857600
    # No limit of ours: mod_http_file_share's own.
    run_cli(prosody.database, "quota", "set", HOST, "max_file_size", "null")
    assert advertised("alice") == 1000000000
    run_cli(prosody.database, "quota", "set", HOST, "max_file_size", "5000")
    assert advertised("alice") == 5000
    run_cli(prosody.database, "quota", "set", HOST, "max_file_size", "2000", "--user", "bob")
    try:
        assert advertised("bob") == 2000
        assert advertised("alice") == 5000
        # Larger than mod_http_file_share's: that one still refuses first, so it is the one shown.
        run_cli(prosody.database, "quota", "set", HOST, "max_file_size", "5000000000")
        assert advertised("alice") == 1000000000
    finally:
        run_cli(prosody.database, "quota", "clear", HOST, "bob")


def test_admins_set_and_show_limits_with_prosodyctl(prosody, server):
    scenarios = UploadScenarios()

    def quota(*args):
        return prosody.ctl("mod_xmpp_hosting", "quota", *args)

    def slot_for(user, size):
        [slot] = scenarios.slots(server, user, {"filename": "f.bin", "size": size})
        return slot

    assert quota("set", HOST, "max_file_size", "1000").returncode == 0
    assert quota("set", HOST, "max_file_size", "50000", "--user", "carol").returncode == 0
    try:
        assert slot_for("carol", 20000).ok
        assert slot_for("dave", 20000).max_file_size == 1000
        shown = quota("show", HOST, "carol")
        assert shown.returncode == 0
        assert f"carol@{HOST}\nLargest file: 50 kB\n" in shown.stdout
        assert "Largest file: 1 kB" in quota("show", HOST).stdout
        # The limits each user has by default are shown beside the domain-wide ones (issue 10.3).
        assert quota("set", HOST, "user_daily", "50000").returncode == 0
        assert "Each user, unless given an exception:\n" in quota("show", HOST).stdout
        assert "Exceptions to the domain's limits: largest file 50 kB" in quota("show", HOST, "carol").stdout
        bad = quota("set", HOST, "daily", "lots", "--user", "carol")
        assert bad.returncode == 1 and "not a number of bytes" in bad.stderr
        assert quota("set", HOST, "max_file_size", "1", "--usr", "carol").returncode == 1
    finally:
        assert quota("clear", HOST, "carol").returncode == 0
    assert slot_for("carol", 20000).max_file_size == 1000
    audit = quota("audit")
    assert audit.returncode == 0 and audit.stdout.endswith("The running totals match the files and slots\n")
    # Inside the server the recount runs on the core's worker while the shell's runner waits.
    in_server = prosody.shell("xmpp_hosting:quota_audit()")
    assert "The running totals match the files and slots" in in_server.stdout, in_server


class SlowPut:
    """A PUT whose body arrives in parts, as from a phone on a slow link. Prosody streams a body
    over http_max_content_size (10 MiB by default) into `<slot>.bin~` as it arrives, and renames
    it into place when the last byte is in."""

    def __init__(self, http_port: int, url: str, headers: dict, size: int):
        u = urlsplit(url)
        head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Host": u.netloc, "Content-Length": size,
                                                   "Content-Type": "application/octet-stream"}.items())
        self.size, self.sent = size, 0
        self.sock = socket.create_connection((LOOPBACK, http_port), timeout=30)
        self.sock.sendall(f"PUT {u.path} HTTP/1.1\r\n{head}\r\n".encode())

    def send(self, n: int):
        n = min(n, self.size - self.sent)
        self.sock.sendall(b"s" * n)
        self.sent += n

    def finish(self) -> int:
        """Sends the rest; the HTTP status."""
        while self.sent < self.size:
            self.send(1 << 20)
        status = self.sock.makefile("rb").readline().split()[1]
        self.sock.close()
        return int(status)


BIG = 11_000_000  # streamed: over Prosody's default http_max_content_size


def usage_of(server, user=None):
    scope = ("--user", user) if user else ()
    return json.loads(run_cli(server.database, "--json", "quota", "show", HOST, *scope).stdout)["usage"]


def global_stored(server):
    return json.loads(run_cli(server.database, "--json", "quota", "global").stdout)["usage"]["stored"]


def test_a_slow_upload_holds_its_reservation_until_its_last_byte(prosody, server):
    # Slots live two seconds here; the upload takes longer than that.
    run_cli(server.database, "domain", "set", HOST, "uploads", '{"user_storage": 20000000, "slot_lifetime": 2}')
    scenarios = UploadScenarios()
    [first] = scenarios.slots(server, "frank", {"filename": "big1.bin", "size": BIG})
    assert first.ok, first
    put = SlowPut(prosody.http_port, first.put_url, first.headers, BIG)
    for _ in range(8):  # four seconds, a megabyte at a time: still arriving after the slot expired
        put.send(1_000_000)
        time.sleep(0.5)
    [second] = scenarios.slots(server, "frank", {"filename": "big2.bin", "size": BIG})
    assert not second.ok and second.error[:2] == ("wait", "resource-constraint"), second
    assert usage_of(server, "frank")["reserved"] == BIG
    assert put.finish() == 201
    assert wait_for(lambda: [usage_of(server, "frank")[k] for k in ("stored", "reserved")] == [BIG, 0])
    # Once it is stored, the room left is what the limit says.
    [third] = scenarios.slots(server, "frank", {"filename": "big3.bin", "size": BIG})
    assert not third.ok and third.error[:2] == ("wait", "resource-constraint"), third
    [small] = scenarios.slots(server, "frank", {"filename": "small.bin", "size": 9_000_000})
    assert small.ok, small
    server.file_of(first.put_url).unlink()
    assert wait_for(lambda: usage_of(server, "frank")["stored"] == 0)


def test_an_upload_that_completes_hours_after_its_slot_expired_is_counted(prosody, server):
    scenarios = UploadScenarios()
    before = usage_of(server, "grace")["stored"]
    [slot] = scenarios.slots(server, "grace", {"filename": "late.bin", "size": BIG})
    assert slot.ok, slot
    put = SlowPut(prosody.http_port, slot.put_url, slot.headers, BIG)
    put.send(2_000_000)
    # Prosody is writing it (its token was checked when the upload started)...
    assert wait_for(lambda: any(server.files_root.glob("*.bin~")))
    # ...when two hours pass on the server's clock, the upload still arriving.
    server.clock.set_offset(2 * 3600)
    time.sleep(2)
    put.send(2_000_000)
    time.sleep(1)
    assert put.finish() == 201
    assert wait_for(lambda: usage_of(server, "grace")["stored"] == before + BIG)
    server.file_of(slot.put_url).unlink()
    assert wait_for(lambda: usage_of(server, "grace")["stored"] == before)


def test_a_file_the_ledger_does_not_know_is_counted_and_audited(prosody, server):
    global_before = global_stored(server)
    prosody.stop()
    try:
        # A file put in place while the server is down (by hand, or by a slot granted before the
        # module was loaded): the audit finds it, whatever the ledger says.
        stray = server.files_root / "stray%2dfile.bin"
        stray.write_bytes(b"z" * 4321)
        found = run_cli(server.database, "--json", "quota", "audit", check=False)
        assert found.returncode == 3, found  # drift
        audit = json.loads(found.stdout)
        assert {(d["scope"], d["counted_stored"] - d["stored"]) for d in audit} >= {("global", 4321)}, audit
    finally:
        prosody.start()
        wait_for_port(prosody.http_port, prosody.proc, log=prosody.log)
    # The server's sweep counts it.
    assert wait_for(lambda: global_stored(server) == global_before + 4321)
    assert json.loads(run_cli(server.database, "--json", "quota", "audit").stdout) == []
    stray.unlink()
    assert wait_for(lambda: global_stored(server) == global_before)


def token_life(slot) -> int:
    """Seconds mod_http_file_share's upload token for `slot` is valid (its JWT: exp - iat)."""
    payload = slot.headers["Authorization"].split()[1].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["exp"] - claims["iat"]


def test_an_upload_late_in_its_tokens_life_is_charged_to_its_uploader(prosody, server):
    """Prosody 13.0's mod_http_file_share signs upload tokens for 600 s (0.12's for 300): the slot
    must be awaited that long. It was awaited 300 s on both, so on 13.0 a PUT 5 to 10 minutes after
    the slot was accepted by Prosody and the file counted in global storage only, not the user's."""
    scenarios = UploadScenarios()
    # The core looks at the slots only once the component's directory is there (its first file).
    base = scenarios.usage(server, "heidi")["stored"]
    scenarios.upload(server, "heidi", "first.txt", b"first")
    assert wait_for(lambda: scenarios.usage(server, "heidi")["stored"] == base + 5)
    before = scenarios.usage(server, "heidi")
    [slot] = scenarios.slots(server, "heidi", {"filename": "late-in-life.bin", "size": 7})
    assert slot.ok, slot
    life = token_life(slot)
    assert life == (600 if prosody.target.major >= (13,) else 300), life
    # A minute before the token expires; the core looks at the slots every 0.2 s meanwhile.
    prosody.clock.set_offset(life - 60)
    time.sleep(2)
    assert http_put(prosody.http_port, slot.put_url, slot.headers, b"1234567") == 201
    assert wait_for(lambda: scenarios.usage(server, "heidi")["stored"] == before["stored"] + 7), \
        scenarios.usage(server, "heidi")
    assert "no expiry to read" not in prosody.log_text()
