"""Ports and certificates for the servers the tests start: a free loopback port, a self-signed certificate."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

__all__ = ["free_port", "self_signed_certificate"]


def free_port() -> int:
    """A loopback TCP port nothing listens on (the OS's choice, so runs on one machine do not collide)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def self_signed_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as a managed service's TLS endpoint has."""
    certificate, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    key.chmod(0o600)
    return certificate, key
