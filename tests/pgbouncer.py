"""A private pgbouncer for the tests (DESIGN §16): its own port and temporary directory, in
transaction mode, in front of the shared PostgreSQL server. Nothing else on the machine is
touched. Missing or unable to start, it FAILS the tests that need it (never skips them);
outside CI, PRAPI_ALLOW_NO_PGBOUNCER=1 skips them instead.

CI installs it from the distribution's packages (.ci/run); so can a developer:
`apt-get install pgbouncer`.
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


def _unavailable(reason: str) -> None:
    if os.environ.get("PRAPI_ALLOW_NO_PGBOUNCER") == "1" and os.environ.get("CI") != "true":
        pytest.skip(f"pgbouncer: {reason}")
    pytest.fail(f"pgbouncer: {reason} (CI installs it: apt-get install pgbouncer)", pytrace=False)


def start_pgbouncer(
    workdir: Path, server_host: str, server_port: int, pool_size: int = 40
) -> PgBouncer:
    """For a test: the pgbouncer, or the test fails (skips only where allowed, above)."""
    try:
        return launch_pgbouncer(workdir, server_host, server_port, pool_size)
    except PgBouncerUnavailable as exc:
        _unavailable(str(exc))
        raise AssertionError("unreachable") from exc


class PgBouncerUnavailable(RuntimeError):
    pass


def launch_pgbouncer(
    workdir: Path, server_host: str, server_port: int, pool_size: int = 40
) -> PgBouncer:
    """pgbouncer in transaction mode on a free port, its files in `workdir` (also used by
    bench/processes.py). Raises PgBouncerUnavailable when it cannot run."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if binary is None:
        raise PgBouncerUnavailable("not installed")
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
"""
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
