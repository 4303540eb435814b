"""scripts/demo's server (tests/harness/prosody.py demo): the printed account logs in, the demo domain is in
the store, its upload service applies the demo's limits, and Ctrl-C or SIGTERM stops Prosody with it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.client import login, request_slots
from harness.common import REPO, free_port, run_cli, wait_for_port


def prosody_pid(workdir) -> int | None:
    """The demo's Prosody, from the pidfile mod_posix writes, if that process is still there."""
    try:
        pid = int((workdir / "prosody.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_serves_the_printed_account_and_stops_on_signal(tmp_path, stop_signal):
    c2s = free_port()
    env = dict(os.environ, DEMO_C2S_PORT=str(c2s), DEMO_HTTP_PORT=str(free_port()), DEMO_PASSWORD="pw-for-test")
    out = open(tmp_path / "demo.out", "w+")
    demo = subprocess.Popen([sys.executable, str(REPO / "tests/harness/prosody.py"), "demo", str(tmp_path / "demo")],
                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(c2s, demo, timeout=60)
        deadline = time.monotonic() + 10
        while "Ctrl-C stops it." not in (text := (tmp_path / "demo.out").read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"JID admin@demo.localhost  password pw-for-test  server 127.0.0.1 port {c2s}" in text
        assert "mod_xmpp_hosting domain list" in text
        assert login(c2s, "admin@demo.localhost", "pw-for-test")
        names = [line.split()[0] for line in run_cli(tmp_path / "demo/data/xmpp_hosting.sqlite", "domain", "list")
                 .stdout.splitlines()[1:]]
        assert names == ["demo.localhost"]
        # The upload service decides with the demo's limits: 10 MB a file.
        [big, small] = request_slots(c2s, "admin@demo.localhost", "pw-for-test", "share.demo.localhost",
                                     [{"filename": "big.bin", "size": 10**7 + 1}, {"filename": "a.txt", "size": 5}])
        assert big.error[:2] == ("modify", "not-acceptable") and small.ok
        server = prosody_pid(tmp_path / "demo")
        assert server
        os.kill(demo.pid, stop_signal)
        demo.wait(timeout=20)
        with pytest.raises(ProcessLookupError):  # stop_process_group waited for it: no zombie either
            os.kill(server, 0)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        if (pid := prosody_pid(tmp_path / "demo")) is not None:
            os.killpg(pid, signal.SIGKILL)
