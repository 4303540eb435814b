"""Upload quota scenarios, run against every server (see test_*_uploads.py).

Both servers take their decisions from the one core, so a client doing real slot requests and
real HTTP uploads must see the same answers from each. A test module subclasses
UploadScenarios and provides a `server` fixture (an UploadServer); `no_limits` resets the
domain's limits and the server's clock before each test. Every scenario uses its own users, so
one server serves the whole class.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from harness import client
from harness.client import adhoc, http_put, request_slots
from harness.clock import ServerClock
from harness.common import run_cli

PASSWORD = "pw-123456"
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan")


@dataclass
class UploadServer:
    """What the scenarios need from a server."""

    host: str
    share: str  # the upload service's JID
    c2s_port: int
    http_port: int
    database: Path
    clock: ServerClock
    running: Callable[[], bool]
    restart: Callable[[], None]
    file_of: Callable[[str], Path]  # a slot's PUT URL -> the file the server stored
    files_root: Path  # every uploaded file of the host is below it
    commands_at: str  # the JID offering the "My upload usage" ad-hoc command


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture(autouse=True)
def no_limits(server):
    run_cli(server.database, "domain", "set", server.host, "uploads", "{}")
    server.clock.set_offset(0)
    yield
    server.clock.set_offset(0)


class UploadScenarios:
    @staticmethod
    def cli(server, *args):
        return run_cli(server.database, *args)

    def usage(self, server, user=None):
        scope = ("--user", user) if user else ()
        return json.loads(self.cli(server, "--json", "quota", "show", server.host, *scope).stdout)["usage"]

    def slots(self, server, user, *requests):
        return request_slots(server.c2s_port, f"{user}@{server.host}", PASSWORD, server.share, list(requests))

    def upload(self, server, user, name, body: bytes):
        """Asks for a slot and uploads `body`; returns the slot."""
        [slot] = self.slots(server, user, {"filename": name, "size": len(body), "content-type": "text/plain"})
        assert slot.ok, slot
        assert http_put(server.http_port, slot.put_url, slot.headers, body) == 201
        return slot

    def test_a_file_over_the_size_limit_gets_file_too_large_with_the_limit(self, server):
        self.cli(server, "quota", "set", server.host, "max_file_size", "1000")
        [answer] = self.slots(server, "alice", {"filename": "big.bin", "size": 1001})
        assert answer.error[:2] == ("modify", "not-acceptable")
        too_large = answer.upload_child("file-too-large")
        assert too_large.find(f"{{{client.UPLOAD_NS}}}max-file-size").text == "1000"
        [fits] = self.slots(server, "alice", {"filename": "fits.bin", "size": 1000})
        assert fits.ok

    def test_an_upload_is_reserved_then_counted_when_it_completes(self, server):
        before = self.usage(server, "bob")
        [slot] = self.slots(server, "bob", {"filename": "note.txt", "size": 11, "content-type": "text/plain"})
        assert slot.ok, slot
        assert self.usage(server, "bob")["reserved"] == before["reserved"] + 11
        assert http_put(server.http_port, slot.put_url, slot.headers, b"hello world") == 201
        assert wait_for(lambda: self.usage(server, "bob")["stored"] == before["stored"] + 11)
        after = self.usage(server, "bob")
        assert (after["reserved"], after["daily"]) == (before["reserved"], before["daily"] + 11)
        assert server.file_of(slot.put_url).read_bytes() == b"hello world"

    def test_the_daily_limit_refuses_with_a_retry_stamp_until_the_clock_reaches_it(self, server):
        self.cli(server, "quota", "set", server.host, "user_daily", "100")
        self.upload(server, "carol", "a.bin", b"x" * 60)
        assert wait_for(lambda: self.usage(server, "carol")["daily"] == 60)
        uploaded_at = server.clock.now()
        [b] = self.slots(server, "carol", {"filename": "b.bin", "size": 50})
        assert b.error[:2] == ("wait", "resource-constraint")
        stamp = b.upload_child("retry").get("stamp")
        # The 60 bytes leave the window one day after the hour they were uploaded in ends.
        retry_at = (uploaded_at // 3600 + 1) * 3600 + 86400
        assert stamp == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(retry_at))
        # Just before the stamp the window is still full; from the stamp on the file fits.
        server.clock.move_to(retry_at - 30)
        [early] = self.slots(server, "carol", {"filename": "b.bin", "size": 50})
        assert early.error[:2] == ("wait", "resource-constraint"), early
        server.clock.move_to(retry_at + 1)
        [due] = self.slots(server, "carol", {"filename": "b.bin", "size": 50})
        assert due.ok, due

    def test_the_storage_cap_frees_room_when_a_file_is_deleted(self, server):
        self.cli(server, "quota", "set", server.host, "user_storage", "100")
        kept = self.upload(server, "dave", "keep.bin", b"k" * 80)
        assert wait_for(lambda: self.usage(server, "dave")["stored"] == 80)
        [b] = self.slots(server, "dave", {"filename": "more.bin", "size": 30})
        assert b.error[:2] == ("wait", "resource-constraint")
        assert b.upload_child("retry") is None  # waiting does not free storage
        # Delete the file as the server's expiry (or an admin) would.
        server.file_of(kept.put_url).unlink()
        assert wait_for(lambda: self.usage(server, "dave")["stored"] == 0)
        [c] = self.slots(server, "dave", {"filename": "more.bin", "size": 30})
        assert c.ok, c

    def test_twenty_concurrent_slot_requests_never_exceed_the_cap(self, server):
        self.cli(server, "quota", "set", server.host, "user_storage", "1000")
        answers = self.slots(server, "erin", *({"filename": f"f{i}.bin", "size": 300} for i in range(20)))
        assert sum(a.ok for a in answers) == 3
        assert all(a.error[:2] == ("wait", "resource-constraint") for a in answers if not a.ok)
        assert self.usage(server, "erin")["reserved"] == 900

    @pytest.mark.parametrize("size", ["-1", "0", "abc", "1e3", "9223372036854775808", None])
    def test_bad_sizes_get_bad_request(self, server, size):
        attrs = {"filename": "x.bin"}
        if size is not None:
            attrs["size"] = size
        [answer] = self.slots(server, "frank", attrs)
        assert answer.error[:2] == ("modify", "bad-request"), answer
        assert server.running()
        assert self.usage(server, "frank")["reserved"] == 0

    def test_a_size_no_server_could_store_is_refused_and_breaks_no_one(self, server):
        """Issue 11.1: with no size limit anywhere (ejabberd's max_size: infinity, the store's
        max_file_size removed), a slot of about 2^63 bytes was granted and the next reservation
        overflowed the running sums: every slot request on every domain got internal-server-error."""
        self.cli(server, "quota", "set", server.host, "max_file_size", "null")
        for size in ["9223372036854775807", str(2**62), str(2**50 + 1)]:
            [answer] = self.slots(server, "heidi", {"filename": "huge.bin", "size": size})
            assert answer.error[:2] == ("modify", "bad-request"), answer
            assert "larger than any server can store" in (answer.error[2] or ""), answer
        assert server.running()
        assert self.usage(server, "heidi")["reserved"] == 0
        # Everyone still gets slots and uploads.
        self.upload(server, "ivan", "after-huge.txt", b"still fine")
        [slot] = self.slots(server, "heidi", {"filename": "small.bin", "size": 10})
        assert slot.ok, slot

    def test_every_domain_has_a_largest_file_by_default(self, server):
        # no_limits set the domain's uploads to {}: the defaults.
        [answer] = self.slots(server, "heidi", {"filename": "big.bin", "size": 104857601})
        assert answer.error[:2] == ("modify", "not-acceptable"), answer
        assert answer.max_file_size == 104857600

    def test_a_restart_keeps_every_count_equal_to_the_files(self, server):
        for i in range(3):
            self.upload(server, "grace", f"g{i}.txt", b"g" * (10 + i))
        assert wait_for(lambda: self.usage(server, "grace")["stored"] == 33)
        server.restart()
        on_disk = sum(f.stat().st_size for f in server.files_root.rglob("*") if f.is_file())
        assert wait_for(lambda: self.usage(server)["stored"] == on_disk)
        assert self.usage(server, "grace")["stored"] == 33
        audit = json.loads(self.cli(server, "--json", "quota", "audit").stdout)
        assert audit == []
        self.upload(server, "grace", "after.txt", b"after")
        assert wait_for(lambda: self.usage(server, "grace")["stored"] == 38)
        assert client.login(server.c2s_port, f"grace@{server.host}", PASSWORD)

    def test_a_user_sees_their_usage_beside_their_limits(self, server):
        self.cli(server, "quota", "set", server.host, "user_storage", "1500000000")
        self.cli(server, "quota", "set", server.host, "max_file_size", "100000000")
        self.upload(server, "alice", "usage.txt", b"u" * 2500)
        assert wait_for(lambda: self.usage(server, "alice")["daily"] >= 2500)
        u = self.usage(server, "alice")
        answer = adhoc(server.c2s_port, f"alice@{server.host}", PASSWORD, "urn:xmpp-hosting:upload-usage",
                       server.commands_at)
        text = answer.get("note", "")
        assert "Largest file: 100 MB" in text, answer
        assert f"Stored: {u['stored'] / 1000:.1f} kB of 1.5 GB".replace(".0 ", " ") in text, answer
        assert "Uploaded in the last 7 days:" in text and "(no limit)" in text
