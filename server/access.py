"""Who may reach the server and which files it may touch: loopback binds, CurveZMQ keys, allowed roots."""
from __future__ import annotations

import ipaddress
import os
import tempfile
from typing import List, Optional, Sequence

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.protocol import ProtocolError

SERVER_SECRET = "server.key_secret"
SERVER_PUBLIC = "server.key"
CLIENTS = "clients"  # optional folder of authorised client public keys (*.key)


def is_loopback(address: str) -> bool:
    """tcp://127.0.0.1:5557, tcp://[::1]:5557, tcp://localhost:5557, ipc://... are local."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    if not address.startswith("tcp://"):
        raise MatteBridgeError(f"--bind {address}: expected tcp://HOST:PORT or ipc://PATH")
    host = address[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name, '*' or a host name: reachable from outside


def check_bind(address: str, keys: Optional[str]) -> None:
    if not is_loopback(address) and not keys:
        raise MatteBridgeError(f"--bind {address}: not loopback; a server reachable from other machines needs "
                               f"--keys DIR (CurveZMQ; create them with `mattebridge keys DIR`)")


def create_keys(folder: str) -> str:
    """A server key pair in `folder` (and an empty clients/ allow-list folder); returns the public key file."""
    import zmq.auth

    os.makedirs(os.path.join(folder, CLIENTS), exist_ok=True)
    if os.path.exists(os.path.join(folder, SERVER_SECRET)):
        raise MatteBridgeError(f"{folder}: already holds a server key pair ({SERVER_SECRET}); not overwritten")
    public, _ = zmq.auth.create_certificates(folder, "server")
    return public


def load_server_keys(folder: str):
    """(public, secret) z85 keys from `folder`, and the clients/ allow-list folder if it holds keys."""
    import zmq.auth

    path = os.path.join(folder, SERVER_SECRET)
    if not os.path.exists(path):
        raise MatteBridgeError(f"--keys {folder}: no {SERVER_SECRET} (create one with `mattebridge keys {folder}`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise MatteBridgeError(f"{path}: not a CurveZMQ secret key file ({e})") from None
    clients = os.path.join(folder, CLIENTS)
    allow = clients if os.path.isdir(clients) and any(n.endswith(".key") for n in os.listdir(clients)) else None
    return public, secret, allow


class Roots:
    """The only folders whose files the server reads or writes (symlinks resolved)."""

    def __init__(self, roots: Sequence[str] = ()):
        roots = list(roots) or [os.getcwd(), tempfile.gettempdir()]
        self.roots: List[str] = [os.path.realpath(r) for r in roots]

    def check(self, path: str, field: str) -> str:
        if not isinstance(path, str) or not path:
            raise ProtocolError("bad_field", f"{field}: expected a path")
        if "\0" in path:
            raise ProtocolError("bad_field", f"{field}: path contains a NUL byte")
        real = os.path.realpath(os.path.expanduser(path))
        for root in self.roots:
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return path
        raise ProtocolError("forbidden_path", f"{field}: {path} is outside the server's allowed roots "
                                              f"({', '.join(self.roots)}; see --allow-root)")
