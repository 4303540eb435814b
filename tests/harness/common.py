"""What every server harness needs: paths to the build, free loopback ports, waiting, cleanup."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("PROFILE", "debug")
TARGET = REPO / "target" / PROFILE
CLI = TARGET / "xmpp-hosting"
LUA_CPATH_DIR = REPO / "target" / "lua"
ERLANG_DIR = REPO / "erlang"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


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


def run_cli(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the admin CLI against a store file."""
    if not CLI.exists():
        raise FileNotFoundError(f"{CLI} is missing: run scripts/build first")
    return subprocess.run([str(CLI), "--db", str(db), *args], capture_output=True, text=True, check=check, timeout=60)
