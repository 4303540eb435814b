"""The Lua module's retention methods (what mod_xmpp_hosting calls on Prosody), run in a plain
lua5.4 against a store file: values come back as the core words them, errors as nil, message,
code, and a sweep runs on the core's worker and is awaited through its pending result."""

import os
import subprocess
import time

from harness.common import LUA_CPATH_DIR, run_cli

SCRIPT = r"""
local xh = require "xmpp_hosting"
local h = assert(xh.open(arg[1]))
local root = arg[2]
local function show(label, ...) print(label, ...) end
local p = assert(h:set_retention("lua.example", "uploads", "1s"))
show("policy", p.uploads, p.archive, h:retention_policy("lua.example").uploads)
show("negative", h:set_retention("lua.example", "archive", "-5"))
show("unit", h:set_retention("lua.example", "archive", "5 fortnights"))
assert(h:set_retention("lua.example", "archive", "1w"))
show("user", h:set_user_archive_retention("lua.example", "alice", "2d"))
show("user-long", h:set_user_archive_retention("lua.example", "alice", "1y"))
show("user-default", h:set_user_archive_retention("lua.example", "alice", nil))
local function await(pending)
  while not pending:ready() do end
  return pending:result()
end
local dry = assert(await(assert(h:start_retention_sweep("lua.example", "uploads", {dry_run = true, upload_roots = {root}}))))
show("dry", dry.dry_run, dry.deleted, dry.bytes)
local done = assert(await(assert(h:start_retention_sweep("lua.example", "uploads", {upload_roots = {root}}))))
show("sweep", done.state, done.deleted, done.bytes, done.failed)
show("kind", h:start_retention_sweep("lua.example", "mam"))
local log = assert(h:retention_log("lua.example", 10))
show("log", #log, log[1].dry_run, log[2].dry_run)
"""


def test_lua_retention_methods(tmp_path):
    db = tmp_path / "store.sqlite"
    root = tmp_path / "uploads"
    root.mkdir()
    run_cli(db, "domain", "add", "lua.example")
    old = root / "old.bin"
    old.write_bytes(b"123")
    import sqlite3
    with sqlite3.connect(db) as c:  # a counted upload, dated back past the 1 s policy
        c.execute("INSERT INTO upload_files VALUES (?, 'lua.example', 'alice', 3, ?)", (str(old), int(time.time()) - 60))
    script = tmp_path / "retention.lua"
    script.write_text(SCRIPT)
    r = subprocess.run(["lua5.4", str(script), str(db), str(root)], capture_output=True, text=True, timeout=60,
                       env={"LUA_CPATH_5_4": f"{LUA_CPATH_DIR}/?.so;;", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("\t", 1) for line in r.stdout.splitlines())
    assert lines["policy"] == "1s\tnever\t1s"
    assert lines["negative"].startswith("nil\t") and "negative" in lines["negative"]
    assert lines["negative"].endswith("\tinvalid-argument")
    assert "unknown unit" in lines["unit"]
    assert lines["user"] == "2d"
    assert "at most" in lines["user-long"] and lines["user-long"].endswith("invalid-argument")
    assert lines["user-default"] == "1w"
    assert lines["dry"] == "true\t1\t3"
    assert lines["sweep"] == "done\t1\t3\t0"
    assert not old.exists()
    assert "archive, muc or uploads" in lines["kind"]
    assert lines["log"] == "2\tfalse\ttrue"
