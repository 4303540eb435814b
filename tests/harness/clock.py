"""A clock a running server can be moved along: libfaketime, preloaded into the server only.

The server reads its wall clock (Lua's os.time, the core's SystemTime in the NIF or the Lua
module) through clock_gettime, which libfaketime answers with the real time plus the offset in
a file that it re-reads on every call. Monotonic clocks stay real, so the servers' timers and
Erlang's own time keep running normally.

libfaketime also keeps a counter in POSIX shared memory that it shares with child processes
through FAKETIME_SHARED. Left to itself, the first preloaded process (ejabberdctl's shell, say)
creates it under its own pid and removes it when that process, or any fork of it, exits; a
process started later then makes its own under *its* pid, and gives up ("sem_open failed and
recreation attempts failed", exit 1) when an object of that pid was left behind by a process
killed earlier. The official CI, with the machine's pids wrapping over many killed servers, saw
that. So the clock creates the pair itself, names it after the test process, hands it to the
server in FAKETIME_SHARED (no process of the server is then its creator, so none removes it),
and removes it when the clock is dropped.
"""

import ctypes
import itertools
import os
import secrets
import struct
import time
import weakref
from pathlib import Path

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SHM_DIR = Path("/dev/shm")
PREFIX = "xh_faketime_"
_serial = itertools.count()


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)  # glibc >= 2.34 has sem_open in libc itself
    libc.sem_open.restype = ctypes.c_void_p
    libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
    libc.sem_close.argtypes = [ctypes.c_void_p]
    libc.sem_unlink.argtypes = [ctypes.c_char_p]
    return libc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _remove_orphans():
    """Removes pairs left by test processes that were killed before they could remove them."""
    for path in SHM_DIR.glob(f"*{PREFIX}*"):
        try:
            pid = int(path.name.split(PREFIX, 1)[1].split("_")[1])
        except (IndexError, ValueError):
            continue
        if not _alive(pid):
            path.unlink(missing_ok=True)


def _shared_pair() -> tuple[str, str]:
    """Creates the semaphore and the counter libfaketime shares; returns their names."""
    _remove_orphans()
    # The pid names the owner (for _remove_orphans); the random part keeps a pid reused after a
    # killed run from meeting that run's leftovers while this process lives.
    n = f"{next(_serial)}{secrets.token_hex(4)}"
    sem, shm = f"/{PREFIX}sem_{os.getpid()}_{n}", f"/{PREFIX}shm_{os.getpid()}_{n}"
    libc = _libc()
    handle = libc.sem_open(sem.encode(), os.O_CREAT | os.O_EXCL, 0o600, 1)
    if not handle:  # glibc's SEM_FAILED is NULL
        raise OSError(ctypes.get_errno(), f"sem_open {sem}")
    libc.sem_close(handle)
    # struct ft_shared_s: ticks, file_idx, then four timespecs whose tv_nsec -1 says "not set",
    # as libfaketime initialises it; the rest of the page stays zero.
    counter = struct.pack("<QQ", 0, 0) + struct.pack("<qq", 0, -1) * 4
    fd = os.open(SHM_DIR / shm[1:], os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, counter.ljust(4096, b"\0"))
    finally:
        os.close(fd)
    return sem, shm


def _remove_pair(sem: str, shm: str):
    _libc().sem_unlink(sem.encode())
    (SHM_DIR / shm[1:]).unlink(missing_ok=True)


class ServerClock:
    def __init__(self, workdir: Path):
        self.file = Path(workdir) / "faketime"
        self.offset = 0
        self.set_offset(0)
        self._shared: tuple[str, str] | None = None

    def _shared_names(self) -> str:
        if self._shared is None:
            self._shared = _shared_pair()
            weakref.finalize(self, _remove_pair, *self._shared)
        return " ".join(self._shared)

    @property
    def env(self) -> dict:
        if not LIBFAKETIME.exists():
            raise FileNotFoundError(f"{LIBFAKETIME} is missing: run scripts/install-deps")
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            "FAKETIME_NO_CACHE": "1",
            "DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_SHARED": self._shared_names(),
        }

    def set_offset(self, seconds: int):
        self.offset = int(seconds)
        self.file.write_text(f"{self.offset:+d}\n")

    def move_to(self, unix_time: int):
        """Makes the server's clock read `unix_time` now (and run on from there)."""
        self.set_offset(unix_time - int(time.time()))

    def now(self) -> int:
        return int(time.time()) + self.offset
