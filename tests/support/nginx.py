"""A real web server for the tests: Debian's nginx serving a directory on a free port of 127.0.0.1.

nginx answers ``Range`` requests for static files with ``206 Partial Content``, ``ETag`` and
``Last-Modified``, as object storage does: the dump is read from it as from a user's own copy.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.tls import free_port
from tests.support.waiting import wait_until

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
NEEDS_NGINX = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian's nginx-light)")

CONFIG = """
daemon off;
worker_processes 1;
{user}
pid {state}/nginx.pid;
error_log {state}/error.log;
events {{ worker_connections 64; }}
http {{
    # The combined format, and the Range asked for.
    log_format ranges '$remote_addr - - [$time_local] "$request" $status $body_bytes_sent '
                      '"$http_referer" "$http_user_agent" "$http_range"';
    access_log {state}/access.log ranges;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


class Nginx:
    def __init__(self, root: Path, state: Path, port: int) -> None:
        self.root, self.state, self.port = root, state, port

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def requests(self) -> list[str]:
        """The access log's lines: one a request."""
        log = self.state / "access.log"
        return log.read_text().splitlines() if log.exists() else []


@contextmanager
def nginx_serving(root: Path, state: Path) -> Iterator[Nginx]:
    """Run nginx serving ``root`` until the block ends; its files and logs in ``state``."""
    assert NGINX is not None
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # Its worker runs as "nobody" unless told otherwise: as root, it must read the tests' files.
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    config = state / "nginx.conf"
    config.write_text(CONFIG.format(user=user, state=state, port=port, root=root))
    process = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(state), "-e", str(state / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Nginx(root, state, port)

    def answers() -> bool:
        assert process.poll() is None, (
            f"nginx exited: {process.stderr.read().decode() if process.stderr else ''}"
        )
        try:
            urllib.request.urlopen(server.url(""), timeout=1).close()
        except urllib.error.HTTPError:
            return True  # it answers (403 for a directory without an index)
        except OSError:
            return False
        return True

    try:
        wait_until(answers, timeout=10)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)
