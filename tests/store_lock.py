"""What the store-lock tests of both servers share (test_prosody_store_lock.py,
test_ejabberd_store_lock.py): another process's write lock on the store, and a raw client session
whose replies are read by id."""

import base64
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from harness.client import RawStream


def lock_holder(database: Path) -> sqlite3.Connection:
    """Another process's write lock on the store, held until COMMIT. Taking it may wait a moment
    for a write of the server's own."""
    holder = sqlite3.connect(database, timeout=30, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def past_the_removal_second(database: Path, host: str):
    """Returns once the wall clock is past the second the store recorded for `host`'s removal
    (domain_removals.removed_at): a server's request to host it made in that same second loses to
    the removal (f52a7ac), so a test that removes a host and then has the server add it back asks
    in a later second."""
    with closing(sqlite3.connect(database, timeout=30)) as db:
        [removed_at] = db.execute("SELECT removed_at FROM domain_removals WHERE name = ?", (host,)).fetchone()
    deadline = time.monotonic() + 10
    while time.time() < removed_at + 1:
        assert time.monotonic() < deadline, (removed_at, time.time())
        time.sleep(0.05)


def reply_to(stream: RawStream, iq_id: str) -> str:
    """The whole IQ reply with `iq_id`, self-closing (a result) or not (an error)."""
    pattern = re.compile(rb"<iq[^>]*id=['\"]" + iq_id.encode() + rb"['\"][^>]*?(/>|>.*?</iq>)", re.S)
    while not (m := pattern.search(stream.buffer)):
        chunk = stream.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"stream closed before the reply to {iq_id}: {stream.buffer[-500:]!r}")
        stream.buffer += chunk
    return m.group(0).decode(errors="replace")


def logged_in(port: int, host: str, username: str, password: str) -> RawStream:
    """A raw stream authenticated (SASL PLAIN) as username@host, with a bound resource."""
    stream = RawStream(port, host)
    plain = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    stream.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
    stream.read_until(b"<success")
    stream.send(f"<?xml version='1.0'?><stream:stream to='{host}' xmlns='jabber:client' "
                "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".encode())
    stream.read_until(b"</stream:features>")
    stream.send(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert "result" in reply_to(stream, "bind")
    return stream


# ejabberd: the processes waiting in xmpp_hosting_nif:answer/1 for an answer of the core's worker.
IN_ANSWER = ("[P || P <- erlang:processes(), "
             "erlang:process_info(P, current_function) =:= {current_function, {xmpp_hosting_nif, answer, 1}}]")


def processes_in_answer(ej, count: int, timeout: float = 20) -> int:
    """How many of the node's processes wait in xmpp_hosting_nif:answer/1, once at least `count`
    do (polled inside the node, so that one probe answers as soon as they are there), or how many
    did after `timeout` seconds."""
    polls = int(timeout * 100)
    return int(ej.eval(
        f"Count = fun() -> length({IN_ANSWER}) end, "
        f"Poll = fun P(0) -> Count(); P(N) -> case Count() of C when C >= {count} -> C; "
        f"_ -> timer:sleep(10), P(N - 1) end end, Poll({polls}).",
        timeout=timeout + 60))


def current_functions(ej) -> str:
    """How many of the node's processes are in each function, for a test's failure."""
    return ej.eval("lists:foldl(fun(P, M) -> case erlang:process_info(P, current_function) of "
                   "{current_function, F} -> maps:update_with(F, fun(N) -> N + 1 end, 1, M); _ -> M end end, "
                   "#{}, erlang:processes()).")
