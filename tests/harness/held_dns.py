"""A nameserver on loopback that holds every query unanswered until the test releases it.

For proving, without a clock, that a server keeps working while a DNS lookup is pending: wait
until the query has arrived here (the lookup has started), check that the server serves
something else and that the lookup has not finished, then `release()`: the held queries and every
later one get NXDOMAIN, so the lookup ends at once with "no such record". Set the store's DNS
timeout far above how long the test holds the queries (it is only a guard against a hang), so
the ordering the test checks never depends on how fast the machine is.

    with HeldNameserver() as ns:
        point_store_at(db, ns.address, timeout_ms=60_000)
        ...start a verification...
        ns.wait_for_query()
        ...the server answers something else; the verification has not finished...
        ns.release()
"""

from __future__ import annotations

import socket
import threading

from .common import LOOPBACK

NXDOMAIN = 3


def nxdomain_reply(query: bytes) -> bytes:
    """The NXDOMAIN answer to `query`: its id and question, no records (nor its EDNS record)."""
    end = 12
    while query[end] != 0:  # the question's name: length-prefixed labels, then a zero byte
        end += 1 + query[end]
    end += 1 + 4  # the zero byte, QTYPE and QCLASS
    flags = bytes([0x80 | (query[2] & 0x79), 0x80 | NXDOMAIN])  # QR, the opcode and RD asked; RA
    return query[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + query[12:end]


class HeldNameserver:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.address = f"{LOOPBACK}:{self.sock.getsockname()[1]}"
        self.queries: list[bytes] = []
        self._held: list[tuple[bytes, tuple]] = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._released = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()
        self._thread.join(10)

    def _serve(self):
        while True:
            try:
                query, peer = self.sock.recvfrom(4096)
            except OSError:  # closed
                return
            with self._lock:
                self.queries.append(query)
                if self._released:
                    self.sock.sendto(nxdomain_reply(query), peer)
                else:
                    self._held.append((query, peer))
            self._arrived.set()

    def wait_for_query(self, timeout: float = 60):
        """Returns once a query has arrived (and is held); a guard against a hang, not a limit."""
        if not self._arrived.wait(timeout):
            raise TimeoutError(f"no DNS query reached {self.address} in {timeout} s")

    def answered(self) -> bool:
        return self._released

    def release(self):
        """Answers the held queries and every later one with NXDOMAIN."""
        with self._lock:
            self._released = True
            for query, peer in self._held:
                self.sock.sendto(nxdomain_reply(query), peer)
            self._held.clear()
