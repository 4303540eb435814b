"""A clock a running server can be moved along: libfaketime, preloaded into the server only.

The server reads its wall clock (Lua's os.time, the core's SystemTime in the NIF or the Lua
module) through clock_gettime, which libfaketime answers with the real time plus the offset in
a file that it re-reads on every call. Monotonic clocks stay real, so the servers' timers and
Erlang's own time keep running normally.
"""

import time
from pathlib import Path

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


class ServerClock:
    def __init__(self, workdir: Path):
        self.file = Path(workdir) / "faketime"
        self.offset = 0
        self.set_offset(0)

    @property
    def env(self) -> dict:
        if not LIBFAKETIME.exists():
            raise FileNotFoundError(f"{LIBFAKETIME} is missing: run scripts/install-deps")
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            "FAKETIME_NO_CACHE": "1",
            "DONT_FAKE_MONOTONIC": "1",
        }

    def set_offset(self, seconds: int):
        self.offset = int(seconds)
        self.file.write_text(f"{self.offset:+d}\n")

    def move_to(self, unix_time: int):
        """Makes the server's clock read `unix_time` now (and run on from there)."""
        self.set_offset(unix_time - int(time.time()))

    def now(self) -> int:
        return int(time.time()) + self.offset
