"""What every server harness needs: paths to the build, which server versions to run, free loopback
ports, waiting, cleanup."""

import collections
import fcntl
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("PROFILE", "debug")
TARGET = REPO / "target" / PROFILE
CLI = TARGET / "xmpp-hosting"
LUA_CPATH_DIR = REPO / "target" / "lua"
ERLANG_DIR = REPO / "erlang"
LOOPBACK = "127.0.0.1"
# Where scripts/install-servers unpacks the servers that are not the system's packages.
SERVERS_DIR = Path(os.environ.get("XH_SERVERS_DIR", REPO / "target" / "servers"))


@dataclass(frozen=True)
class ServerTarget:
    """One server version the tests can run against: the system's Debian 12 package (root "/"), or
    a Debian 12 backports build that scripts/install-servers unpacked under SERVERS_DIR."""

    name: str  # what XH_SERVERS and `scripts/test --servers` take: "prosody-13"
    server: str  # "prosody" or "ejabberd"
    series: str  # "0.12", "13", "23.01", "24.12"
    root: Path

    @property
    def major(self) -> tuple[int, ...]:
        """The series as numbers, for version checks in tests: (13,), (0, 12), (24, 12)."""
        return tuple(int(x) for x in self.series.split("."))

    @property
    def system(self) -> bool:
        return self.root == Path("/")

    def path(self, rel: str) -> Path:
        """A file of this installation, e.g. path("usr/sbin/ejabberdctl")."""
        return self.root / rel

    def installed(self) -> bool:
        probe = {"prosody": "usr/bin/prosodyctl", "ejabberd": "usr/sbin/ejabberdctl"}[self.server]
        return self.path(probe).exists() and (self.system or (self.root / ".packages").exists())


TARGETS = {
    t.name: t
    for t in (
        ServerTarget("prosody-0.12", "prosody", "0.12", Path("/")),
        ServerTarget("prosody-13", "prosody", "13", SERVERS_DIR / "prosody-13"),
        ServerTarget("ejabberd-23.01", "ejabberd", "23.01", Path("/")),
        ServerTarget("ejabberd-24.12", "ejabberd", "24.12", SERVERS_DIR / "ejabberd-24.12"),
    )
}
# "none" stands for the tests that start no XMPP server (core, CLI, C ABI).
NO_SERVER = "none"
DEFAULT_SELECTION = ("prosody-0.12", "ejabberd-23.01", NO_SERVER)


def selected_targets() -> list[str]:
    """XH_SERVERS: the comma-separated targets this test session runs (one per server at most; a
    session runs each test once, scripts/test starts one session per generation). Unset: the
    system's servers and the server-independent tests, as before there were several versions."""
    raw = os.environ.get("XH_SERVERS", "")
    names = [n.strip() for n in raw.split(",") if n.strip()] or list(DEFAULT_SELECTION)
    unknown = [n for n in names if n not in TARGETS and n != NO_SERVER]
    if unknown:
        raise ValueError(f"XH_SERVERS names {', '.join(unknown)}; known: {', '.join([*TARGETS, NO_SERVER])}")
    for server in ("prosody", "ejabberd"):
        mine = [n for n in names if n in TARGETS and TARGETS[n].server == server]
        if len(mine) > 1:
            raise ValueError(f"XH_SERVERS names {' and '.join(mine)}: one {server} per test session "
                             "(scripts/test --servers runs one session for each)")
    return names


def target(server: str) -> ServerTarget:
    """The version of `server` ("prosody" or "ejabberd") this session runs; the harnesses start it
    unless told otherwise. Fails clearly when it is not installed."""
    names = [n for n in selected_targets() if n in TARGETS and TARGETS[n].server == server]
    t = TARGETS[names[0]] if names else TARGETS[next(n for n in DEFAULT_SELECTION if n.startswith(server))]
    if not t.installed():
        raise FileNotFoundError(f"{t.name} is not installed under {t.root}: run scripts/install-servers")
    return t


# Listening ports come from below the kernel's ephemeral range (32768-60999 here): a port the
# kernel hands out (bind to 0) is also the next outgoing connection's local port, so a server
# told to listen on it could find it taken by a client of another test session and exit at start.
_PORT_RANGE = (20000, 32000)
_PORT_LOCKS = Path(os.environ.get("TMPDIR", "/tmp")) / "xmpp-hosting-test-ports"
# Open lock files (flock): the newest are held, long enough for a server to bind its port; a bound
# port fails the other sessions' bind test anyway, and a session makes thousands of servers.
_held_ports: collections.deque = collections.deque(maxlen=64)


def free_port() -> int:
    """A loopback port free for TCP and UDP now and reserved for this process: the test sessions
    running side by side never pick the same one (a lock file per port; see _held_ports)."""
    _PORT_LOCKS.mkdir(parents=True, exist_ok=True)
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*_PORT_RANGE)
        lock = open(_PORT_LOCKS / str(port), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if all(_bindable(port, kind) for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)):
            if len(_held_ports) == _held_ports.maxlen:
                _held_ports[0].close()
            _held_ports.append(lock)
            return port
        lock.close()
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE}")


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0, log: Path | None = None):
    """Waits until something accepts TCP connections on loopback:port, or fails with the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}\n{tail(log)}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout}s\n{tail(log)}")


def tail(path: Path | None, lines: int = 60) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop_process_group(proc: subprocess.Popen, timeout: float = 10.0):
    """Stops a server started with start_new_session=True, with everything it spawned."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


def wait_for_domain(db: Path, domain: str, timeout: float = 30.0, log: Path | None = None):
    """Waits until the store hosts `domain`. A server module adds its host as it loads, on the
    core's worker a moment later when the store's lock was busy then (its own housekeeping, say)."""
    deadline = time.monotonic() + timeout
    while run_cli(db, "domain", "show", domain, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server did not add {domain} to the store\n{tail(log)}")
        time.sleep(0.1)


def run_cli(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the admin CLI against a store file."""
    if not CLI.exists():
        raise FileNotFoundError(f"{CLI} is missing: run scripts/build first")
    return subprocess.run([str(CLI), "--db", str(db), *args], capture_output=True, text=True, check=check, timeout=60)
