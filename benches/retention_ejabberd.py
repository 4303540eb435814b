#!/usr/bin/env python3
"""ejabberd MAM retention on SQLite: our sweep beside ejabberd's own commands, on the same data.

    PROFILE=release scripts/build && python3 benches/retention_ejabberd.py [--rows 1000000] [--keep DIR]

The nodes load the NIF given by --nif (default: the release build, target/release/
libxmpp_hosting_nif.so, whatever erlang/mod_xmpp_hosting/priv/lib holds at the moment); the
output names it with its build time.

The data: ejabberd's own SQLite schema (lite.sql of the installed ejabberd, default schema),
`--rows` one-to-one messages of 100 users with 37 peers (a realistic ~400-byte stanza each),
spread evenly over the last 200 days, so half are older than a 100-day cutoff. The file is made
once and copied for each contender, so each starts from the same rows:

  - ours: `ejabberdctl xmpp_hosting_retention_sweep HOST archive false` with the domain's archive
    retention at 100 days (mod_xmpp_hosting_retention: the core's engine plans each step, run on
    ejabberd's own SQL connection). Rows/s over the command's wall time; the longest step as the
    sweep's audit record has it (how long ejabberd's connection was busy with the step, as the
    module measured it). The node runs with XH_RETENTION_PROFILE set: the core prints where the
    time went (round trips and time in ejabberd's connection, p50/p90/p99/max; checkpoints; the
    engine between steps), kept as "profile" in the output.
  - `delete_old_mam_messages_batch HOST chat 100 1000 RATE` (ejabberd's batched delete, 1,000
    rows a batch, RATE high enough not to throttle), polled with `_status` until it is done.
  - `delete_old_mam_messages chat 100` (one statement), with ejabberdctl's --no-timeout.

Figures, not assertions; the load (uptime) is printed beside them.
"""

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness.common import run_cli  # noqa: E402
from harness.ejabberd import Ejabberd  # noqa: E402

HOST = "bench.example"
DAYS = 100
SPAN_DAYS = 200


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def make_db(path: Path, rows: int, schema_sql: Path):
    """ejabberd's schema and `rows` archived messages, oldest first (ids follow time)."""
    c = sqlite3.connect(path)
    c.executescript(schema_sql.read_text())
    now = int(time.time() * 1e6)
    span = SPAN_DAYS * 86400 * 1_000_000
    batch = []
    q = ("INSERT INTO archive (username, timestamp, peer, bare_peer, xml, txt, kind, nick) "
         "VALUES (?,?,?,?,?,?,?,?)")
    for i in range(rows):
        ts = now - span + i * (span // rows)
        user = f"user{i % 100}"
        peer = f"peer{i % 37}@other.example/res"
        body = f"message number {i} " + "x" * 80
        xml = (f'<message xmlns="jabber:client" from="{user}@{HOST}/r" to="{peer}" type="chat" id="m{i}">'
               f'<body>{body}</body><origin-id xmlns="urn:xmpp:sid:0" id="o{i}"/></message>')
        batch.append((user, ts, peer, peer.split("/")[0], xml, body, "chat", ""))
        if len(batch) == 10_000:
            c.executemany(q, batch)
            batch.clear()
    c.executemany(q, batch)
    c.commit()
    c.close()


def count_rows(path: Path) -> int:
    c = sqlite3.connect(path)
    try:
        return c.execute("SELECT count(*) FROM archive").fetchone()[0]
    finally:
        c.close()


NIF = REPO / "target" / "release" / "libxmpp_hosting_nif.so"


class BenchNode(Ejabberd):
    """A node that loads the NIF the bench was told to use (the module's priv/lib copy is the
    last `scripts/build`'s, debug or release)."""

    def _compile_module(self):
        super()._compile_module()
        shutil.copy(NIF, self.dir / "priv" / "lib" / "xmpp_hosting_nif.so")


def node_for(work: Path, db: Path, server_env: dict | None = None) -> Ejabberd:
    return BenchNode(
        work, host=HOST, install="config",
        extra_config=f'sql_type: sqlite\nsql_database: "{db}"\n',
        extra_modules="  mod_mam:\n    db_type: sql\n    default: always\n  mod_xmpp_hosting_retention: {}\n",
        server_env=server_env,
    )


def ours(work: Path, db: Path) -> dict:
    # XH_RETENTION_PROFILE: the core prints where each part's time went (the node's console).
    with node_for(work, db, {"XH_RETENTION_PROFILE": "1"}) as ej:
        run_cli(ej.database, "domain", "add", HOST)
        run_cli(ej.database, "retention", "set", HOST, "archive", f"{DAYS}d")
        load = uptime()
        t0 = time.monotonic()
        out = ej.ctl("xmpp_hosting_retention_sweep", HOST, "archive", "false", no_timeout=True, timeout=3600).stdout
        wall = time.monotonic() - t0
        log = json.loads(run_cli(ej.database, "--json", "retention", "log", HOST).stdout)
        profile = [line for line in ej.console_log.read_text(errors="replace").splitlines() if "profile:" in line]
    rec = [s for s in log if s["kind"] == "archive" and not s["dry_run"]][0]
    c = sqlite3.connect(db)
    mode = c.execute("PRAGMA journal_mode").fetchone()[0]
    c.close()
    return {"what": f"ours (xmpp_hosting_retention_sweep; journal mode after: {mode})", "deleted": rec["deleted"],
            "wall_s": wall,
            "steps": rec["steps"], "longest_step_ms": rec["longest_step_us"] / 1000,
            "step_time_s": rec["duration_us"] / 1e6, "load_before": load, "load_after": uptime(),
            "text": out.strip(), "profile": profile}


def batch(work: Path, db: Path, before: int) -> dict:
    with node_for(work, db) as ej:
        load = uptime()
        t0 = time.monotonic()
        r = ej.ctl("delete_old_mam_messages_batch", HOST, "chat", str(DAYS), "1000", "100000000",
                   check=False, no_timeout=True)
        status = ""
        while True:
            status = ej.ctl("delete_old_mam_messages_status", HOST, check=False).stdout.strip()
            if "in progress" not in status.lower():
                break
            time.sleep(0.2)
        wall = time.monotonic() - t0
    deleted = before - count_rows(db)
    return {"what": "delete_old_mam_messages_batch (1000 a batch)", "deleted": deleted, "wall_s": wall,
            "load_before": load, "load_after": uptime(), "text": (r.stdout + r.stderr).strip() + " / " + status}


def one_shot(work: Path, db: Path, before: int) -> dict:
    with node_for(work, db) as ej:
        load = uptime()
        t0 = time.monotonic()
        r = ej.ctl("delete_old_mam_messages", "chat", str(DAYS), check=False, no_timeout=True, timeout=3600)
        wall = time.monotonic() - t0
        after_query = ej.ctl("get_last", "user1", HOST, check=False)
        errors = [line for line in ej.log_file.read_text(errors="replace").splitlines()
                  if re.search(r"\[error\]|sqlite", line, re.I)][-3:]
    deleted = before - count_rows(db)
    return {"what": "delete_old_mam_messages (one statement)", "deleted": deleted, "wall_s": wall,
            "load_before": load, "load_after": uptime(),
            "text": f"exit {r.returncode}: {(r.stdout + r.stderr).strip()[:200]}; next query exit "
                    f"{after_query.returncode}; log: {errors}"}


def main():
    global NIF
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="directory to keep (and reuse) the generated database in")
    ap.add_argument("--only", choices=["ours", "batch", "one_shot"], action="append")
    ap.add_argument("--nif", type=Path, default=NIF, help="the NIF the nodes load (default: the release build)")
    args = ap.parse_args()
    NIF = args.nif.resolve()
    if not NIF.exists():
        sys.exit(f"{NIF} is missing: build it first (PROFILE=release scripts/build)")
    built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(NIF.stat().st_mtime))
    head = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %cd", "--date=iso"],
                          capture_output=True, text=True).stdout.strip()
    print(f"NIF {NIF} (built {built}); repository at {head}; {uptime()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="xh-bench-retention-ej-"))
    src_dir = args.keep or work
    src_dir.mkdir(parents=True, exist_ok=True)
    src = src_dir / f"archive-{args.rows}.db"
    probe = Ejabberd(work / "probe")
    schema = probe.ejabberd_lib / "priv" / "sql" / "lite.sql"
    if not src.exists():
        t0 = time.monotonic()
        make_db(src, args.rows, schema)
        print(f"made {args.rows} rows in {time.monotonic() - t0:.0f} s ({src})", flush=True)
    before = count_rows(src)
    print(f"ejabberd {probe.version}; {before} rows, cutoff {DAYS} days of {SPAN_DAYS}", flush=True)
    results = []
    try:
        for name, run in [("ours", ours), ("batch", batch), ("one_shot", one_shot)]:
            if args.only and name not in args.only:
                continue
            d = work / name
            d.mkdir()
            db = d / "ejabberd.db"
            shutil.copy(src, db)
            subprocess.run(["sync"])
            res = run(d, db) if name == "ours" else run(d, db, before)
            res["rows_per_s"] = res["deleted"] / res["wall_s"] if res["wall_s"] else 0
            results.append(res)
            print(json.dumps(res, indent=1), flush=True)
            os.remove(db)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nsummary:")
    for r in results:
        extra = f", longest step {r['longest_step_ms']:.2f} ms over {r['steps']} steps" if "steps" in r else ""
        print(f"  {r['what']}: {r['deleted']} rows in {r['wall_s']:.1f} s = {r['rows_per_s']:.0f} rows/s{extra}"
              f"  [load before: {r['load_before'].split('load average:')[-1].strip()}]")


if __name__ == "__main__":
    main()
