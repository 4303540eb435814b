"""Retention on the real Prosody: uploads (mod_http_file_share; the shared scenarios of
retention_scenarios.py, on the upload test's server setup), and message archives (mod_mam,
mod_muc_mam) on SQLite and internal storage, looked at by a real client's MAM queries.

Old messages are archived through Prosody itself: the server starts with its clock (libfaketime)
two days back, the clients talk, then the clock is set right and they talk again. The policy
is set with the CLI; the sweeps run from mod_xmpp_hosting's housekeeping timer (retention
looked at every second here), on SQLite in the core, on internal storage through Prosody's
storage API as the core plans it."""

import asyncio
import json
import os
import signal
import sqlite3
import time
import uuid
import xml.etree.ElementTree as ET

import pytest
import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import test_prosody_uploads as uploads
from harness.client import _session, ping_summary
from harness.clock import ServerClock
from harness.common import run_cli
from harness.prosody import Prosody
from retention_scenarios import RetentionScenarios
from upload_scenarios import no_limits  # noqa: F401 (autouse: limits and the clock reset per test)

prosody = uploads.prosody
server = uploads.server


class TestProsodyRetention(RetentionScenarios):
    gone_status = 410


def test_prosodyctl_retention_commands(prosody, server):
    host = uploads.HOST

    def ctl(*args):
        return prosody.ctl("mod_xmpp_hosting", "retention", *args)

    def last(r):  # prosodyctl's own log line may come first
        return r.stdout.strip().splitlines()[-1]

    r = ctl("set", host, "uploads", "30 days")
    assert r.returncode == 0 and last(r) == (
        f"{host}: archive never, muc never, uploads 30d, backups never (declared); takes effect at the next sweep"
    ), r.stdout + r.stderr
    r = ctl("set", host, "archive", "0")
    assert r.returncode == 1 and "delete everything at once" in r.stderr, r.stderr
    ctl("set", host, "archive", "1w")
    r = ctl("set", host, "archive", "1y", "--user", "alice")
    assert r.returncode == 1 and "at most" in r.stderr, r.stderr
    r = ctl("set", host, "archive", "2d", "--user", "alice")
    assert last(r) == f"alice@{host}: archive kept for 2d", r.stdout + r.stderr
    assert last(ctl("show", host)).startswith(f"{host}: archive 1w, muc never, uploads 30d")
    r = ctl("sweep", host, "--dry-run")
    assert r.returncode == 0 and f"{host} uploads before" in r.stdout and "would delete 0" in r.stdout, r.stdout + r.stderr
    r = ctl("sweep", host, "--kind", "archive")  # this server loads no mod_mam
    assert r.returncode == 1 and "no server has registered" in r.stderr, r.stderr
    r = ctl("log", host)
    assert r.returncode == 0 and "would delete 0" in r.stdout, r.stdout + r.stderr
    for what in ("archive", "uploads"):
        ctl("set", host, what, "never")
    ctl("set", host, "archive", "default", "--user", "alice")



# --- Message archives -------------------------------------------------------------------------

HOST = "archives.example"
MUC = f"conference.{HOST}"
ROOM = f"lounge@{MUC}"
PASSWORD = "retention-pw"
DAY = 86_400
MAM = "urn:xmpp:mam:2"


def muc_component(name: str) -> str:
    return "\n".join([
        f'Component "{name}" "muc"',
        '  modules_enabled = { "muc_mam", "xmpp_hosting_retention" }',
        "  muc_room_default_persistent = true",
        '  muc_log_expires_after = "never"',
    ]) + "\n"


def archive_server(work, storage: str, clock: ServerClock, more_config: str = "", **options) -> Prosody:
    muc = muc_component(MUC) + more_config
    opts = {
        "storage": storage,
        # Prosody's own expiry left off, as the README tells admins (its warning is tested below).
        "archive_expires_after": "never",
        "xmpp_hosting_retention_interval": 1,
        **options,
    }
    if storage == "sql":
        opts["sql"] = {"driver": "SQLite3", "database": "prosody.sqlite"}
    server = Prosody(work, host=HOST, host_modules=["mam", "xmpp_hosting_retention"], options=opts,
                     extra_config=muc, server_env=clock.env)
    server.clock = clock
    # Hosted before the server starts: the retention module registers the archives at load.
    run_cli(server.database, "domain", "add", HOST)
    return server


def chat(user: str, to: str, bodies: list[str]):
    """`user` sends chat messages to `to` (archived by mod_mam on both sides)."""
    async def send(c):
        for b in bodies:
            c.send_message(mto=to, mbody=b, mtype="chat")
        await asyncio.sleep(0.3)
        # A round trip after them: they were handled before the session ends.
        c.register_plugin("xep_0199")
        await c.plugin["xep_0199"].send_ping(HOST, timeout=10)
    asyncio.run(_session_of(user, send))


def groupchat(user: str, bodies: list[str], room: str = ROOM):
    """`user` joins the room (made on first join) and says `bodies` there."""
    async def say(c):
        c.register_plugin("xep_0045")
        await c.plugin["xep_0045"].join_muc_wait(slixmpp.JID(room), user, maxstanzas=0, timeout=10)
        echoes = []
        c.add_event_handler("groupchat_message", lambda m: echoes.append(m["body"]))
        for b in bodies:
            c.send_message(mto=room, mbody=b, mtype="groupchat")
        for _ in range(100):
            if all(b in echoes for b in bodies):
                break
            await asyncio.sleep(0.1)
        assert all(b in echoes for b in bodies), echoes
    asyncio.run(_session_of(user, say))


def _session_of(user, action, timeout=30):
    return _session(SERVER["port"], f"{user}@{HOST}", PASSWORD, action, timeout)


SERVER = {}


def mam_bodies(user: str, archive: str | None = None) -> list[str]:
    """The bodies a MAM query (XEP-0313) by `user` returns: of their own archive, or of the
    room `archive`."""
    async def query(c):
        qid = uuid.uuid4().hex
        found = []

        def on_message(msg):
            result = msg.xml.find(f"{{{MAM}}}result")
            if result is not None and result.get("queryid") == qid:
                body = result.find(".//{jabber:client}body")
                found.append(body.text if body is not None else None)
        # slixmpp's "message" event skips messages without a body of their own: match the results.
        c.register_handler(Callback(f"mam-{qid}", MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"), on_message))
        if archive:
            c.register_plugin("xep_0045")
            await c.plugin["xep_0045"].join_muc_wait(slixmpp.JID(archive), user, maxstanzas=0, timeout=10)
        iq = c.Iq()
        iq["type"] = "set"
        if archive:
            iq["to"] = archive
        iq.append(ET.fromstring(f"<query xmlns='{MAM}' queryid='{qid}'><set xmlns='http://jabber.org/protocol/rsm'>"
                                "<max>1000</max></set></query>"))
        await iq.send(timeout=20)
        await asyncio.sleep(0.2)
        return found
    return asyncio.run(_session_of(user, query))


def set_own_retention(user: str, period: str) -> str:
    """Runs the ad-hoc command "Archive retention" (XEP-0050) as `user`: its form, then `period`
    submitted; returns the completed command's note."""
    ns = "http://jabber.org/protocol/commands"

    async def run(c):
        iq = c.Iq()
        iq["type"], iq["to"] = "set", HOST
        iq.append(ET.fromstring(f"<command xmlns='{ns}' node='urn:xmpp-hosting:retention' action='execute'/>"))
        first = (await iq.send(timeout=10)).xml.find(f"{{{ns}}}command")
        assert first.get("status") == "executing", ET.tostring(first)
        shown = [v.text for v in first.iter("{jabber:x:data}value")]
        iq = c.Iq()
        iq["type"], iq["to"] = "set", HOST
        iq.append(ET.fromstring(
            f"<command xmlns='{ns}' node='urn:xmpp-hosting:retention' sessionid='{first.get('sessionid')}'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>urn:xmpp-hosting:retention</value></field>"
            f"<field var='period'><value>{period}</value></field></x></command>"))
        done = (await iq.send(timeout=10)).xml.find(f"{{{ns}}}command")
        note = done.find(f"{{{ns}}}note")
        return shown, done.get("status"), (note.get("type"), note.text) if note is not None else None
    return asyncio.run(_session_of(user, run))


def sweeps(server, kind):
    log = json.loads(run_cli(server.database, "--json", "retention", "log", HOST).stdout)
    return [s for s in log if s["kind"] == kind and not s["dry_run"]]


def wait_until(predicate, timeout=60, every=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


@pytest.fixture(scope="module", params=["sql", "internal"])
def archives(request, tmp_path_factory):
    storage = request.param
    work = tmp_path_factory.mktemp(f"prosody-archives-{storage}")
    clock = ServerClock(work)
    clock.set_offset(-2 * DAY)
    server = archive_server(work, storage, clock)
    with server:
        SERVER["port"] = server.c2s_port
        for user in ("alice", "bob", "carol"):
            server.create_user(user, PASSWORD)
        # Two days ago.
        chat("alice", f"bob@{HOST}", ["old-1", "old-2", "old-3"])
        groupchat("alice", ["old-muc-1", "old-muc-2"])
        clock.set_offset(0)
        chat("alice", f"bob@{HOST}", ["new-1"])
        chat("carol", f"bob@{HOST}", ["carol-new"])
        groupchat("alice", ["new-muc-1"])
        assert {"old-1", "old-3", "new-1", "carol-new"} <= set(mam_bodies("bob"))
        server.storage = storage
        yield server
        for kind in ("archive", "muc"):
            run_cli(server.database, "retention", "set", HOST, kind, "never")


def test_old_messages_vanish_from_mam_and_newer_ones_stay(archives):
    run_cli(archives.database, "retention", "set", HOST, "archive", "1d")
    assert wait_until(lambda: "old-1" not in mam_bodies("bob")), "the sweep did not run"
    for user, kept in (("bob", {"new-1", "carol-new"}), ("alice", {"new-1"})):
        bodies = mam_bodies(user)
        assert not {"old-1", "old-2", "old-3"} & set(bodies), (user, bodies)
        assert kept <= set(bodies), (user, bodies)
    [done] = wait_until(lambda: [s for s in sweeps(archives, "archive") if s["state"] == "done"])
    # Three messages two days old, archived for their sender and their recipient.
    assert done["deleted"] == 6 and done["failed"] == 0, done
    # Group chat archives have their own period: untouched.
    assert {"old-muc-1", "new-muc-1"} <= set(mam_bodies("carol", ROOM))


def test_old_group_chat_messages_vanish_from_the_rooms_archive(archives):
    run_cli(archives.database, "retention", "set", HOST, "muc", "1d")
    assert wait_until(lambda: "old-muc-1" not in mam_bodies("bob", ROOM))
    bodies = mam_bodies("bob", ROOM)
    assert "old-muc-2" not in bodies and "new-muc-1" in bodies, bodies
    [done] = wait_until(lambda: [s for s in sweeps(archives, "muc") if s["state"] == "done"])
    assert done["deleted"] == 2, done


def test_a_users_own_shorter_retention_set_by_ad_hoc_and_a_policy_change_at_the_next_sweep(archives):
    run_cli(archives.database, "retention", "set", HOST, "archive", "1w")
    shown, status, note = set_own_retention("carol", "1y")
    assert "Your archive is kept for 1w" in shown and status == "completed", (shown, status)
    assert note[0] == "error" and "1w at most" in note[1], note
    shown, status, note = set_own_retention("carol", "1h")
    assert note == ("info", "Your archive is now kept for 1h"), note
    assert "kept for 1h" in run_cli(archives.database, "retention", "show", HOST, "--user", "carol").stdout
    before = len(sweeps(archives, "archive"))
    # Two hours on: carol's message is past her hour, within everyone else's week; the
    # domain's sweep is due again (each domain's kinds are swept once an hour).
    archives.clock.set_offset(2 * 3600)
    assert wait_until(lambda: "carol-new" not in mam_bodies("carol"))
    assert "carol-new" in mam_bodies("bob") and "new-1" in mam_bodies("alice")
    assert len(sweeps(archives, "archive")) > before
    # The domain's period shortened to an hour: the next sweep (an hour on) applies it.
    run_cli(archives.database, "retention", "set", HOST, "archive", "1h")
    assert "new-1" in mam_bodies("bob"), "not before the next sweep"
    archives.clock.set_offset(3 * 3600 + 60)
    assert wait_until(lambda: not mam_bodies("bob"))
    assert not mam_bodies("alice")
    run_cli(archives.database, "retention", "set", HOST, "archive", "default", "--user", "carol")


def test_a_dry_run_in_the_admin_shell_counts_what_would_go_and_deletes_nothing(archives):
    """On SQLite the core counts in Prosody's table; on internal storage Prosody counts through its
    own archive API, in the steps the core plans, and the dry run has its own audit record."""
    # Two messages stored two hours ago, just after the last sweep (the next is due in an hour).
    archives.clock.set_offset(3600 + 60)
    chat("alice", f"bob@{HOST}", ["dry-1", "dry-2"])
    archives.clock.set_offset(3 * 3600 + 60)
    r = archives.shell(f'xmpp_hosting:retention_sweep("{HOST}", {{"--kind", "archive", "--dry-run"}})')
    said = r.stdout + r.stderr
    if archives.storage == "internal":
        assert "Dry run #" in said and "runs in the server" in said, said
    else:
        assert "would delete 4 message(s)" in said, said

    def dry_done():
        log = json.loads(run_cli(archives.database, "--json", "retention", "log", HOST).stdout)
        return [s for s in log if s["kind"] == "archive" and s["dry_run"] and s["state"] == "done"]
    [dry] = wait_until(dry_done)
    # Sent by alice, received by bob: a copy in each archive.
    assert dry["deleted"] == 4 and dry["failed"] == 0 and not dry["errors"], dry
    for user in ("alice", "bob"):
        assert {"dry-1", "dry-2"} <= set(mam_bodies(user)), user


def test_a_group_chat_service_after_one_whose_rooms_fill_a_step_is_swept_too(tmp_path):
    """Internal storage, two group chat services: the first (by name) has exactly as many rooms
    as the first step takes (the core's DRIVEN_FIRST_BATCH, 4), so the second's first room comes
    when the step is full. The step must name the first service's last room as where to go on
    (it once built the cursor from nothing, failed, and the sweep was recorded as done there)."""
    first = f"chat.{HOST}"
    assert first < MUC
    clock = ServerClock(tmp_path)
    clock.set_offset(-2 * DAY)
    server = archive_server(tmp_path, "internal", clock, more_config=muc_component(first))
    rooms = [f"room{i}@{first}" for i in range(4)] + [ROOM]
    with server:
        SERVER["port"] = server.c2s_port
        server.create_user("alice", PASSWORD)
        for room in rooms:
            groupchat("alice", [f"old in {room}"], room)
        clock.set_offset(0)
        groupchat("alice", ["new in the lounge"], ROOM)
        run_cli(server.database, "retention", "set", HOST, "muc", "1d")
        [done] = wait_until(lambda: [s for s in sweeps(server, "muc") if s["state"] == "done"])
        for room in rooms:
            bodies = mam_bodies("alice", room)
            assert f"old in {room}" not in bodies, (room, bodies)
        assert "new in the lounge" in mam_bodies("alice", ROOM)
        assert done["deleted"] == 5 and done["failed"] == 0, done
        assert "Retention sweep step failed" not in server.log_text()


def fill_archive(db, host: str, rows: list[tuple[int, int]], users: int = 100):
    """Writes archive rows straight into Prosody's own table (its schema, made by Prosody when it
    first opened the database), `count` rows stored at `when` for each (count, when), spread over
    `users` accounts: what years of mod_mam traffic leave behind, without the years."""
    c = sqlite3.connect(db)
    with c:
        n = 0
        for count, when in rows:
            c.executemany(
                'INSERT INTO prosodyarchive (host, user, store, key, "when", "with", type, value) '
                "VALUES (?, ?, 'archive', ?, ?, ?, 'xml', ?)",
                ((host, f"bulk{(n + i) % users}", uuid.uuid4().hex, when, f"peer@{host}",
                  f"<message xmlns='jabber:client' type='chat'><body>bulk {n + i}</body></message>")
                 for i in range(count)))
            n += count
    c.close()


def archive_rows(db, host: str, newer_than: int | None = None) -> int:
    c = sqlite3.connect(db)
    try:
        q = "SELECT count(*) FROM prosodyarchive WHERE host = ? AND store = 'archive'"
        args = [host]
        if newer_than is not None:
            q += ' AND "when" >= ?'
            args.append(newer_than)
        return c.execute(q, args).fetchone()[0]
    finally:
        c.close()


def running_sweep(store_db):
    """The archive sweep in the store's log that is under way and has deleted something."""
    c = sqlite3.connect(store_db, timeout=5)
    try:
        return c.execute("SELECT id, deleted FROM retention_sweeps WHERE kind = 'archive' AND state = 'running' "
                         "AND deleted > 0").fetchone()
    finally:
        c.close()


class Pinger:
    """A client pinging the server every 50 ms in a thread of its own; every ping must come back
    (a ping that gets no reply within 10 s fails the session)."""

    def __init__(self, port):
        import threading
        self.port, self.stop, self.rtts, self.error = port, False, [], None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        async def ping(c):
            c.register_plugin("xep_0199")
            while not self.stop:
                t0 = time.monotonic()
                await c.plugin["xep_0199"].send_ping(HOST, timeout=10)
                self.rtts.append(time.monotonic() - t0)
                await asyncio.sleep(0.05)
        try:
            asyncio.run(_session(self.port, f"alice@{HOST}", PASSWORD, ping, 3600))
        except Exception as e:  # noqa: BLE001 (reported by finish)
            self.error = e

    def finish(self):
        self.stop = True
        self.thread.join(30)
        return self.rtts


def test_a_sweep_of_100000_old_messages_killed_mid_way_resumes_after_restart_and_pings_are_answered(tmp_path):
    clock = ServerClock(tmp_path)
    server = archive_server(tmp_path, "sql", clock)
    with server:  # Prosody makes its tables
        SERVER["port"] = server.c2s_port
        for user in ("alice", "bob"):
            server.create_user(user, PASSWORD)
        chat("alice", f"bob@{HOST}", ["recent"])
    # Prosody's connection checkpoints only past the log the sweep's steps leave (the core's
    # PROSODY_AUTOCHECKPOINT): SQLite's default 1,000 pages would copy them on Prosody's loop.
    assert "WAL checkpointed at 12000 pages" in server.log_text(), server.log_text()[-3000:]
    db = server.data / "prosody.sqlite"
    now = int(time.time())
    cutoff = now - DAY
    fill_archive(db, HOST, [(100_000, now - 10 * DAY), (1000, now - 3600)])
    newer = archive_rows(db, HOST, newer_than=cutoff)
    assert newer == 1002
    run_cli(server.database, "retention", "set", HOST, "archive", "1d")
    server.start()
    SERVER["port"] = server.c2s_port
    pinger = Pinger(server.c2s_port)
    try:
        caught = wait_until(lambda: running_sweep(server.database), timeout=120, every=0.02)
        assert caught, "no sweep seen under way"
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        server.proc = None
    finally:
        first_rtts = pinger.finish()
    left_old = archive_rows(db, HOST) - archive_rows(db, HOST, newer_than=cutoff)
    assert 0 < left_old < 100_000, left_old
    assert archive_rows(db, HOST, newer_than=cutoff) == newer
    # The dead process's lease runs out after a minute: the restarted server's clock is past it.
    clock.set_offset(120)
    server.start()
    SERVER["port"] = server.c2s_port
    pinger = Pinger(server.c2s_port)
    try:
        done = wait_until(lambda: [s for s in sweeps(server, "archive") if s["state"] == "done"], timeout=900)
    finally:
        rtts = pinger.finish()
        server.stop()
    assert done, sweeps(server, "archive")
    [rec] = done
    assert rec["id"] == caught[0] and rec["parts"] >= 2, rec
    # Prosody's database and the core's store commit apart: a kill between the two loses the count
    # of the step under way (never the deletion), so the count may be one step (2,000 at most) short.
    assert 100_000 - 2_000 <= rec["deleted"] <= 100_000 and rec["failed"] == 0, rec
    assert archive_rows(db, HOST, newer_than=cutoff) == newer
    assert archive_rows(db, HOST) == newer
    log = run_cli(server.database, "retention", "log", HOST).stdout
    # The CLI's table: one row for the sweep, both parts (before and after the kill) in it.
    assert any(line.split()[:1] == [str(rec["id"])] and " done " in line and f" {rec['deleted']} " in line
               for line in log.splitlines()), log
    # Every ping was answered, before the kill and after the restart (round trips: benches).
    assert pinger.error is None and first_rtts and rtts, (pinger.error, len(first_rtts), len(rtts))
    print(f"\n{ping_summary(first_rtts + rtts)}; sweep: {rec['steps']} steps, longest "
          f"{rec['longest_step_us'] / 1000:.2f} ms, {rec['parts']} parts")
    server.start()
    SERVER["port"] = server.c2s_port
    try:
        assert "recent" in mam_bodies("bob")
    finally:
        server.stop()
