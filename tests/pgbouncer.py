"""A private pgbouncer for the tests (DESIGN §16): its own port and temporary directory, in
transaction mode, in front of the shared PostgreSQL server. Nothing else on the machine is
touched. Missing or unable to start, it FAILS the tests that need it (never skips them);
outside CI, PRAPI_ALLOW_NO_PGBOUNCER=1 skips them instead.

Two of them, as .ci/run installs them (so can a developer):
- the distribution's (`apt-get install pgbouncer`: 1.18 on Debian 12), which cannot keep
  prepared statements across transactions (DB_POOLER=pgbouncer);
- pgbouncer 1.24.1 built by `scripts/build-pgbouncer` into .cache/, with
  `max_prepared_statements` (DB_POOLER_PREPARED_STATEMENTS=true). PRAPI_PGBOUNCER_PREPARED
  may name another binary of 1.21 or newer.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.live import free_port


@dataclass
class PgBouncer:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url_for(self, direct_url: str) -> str:
        """The same database, through this pgbouncer."""
        url = make_url(direct_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / ".cache/pgbouncer-1.24.1/bin/pgbouncer"  # scripts/build-pgbouncer


def _unavailable(reason: str, prepared: bool) -> None:
    if os.environ.get("PRAPI_ALLOW_NO_PGBOUNCER") == "1" and os.environ.get("CI") != "true":
        pytest.skip(f"pgbouncer: {reason}")
    how = "scripts/build-pgbouncer" if prepared else "apt-get install pgbouncer"
    pytest.fail(f"pgbouncer: {reason} (CI installs it: {how})", pytrace=False)


def start_pgbouncer(
    workdir: Path,
    server_host: str,
    server_port: int,
    pool_size: int = 40,
    *,
    prepared: bool = False,
    max_prepared_statements: int = 200,
    admin: bool = False,
) -> PgBouncer:
    """For a test: the pgbouncer, or the test fails (skips only where allowed, above)."""
    try:
        return launch_pgbouncer(
            workdir,
            server_host,
            server_port,
            pool_size,
            prepared=prepared,
            max_prepared_statements=max_prepared_statements,
            admin=admin,
        )
    except PgBouncerUnavailable as exc:
        _unavailable(str(exc), prepared)
        raise AssertionError("unreachable") from exc


class PgBouncerUnavailable(RuntimeError):
    pass


def binary_of(prepared: bool) -> str | None:
    """`prepared`: a pgbouncer that keeps prepared statements (1.21 or newer); else the
    distribution's."""
    if prepared:
        chosen = os.environ.get("PRAPI_PGBOUNCER_PREPARED") or str(BUILT)
        return chosen if Path(chosen).is_file() else None
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )


def version_of(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0].split()[-1] if out.stdout else "?"


def launch_pgbouncer(
    workdir: Path,
    server_host: str,
    server_port: int,
    pool_size: int = 40,
    *,
    prepared: bool = False,
    max_prepared_statements: int = 200,
    admin: bool = False,
) -> PgBouncer:
    """pgbouncer in transaction mode on a free port, its files in `workdir` (also used by
    bench/processes.py). `prepared`: the one that keeps up to `max_prepared_statements`
    prepared statements per connection. `admin`: `postgres` may use its console (SHOW …).
    Raises PgBouncerUnavailable when it cannot run."""
    binary = binary_of(prepared)
    if binary is None:
        raise PgBouncerUnavailable("not installed")
    extra = f"max_prepared_statements = {max_prepared_statements}\n" if prepared else ""
    if admin:
        extra += "admin_users = postgres\n"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (workdir / "userlist.txt").write_text('"postgres" ""\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
* = host={server_host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "userlist.txt"}
pool_mode = transaction
max_client_conn = 1000
default_pool_size = {pool_size}
server_reset_query =
ignore_startup_parameters = extra_float_digits
{extra}"""
    )
    cmd = [binary, str(ini)]
    if os.geteuid() == 0:
        # pgbouncer refuses to run as root: drop to an unprivileged account
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            raise PgBouncerUnavailable("running as root and no unprivileged user to switch to")
        cmd[1:1] = ["-u", user]
        os.chmod(workdir, 0o755)
        for f in workdir.iterdir():
            os.chmod(f, 0o644)
    log = workdir / "pgbouncer.log"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    bouncer = PgBouncer(port, process, log)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise PgBouncerUnavailable(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return bouncer
        except OSError:
            pass
        if time.monotonic() > deadline:
            bouncer.stop()
            raise PgBouncerUnavailable(f"not listening after 15 s:\n{log.read_text()}")
        time.sleep(0.05)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
