#!/usr/bin/env python3
"""ejabberd MAM retention on SQLite: our sweep beside ejabberd's own commands, on the same data.

    PROFILE=release scripts/build && python3 benches/retention_ejabberd.py [--rows 1000000] [--keep DIR]
        [--schema default|new] [--only ours|batch|one_shot] [--baseline-nif OLD.so]
    (XH_SERVERS=ejabberd-24.12 for the other ejabberd generation; the admin CLI used is target/release's
    unless PROFILE says otherwise)

The nodes load the NIF given by --nif (default: the release build, target/release/
libxmpp_hosting_nif.so, whatever erlang/mod_xmpp_hosting/priv/lib holds at the moment); the
output names it with its build time.

The data: ejabberd's own SQLite schema (lite.sql of the installed ejabberd, or lite.new.sql with --schema new),
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
  - `delete_old_mam_messages chat 100` (one statement), with ejabberdctl's --no-timeout; ejabberd's
    own call gives up after 5 s while the statement goes on, so its time runs until the file's
    write lock is free again (the transaction committed).

With --baseline-nif OLD.so (e.g. a copy of an earlier build's target/release/libxmpp_hosting_nif.so), our
sweep also runs with that NIF on its own copy of the same rows, right before the others: a claimed gain is
then measured back to back, in the same machine state, and the summary prints the ratio.

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
# The harness's admin CLI is target/$PROFILE's: the release one, beside the release NIF (a stale
# debug CLI may not know the store's newest migration).
os.environ.setdefault("PROFILE", "release")
sys.path.insert(0, str(REPO / "tests"))
from harness.common import run_cli  # noqa: E402
from harness.ejabberd import Ejabberd  # noqa: E402

HOST = "bench.example"
DAYS = 100
SPAN_DAYS = 200


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def make_db(path: Path, rows: int, schema_sql: Path):
    """ejabberd's schema and `rows` archived messages, oldest first (ids follow time). The
    columns a version's schema has beside 23.01's are filled as ejabberd fills them: server_host
    (new_sql_schema) with the host, origin_id (24.x) with the message's origin-id."""
    c = sqlite3.connect(path)
    c.executescript(schema_sql.read_text())
    columns = [r[1] for r in c.execute("PRAGMA table_info(archive)")]
    extra = [col for col in ("server_host", "origin_id") if col in columns]
    now = int(time.time() * 1e6)
    span = SPAN_DAYS * 86400 * 1_000_000
    batch = []
    names = ["username", "timestamp", "peer", "bare_peer", "xml", "txt", "kind", "nick", *extra]
    q = f"INSERT INTO archive ({', '.join(names)}) VALUES ({','.join('?' * len(names))})"
    for i in range(rows):
        ts = now - span + i * (span // rows)
        user = f"user{i % 100}"
        peer = f"peer{i % 37}@other.example/res"
        body = f"message number {i} " + "x" * 80
        origin = f"{(i * 2654435761) % 2**32:08x}-o{i}"  # unordered, as clients' ids are
        xml = (f'<message xmlns="jabber:client" from="{user}@{HOST}/r" to="{peer}" type="chat" id="m{i}">'
               f'<body>{body}</body><origin-id xmlns="urn:xmpp:sid:0" id="{origin}"/></message>')
        values = {"server_host": HOST, "origin_id": origin}
        batch.append((user, ts, peer, peer.split("/")[0], xml, body, "chat", "", *(values[e] for e in extra)))
        if len(batch) == 10_000:
            c.executemany(q, batch)
            batch.clear()
    c.executemany(q, batch)
    c.commit()
    c.close()


def node_cpu_s(ej: Ejabberd) -> float:
    """CPU seconds the node's OS process has used so far (every thread: schedulers, the SQLite
    driver's, the core's worker and checkpoint threads). Less sensitive to a loaded machine than
    wall time: a figure to compare the contenders by when other work shares the cores."""
    pid = ej.eval("os:getpid().").strip().strip('"')
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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

    nif: Path | None = None
    module_src: Path | None = None  # the Erlang module's sources (default: the working tree's)

    def _compile_module(self):
        import harness.ejabberd as harness_ejabberd
        saved = harness_ejabberd.MODULE_SRC
        harness_ejabberd.MODULE_SRC = self.module_src or saved
        try:
            super()._compile_module()
        finally:
            harness_ejabberd.MODULE_SRC = saved
        shutil.copy(self.nif or NIF, self.dir / "priv" / "lib" / "xmpp_hosting_nif.so")


NEW_SCHEMA = False  # --schema new


def node_for(work: Path, db: Path, server_env: dict | None = None, nif: Path | None = None,
             module_src: Path | None = None) -> Ejabberd:
    node = BenchNode(
        work, host=HOST, install="config",
        extra_config=f'sql_type: sqlite\nsql_database: "{db}"\n' + ("new_sql_schema: true\n" if NEW_SCHEMA else ""),
        extra_modules="  mod_mam:\n    db_type: sql\n    default: always\n  mod_xmpp_hosting_retention: {}\n",
        server_env=server_env,
    )
    node.nif = nif
    node.module_src = module_src
    return node


def ours(work: Path, db: Path, nif: Path | None = None, module_src: Path | None = None,
         cli: Path | None = None) -> dict:
    import harness.common as harness_common
    saved = harness_common.CLI
    harness_common.CLI = cli or saved  # the admin CLI must know the NIF's store migrations
    try:
        return _ours(work, db, nif, module_src)
    finally:
        harness_common.CLI = saved


def _ours(work: Path, db: Path, nif: Path | None, module_src: Path | None) -> dict:
    # XH_RETENTION_PROFILE: the core prints where each part's time went (the node's console).
    with node_for(work, db, {"XH_RETENTION_PROFILE": "1"}, nif, module_src) as ej:
        run_cli(ej.database, "domain", "add", HOST)
        run_cli(ej.database, "retention", "set", HOST, "archive", f"{DAYS}d")
        load = uptime()
        cpu0 = node_cpu_s(ej)
        t0 = time.monotonic()
        out = ej.ctl("xmpp_hosting_retention_sweep", HOST, "archive", "false", no_timeout=True, timeout=3600).stdout
        wall = time.monotonic() - t0
        cpu = node_cpu_s(ej) - cpu0
        log = json.loads(run_cli(ej.database, "--json", "retention", "log", HOST).stdout)
        profile = [line for line in ej.console_log.read_text(errors="replace").splitlines() if "profile:" in line]
    rec = [s for s in log if s["kind"] == "archive" and not s["dry_run"]][0]
    c = sqlite3.connect(db)
    mode = c.execute("PRAGMA journal_mode").fetchone()[0]
    c.close()
    label = f"ours with {nif} " if nif else "ours "
    return {"what": f"{label}(xmpp_hosting_retention_sweep; journal mode after: {mode})", "deleted": rec["deleted"],
            "wall_s": wall,
            "steps": rec["steps"], "longest_step_ms": rec["longest_step_us"] / 1000,
            "step_time_s": rec["duration_us"] / 1e6, "load_before": load, "load_after": uptime(), "cpu_s": cpu,
            "text": out.strip(), "profile": profile}


def batch(work: Path, db: Path, before: int) -> dict:
    with node_for(work, db) as ej:
        load = uptime()
        cpu0 = node_cpu_s(ej)
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
        cpu = node_cpu_s(ej) - cpu0
    deleted = before - count_rows(db)
    return {"what": "delete_old_mam_messages_batch (1000 a batch)", "deleted": deleted, "wall_s": wall,
            "cpu_s": cpu, "load_before": load, "load_after": uptime(), "text": (r.stdout + r.stderr).strip() + " / " + status}


def one_shot(work: Path, db: Path, before: int) -> dict:
    with node_for(work, db) as ej:
        load = uptime()
        cpu0 = node_cpu_s(ej)
        t0 = time.monotonic()
        r = ej.ctl("delete_old_mam_messages", "chat", str(DAYS), check=False, no_timeout=True, timeout=3600)
        answered = time.monotonic() - t0
        # ejabberd's call gives up after 5 s (sqlite3:sql_exec's gen_server:call) while the
        # statement goes on in the driver's thread: the deletion is done when its transaction
        # releases the file's write lock (the file is in SQLite's rollback journal mode, as
        # ejabberd leaves it).
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            probe = sqlite3.connect(db, timeout=0)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.rollback()
                break
            except sqlite3.OperationalError:
                time.sleep(0.02)
            finally:
                probe.close()
        wall = time.monotonic() - t0
        cpu = node_cpu_s(ej) - cpu0
        after_query = ej.ctl("get_last", "user1", HOST, check=False)
        errors = [line for line in ej.log_file.read_text(errors="replace").splitlines()
                  if re.search(r"\[error\]|sqlite", line, re.I)][-3:]
    deleted = before - count_rows(db)
    return {"what": "delete_old_mam_messages (one statement)", "deleted": deleted, "wall_s": wall,
            "cpu_s": cpu, "load_before": load, "load_after": uptime(),
            "text": f"exit {r.returncode} after {answered:.1f} s: {(r.stdout + r.stderr).strip()[:200]}; next query exit "
                    f"{after_query.returncode}; log: {errors}"}


def main():
    global NIF, NEW_SCHEMA
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="directory to keep (and reuse) the generated database in")
    ap.add_argument("--only", choices=["ours", "batch", "one_shot"], action="append")
    ap.add_argument("--nif", type=Path, default=NIF, help="the NIF the nodes load (default: the release build)")
    ap.add_argument("--baseline-nif", type=Path,
                    help="also run our sweep with this NIF (an older build), right before the other "
                         "contenders, and print how ours compares with it")
    ap.add_argument("--baseline-cli", type=Path,
                    help="the admin CLI for the baseline's node (one built with the baseline NIF: a CLI must "
                         "know the store's migrations); default: the one of PROFILE")
    ap.add_argument("--baseline-rev", default="HEAD",
                    help="the git revision whose Erlang module the baseline NIF's node compiles (default HEAD; "
                         "the other nodes compile the working tree's)")
    ap.add_argument("--schema", choices=["default", "new"], default="default",
                    help="ejabberd's default SQL schema, or new_sql_schema (rows carry server_host)")
    args = ap.parse_args()
    NEW_SCHEMA = args.schema == "new"
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
    probe = Ejabberd(work / "probe")
    src = src_dir / f"archive-{args.rows}-{probe.version}-{args.schema}.db"
    schema = probe.ejabberd_lib / "priv" / "sql" / ("lite.new.sql" if NEW_SCHEMA else "lite.sql")
    if not src.exists():
        t0 = time.monotonic()
        make_db(src, args.rows, schema)
        print(f"made {args.rows} rows in {time.monotonic() - t0:.0f} s ({src})", flush=True)
    before = count_rows(src)
    print(f"ejabberd {probe.version}, {args.schema} schema; {before} rows, cutoff {DAYS} days of {SPAN_DAYS}",
          flush=True)
    results = []
    try:
        baseline = args.baseline_nif.resolve() if args.baseline_nif else None
        if baseline and not baseline.exists():
            sys.exit(f"{baseline} is missing")
        contenders = []
        if baseline:
            # The Erlang module of the baseline's revision: a NIF and the module must match.
            base_src = work / "baseline-src"
            base_src.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline_rev, "erlang/mod_xmpp_hosting"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base_src)], input=archive, check=True)
            module_src = base_src / "erlang" / "mod_xmpp_hosting"
            (module_src / "priv" / "lib").mkdir(parents=True, exist_ok=True)  # not in git: the NIF goes there
            base_cli = args.baseline_cli.resolve() if args.baseline_cli else None
            contenders.append(("baseline", lambda d, db: ours(d, db, baseline, module_src, base_cli)))
            print(f"baseline: {baseline} with the Erlang module of {args.baseline_rev}", flush=True)
        contenders += [("ours", ours), ("batch", batch), ("one_shot", one_shot)]
        for name, run in contenders:
            if args.only and name not in args.only and not (name == "baseline" and "ours" in args.only):
                continue
            d = work / name
            d.mkdir()
            db = d / "ejabberd.db"
            shutil.copy(src, db)
            subprocess.run(["sync"])
            res = run(d, db) if name in ("ours", "baseline") else run(d, db, before)
            res["rows_per_s"] = res["deleted"] / res["wall_s"] if res["wall_s"] else 0
            results.append(res)
            print(json.dumps(res, indent=1), flush=True)
            os.remove(db)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nsummary:")
    for r in results:
        extra = f", longest step {r['longest_step_ms']:.2f} ms over {r['steps']} steps" if "steps" in r else ""
        held = [re.search(r"in ejabberd's connection \d+ total \d+ ms, p50 ([\d.]+) p90 ([\d.]+) p99 ([\d.]+)", line)
                for line in r.get("profile", [])]
        held = [m for m in held if m]
        if held:
            extra += f" (in ejabberd's connection p50 {held[-1][1]} p90 {held[-1][2]} p99 {held[-1][3]} ms)"
        # Pages the steps wrote to the log: the log's frames at each copy made between two steps
        # (after which the log starts again), over the rows.
        frames = [re.search(r"(\d+) frames in the log at checkpoints between steps", line) for line in r.get("profile", [])]
        frames = [m for m in frames if m]
        if frames:
            extra += f"; {int(frames[-1][1]) / max(r['deleted'], 1):.2f} log pages a row"
        cpu = f"; node CPU {r['cpu_s']:.1f} s = {r['cpu_s'] / max(r['deleted'], 1) * 1e6:.1f} us a row" if "cpu_s" in r else ""
        print(f"  {r['what']}: {r['deleted']} rows in {r['wall_s']:.1f} s = {r['rows_per_s']:.0f} rows/s{extra}{cpu}"
              f"  [load before: {r['load_before'].split('load average:')[-1].strip()}]")
    by = {r["what"].split(" ")[0]: r for r in results}
    ours_r = next((r for r in results if r["what"].startswith("ours (")), None)
    base_r = next((r for r in results if r["what"].startswith("ours with")), None)
    if ours_r and base_r and base_r["rows_per_s"]:
        print(f"  ours / ours with the baseline NIF: {ours_r['rows_per_s'] / base_r['rows_per_s']:.2f}x in rows/s; "
              f"node CPU a row {base_r['cpu_s'] / max(base_r['deleted'], 1) * 1e6:.1f} us before, "
              f"{ours_r['cpu_s'] / max(ours_r['deleted'], 1) * 1e6:.1f} us now")
    for name, label in [("delete_old_mam_messages_batch", "the batch command (target: 5x)"),
                        ("delete_old_mam_messages", "the one statement")]:
        other = by.get(name)
        if ours_r and other and other["rows_per_s"]:
            cpu_ratio = ""
            if ours_r.get("cpu_s") and other.get("cpu_s"):
                cpu_ratio = (f"; node CPU a row {(other['cpu_s'] / max(other['deleted'], 1)) / (ours_r['cpu_s'] / max(ours_r['deleted'], 1)):.2f}x"
                             " as much as ours")
            print(f"  ours / {label}: {ours_r['rows_per_s'] / other['rows_per_s']:.2f}x in rows/s{cpu_ratio}")
    print(f"  {uptime()}")

if __name__ == "__main__":
    main()
