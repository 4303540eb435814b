"""Upload quotas on the real Prosody 0.12 with mod_http_file_share, driven by a real client and real HTTP uploads."""

import json
import time
from urllib.parse import unquote

import pytest

from harness import client
from harness.client import http_put, request_slots
from harness.common import run_cli
from harness.prosody import Prosody

HOST = "uploads.example"
SHARE = f"share.{HOST}"


def component(check_interval=0.2):
    return f'''
Component "{SHARE}" "http_file_share"
  modules_enabled = {{ "xmpp_hosting_uploads" }}
  http_file_share_size_limit = 1000000000
  http_file_share_daily_quota = 1000000000000
  -- Slots outlive a restart only with a fixed secret (the default is random per start).
  http_file_share_secret = "a-test-secret-that-outlives-restarts"
  xmpp_hosting_upload_check_interval = {check_interval}
'''


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    server = Prosody(tmp_path_factory.mktemp("prosody-uploads"), host=HOST, extra_config=component())
    with server:
        run_cli(server.database, "domain", "add", HOST)
        for user in ("alice", "bob", "carol", "dave"):
            server.create_user(user, "pw-123456")
        yield server


def cli(p, *args):
    return run_cli(p.database, *args)


def usage(p, user):
    return json.loads(cli(p, "--json", "quota", "show", HOST, "--user", user).stdout)["usage"]


def slots(p, user, *requests):
    return request_slots(p.c2s_port, f"{user}@{HOST}", "pw-123456", SHARE, list(requests))


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(autouse=True)
def no_limits(prosody):
    cli(prosody, "domain", "set", HOST, "uploads", "{}")
    yield


def test_a_file_over_the_size_limit_gets_file_too_large_with_the_limit(prosody):
    cli(prosody, "quota", "set", HOST, "max_file_size", "1000")
    [answer] = slots(prosody, "alice", {"filename": "big.bin", "size": 1001})
    assert answer.error[:2] == ("modify", "not-acceptable")
    too_large = answer.upload_child("file-too-large")
    assert too_large.find(f"{{{client.UPLOAD_NS}}}max-file-size").text == "1000"


def test_an_upload_is_counted_when_it_completes(prosody):
    before = usage(prosody, "bob")["stored"]
    [slot] = slots(prosody, "bob", {"filename": "note.txt", "size": 11, "content-type": "text/plain"})
    assert slot.ok, slot
    assert usage(prosody, "bob")["reserved"] == 11
    assert http_put(prosody.http_port, slot.put_url, slot.headers, b"hello world") == 201
    assert wait_for(lambda: usage(prosody, "bob")["stored"] == before + 11)
    assert usage(prosody, "bob")["reserved"] == 0


def test_the_daily_limit_refuses_with_a_retry_stamp(prosody):
    cli(prosody, "quota", "set", HOST, "user_daily", "100")
    [a] = slots(prosody, "carol", {"filename": "a.bin", "size": 60})
    assert http_put(prosody.http_port, a.put_url, a.headers, b"x" * 60) == 201
    # Counted in the window once committed (a slot still open holds its bytes with no end).
    assert wait_for(lambda: usage(prosody, "carol")["daily"] == 60)
    [b] = slots(prosody, "carol", {"filename": "b.bin", "size": 50})
    assert b.error[:2] == ("wait", "resource-constraint")
    stamp = b.upload_child("retry").get("stamp")
    # The 60 bytes leave the window one day after the hour they were uploaded in ends.
    hour_end = (int(time.time()) // 3600 + 1) * 3600
    assert stamp == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour_end + 86400))


def test_the_storage_cap_frees_room_when_a_file_is_deleted(prosody):
    cli(prosody, "quota", "set", HOST, "user_storage", "100")
    [a] = slots(prosody, "dave", {"filename": "keep.bin", "size": 80})
    assert http_put(prosody.http_port, a.put_url, a.headers, b"k" * 80) == 201
    assert wait_for(lambda: usage(prosody, "dave")["stored"] == 80)
    [b] = slots(prosody, "dave", {"filename": "more.bin", "size": 30})
    assert b.error[:2] == ("wait", "resource-constraint")
    # Delete the file as mod_http_file_share's expiry would.
    slot_id = a.put_url.rsplit("/", 2)[1]
    # Prosody's datamanager percent-encodes file names (base64url's - and _ included).
    files = [f for f in prosody.data.rglob("*.bin") if unquote(f.name) == f"{slot_id}.bin"]
    assert len(files) == 1
    files[0].unlink()
    assert wait_for(lambda: usage(prosody, "dave")["stored"] == 0)
    [c] = slots(prosody, "dave", {"filename": "more.bin", "size": 30})
    assert c.ok


def test_twenty_concurrent_slot_requests_never_exceed_the_cap(prosody):
    cli(prosody, "quota", "set", HOST, "user_storage", "1000")
    answers = slots(prosody, "alice", *({"filename": f"f{i}.bin", "size": 300} for i in range(20)))
    assert sum(a.ok for a in answers) == 3
    assert all(a.error[:2] == ("wait", "resource-constraint") for a in answers if not a.ok)


@pytest.mark.parametrize("size", ["-1", "0", "abc", "1e3", "9223372036854775808", None])
def test_bad_sizes_get_bad_request(prosody, size):
    attrs = {"filename": "x.bin"}
    if size is not None:
        attrs["size"] = size
    [answer] = slots(prosody, "bob", attrs)
    assert answer.error[:2] == ("modify", "bad-request"), answer
    assert prosody.running()


def test_counts_survive_a_restart(prosody):
    cli(prosody, "domain", "set", HOST, "uploads", "{}")
    [slot] = slots(prosody, "bob", {"filename": "late.bin", "size": 5})
    stored = usage(prosody, "bob")["stored"]
    prosody.stop()
    prosody.start()
    # The slot issued before the restart is still watched: its upload is counted.
    assert http_put(prosody.http_port, slot.put_url, slot.headers, b"12345") == 201
    assert wait_for(lambda: usage(prosody, "bob")["stored"] == stored + 5)
    assert client.login(prosody.c2s_port, f"bob@{HOST}", "pw-123456")
