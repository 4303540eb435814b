"""scripts/demo's server (tests/harness/prosody.py demo): the printed account logs in, over STARTTLS
too; every command the banner prints works pasted into a fresh shell; the demo domain is in the
store, its upload service applies the demo's limits and hands out slot URLs a stock HTTP client can
PUT to; the admin password never shows on a command line; Ctrl-C or SIGTERM stops Prosody with it."""

import contextlib
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from harness.client import login, login_starttls, register, request_slots
from harness.common import REPO, free_port, run_cli, wait_for_port

# Its own per run, so no other process on the machine can show it by chance.
PASSWORD = f"pw-{secrets.token_hex(8)}"


def prosody_pid(workdir) -> int | None:
    """The demo's Prosody, from the pidfile mod_posix writes, if that process is still there."""
    try:
        pid = int((workdir / "prosody.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def command_lines_showing(secret: str, stop: threading.Event, seen: list):
    """Collects every process command line that contains `secret` until `stop` is set; prosodyctl
    runs for a few hundred milliseconds, far longer than one pass over /proc."""
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if any(secret.encode() in a for a in args):
                seen.append(b" ".join(args).decode(errors="replace"))
        time.sleep(0.005)


@contextlib.contextmanager
def running_demo(tmp_path):
    """Starts the demo as scripts/demo does, waits for its banner, and yields (process, banner,
    c2s port, workdir, command lines that showed the password); kills what is left on the way out."""
    c2s = free_port()
    workdir = tmp_path / "demo"
    env = dict(os.environ, DEMO_C2S_PORT=str(c2s), DEMO_HTTP_PORT=str(free_port()), DEMO_PASSWORD=PASSWORD)
    out = open(tmp_path / "demo.out", "w+")
    stop, shown = threading.Event(), []
    watcher = threading.Thread(target=command_lines_showing, args=(PASSWORD, stop, shown), daemon=True)
    watcher.start()
    demo = subprocess.Popen([sys.executable, str(REPO / "tests/harness/prosody.py"), "demo", str(workdir)],
                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(c2s, demo, timeout=60)
        deadline = time.monotonic() + 10
        while "Ctrl-C stops it." not in (text := (tmp_path / "demo.out").read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        watcher.join()
        yield demo, text, c2s, workdir, shown
    finally:
        stop.set()
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        if (pid := prosody_pid(workdir)) is not None:
            os.killpg(pid, signal.SIGKILL)


def printed_commands(banner: str) -> list[str]:
    return [line.split("$ ", 1)[1] for line in banner.splitlines() if line.lstrip().startswith("$ ")]


def fresh_shell(command: str) -> subprocess.CompletedProcess:
    """Runs a pasted command as a new login would: bash, none of the test session's LUA_* paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUA_")}
    return subprocess.run(["bash", "-c", command], env=env, cwd="/", capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_serves_the_printed_account_and_stops_on_signal(tmp_path, stop_signal):
    with running_demo(tmp_path) as (demo, text, c2s, workdir, shown):
        assert f"JID admin@demo.localhost  password {PASSWORD}  server 127.0.0.1 port {c2s}" in text
        assert shown == []  # prosodyctl got the password on stdin
        assert login(c2s, "admin@demo.localhost", PASSWORD)
        names = [line.split()[0] for line in run_cli(workdir / "data/xmpp_hosting.sqlite", "domain", "list")
                 .stdout.splitlines()[1:]]
        assert names == ["demo.localhost"]
        server = prosody_pid(workdir)
        assert server
        os.kill(demo.pid, stop_signal)
        demo.wait(timeout=20)
        with pytest.raises(ProcessLookupError):  # stop_process_group waited for it: no zombie either
            os.kill(server, 0)


def test_the_banners_commands_work_pasted_a_client_logs_in_over_starttls_and_uploads(tmp_path):
    with running_demo(tmp_path) as (demo, text, c2s, workdir, _):
        commands = printed_commands(text)
        assert any("prosodyctl" in c for c in commands) and any("xmpp-hosting" in c for c in commands)
        for command in commands:
            for word in shlex.split(command):  # every path is absolute: the commands work from any directory
                value = word.split("=", 1)[1] if word.startswith("LUA_") else word
                assert "/" not in value or value.startswith("/"), (command, word)
            r = fresh_shell(command)
            assert r.returncode == 0 and "traceback" not in (r.stdout + r.stderr).lower(), (command, r.stdout, r.stderr)
            if " invite create " in command:
                # The invite the pasted command made registers an account.
                token = re.search(r"preauth=([\w-]+)", r.stdout).group(1)
                assert register(c2s, "friend@demo.localhost", "friend-pass", token=token).ok
        cli_list = next(c for c in commands if "xmpp-hosting" in c and c.endswith(" domain list"))
        assert re.search(r"^demo\.localhost +open ", fresh_shell(cli_list).stdout, re.M)  # `domain set` took effect

        # The certificate the banner names: a client that requires STARTTLS and checks the
        # certificate against it (and its name against demo.localhost) logs in.
        cert = re.search(r"trust (\S+\.crt)", text).group(1)
        assert Path(cert).is_absolute()
        assert login_starttls(c2s, "admin@demo.localhost", PASSWORD, cert)
        assert login_starttls(c2s, "friend@demo.localhost", "friend-pass", cert)

        before = fresh_shell(next(c for c in commands if " quota show " in c)).stdout
        # The upload service decides with the demo's limits (10 MB a file), and its slot URL is one
        # a stock HTTP client reaches by itself: no Host header to fake, no name to add to /etc/hosts.
        [big, small] = request_slots(c2s, "admin@demo.localhost", PASSWORD, "share.demo.localhost",
                                     [{"filename": "big.bin", "size": 10**7 + 1}, {"filename": "a.txt", "size": 5}])
        assert big.error[:2] == ("modify", "not-acceptable") and small.ok
        assert small.put_url.startswith("http://127.0.0.1:")
        # The pasted quota command reads what the server wrote: the 5-byte slot shows up in it.
        quota = next(c for c in commands if " quota show " in c)
        assert re.search(r"\b5 bytes\b", fresh_shell(quota).stdout) and not re.search(r"\b5 bytes\b", before)
        put = urllib.request.Request(small.put_url, data=b"hello", method="PUT",
                                     headers={**small.headers, "Content-Type": "text/plain"})
        with urllib.request.urlopen(put, timeout=30) as answer:
            assert answer.status == 201
        with urllib.request.urlopen(small.put_url, timeout=30) as answer:
            assert answer.read() == b"hello"
