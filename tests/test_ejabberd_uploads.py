"""Upload quotas on the real ejabberd 23.01 with mod_http_upload, driven by a real client and real
HTTP uploads. The scenarios are those of Prosody (upload_scenarios.py)."""

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from harness.client import http_put, http_put_abandoned, upload_max_file_size
from harness.clock import ServerClock
from harness.common import run_cli
from harness.ejabberd import Ejabberd
from upload_scenarios import PASSWORD, USERS, UploadScenarios, UploadServer, no_limits, wait_for  # noqa: F401 (autouse)

HOST = "uploads.example"


def modules(docroot: Path, http_port: int) -> str:
    return f"""  mod_disco: {{}}
  mod_adhoc: {{}}
  mod_http_upload:
    put_url: "http://{HOST}:{http_port}/upload"
    docroot: "{docroot}"
    # The store's per-domain limit is the one that applies.
    max_size: infinity
  mod_http_upload_quota: {{}}
  mod_xmpp_hosting_uploads:
    sweep_interval: 1
"""


@pytest.fixture(scope="module")
def ej(tmp_path_factory):
    work = tmp_path_factory.mktemp("ejabberd-uploads")
    clock = ServerClock(work)
    node = Ejabberd(work, host=HOST, install="config", server_env=clock.env,
                    http_handlers={"/upload": "mod_xmpp_hosting_uploads"})
    node.docroot = work / "upload"
    node.clock = clock
    node.extra_modules = modules(node.docroot, node.http_port)
    with node:
        run_cli(node.database, "domain", "add", HOST)
        for user in USERS:
            node.register(user, PASSWORD)
        yield node


def stored_file(docroot: Path, put_url: str) -> Path:
    user_dir, rand, name = (unquote(p) for p in urlsplit(put_url).path.split("/")[-3:])
    return docroot / user_dir / rand / name


@pytest.fixture(scope="module")
def server(ej):
    def restart():
        ej.stop()
        ej.start()

    return UploadServer(
        host=HOST, share=f"upload.{HOST}", c2s_port=ej.c2s_port, http_port=ej.http_port, database=ej.database,
        clock=ej.clock, running=ej.is_running, restart=restart,
        file_of=lambda url: stored_file(ej.docroot, url), commands_at=HOST,
        files_root=ej.docroot,
    )


class TestEjabberdUploads(UploadScenarios):
    pass


def test_a_replayed_put_is_served_by_mod_http_upload_and_counted_once(ej, server):
    scenarios = UploadScenarios()
    slot = scenarios.upload(server, "alice", "once.txt", b"once")
    before = scenarios.usage(server, "alice")["stored"]
    # The slot is used up: mod_http_upload refuses the second PUT, and nothing more is counted.
    assert http_put(ej.http_port, slot.put_url, slot.headers, b"once") != 201
    assert scenarios.usage(server, "alice")["stored"] == before


def test_disco_advertises_the_domains_max_file_size(ej, server):
    def advertised():
        return upload_max_file_size(ej.c2s_port, f"alice@{HOST}", PASSWORD, server.share)

    assert advertised() == 104857600  # max_size: infinity, and the store's default largest file
    run_cli(ej.database, "quota", "set", HOST, "max_file_size", "null")
    assert advertised() is None  # no limit anywhere (a slot over 1 PiB is still refused)
    run_cli(ej.database, "quota", "set", HOST, "max_file_size", "5000")
    assert advertised() == 5000


def test_admins_set_and_show_limits_with_ejabberdctl(ej, server):
    scenarios = UploadScenarios()

    def slot_for(user, size):
        [slot] = scenarios.slots(server, user, {"filename": "f.bin", "size": size})
        return slot

    ej.ctl("xmpp_hosting_quota_set", HOST, "", "max_file_size", "1000")
    ej.ctl("xmpp_hosting_quota_set", HOST, "carol", "max_file_size", "50000")
    try:
        assert slot_for("carol", 20000).ok
        assert slot_for("dave", 20000).max_file_size == 1000
        assert f"carol@{HOST}\nLargest file: 50 kB\n" in ej.ctl("xmpp_hosting_quota_show", HOST, "carol").stdout
        assert "Largest file: 1 kB" in ej.ctl("xmpp_hosting_quota_show", HOST, "").stdout
        # The limits each user has by default are shown beside the domain-wide ones (issue 10.3).
        ej.ctl("xmpp_hosting_quota_set", HOST, "", "user_daily", "50000")
        assert "Each user, unless given an exception:\n" in ej.ctl("xmpp_hosting_quota_show", HOST, "").stdout
        shown = ej.ctl("xmpp_hosting_quota_show", HOST, "carol").stdout
        assert "Exceptions to the domain's limits: largest file 50 kB" in shown
        bad = ej.ctl("xmpp_hosting_quota_set", HOST, "carol", "daily", "lots", check=False)
        assert bad.returncode == 1 and "not a number of bytes" in bad.stdout + bad.stderr
    finally:
        ej.ctl("xmpp_hosting_quota_clear", HOST, "carol")
    assert slot_for("carol", 20000).max_file_size == 1000
    assert ej.ctl("xmpp_hosting_quota_audit").stdout.strip() == ""


def test_an_upload_cut_off_midway_gives_its_room_back_at_once(ej, server):
    """mod_http_upload uses the slot up before the body arrives; a dropped connection must not
    hold the user's quota until the slot's expiry five hours later."""
    scenarios = UploadScenarios()
    run_cli(ej.database, "quota", "set", HOST, "user_daily", "10")
    [slot] = scenarios.slots(server, "frank", {"filename": "cut.bin", "size": 10})
    assert slot.ok
    [refused] = scenarios.slots(server, "frank", {"filename": "second.bin", "size": 10})
    assert refused.error[:2] == ("wait", "resource-constraint")
    http_put_abandoned(ej.http_port, slot.put_url, slot.headers, size=10, sent=3)
    assert wait_for(lambda: scenarios.usage(server, "frank")["reserved"] == 0)
    assert scenarios.upload(server, "frank", "again.bin", b"0123456789")
    assert scenarios.usage(server, "frank")["stored"] == 10
