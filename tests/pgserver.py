"""A throwaway PostgreSQL server for the tests (standard library only).

The store runs on PostgreSQL as well as SQLite, and CI has no PostgreSQL service: this starts
one from the machine's server binaries in a fresh temporary folder, on a free loopback port,
tuned for speed rather than durability (fsync off), and removes it all when stopped.

    server = start()                  # raises PgServerError (one line) when it can't
    url = server.create_database()    # a fresh database for one test
    server.drop_database(url)
    server.stop()                     # idempotent; also at exit, and by a watchdog if we die

`attach(url)` wraps a server someone else runs (CI starts one for the whole run): databases
are made and dropped the same way, and its `stop()` leaves the server alone.

Run as root, the server runs as the `postgres` user (PostgreSQL refuses root). A watchdog
process (this file run as a script) stops the server when the process that started it dies,
even by SIGKILL, so no server outlives a killed test run.

Command line (for .ci/run):

    python -m tests.pgserver start --env-file F [--watch-pid PID]   # F gets the URL and dir
    python -m tests.pgserver stop DIR
    python -m tests.pgserver bindir                                 # exit 1 without binaries
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: Every folder this module makes starts so; `stop DIR` refuses any other.
PREFIX = "seedance-pg-"
STATE_FILE = "pgserver.json"
OS_USER = "postgres"
#: Database names this module makes (others are never dropped).
_DB_NAME = re.compile(r"^seedance_test_[0-9a-f]{16}$")

SETTINGS = """
# seedance tests: a throwaway server, speed over durability
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 250
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
log_min_messages = warning
log_min_error_statement = panic
"""


class PgServerError(Exception):
    """PostgreSQL can't be started or used here; the message is one line saying why."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---- binaries --------------------------------------------------------------------------------
def _has_server(path: Path) -> bool:
    return all((path / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def bindir() -> Path | None:
    """The folder of the server binaries: `pg_config --bindir`, else the newest
    /usr/lib/postgresql/*/bin (Debian's layout), else None."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            if out and _has_server(Path(out)):
                return Path(out)

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if _has_server(Path(found)):
            return Path(found)
    return None


def _client(server_bindir: Path | None) -> str:
    """psql: beside the server binaries, else on PATH."""
    if server_bindir is not None and (server_bindir / "psql").is_file():
        return str(server_bindir / "psql")
    found = shutil.which("psql")
    if found is None:
        raise PgServerError("psql is not installed (needed to create test databases)")
    return found


# ---- processes -------------------------------------------------------------------------------
def _as_server_user() -> dict[str, Any]:
    """subprocess options that run a command as `postgres` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        raise PgServerError(
            f"running as root and there is no {OS_USER!r} user to run PostgreSQL as") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc, or None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def _alive(pid: int, started: int | None = None) -> bool:
    """Whether `pid` runs. A zombie counts as stopped (pid 1 here may never reap it), and so
    does a different process that reused the pid (its start time differs)."""
    if pid <= 0:
        return False
    state = _proc_state(pid)
    if state is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc: ask the kernel
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    letter, start_ticks = state
    if letter in ("Z", "X"):
        return False
    return started is None or start_ticks == started


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_root() -> Path:
    """A fresh folder that the server's user can enter: the usual temp dir, else /tmp."""
    candidates = [Path(tempfile.gettempdir())]
    if candidates[0] != Path("/tmp"):
        candidates.append(Path("/tmp"))
    run_as = _as_server_user()
    for parent in candidates:
        try:
            root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        except OSError:
            continue
        if run_as:
            os.chown(root, run_as["user"], run_as["group"])
            probe = subprocess.run(["test", "-w", str(root), "-a", "-x", str(root)],
                                   cwd="/", **run_as, check=False)
            if probe.returncode != 0:  # a parent folder is closed to the server's user
                shutil.rmtree(root, ignore_errors=True)
                continue
        return root
    raise PgServerError(f"no temporary folder that the {OS_USER!r} user can use "
                        f"(tried {', '.join(map(str, candidates))})")


# ---- the server ------------------------------------------------------------------------------
class PgServer:
    """A running server: `url` (its `postgres` database), fresh databases, and `stop()`."""

    def __init__(self, url: str, *, root: Path | None = None,
                 server_bindir: Path | None = None,
                 watchdog: subprocess.Popen[bytes] | None = None) -> None:
        self.url = url
        #: The temp folder of a server we started (None when attached).
        self.root = root
        self.bindir = server_bindir
        self._watchdog = watchdog
        self._created: set[str] = set()

    @property
    def owned(self) -> bool:
        return self.root is not None

    def _sql(self, statement: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            subprocess.run([_client(self.bindir), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-d", self.url, "-c", statement], capture_output=True, text=True,
                           env=env, timeout=120, check=True, stdin=subprocess.DEVNULL)
        except subprocess.CalledProcessError as exc:
            raise PgServerError(f"{statement!r} failed: {_one_line(exc.stderr)}") from None
        except subprocess.TimeoutExpired:
            raise PgServerError(f"{statement!r} took over two minutes") from None

    def create_database(self) -> str:
        """A new empty database (from template0); its URL."""
        name = f"seedance_test_{secrets.token_hex(8)}"
        self._sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        self._created.add(name)
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))

    def drop_database(self, url: str) -> None:
        """Drop a database `create_database` made, closing its connections; others refused."""
        name = urlsplit(url).path.lstrip("/")
        if name not in self._created or not _DB_NAME.match(name):
            raise PgServerError(f"refusing to drop {name!r}: this server didn't create it")
        self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.discard(name)

    def stop(self) -> None:
        """Stop the server and remove its folder (a no-op when attached or stopped)."""
        if self.root is not None:
            stop_dir(self.root)
            self.root = None
        if self._watchdog is not None:
            with contextlib.suppress(OSError):
                self._watchdog.kill()
            with contextlib.suppress(subprocess.SubprocessError):
                self._watchdog.wait(timeout=10)
            self._watchdog = None

    def __repr__(self) -> str:
        return f"PgServer({self.url!r}, root={self.root})"


def attach(url: str) -> PgServer:
    """A server someone else runs (its `stop` does nothing)."""
    return PgServer(url, server_bindir=bindir())


def start(*, watch_pid: int | None = None, stop_at_exit: bool = True) -> PgServer:
    """initdb, start and wait for a server; see the module docstring.

    `watch_pid` (default: this process) is the process whose death stops the server.
    """
    server_bindir = bindir()
    if server_bindir is None:
        raise PgServerError("PostgreSQL server binaries not found (no initdb/pg_ctl/postgres "
                            "via pg_config or in /usr/lib/postgresql/*/bin)")
    run_as = _as_server_user()
    root = _server_root()
    datadir = root / "data"
    try:
        _run([str(server_bindir / "initdb"), "-D", str(datadir), "-U", "postgres",
              "--auth=trust", "--locale=C", "--encoding=UTF8", "--no-sync"],
             root, run_as, what="initdb")
        with (datadir / "postgresql.conf").open("a") as conf:
            conf.write(SETTINGS)
        port = _start_postmaster(server_bindir, root, run_as)
        pid = int((datadir / "postmaster.pid").read_text().split()[0])
    except BaseException:
        stop_dir(root, must_exist=False)
        raise
    state = {"pid": pid, "bindir": str(server_bindir), "datadir": str(datadir), "port": port,
             "started": (_proc_state(pid) or ("", 0))[1]}
    _write_state(root, state)
    watched = os.getpid() if watch_pid is None else watch_pid
    watchdog = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "watch", "--pid", str(watched),
         "--started", str((_proc_state(watched) or ("", -1))[1]), str(root)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, cwd="/")
    _write_state(root, {**state, "watchdog": watchdog.pid})
    server = PgServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", root=root,
                      server_bindir=server_bindir, watchdog=watchdog)
    if stop_at_exit:
        starter = os.getpid()
        # Only the starting process: a forked child exiting must not stop its parent's server.
        atexit.register(lambda: server.stop() if os.getpid() == starter else None)
    return server


def _write_state(root: Path, state: dict[str, Any]) -> None:
    tmp = root / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(root / STATE_FILE)


def _run(command: Sequence[str], root: Path, run_as: dict[str, Any], *, what: str,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(command), cwd=root, capture_output=True, text=True,
                              timeout=timeout, check=True, stdin=subprocess.DEVNULL, **run_as)
    except subprocess.CalledProcessError as exc:
        raise PgServerError(f"{what} failed: {_one_line(exc.stderr or exc.stdout)}") from None
    except subprocess.TimeoutExpired:
        raise PgServerError(f"{what} did not finish in {timeout:.0f} s") from None


def _start_postmaster(server_bindir: Path, root: Path, run_as: dict[str, Any]) -> int:
    """pg_ctl start on a free port; a port taken between the pick and the bind is retried."""
    log = root / "server.log"
    for attempt in range(5):
        port = _free_port()
        try:
            _run([str(server_bindir / "pg_ctl"), "start", "-D", str(root / "data"), "-l",
                  str(log), "-w", "-t", "60", "-o", f"-p {port}"], root, run_as,
                 what="pg_ctl start", timeout=90)
            return port
        except PgServerError as exc:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "could not bind" in text and attempt < 4:
                log.unlink(missing_ok=True)
                continue
            tail = [ln for ln in text.splitlines() if ln.strip()][-2:]
            raise PgServerError(f"{exc}; server log: {_one_line(' '.join(tail))}") from None
    raise AssertionError("unreachable")


def stop_dir(root: Path | str, *, must_exist: bool = True) -> None:
    """Stop the server in `root` (a folder `start` made) and remove the folder. Idempotent."""
    root = Path(root)
    if not root.exists():
        return
    if not root.name.startswith(PREFIX):
        raise PgServerError(f"refusing to remove {root}: not a folder pgserver made")
    state_path = root / STATE_FILE
    state: dict[str, Any] = {}
    if state_path.exists():
        state = json.loads(state_path.read_text())
    elif must_exist and not (root / "data").exists():
        raise PgServerError(f"refusing to remove {root}: no {STATE_FILE} in it")
    datadir = Path(state.get("datadir", root / "data"))
    server_bindir = Path(state["bindir"]) if "bindir" in state else bindir()
    pid = int(state.get("pid", 0))
    if (datadir / "postmaster.pid").exists() and server_bindir is not None:
        with contextlib.suppress(PgServerError, OSError):
            _run([str(server_bindir / "pg_ctl"), "stop", "-D", str(datadir), "-m", "fast",
                  "-w", "-t", "60"], root, _as_server_user(), what="pg_ctl stop", timeout=90)
    if pid and _alive(pid, state.get("started")):  # pg_ctl failed: stop it ourselves
        _signal_and_wait(pid, signal.SIGQUIT, 10)
        if _alive(pid):
            _signal_and_wait(pid, signal.SIGKILL, 10)
    watchdog = int(state.get("watchdog", 0))
    if watchdog and watchdog != os.getpid() and _alive(watchdog):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{watchdog}/cmdline").read_bytes()
            if str(root).encode() in cmdline:
                os.kill(watchdog, signal.SIGTERM)
    shutil.rmtree(root, ignore_errors=True)


def _signal_and_wait(pid: int, sig: signal.Signals, seconds: float) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _watch(pid: int, started: int, root: Path, interval: float = 0.5) -> None:
    """The watchdog: stop the server in `root` once `pid` has died; leave when `root` is gone
    (the server was stopped the ordinary way)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    known = started if started >= 0 else None
    while root.exists():
        if not _alive(pid, known):
            stop_dir(root, must_exist=False)
            return
        time.sleep(interval)


# ---- command line ----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.pgserver",
                                     description="A throwaway PostgreSQL server for tests.")
    sub = parser.add_subparsers(dest="command", required=True)
    start_cmd = sub.add_parser("start", help="start a server; write its URL and dir to a file")
    start_cmd.add_argument("--env-file", required=True, type=Path)
    start_cmd.add_argument("--watch-pid", type=int, default=os.getppid(),
                           help="stop the server when this process dies (default: our parent)")
    stop_cmd = sub.add_parser("stop", help="stop the server in DIR and remove DIR")
    stop_cmd.add_argument("dir", type=Path)
    sub.add_parser("bindir", help="print the server binaries' folder (exit 1 if none)")
    watch_cmd = sub.add_parser("watch", help=argparse.SUPPRESS)
    watch_cmd.add_argument("--pid", type=int, required=True)
    watch_cmd.add_argument("--started", type=int, default=-1)
    watch_cmd.add_argument("dir", type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            server = start(watch_pid=args.watch_pid, stop_at_exit=False)
            args.env_file.write_text(f"SEEDANCE_TEST_POSTGRES_URL={server.url}\n"
                                     f"SEEDANCE_TEST_POSTGRES_DIR={server.root}\n")
            print(f"PostgreSQL at {server.url} in {server.root}")
        elif args.command == "stop":
            stop_dir(args.dir)
        elif args.command == "bindir":
            found = bindir()
            if found is None:
                print("no PostgreSQL server binaries", file=sys.stderr)
                return 1
            print(found)
        else:
            _watch(args.pid, args.started, args.dir)
    except PgServerError as exc:
        print(f"pgserver: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
