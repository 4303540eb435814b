"""A real XMPP client (slixmpp) for the integration tests, plus a raw stream for malformed input.

The servers under test listen on loopback without certificates, so the client speaks plain TCP
with PLAIN authentication; nothing here leaves 127.0.0.1.
"""

import asyncio
import re
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

import slixmpp
import slixmpp.exceptions
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza.error import Error as _ErrorStanza

# slixmpp 1.17 knows the RFC 3920 conditions only; servers answer abuse limits with RFC 6120's
# policy-violation, which it would otherwise refuse to parse.
_ErrorStanza.conditions = set(_ErrorStanza.conditions) | {"policy-violation"}
slixmpp.exceptions._DEFAULT_ERROR_TYPES.setdefault("policy-violation", "modify")

LOOPBACK = "127.0.0.1"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _plain(client: slixmpp.ClientXMPP):
    client.plugin["feature_mechanisms"].unencrypted_plain = True
    # PLAIN only: the servers offer no TLS here, and slixmpp's SCRAM over plain TCP sends the gs2
    # flag "y" (client supports channel binding, server seems not to), which ejabberd 24.12's xmpp
    # library (1.9) refuses as a downgrade ("Invalid channel binding") before a fallback to PLAIN.
    # slixmpp 1.17 already leaves SCRAM out without TLS; this keeps any slixmpp to PLAIN.
    client.plugin["feature_mechanisms"].use_mechs = {"PLAIN"}
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.enable_plaintext = True
    client.use_ipv6 = False


def _error(e: IqError) -> tuple:
    err = e.iq["error"]
    return (err["type"], err["condition"], err["text"])


@dataclass
class Registration:
    ok: bool = False
    preauth: object = None  # None (not sent), "result", or (type, condition, text)
    error: tuple | None = None  # (type, condition, text) when the registration was refused
    notes: list = field(default_factory=list)


class _Registrar(slixmpp.ClientXMPP):
    def __init__(self, jid, password, preauth_xml, outcome, done):
        super().__init__(jid, password)
        _plain(self)
        # slixmpp holds back stanzas other than registration before login; <preauth/> must go first.
        self._always_send_everything = True
        for p in ("xep_0030", "xep_0004", "xep_0066", "xep_0077"):
            self.register_plugin(p)
        self.preauth_xml, self.outcome, self.done = preauth_xml, outcome, done
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("disconnected", lambda _: done.done() or done.set_result(None))

    async def on_register(self, _form):
        try:
            if self.preauth_xml is not None:
                iq = self.Iq()
                iq["type"] = "set"
                iq.append(ET.fromstring(self.preauth_xml))
                try:
                    await iq.send(timeout=10)
                    self.outcome.preauth = "result"
                except IqError as e:
                    self.outcome.preauth = _error(e)
            resp = self.Iq()
            resp["type"] = "set"
            resp["register"]["username"] = self.boundjid.user
            resp["register"]["password"] = self.password
            try:
                await resp.send(timeout=10)
                self.outcome.ok = True
            except IqError as e:
                self.outcome.error = _error(e)
        except IqTimeout:
            self.outcome.notes.append("timeout")
        finally:
            self.disconnect()


def preauth_element(token: str) -> str:
    return f"<preauth xmlns='urn:xmpp:pars:0' token='{token}'/>"


async def _register(port, jid, password, preauth_xml, timeout):
    outcome = Registration()
    done = asyncio.get_running_loop().create_future()
    client = _Registrar(jid, password, preauth_xml, outcome, done)
    client.connect(host=LOOPBACK, port=port)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        client.disconnect()
        await asyncio.sleep(0.1)
    return outcome


def register(port: int, jid: str, password: str, token: str | None = None, preauth_xml: str | None = None,
             timeout: float = 20) -> Registration:
    """Registers `jid` in-band (XEP-0077), presenting `token` first as XEP-0401 `<preauth/>`."""
    if token is not None and preauth_xml is None:
        preauth_xml = preauth_element(token)
    return asyncio.run(_register(port, jid, password, preauth_xml, timeout))


async def _session(port, jid, password, action, timeout, configure=_plain):
    client = slixmpp.ClientXMPP(jid, password)
    configure(client)
    result = asyncio.get_running_loop().create_future()

    async def start(_):
        try:
            value = await action(client)
            result.done() or result.set_result(value)
        except Exception as e:  # reported to the caller below
            result.done() or result.set_exception(e)

    client.add_event_handler("session_start", start)
    client.add_event_handler("failed_auth", lambda _: result.done() or result.set_exception(PermissionError(jid)))
    client.add_event_handler("disconnected", lambda _: result.done() or result.set_exception(ConnectionError(jid)))
    client.connect(host=LOOPBACK, port=port)
    try:
        return await asyncio.wait_for(result, timeout)
    finally:
        client.disconnect()
        await asyncio.sleep(0.1)


async def ping_until(c: slixmpp.ClientXMPP, done, interval: float, timeout: float = 10) -> list[float]:
    """Pings the session's server (XEP-0199) every `interval` seconds until `done()`; returns
    the round trips in seconds. For measuring whether a server keeps answering."""
    c.register_plugin("xep_0199")
    rtts = []
    while not done():
        t0 = time.monotonic()
        await c.plugin["xep_0199"].send_ping(c.boundjid.host, timeout=timeout)
        rtts.append(time.monotonic() - t0)
        await asyncio.sleep(interval)
    return rtts



def register_unreported(port: int, jid: str, password: str, token: str, database) -> None:
    """Registers `jid` with `token` while the core's store (`database`) refuses to record the
    outcome, as a full disk or a broken file would, then ages that registration past the ten
    minutes after which the invite purge settles it (issue 11.7: the account exists, so the
    purge must keep the use spent)."""
    db = sqlite3.connect(database, timeout=10)
    try:
        db.execute("CREATE TRIGGER xh_test_fail_finish BEFORE UPDATE OF state ON registrations "
                   "WHEN NEW.state = 'created' BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        db.commit()
        assert register(port, jid, password, token=token).ok
    finally:
        db.execute("DROP TRIGGER IF EXISTS xh_test_fail_finish")
        db.commit()
    try:
        aged = db.execute("UPDATE registrations SET started_at = started_at - 700 "
                          "WHERE state = 'pending' AND username = ?", (jid.split("@")[0],)).rowcount
        db.commit()
    finally:
        db.close()
    assert aged == 1, f"{aged} pending registration(s) of {jid}"


def ping_summary(rtts: list[float]) -> str:
    """One line for benches: how many pings, their p50, p99 and max round trips."""
    rtts = sorted(rtts)
    ms = lambda q: rtts[min(len(rtts) - 1, int(len(rtts) * q))] * 1000  # noqa: E731
    return (f"pings during the run: {len(rtts)}, p50 {ms(0.5):.1f} ms, p99 {ms(0.99):.1f} ms, "
            f"max {rtts[-1] * 1000:.1f} ms")


def login(port: int, jid: str, password: str, timeout: float = 20) -> bool:
    """Whether `jid` can log in with `password`."""
    async def nothing(_client):
        return True
    try:
        return asyncio.run(_session(port, jid, password, nothing, timeout))
    except (PermissionError, ConnectionError):
        return False


def login_starttls(port: int, jid: str, password: str, ca_file, timeout: float = 20) -> bool:
    """Whether `jid` logs in over STARTTLS as a stock client does once it trusts `ca_file`: TLS
    is required, the server's certificate must chain to that file and name the JID's domain."""
    secured = []

    def starttls(client):
        client.enable_starttls, client.enable_direct_tls, client.enable_plaintext = True, False, False
        client.use_ipv6 = False
        client.ca_certs = ca_file
        client.add_event_handler("tls_success", lambda _: secured.append(True))

    async def check(_client):
        return bool(secured)
    try:
        return asyncio.run(_session(port, jid, password, check, timeout, configure=starttls))
    except (PermissionError, ConnectionError):
        return False


def roster(port: int, jid: str, password: str, timeout: float = 20) -> dict:
    """The user's roster as {contact bare JID: subscription}."""
    async def fetch(client):
        await client.get_roster()
        own = client.client_roster
        return {str(j): own[j]["subscription"] for j in own if str(j) != client.boundjid.bare}
    return asyncio.run(_session(port, jid, password, fetch, timeout))


def adhoc(port: int, jid: str, password: str, node: str, to: str, timeout: float = 20) -> dict:
    """Runs a single-stage ad-hoc command and returns its result form fields (or {'error': note})."""
    async def run(client):
        iq = client.Iq()
        iq["type"] = "set"
        iq["to"] = to
        iq.append(ET.fromstring(f"<command xmlns='http://jabber.org/protocol/commands' node='{node}' action='execute'/>"))
        reply = await iq.send(timeout=10)
        cmd = reply.xml.find("{http://jabber.org/protocol/commands}command")
        note = cmd.find("{http://jabber.org/protocol/commands}note")
        fields = {}
        for f in cmd.iter("{jabber:x:data}field"):
            v = f.find("{jabber:x:data}value")
            fields[f.get("var")] = v.text if v is not None else None
        if note is not None:
            fields["error" if note.get("type") == "error" else "note"] = note.text
        return fields
    return asyncio.run(_session(port, jid, password, run, timeout))


class RawStream:
    """A hand-driven c2s stream for input no library would send (oversized, malformed, non-UTF-8)."""

    def __init__(self, port: int, host: str, timeout: float = 10):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.host = host
        self.buffer = b""
        self.send(f"<?xml version='1.0'?><stream:stream to='{host}' xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".encode())
        self.features = self.read_until(b"</stream:features>")

    def send(self, data: bytes):
        self.sock.sendall(data)

    def read_until(self, marker: bytes) -> str:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"stream closed before {marker!r}; got {self.buffer[-500:]!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return (head + marker).decode(errors="replace")

    def iq(self, iq_id: str, payload: str, type_: str = "set") -> str:
        """Sends an IQ and returns the reply with the same id, as text."""
        self.send(f"<iq type='{type_}' id='{iq_id}'>{payload}</iq>".encode())
        return self.reply(iq_id)

    def reply(self, iq_id: str) -> str:
        """Reads until the IQ reply with this id (other IQs before it are skipped), as text."""
        while True:
            text = self.read_until(b"</iq>")
            if f"id='{iq_id}'" in text or f'id="{iq_id}"' in text:
                return text

    def closed_by_server(self) -> bool:
        """Reads until the server closes the stream (after a stream error, say)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except socket.timeout:
            return False

    def close(self):
        try:
            self.send(b"</stream:stream>")
        except OSError:
            pass
        self.sock.close()


def error_condition(reply: str) -> str | None:
    """The defined condition of an IQ error reply, e.g. 'item-not-found'."""
    m = re.search(r"<(?:\w+:)?([a-z-]+) xmlns=['\"]" + re.escape(STANZAS), reply)
    return m.group(1) if m else None


UPLOAD_NS = "urn:xmpp:http:upload:0"


@dataclass
class SlotAnswer:
    ok: bool
    put_url: str | None = None
    headers: dict = field(default_factory=dict)
    error: tuple | None = None  # (type, condition, text)
    error_el: object = None  # the <error/> element, for XEP-0363 children

    def upload_child(self, name: str):
        """A XEP-0363 child of the error: file-too-large, retry."""
        return None if self.error_el is None else self.error_el.find(f"{{{UPLOAD_NS}}}{name}")

    @property
    def max_file_size(self) -> int | None:
        """The limit a file-too-large error names, if this is one."""
        too_large = self.upload_child("file-too-large")
        return None if too_large is None else int(too_large.findtext(f"{{{UPLOAD_NS}}}max-file-size"))


def _slot_answer(reply) -> SlotAnswer:
    if reply["type"] == "result":
        slot = reply.xml.find(f"{{{UPLOAD_NS}}}slot")
        put = slot.find(f"{{{UPLOAD_NS}}}put")
        headers = {h.get("name"): h.text for h in put.findall(f"{{{UPLOAD_NS}}}header")}
        return SlotAnswer(ok=True, put_url=put.get("url"), headers=headers)
    err = reply.xml.find("{jabber:client}error")
    return SlotAnswer(ok=False, error=(reply["error"]["type"], reply["error"]["condition"], reply["error"]["text"]),
                      error_el=err)


def request_slots(port: int, jid: str, password: str, service: str, requests: list[dict], timeout: float = 30):
    """Sends slot requests (attribute dicts, e.g. {"filename": "a.txt", "size": "10"}) at once, in one session."""
    async def ask(client):
        async def one(attrs):
            iq = client.Iq()
            iq["type"] = "get"
            iq["to"] = service
            el = ET.Element(f"{{{UPLOAD_NS}}}request", {k: str(v) for k, v in attrs.items()})
            iq.append(el)
            try:
                return _slot_answer(await iq.send(timeout=10))
            except IqError as e:
                return _slot_answer(e.iq)
        return await asyncio.gather(*(one(r) for r in requests))
    return asyncio.run(_session(port, jid, password, ask, timeout))


def http_put(http_port: int, url: str, headers: dict, body: bytes) -> int:
    """PUTs to a slot URL through loopback, keeping the URL's host as the Host header."""
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(url)
    conn = http.client.HTTPConnection(LOOPBACK, http_port, timeout=30)
    try:
        conn.request("PUT", u.path, body=body, headers={**headers, "Host": u.netloc,
                                                        "Content-Type": "application/octet-stream"})
        return conn.getresponse().status
    finally:
        conn.close()


def http_put_abandoned(http_port: int, url: str, headers: dict, size: int, sent: int):
    """Starts a PUT of `size` bytes to a slot URL and hangs up after `sent` of them, as a phone
    losing its connection mid-upload does."""
    from urllib.parse import urlsplit
    u = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Host": u.netloc, "Content-Length": size,
                                               "Content-Type": "application/octet-stream"}.items())
    with socket.create_connection((LOOPBACK, http_port), timeout=10) as s:
        s.sendall(f"PUT {u.path} HTTP/1.1\r\n{head}\r\n".encode() + b"x" * sent)
        time.sleep(0.2)


def upload_max_file_size(port: int, jid: str, password: str, service: str, timeout: float = 20) -> int | None:
    """The max-file-size an upload service advertises to `jid` in disco#info (XEP-0363 §4)."""
    async def ask(client):
        iq = client.Iq()
        iq["type"] = "get"
        iq["to"] = service
        iq.append(ET.Element("{http://jabber.org/protocol/disco#info}query"))
        reply = await iq.send(timeout=10)
        for form in reply.xml.iter("{jabber:x:data}x"):
            fields = {f.get("var"): f.findtext("{jabber:x:data}value") for f in form.iter("{jabber:x:data}field")}
            if fields.get("FORM_TYPE") == UPLOAD_NS and fields.get("max-file-size") is not None:
                return int(fields["max-file-size"])
        return None
    return asyncio.run(_session(port, jid, password, ask, timeout))


def message_after(port: int, jid: str, password: str, trigger, contains: str, timeout: float = 30) -> str:
    """Logs in, then runs `trigger()` (in a thread, so it may block) and returns the body of the
    first message that arrives containing `contains`; TimeoutError when none does."""
    async def wait(client):
        got = asyncio.get_running_loop().create_future()

        def on_message(msg):
            if contains in (msg["body"] or "") and not got.done():
                got.set_result(msg["body"])
        client.add_event_handler("message", on_message)
        client.send_presence()
        await asyncio.get_running_loop().run_in_executor(None, trigger)
        return await asyncio.wait_for(got, timeout)
    return asyncio.run(_session(port, jid, password, wait, timeout + 30))


def subscribe_with_token(port: int, jid: str, password: str, contact: str, token: str, until: str,
                         timeout: float = 20) -> str:
    """Sends `contact` a subscription request carrying an invite token (XEP-0379 `<preauth/>`)
    and returns the subscription the roster shows for `contact` once it is `until`; TimeoutError
    when it never is. The client approves the contact's own request, as clients do."""
    async def ask(client):
        await client.get_roster()
        client.send_presence()
        p = client.Presence()
        p["to"], p["type"] = contact, "subscribe"
        p.append(ET.fromstring(preauth_element(token)))
        p.send()
        deadline = time.monotonic() + timeout
        while client.client_roster[contact]["subscription"] != until:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{contact}: {client.client_roster[contact]['subscription']}, not {until}")
            await asyncio.sleep(0.1)
        return until
    return asyncio.run(_session(port, jid, password, ask, timeout + 10))


def subscription_request_from(port: int, jid: str, password: str, contact: str, timeout: float = 20) -> bool:
    """Logs in and waits for the subscription request from `contact` that a server delivers to a
    user who has not answered it yet; TimeoutError when none comes."""
    async def wait(client):
        got = asyncio.get_running_loop().create_future()
        client.auto_authorize = None  # leave the request unanswered, as a user reading it would

        def on_subscribe(p):
            if p["from"].bare == contact and not got.done():
                got.set_result(True)
        client.add_event_handler("presence_subscribe", on_subscribe)
        await client.get_roster()
        client.send_presence()
        return await asyncio.wait_for(got, timeout)
    return asyncio.run(_session(port, jid, password, wait, timeout + 10))
