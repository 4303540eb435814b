"""Runs the real Prosody (0.12 or 13.0, Lua 5.4) on loopback with our modules, for tests and the demo.

One config generator serves both: `Prosody(dir).start()` in tests (free ports, always stopped), and
`python3 tests/harness/prosody.py demo DIR` behind scripts/demo (fixed ports, foreground). Which
Prosody runs is the session's target (XH_SERVERS, see common.target): the system's Debian 12
package, or the backports 13.0 that scripts/install-servers unpacked under target/servers.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from harness.common import (LOOPBACK, LUA_CPATH_DIR, REPO, ServerTarget, free_port, stop_process_group, tail,
                                target, wait_for_port)
else:
    from .common import (LOOPBACK, LUA_CPATH_DIR, REPO, ServerTarget, free_port, stop_process_group, tail, target,
                         wait_for_port)

HARNESS_PLUGINS = Path(__file__).resolve().parent / "prosody_plugins"
BASE_MODULES = ["roster", "saslauth", "tls", "disco", "ping", "register", "admin_shell", "posix"]


def lua_string(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def lua_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(lua_value(x) for x in v) + " }"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"[{lua_string(k)}] = {lua_value(x)}" for k, x in v.items()) + " }"
    return lua_string(v)


class Prosody:
    """A Prosody in `workdir` with its own config, data and log; a context manager that always stops it."""

    def __init__(self, workdir: Path, host: str = "localhost", c2s_port: int | None = None,
                 http_port: int | None = None, global_modules=(), host_modules=(), options=None, host_options=None,
                 extra_config: str = "", server_env: dict | None = None, version: ServerTarget | None = None):
        self.target = version or target("prosody")
        self.dir = Path(workdir)
        self.host = host
        self.c2s_port = c2s_port or free_port()
        self.http_port = http_port or free_port()
        self.global_modules = ["xmpp_hosting", *global_modules]
        self.host_modules = list(host_modules)
        self.options = dict(options or {})
        self.host_options = dict(host_options or {})
        self.extra_config = extra_config  # appended as is: components, more hosts
        self.server_env = dict(server_env or {})  # for the server process only, not prosodyctl
        self.config = self.dir / "prosody.cfg.lua"
        self.data = self.dir / "data"
        self.log = self.dir / "prosody.log"
        self.database = self.dir / "xmpp_hosting.sqlite"
        self.ready_file = self.dir / "started"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict:
        cpath, path = [f"{LUA_CPATH_DIR}/?.so"], []
        if not self.target.system:
            # Lua libraries the backports Prosody needed beyond the system's, if install-servers
            # unpacked any into its prefix.
            cpath.append(f"{self.target.root}/usr/lib/x86_64-linux-gnu/lua/5.4/?.so")
            path += [f"{self.target.root}/usr/share/lua/5.4/?.lua", f"{self.target.root}/usr/share/lua/5.4/?/init.lua"]
        env = dict(os.environ, LUA_CPATH_5_4=";".join(cpath) + ";;")
        if path:
            env["LUA_PATH_5_4"] = ";".join(path) + ";;"
        return env

    @property
    def version(self) -> str:
        """The version this installation reports, e.g. "13.0.1" (its prosody.version file)."""
        return self.target.path("usr/lib/prosody/prosody.version").read_text().split()[0]

    @property
    def deluser_runs_in_server(self) -> bool:
        """13.0's `prosodyctl deluser` runs user:delete in the running server (through the admin
        socket), so modules see the removal; 0.12's removes the account in a process of its own."""
        return self.target.major >= (13,)

    def write_config(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(exist_ok=True)
        (self.dir / "certs").mkdir(exist_ok=True)
        opts = {
            "pidfile": str(self.dir / "prosody.pid"),
            "certificates": str(self.dir / "certs"),
            "data_path": str(self.data),
            "plugin_paths": [str(REPO / "lua"), str(HARNESS_PLUGINS)],
            "run_as_root": True,
            "c2s_ports": [self.c2s_port],
            "c2s_interfaces": [LOOPBACK],
            "s2s_ports": [],
            "http_ports": [self.http_port],
            "http_interfaces": [LOOPBACK],
            "https_ports": [],
            "c2s_require_encryption": False,
            "allow_unencrypted_plain_auth": True,
            "authentication": "internal_hashed",
            "admin_socket": str(self.dir / "prosody.sock"),
            "xmpp_hosting_database": str(self.database),
            "harness_ready_file": str(self.ready_file),
            "modules_enabled": BASE_MODULES + ["harness_ready"] + self.global_modules,
            **self.options,
        }
        # An option given as None is left out, so a test can see Prosody's or our module's default.
        lines = [f"{k} = {lua_value(v)}" for k, v in opts.items() if v is not None]
        lines.append(f'log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = {lua_string(self.log)} }} }}')
        lines.append(f"VirtualHost {lua_string(self.host)}")
        if self.host_modules:
            lines.append(f"  modules_enabled = {lua_value(self.host_modules)}")
        lines += [f"  {k} = {lua_value(v)}" for k, v in self.host_options.items()]
        self.config.write_text("\n".join(lines) + "\n" + self.extra_config)
        return self.config

    def start(self, timeout: float = 30.0):
        self.write_config()
        self.log.touch()
        self.ready_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [str(self.target.path("usr/bin/prosody")), "-F", "--config", str(self.config)],
            env={**self.env, **self.server_env}, stdout=open(self.dir / "stdout.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(self.c2s_port, self.proc, timeout, self.log)
            self._wait_until_started(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_started(self, timeout: float):
        """Waits for mod_harness_ready's file: every host and module loaded, not just the port open."""
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"Prosody exited with {self.proc.returncode} while starting\n{tail(self.log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prosody did not finish starting in {timeout} s\n{tail(self.log)}")
            time.sleep(0.02)

    def stop(self):
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ctl(self, *args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs prosodyctl against this config (works with or without the server running)."""
        if not self.config.exists():
            self.write_config()
        return subprocess.run([str(self.target.path("usr/bin/prosodyctl")), "--config", str(self.config), *args],
                              env=self.env,
                              capture_output=True, text=True, check=check, timeout=timeout)

    def shell(self, command: str) -> subprocess.CompletedProcess:
        """Runs one admin shell command in the running server."""
        return self.ctl("shell", command)

    def create_user(self, username: str, password: str):
        r = self.ctl("register", username, self.host, password)
        if r.returncode != 0:
            raise RuntimeError(f"prosodyctl register failed: {r.stdout}{r.stderr}")

    def delete_user(self, username: str, in_server: bool = True):
        """Removes an account inside the running server (the admin shell), as in-band removal or
        an ad-hoc command would, or with prosodyctl deluser (in a process of its own on 0.12, in
        the running server on 13.0: see deluser_runs_in_server)."""
        if in_server:
            r = self.shell(f'user:delete("{username}@{self.host}")')
            ok = r.returncode == 0 and "OK" in r.stdout
        else:
            r = self.ctl("deluser", f"{username}@{self.host}")
            ok = r.returncode == 0
        if not ok:
            raise RuntimeError(f"deleting {username} failed: {r.stdout}{r.stderr}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if needle in text:
                return text
            time.sleep(0.1)
        raise TimeoutError(f"{needle!r} not in the Prosody log\n{tail(self.log)}")


def reporting_version(base: ServerTarget, dest: Path, version: str) -> ServerTarget:
    """`base` as it would run if it said it were Prosody `version`: start scripts whose source
    directory is `dest`, links to base's code, and a prosody.version file of its own (where
    Prosody takes prosody.version from). To see what the modules do on a version they do not
    support."""
    src = base.path("usr/lib/prosody")
    lib = dest / "usr" / "lib" / "prosody"
    lib.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name != "prosody.version":
            (lib / entry.name).symlink_to(entry.resolve())
    (lib / "prosody.version").write_text(version + "\n")
    (dest / "usr" / "bin").mkdir(parents=True)
    for script in ("prosody", "prosodyctl"):
        text = base.path(f"usr/bin/{script}").read_text()
        text = re.sub(r"^CFG_SOURCEDIR=.*$", f"CFG_SOURCEDIR='{lib}';", text, count=1, flags=re.M)
        text = re.sub(r"^CFG_PLUGINDIR=.*$", f"CFG_PLUGINDIR='{lib}/modules/';", text, count=1, flags=re.M)
        (dest / "usr" / "bin" / script).write_text(text)
        (dest / "usr" / "bin" / script).chmod(0o755)
    (dest / ".packages").write_text(f"{base.name} reporting {version}\n")
    return ServerTarget(f"{base.name}-as-{version}", "prosody", base.series, dest)


def _stop_on_signals():
    """Ctrl-C, `kill` and a closed terminal all end in the `finally` that stops Prosody: it runs in its
    own session, so nothing else would stop it. SIGINT is set explicitly because a shell starts
    background jobs with it ignored, and Python then keeps it ignored."""
    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def upload_component(jid: str, **options) -> str:
    """Config of an http_file_share component with mod_xmpp_hosting_uploads; mod_http_file_share's
    own limits are set far above the store's, so the store's are the ones that apply."""
    options = {"http_file_share_size_limit": 10**9, "http_file_share_daily_quota": 10**12, **options}
    lines = [f"Component {lua_string(jid)} \"http_file_share\"", '  modules_enabled = { "xmpp_hosting_uploads" }']
    lines += [f"  {k} = {lua_value(v)}" for k, v in options.items()]
    return "\n" + "\n".join(lines) + "\n"


def _demo_certificate(certs: Path, host: str, share: str):
    """A self-signed certificate for the demo host, where Prosody's certificate discovery looks
    (certs/HOST.crt and .key), so a client that takes STARTTLS when offered (most do) can log in;
    it trusts this file, or accepts it when asked. Made once, kept across runs."""
    crt, key = certs / f"{host}.crt", certs / f"{host}.key"
    if crt.exists() and key.exists():
        return crt
    certs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "825", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=DNS:{host},DNS:{share}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    key.chmod(0o600)
    return crt


def _demo_account(server: "Prosody", user: str, password: str):
    """Creates the demo's account in the running server, or sets its password when it is there from
    a run before. The password goes to prosodyctl on stdin (it asks twice), never on its command
    line, where `ps` would show it. Prosody 13's adduser and passwd work through the running server's
    admin shell, hence after start; 0.12's work on the data either way."""
    jid = f"{user}@{server.host}"
    said = []
    for command in ("adduser", "passwd"):
        r = subprocess.run([_demo_prosodyctl(server), "--config", str(server.config), command, jid],
                           input=f"{password}\n{password}\n", env=server.env, capture_output=True, text=True,
                           timeout=60)
        if r.returncode == 0:
            return
        said.append(f"prosodyctl {command} {jid}: {r.stdout}{r.stderr}")
    raise RuntimeError("\n".join(said))


def _demo_prosodyctl(server: "Prosody") -> str:
    target = getattr(server, "target", None)  # the session's Prosody version, when one is chosen
    return str(target.path("usr/bin/prosodyctl")) if target is not None else "prosodyctl"


def demo_banner(server: "Prosody", password: str, share: str, cert: Path) -> str:
    """What the demo prints. Every line starting with `$ ` is a whole command that works pasted
    into a fresh shell (tests/test_prosody_demo.py runs each): absolute paths, and prosodyctl
    told where the Lua library is, since a fresh shell has no LUA_CPATH_5_4."""
    import shlex
    q = shlex.quote
    env = server.env
    lua_env = f"LUA_CPATH_5_4={q(env['LUA_CPATH_5_4'])}"
    if "LUA_PATH_5_4" in env:
        lua_env += f" LUA_PATH_5_4={q(env['LUA_PATH_5_4'])}"
    ctl = f"{lua_env} {q(_demo_prosodyctl(server))} --config {q(str(server.config))} mod_xmpp_hosting"
    cli = f"{q(str(REPO / 'target/debug/xmpp-hosting'))} --db {q(str(server.database))}"
    host = server.host
    return f"""
Prosody is running on {LOOPBACK} with xmpp-hosting loaded.

Log in with any XMPP client:
  JID admin@{host}  password {password}  server {LOOPBACK} port {server.c2s_port}
  STARTTLS is offered with a self-signed certificate for {host}: trust {cert}
  (or accept it when the client asks); plain logins work too, on loopback only.

Prosody's admin tool, prosodyctl (the LUA_CPATH_5_4 it is given finds the xmpp_hosting library):
  $ {ctl} domain list
  $ {ctl} invite create {host}
Registration on {host} is invite-only: the invite's URI registers one account. To open it to
anyone, with the xmpp-hosting command line on the same store:
  $ {cli} domain set {host} registration.policy open
  $ {cli} domain list
Uploads (XEP-0363): upload service {share}, 10 MB a file, 100 MB a day, 1 GB stored per user;
slot URLs are http://{LOOPBACK}:{server.http_port}/… . A user's usage, with the command line:
  $ {cli} quota show {host} --user admin

Config {server.config}
Store  {server.database}
Log    {server.log}

Ctrl-C stops it."""


def demo(workdir: str):
    """The README's main job: a local Prosody on loopback with the modules, in the foreground."""
    _stop_on_signals()
    c2s = int(os.environ.get("DEMO_C2S_PORT", "5222"))
    http = int(os.environ.get("DEMO_HTTP_PORT", "5280"))
    # A two-label name: a hosted domain needs one (RFC 6761 keeps *.localhost on loopback).
    host = "demo.localhost"
    share = f"share.{host}"
    workdir = Path(workdir).resolve()
    # glibc does not resolve share.demo.localhost: slot URLs name the loopback address instead, and
    # the upload service answers requests that carry it as their Host.
    server = Prosody(workdir, host=host, c2s_port=c2s, http_port=http,
                     host_modules=["xmpp_hosting_invites", "xmpp_hosting_roster", "xmpp_hosting_users"],
                     options={"admins": [f"admin@{host}"]}, extra_config=upload_component(share, http_host=LOOPBACK))
    server.database = server.data / "xmpp_hosting.sqlite"  # all of the demo's data in one directory
    server.write_config()
    cert = _demo_certificate(workdir / "certs", host, share)
    password = os.environ.get("DEMO_PASSWORD", "demo-password")
    listed = server.ctl("mod_xmpp_hosting", "domain", "list").stdout
    if host not in listed:
        server.ctl("mod_xmpp_hosting", "domain", "add", host, check=True)
        # Upload limits to try out: 10 MB a file, 100 MB a day, 1 GB stored per user.
        for limit, value in (("max_file_size", 10**7), ("user_daily", 10**8), ("user_storage", 10**9)):
            server.ctl("mod_xmpp_hosting", "domain", "set", host, f"uploads.{limit}", str(value), check=True)
    server.start()
    try:
        _demo_account(server, "admin", password)
    except BaseException:
        server.stop()
        raise
    print(demo_banner(server, password, share, cert), flush=True)
    try:
        while server.running():
            time.sleep(0.5)
        print(f"Prosody stopped:\n{tail(server.log)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "demo":
        sys.exit("usage: prosody.py demo WORKDIR")
    demo(sys.argv[2])
