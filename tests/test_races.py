"""The store's promises under contention, from separate processes on one store file, the way a
deployment runs: the server, the admin CLI and a script or two all open the same SQLite file.

- a single-use invite registers exactly one account however many processes race for it;
- concurrent slot requests never grant more than the storage limit holds;
- processes killed with SIGKILL in the middle of writes leave the upload ledger exact (`quota audit`).

Each process loads the C library (the thinnest binding) through ctypes; the CLI takes part too.
Rounds are bounded so the file runs in well under a minute on two cores.
"""

import ctypes
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import time

import pytest

from harness.common import CLI, TARGET

LIB = TARGET / "libxmpp_hosting.so"
DOMAIN = "race.example"


def load():
    lib = ctypes.CDLL(str(LIB))
    lib.xh_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.xh_close.argtypes = [ctypes.c_void_p]
    lib.xh_string_free.argtypes = [ctypes.c_void_p]
    lib.xh_last_error_message.restype = ctypes.c_char_p
    lib.xh_domain_add.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    lib.xh_domain_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    lib.xh_invite_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    lib.xh_registration_begin.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_char_p, ctypes.c_void_p]
    lib.xh_registration_finish.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_bool]
    lib.xh_upload_authorize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int64,
                                        ctypes.c_void_p]
    lib.xh_upload_commit.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_char_p]
    lib.xh_upload_usage.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    lib.xh_upload_audit.argtypes = [ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p]
    return lib


class Store:
    """One handle on the store file, in this process."""

    def __init__(self, path):
        self.lib = load()
        self.h = ctypes.c_void_p()
        self._check(self.lib.xh_open(str(path).encode(), ctypes.byref(self.h)), "xh_open")

    def _check(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what}: {status} {self.lib.xh_last_error_message().decode()}")

    def call_json(self, fn, *args):
        out = ctypes.c_void_p()
        self._check(getattr(self.lib, fn)(self.h, *args, ctypes.byref(out)), fn)
        text = ctypes.cast(out, ctypes.c_char_p).value.decode()
        self.lib.xh_string_free(out)
        return json.loads(text)

    def call(self, fn, *args):
        self._check(getattr(self.lib, fn)(self.h, *args), fn)

    def close(self):
        self.lib.xh_close(self.h)


def setup_store(path, **settings):
    s = Store(path)
    s.call_json("xh_domain_add", DOMAIN.encode())
    for key, value in settings.items():
        s.call_json("xh_domain_set", DOMAIN.encode(), key.encode(), value.encode())
    return s


# --- single-use invites ------------------------------------------------------------------------

def redeem(path, token, username, barrier, results):
    s = Store(path)
    barrier.wait()
    d = s.call_json("xh_registration_begin", DOMAIN.encode(), username.encode(), None, token.encode())
    if d["decision"] == "allowed":
        s.call("xh_registration_finish", d["id"], True)
    results.put((username, d["decision"]))
    s.close()


def redeem_with_cli(path, token, username, barrier, results):
    """The admin's command line in the same race, competing for the store's lock while it lists."""
    barrier.wait()
    subprocess.run([str(CLI), "--db", str(path), "invite", "list", DOMAIN], capture_output=True, timeout=60)
    results.put((username, "cli"))


@pytest.mark.parametrize("processes", [8, 16])
def test_a_single_use_invite_registers_exactly_one_account_among_racing_processes(tmp_path, processes):
    ctx = mp.get_context("fork")
    path = tmp_path / "store.db"
    s = setup_store(path)
    for _ in range(6):
        token = s.call_json("xh_invite_create", json.dumps({"domain": DOMAIN, "uses": 1}).encode())["token"]
        barrier, results = ctx.Barrier(processes + 1), ctx.Queue()
        procs = [ctx.Process(target=redeem, args=(path, token, f"user{i}", barrier, results))
                 for i in range(processes)]
        procs.append(ctx.Process(target=redeem_with_cli, args=(path, token, "cli", barrier, results)))
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        winners = [u for u, d in outcomes if d == "allowed"]
        assert len(winners) == 1, outcomes
        assert sum(1 for _, d in outcomes if d == "refused") == processes - 1, outcomes
    s.close()


# --- storage limit -----------------------------------------------------------------------------

def request_slots(path, size, count, barrier, results):
    s = Store(path)
    barrier.wait()
    granted = 0
    for _ in range(count):
        d = s.call_json("xh_upload_authorize", DOMAIN.encode(), b"alice", size)
        granted += d["decision"] == "granted"
    results.put(granted)
    s.close()


def test_concurrent_slot_requests_never_grant_more_than_the_storage_limit(tmp_path):
    ctx = mp.get_context("fork")
    path = tmp_path / "store.db"
    size, limit_files = 1000, 7
    s = setup_store(path, **{"uploads.user_storage": str(size * limit_files), "uploads.slot_lifetime": "3600"})
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=request_slots, args=(path, size, 5, barrier, results)) for _ in range(8)]
    for p in procs:
        p.start()
    granted = sum(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # 40 requests for 7 files' worth: exactly 7 granted, never 8.
    assert granted == limit_files
    usage = s.call_json("xh_upload_usage", DOMAIN.encode(), b"alice")
    assert usage["reserved"] == size * limit_files, usage
    s.close()


# --- SIGKILL during writes ---------------------------------------------------------------------

def upload_forever(path, worker):
    s = Store(path)
    n = 0
    while True:
        d = s.call_json("xh_upload_authorize", DOMAIN.encode(), f"user{worker % 3}".encode(), 100 + n % 50)
        if d["decision"] == "granted":
            s.call("xh_upload_commit", d["id"], 100 + n % 50, f"/files/{worker}/{n}".encode())
        n += 1


def test_processes_killed_mid_write_leave_the_upload_ledger_exact(tmp_path):
    ctx = mp.get_context("fork")
    path = tmp_path / "store.db"
    s = setup_store(path)
    rng = random.Random(0x5eed)
    kills = 0
    for round_ in range(10):
        procs = [ctx.Process(target=upload_forever, args=(path, round_ * 4 + i)) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            time.sleep(rng.uniform(0.05, 0.3))
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == -signal.SIGKILL
    assert kills == 40
    # Something was written, or the test proves nothing.
    usage = s.call_json("xh_upload_usage", DOMAIN.encode(), None)
    assert usage["stored"] > 0, usage
    assert s.call_json("xh_upload_audit", False) == []
    r = subprocess.run([str(CLI), "--db", str(path), "--json", "quota", "audit"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [], r.stdout
    s.close()
