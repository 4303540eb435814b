"""A real Debian ejabberd (23.01 or 24.12) on loopback, in a temporary directory, for one test or module.

Which ejabberd runs is the session's target (XH_SERVERS, see common.target): the system's Debian 12
package, or the backports 24.12 that scripts/install-servers unpacked under target/servers.

The packaged `ejabberdctl` refuses to run unless root or the `ejabberd` user and would use
/etc/ejabberd and epmd. We run a copy with `INSTALLUSER=` and our own config dir:
`ejabberdctl.cfg` pins the node name, spool, logs, contrib modules path and a free distribution
port (`ERL_DIST_PORT`, so no epmd is started and ejabberdctl connects straight to that port on
127.0.0.1). HOME is the temporary directory too, so the Erlang cookie is private.

mod_xmpp_hosting is either installed the way an admin does it (`ejabberdctl module_install`
from CONTRIB_MODULES_PATH/sources, the default), or compiled with erlc and listed under
`modules:` (install="config"). 23.01's installer also copies the module's priv/ into
code:lib_dir(ejabberd); each node therefore runs ejabberd from a private app directory of its own
(ebin and include linked to the installation's, priv a directory of links), first in ERL_LIBS, so
the installation is never written to. The HTTP API (/api) takes commands only from the `api_user`
account, with HTTP basic auth (`api()`). Everything started is stopped in `stop()`, also after
failures.

    with Ejabberd(tmp_path) as ej:
        ej.ctl("xmpp_hosting_domain_add", "customer.example")
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .common import (ERLANG_DIR, LOOPBACK, PROFILE, ServerTarget, free_port, stop_process_group, tail, target,
                     wait_for_port)

MODULE = "mod_xmpp_hosting"
MODULE_SRC = ERLANG_DIR / MODULE
NIF_SO = MODULE_SRC / "priv" / "lib" / "xmpp_hosting_nif.so"


class Ejabberd:
    """One ejabberd node. Use as a context manager, or call start() and stop() yourself."""

    def __init__(
        self,
        workdir: Path | None = None,
        host: str = "test.example",
        install: str = "module_install",
        module_options: dict | None = None,
        extra_modules: str = "",
        extra_config: str = "",
        nif_from: str = "prebuilt",
        http_handlers: dict[str, str] | None = None,
        server_env: dict[str, str] | None = None,
        admins: list[str] | None = None,
        version: ServerTarget | None = None,
        app_vsn: str | None = None,
        extra_hosts: list[str] | None = None,
        extra_access_rules: str = "",
    ):
        self.target = version or target("ejabberd")
        # The version the node's ejabberd application states instead of its own (ejabberd.app's
        # vsn), to see what the modules do on a version they do not support.
        self.app_vsn = app_vsn
        if nif_from not in ("prebuilt", "make"):
            raise ValueError(f"unknown NIF source {nif_from!r}")
        if install not in ("module_install", "config", "none"):
            raise ValueError(f"unknown install mode {install!r}")
        self._own_tmp = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="xh-ejabberd-")) if workdir is None else Path(workdir)
        self.host = host
        self.extra_hosts = list(extra_hosts or [])  # more vhosts beside `host`
        self.install = install
        self.module_options = module_options or {}
        self.extra_modules = extra_modules
        self.extra_config = extra_config
        # More rules under `access_rules:` (YAML lines indented by two), e.g. "  configure:\n    allow: admin\n";
        # the config has no `configure` rule otherwise.
        self.extra_access_rules = extra_access_rules
        # More request handlers on the HTTP listener beside /api, e.g. {"/upload": "mod_http_upload"}.
        self.http_handlers = http_handlers or {}
        self.server_env = dict(server_env or {})  # for the node only, not ejabberdctl calls
        self.admins = list(admins or [])  # bare JIDs of the `admin` ACL
        # "make": module_install builds the NIF itself through c_src/Makefile (cargo).
        self.nif_from = nif_from
        self.node = f"xh{secrets.token_hex(4)}@localhost"
        self.c2s_port = free_port()
        self.http_port = free_port()
        self.dist_port = free_port()
        self.conf_dir = self.dir / "conf"
        self.spool = self.dir / "spool"
        self.logs = self.dir / "logs"
        self.contrib = self.dir / "contrib"
        self.ebin = self.dir / "ebin"
        self.ctl_script = self.dir / "ejabberdctl"
        self.console_log = self.dir / "console.log"
        self.app_lib = self.dir / "lib"  # the node's private ejabberd app directory lives here
        # The one account /api takes commands from (ACL `api`); registered on the first api() call.
        self.api_user = (f"api-admin@{host}", secrets.token_urlsafe(12))
        self._api_registered = False
        self.proc: subprocess.Popen | None = None

    # ---- paths and environment -------------------------------------------------------------

    @property
    def ejabberd_lib(self) -> Path:
        """The installation's ejabberd application directory (ebin, include, priv)."""
        return self.target.path(f"usr/lib/x86_64-linux-gnu/ejabberd-{self.target.series}")

    @property
    def erlang_lib(self) -> Path:
        """Where the installation's erlang-p1-* libraries are (xmpp, fast_xml, ...)."""
        return self.target.path("usr/lib/erlang/lib")

    @property
    def version(self) -> str:
        """The version the installation's ejabberd.app states, e.g. "24.12-3~bpo12+1"."""
        app = (self.ejabberd_lib / "ebin" / "ejabberd.app").read_text()
        m = re.search(r'\{vsn,\s*"([^"]+)"\}', app)
        if not m:
            raise RuntimeError(f"no vsn in {self.ejabberd_lib}/ebin/ejabberd.app")
        return m.group(1)

    @property
    def log_file(self) -> Path:
        return self.logs / "ejabberd.log"

    @property
    def database(self) -> Path:
        """The store file the module uses: the `database` option, else the spool default."""
        return Path(self.module_options.get("database", self.spool / "xmpp_hosting.db"))

    def env(self) -> dict:
        env = dict(os.environ)
        home = os.environ.get("HOME", "/root")
        # cargo (run by c_src/Makefile under module_install) still finds its toolchain.
        env.setdefault("CARGO_HOME", os.path.join(home, ".cargo"))
        env.setdefault("RUSTUP_HOME", os.path.join(home, ".rustup"))
        env["HOME"] = str(self.dir)
        env["EJABBERD_BYPASS_WARNINGS"] = "true"
        if self.nif_from == "make":
            env["XMPP_HOSTING_SRC"] = str(ERLANG_DIR.parent)
            env["PROFILE"] = PROFILE
        return env

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Ejabberd":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout: float = 60.0):
        if self.install != "none" and self.nif_from == "prebuilt" and not NIF_SO.exists():
            raise FileNotFoundError(f"{NIF_SO} is missing: run scripts/build first")
        for d in (self.conf_dir, self.spool, self.logs, self.contrib / "sources"):
            d.mkdir(parents=True, exist_ok=True)
        self._make_app_dir()
        self._write_ctl_script()
        self._write_ctl_cfg()
        if self.install == "config":
            self._compile_module()
        self.write_config()
        self.proc = subprocess.Popen(
            [str(self.ctl_script), "--config-dir", str(self.conf_dir), "foreground"],
            cwd=self.dir,
            env={**self.env(), **self.server_env},
            stdin=subprocess.DEVNULL,
            stdout=self.console_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(self.c2s_port, self.proc, timeout=timeout)
        except (RuntimeError, TimeoutError) as e:
            # A node that stops before its listeners often says why only on the console.
            raise type(e)(f"{e}\n{self.logs_tail()}") from None
        self.wait_started(timeout)
        if self.install == "module_install":
            self.module_install()

    def wait_started(self, timeout: float = 60.0):
        """Waits until ejabberdctl reports the node started (listeners come up before that)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.ctl("status", check=False)
            if r.returncode == 0:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ejabberd exited with {self.proc.returncode}\n{self.logs_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"ejabberd did not report started: {r.stdout}{r.stderr}\n{self.logs_tail()}")
            time.sleep(0.5)

    def stop(self):
        """Stops the node and everything it started; safe to call twice or after a failed start."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                # A clean stop first, then the process group. SIGTERM makes the VM run init:stop(),
                # the stop `ejabberdctl stop` ends in (modules stopped, Mnesia flushed), without
                # starting a second VM for ejabberdctl (seconds per node on a busy machine).
                try:
                    r = subprocess.run(["pgrep", "-g", str(self.proc.pid), "-x", "beam.smp"],
                                       capture_output=True, text=True)
                    for pid in r.stdout.split():
                        os.kill(int(pid), signal.SIGTERM)
                    self.proc.wait(timeout=20)
                except (subprocess.TimeoutExpired, OSError, ValueError):
                    pass
                stop_process_group(self.proc)
            self._kill_strays()
        finally:
            if self._own_tmp:
                shutil.rmtree(self.dir, ignore_errors=True)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _kill_strays(self):
        """Any process still carrying our node name (an ejabberdctl client left behind)."""
        r = subprocess.run(["pgrep", "-f", self.node], capture_output=True, text=True)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass

    def stray_processes(self) -> list[str]:
        r = subprocess.run(["pgrep", "-af", self.node], capture_output=True, text=True)
        return [line for line in r.stdout.splitlines() if line.strip()]

    # ---- commands ----------------------------------------------------------------------------

    def ctl(
        self, *args: str, check: bool = True, timeout: float = 60, no_timeout: bool = False
    ) -> subprocess.CompletedProcess:
        """Runs an ejabberdctl command against this node (ejabberdctl's own limit is 60 s unless
        no_timeout)."""
        opts = ["--no-timeout"] if no_timeout else []
        r = subprocess.run(
            [str(self.ctl_script), "--config-dir", str(self.conf_dir), *opts, *args],
            cwd=self.dir,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise RuntimeError(
                f"ejabberdctl {' '.join(args)} exited {r.returncode}\n{r.stdout}{r.stderr}\n{self.logs_tail()}"
            )
        return r

    def register(self, user: str, password: str, host: str | None = None):
        """Creates an account."""
        self.ctl("register", user, host or self.host, password)

    def api(self, command: str, body: dict) -> tuple[int, object]:
        """POSTs one command to mod_http_api as `api_user`; returns the HTTP status and the JSON body."""
        if not self._api_registered:
            user, password = self.api_user
            self.register(user.split("@")[0], password, user.split("@")[1])
            self._api_registered = True
        auth = base64.b64encode(":".join(self.api_user).encode()).decode()
        return http_api_post(self.http_port, command, body, {"Authorization": f"Basic {auth}"})

    def unregister(self, user: str, host: str | None = None):
        """Removes an account (and its roster)."""
        self.ctl("unregister", user, host or self.host)

    def eval(self, expr: str, timeout: float = 60) -> str:
        """Evaluates Erlang expressions inside the node; returns the last value printed with ~p.

        The expressions are parsed here and evaluated there by erl_eval through rpc, from a hidden
        node that reaches ours on its distribution port (no epmd). A {badrpc, _} answer is returned
        as text like any other value.
        """
        probe = (
            'Src = os:getenv("XH_EVAL"), '
            "{ok, Toks, _} = erl_scan:string(Src), "
            "{ok, Exprs} = erl_parse:parse_exprs(Toks), "
            'Node = list_to_atom(os:getenv("XH_NODE")), '
            "Out = case rpc:call(Node, erl_eval, exprs, [Exprs, []], 30000) of "
            "{value, V, _} -> V; Other -> Other end, "
            'io:format("~p~n", [Out]), halt().'
        )
        env = self.env()
        env["XH_EVAL"] = expr
        env["XH_NODE"] = self.node
        r = subprocess.run(
            [
                "erl", "-noshell", "-hidden",
                "-sname", f"probe{secrets.token_hex(3)}@localhost",
                "-erl_epmd_port", str(self.dist_port), "-start_epmd", "false", "-dist_listen", "false",
                "-eval", probe,
            ],
            cwd=self.dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise RuntimeError(f"probe failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r.stdout.strip()

    def module_install(self):
        """Installs mod_xmpp_hosting from sources the way ejabberd-contrib modules are installed.

        The layout is CONTRIB_MODULES_PATH/sources/<repository>/<module>/<module>.spec. 23.01's
        installer also copies priv/ into code:lib_dir(ejabberd) (ext_mod:copy_priv_files): the
        node's private app directory, see _make_app_dir.
        """
        dest = self.contrib / "sources" / "xmpp-hosting" / MODULE
        skip = ["ebin"] + (["xmpp_hosting_nif.so"] if self.nif_from == "make" else [])
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(MODULE_SRC, dest, ignore=shutil.ignore_patterns(*skip))
        if self.module_options:
            # The installer loads conf/*.yml of installed modules: put the options there.
            (dest / "conf" / f"{MODULE}.yml").write_text(
                f"modules:\n  {MODULE}:\n{_yaml_options(self.module_options, 4)}"
            )
        r = self.ctl("module_install", MODULE, check=False, timeout=900, no_timeout=True)
        if r.returncode != 0:
            raise RuntimeError(f"module_install failed: {r.returncode}\n{r.stdout}{r.stderr}\n{self.logs_tail()}")

    def module_loaded(self, host: str | None = None) -> bool:
        return self.eval(f'gen_mod:is_loaded(<<"{host or self.host}">>, {MODULE}).') == "true"

    def logs_tail(self, lines: int = 60) -> str:
        return f"--- ejabberd.log\n{tail(self.log_file, lines)}\n--- console\n{tail(self.console_log, lines)}"

    # ---- files -------------------------------------------------------------------------------

    def _make_app_dir(self):
        """The node's own ejabberd application directory: what the installer writes into
        code:lib_dir(ejabberd) lands here, not in the installation."""
        app = self.app_lib / f"ejabberd-{self.target.series}"
        if app.exists():
            return
        (app / "priv").mkdir(parents=True)
        (app / "include").symlink_to(self.ejabberd_lib.resolve() / "include")
        if self.app_vsn is None:
            (app / "ebin").symlink_to(self.ejabberd_lib.resolve() / "ebin")
        else:
            (app / "ebin").mkdir()
            for beam in (self.ejabberd_lib / "ebin").iterdir():
                if beam.name != "ejabberd.app":
                    (app / "ebin" / beam.name).symlink_to(beam.resolve())
            text = (self.ejabberd_lib / "ebin" / "ejabberd.app").read_text()
            text, found = re.subn(r'\{vsn,\s*"[^"]*"\}', f'{{vsn,"{self.app_vsn}"}}', text, count=1)
            if not found:
                raise RuntimeError(f"no vsn in {self.ejabberd_lib}/ebin/ejabberd.app")
            (app / "ebin" / "ejabberd.app").write_text(text)
        for entry in (self.ejabberd_lib / "priv").iterdir():
            (app / "priv" / entry.name).symlink_to(entry.resolve())

    def _write_ctl_script(self):
        source = self.target.path("usr/sbin/ejabberdctl")
        text = source.read_text()
        if "\nINSTALLUSER=ejabberd\n" not in text:
            raise RuntimeError(f"{source} changed: no INSTALLUSER=ejabberd line")
        text, found = re.subn(r"^ERL_LIBS='([^']*)'$", lambda m: f"ERL_LIBS='{self.app_lib}:{m.group(1)}'", text,
                              count=1, flags=re.M)
        if not found:
            raise RuntimeError(f"{source} changed: no ERL_LIBS='...' line")
        self.ctl_script.write_text(text.replace("\nINSTALLUSER=ejabberd\n", "\nINSTALLUSER=\n"))
        self.ctl_script.chmod(0o755)

    def _write_ctl_cfg(self):
        (self.conf_dir / "ejabberdctl.cfg").write_text(
            f"ERLANG_NODE={self.node}\n"
            f"SPOOL_DIR={self.spool}\n"
            f"LOGS_DIR={self.logs}\n"
            f"CONTRIB_MODULES_PATH={self.contrib}\n"
            f"ERL_DIST_PORT={self.dist_port}\n"
            f"INET_DIST_INTERFACE={LOOPBACK}\n"
            "EJABBERD_BYPASS_WARNINGS=true\n"
            + f'ERL_OPTIONS="{" ".join(self._erl_options())}"\n'
        )
        shutil.copy(self.target.path("etc/ejabberd/inetrc"), self.conf_dir / "inetrc")

    def _erl_options(self) -> list[str]:
        """ERL_OPTIONS for ejabberdctl.cfg: the node and every ejabberdctl client get them."""
        opts = [f"-pa {self.ebin}"] if self.install == "config" else []
        if self.target.major >= (24, 6):
            # Since 24.06 ejabberd_ctl formats a command's text result as Unicode characters (23.01
            # passed UTF-8 bytes through); OTP 25 opens a -noinput node's standard_io as Latin-1,
            # so every command's non-ASCII output came out as Latin-1. Admins on Debian 12 with the
            # backports 24.12 need the same line (README). No spaces: ejabberdctl splits on them.
            opts.append("-eval io:setopts([{encoding,unicode}])")
        return opts

    def _compile_module(self):
        self.ebin.mkdir(exist_ok=True)
        # priv/ beside ebin/, as the NIF stub's code:which fallback expects.
        shutil.copytree(MODULE_SRC / "priv", self.dir / "priv", dirs_exist_ok=True)
        shutil.copytree(_compiled_module(self.ejabberd_lib, self.erlang_lib), self.ebin, dirs_exist_ok=True)

    def write_config(self):
        """(Re)writes ejabberd.yml from the current settings; `ctl("reload_config")` applies it."""
        modules = ""
        if self.install == "config":
            modules += f"  {MODULE}:\n{_yaml_options(self.module_options, 4)}"
        modules += self.extra_modules
        admin_acl = "".join(["  admin:\n    user:\n", *(f'      - "{j}"\n' for j in self.admins)]) if self.admins else ""
        handlers = "".join(f"      {path}: {module}\n" for path, module in self.http_handlers.items())
        (self.conf_dir / "ejabberd.yml").write_text(
            f"""hosts:
  - "{self.host}"
{"".join(f'  - "{h}"{chr(10)}' for h in self.extra_hosts)}loglevel: info
log_rotate_count: 0
certfiles: []
acme:
  auto: false
listen:
  -
    port: {self.c2s_port}
    ip: "{LOOPBACK}"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: c2s_shaper
    access: c2s
    starttls_required: false
  -
    port: {self.http_port}
    ip: "{LOOPBACK}"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
{handlers}acl:
{admin_acl}  api:
    user:
      - "{self.api_user[0]}"
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  local:
    allow: local
  c2s:
    deny: blocked
    allow: all
  register:
    allow: all
{self.extra_access_rules}api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
  "api account":
    from:
      - mod_http_api
    who:
      access:
        allow:
          - acl: api
    what: "*"
shaper:
  normal:
    rate: 3000
    burst_size: 20000
  fast: 100000
shaper_rules:
  c2s_shaper:
    fast: all
modules:
  mod_http_api: {{}}
  mod_admin_extra: {{}}
{modules}{self.extra_config}"""
        )


# The module's beams per (ejabberd version, sources): erlc takes seconds, and a session starts dozens
# of nodes of one version from the same sources.
_COMPILED: dict[tuple, Path] = {}


def _compiled_module(ejabberd_lib: Path, erlang_lib: Path) -> Path:
    sources = sorted((MODULE_SRC / "src").glob("*.erl"))
    key = (str(ejabberd_lib.resolve()), tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in sources))
    ebin = _COMPILED.get(key)
    if ebin is None or not ebin.exists():
        ebin = Path(tempfile.mkdtemp(prefix="xh-ejabberd-ebin-"))
        subprocess.run(
            [
                "erlc", "-o", str(ebin),
                "-I", str(ejabberd_lib / "include"),
                # xmpp.hrl and fxml.hrl, as module_install finds them among ejabberd's deps.
                *[arg for inc in sorted(erlang_lib.glob("p1_xm*/include")) for arg in ("-I", str(inc))],
                "-pa", str(ejabberd_lib / "ebin"),
                *map(str, sources),
            ],
            check=True, capture_output=True, text=True,
        )
        atexit.register(shutil.rmtree, ebin, True)
        _COMPILED[key] = ebin
    return ebin


def http_api_post(port: int, command: str, body: dict, headers: dict | None = None) -> tuple[int, object]:
    """POSTs one command to mod_http_api on loopback; returns the HTTP status and the JSON body."""
    req = urllib.request.Request(
        f"http://{LOOPBACK}:{port}/api/{command}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _yaml_options(options: dict, indent: int) -> str:
    """Module options as a YAML block; values are written as quoted strings or plain scalars."""
    pad = " " * indent
    if not options:
        return f"{pad}{{}}\n"
    lines = []
    for key, value in options.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = str(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{pad}{key}: {text}\n")
    return "".join(lines)
