"""Who may reach the server and which files it may touch: loopback binds, CurveZMQ keys, allowed roots."""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import tempfile
from typing import List, Optional, Sequence

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.paths import PathPolicy

SERVER_SECRET = "server.key_secret"
SERVER_PUBLIC = "server.key"
CLIENTS = "clients"  # optional folder of authorised client public keys (*.key)


def is_loopback(address: str) -> bool:
    """tcp://127.0.0.1:5557, tcp://[::1]:5557, tcp://localhost:5557, ipc://... are local."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    if not address.startswith("tcp://"):
        raise MatteBridgeError(f"--bind {address}: expected tcp://HOST:PORT or ipc://PATH")
    host = address[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name, '*' or a host name: reachable from outside


def check_bind(address: str, keys: Optional[str]) -> None:
    if not is_loopback(address) and not keys:
        raise MatteBridgeError(
            f"--bind {address}: not loopback; a server reachable from other machines needs "
            f"--keys DIR (CurveZMQ; create them with `mattebridge keys DIR`)"
        )


def create_keys(folder: str) -> str:
    """A server key pair in `folder` (and an empty clients/ allow-list folder); returns the public key file.

    Folders it creates are 0700 and the secret key 0600, whatever the caller's umask: the umask is 077
    while they are made, so the secret is never readable by others, not even for a moment. The public key
    is 0644 (clients need it)."""
    import zmq.auth

    if os.path.exists(os.path.join(folder, SERVER_SECRET)):
        raise MatteBridgeError(f"{folder}: already holds a server key pair ({SERVER_SECRET}); not overwritten")
    umask = os.umask(0o077)
    try:
        os.makedirs(os.path.join(folder, CLIENTS), mode=0o700, exist_ok=True)
        public, secret = zmq.auth.create_certificates(folder, "server")
    finally:
        os.umask(umask)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public


def load_server_keys(folder: str):
    """(public, secret) z85 keys from `folder`, and the clients/ allow-list folder if it holds keys."""
    import zmq.auth

    path = os.path.join(folder, SERVER_SECRET)
    if not os.path.exists(path):
        raise MatteBridgeError(f"--keys {folder}: no {SERVER_SECRET} (create one with `mattebridge keys {folder}`)")
    mode = os.stat(path).st_mode & 0o777
    if os.name != "nt" and mode & 0o077:  # as ssh: a secret others can read is no longer a secret
        raise MatteBridgeError(
            f"--keys {folder}: {path} is open to other users (mode {mode:04o}); "
            f"a secret key must be private to its owner: chmod 600 {path}"
        )
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise MatteBridgeError(f"{path}: not a CurveZMQ secret key file ({e})") from None
    clients = os.path.join(folder, CLIENTS)
    allow = clients if os.path.isdir(clients) and any(n.endswith(".key") for n in os.listdir(clients)) else None
    return public, secret, allow


def default_roots(roots: Sequence[str] = ()) -> List[str]:
    """`--allow-root` folders, or by default the current folder and the system temp folder."""
    return list(roots) or [os.getcwd(), tempfile.gettempdir()]


def private_folder() -> str:
    """A folder only this user can reach (0700), removed when the process ends: the server's sockets between
    its processes, and each model worker's scratch folder inside it."""
    folder = tempfile.mkdtemp(prefix="mattebridge-serve-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


class Roots(PathPolicy):
    """The only folders whose files the server reads or writes (docs/security.md), plus one private folder
    of its own (0700) for the mask prompts clients send as buffers. `server_folder`: the server's private
    folder (its sockets); the scratch folder is made inside it, and nothing else in it is reachable by a path
    from a client, even when it lies inside an allowed root (the system temp folder, by default)."""

    def __init__(self, roots: Sequence[str] = (), server_folder: Optional[str] = None):
        self.scratch = tempfile.mkdtemp(prefix="scratch-", dir=server_folder) if server_folder else private_folder()
        hidden = [server_folder] if server_folder else []
        super().__init__(default_roots(roots), private=[self.scratch], hidden=hidden)
