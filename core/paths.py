"""Which files a job may open: every concrete path is checked when it is opened (docs/security.md).

A path from outside (the wire, a prompts file, a host) is hostile until checked. The check runs on the path
that will really be opened: after `~` expansion, after frame and `{object}` tokens are substituted, after
symlinks are resolved (realpath) — and the resolved path is what is opened. `mattebridge track` runs as its
user and confines nothing (`PathPolicy()`); `mattebridge serve` confines reads and writes to its allowed
roots (`PathPolicy(roots)`). Either way an output never resolves to one of the job's inputs.
"""

from __future__ import annotations

import os
import stat
from typing import Iterable, List, Optional, Sequence

from .errors import FieldError


class ForbiddenPath(FieldError):
    """A path outside the allowed roots (the wire's `forbidden_path`)."""

    code = "forbidden_path"


class OutputConflict(FieldError):
    """An output that would overwrite an input, or another output of the same job (a bad field)."""

    code = "bad_field"


def resolve(path: str) -> str:
    """The file that `path` names once `~` is expanded and every symlink followed."""
    return os.path.realpath(os.path.expanduser(path))


def inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def plain_mode(folder: bool = False) -> int:
    """The mode a plain open (or mkdir) gives a new file (folder) here: 0666 (0777) less the umask. Outputs are
    made as private temps (mkstemp's 0600, mkdtemp's 0700) and renamed: they get this mode first, so the show's
    readers can read them as the user's umask intends. The umask is read by setting 0o077 for an instant: a file
    another thread makes meanwhile gets fewer permissions, never more."""
    umask = os.umask(0o077)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def everyone_can_read(real: str) -> bool:
    """POSIX: the file is world-readable and every folder above it world-searchable, so any local user could
    read it themselves and the server reveals nothing by reading it for them. False where that cannot be told."""
    if os.name != "posix":
        return False
    try:
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IROTH:
            return False
        folder = os.path.dirname(real)
        while True:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return False
            parent = os.path.dirname(folder)
            if parent == folder:
                return True
            folder = parent
    except OSError:
        return False


class PathPolicy:
    """`roots` None: no confinement (the command line). Else reads and writes stay under `roots`; `private`
    folders (the server's own temp files) may be read and written too but are never named to clients;
    `hidden` folders (the server's own sockets) are refused even inside a root, except the private ones."""

    def __init__(self, roots: Optional[Sequence[str]] = None, private: Sequence[str] = (), hidden: Sequence[str] = ()):
        self.roots: Optional[List[str]] = None if roots is None else [resolve(r) for r in roots]
        self.private: List[str] = [resolve(p) for p in private]
        self.hidden: List[str] = [resolve(h) for h in hidden]

    @property
    def confined(self) -> bool:
        return self.roots is not None

    def _allowed(self, real: str) -> bool:
        if self.roots is None or any(inside(real, p) for p in self.private):
            return True
        return not any(inside(real, h) for h in self.hidden) and any(inside(real, r) for r in self.roots)

    def check(self, path: str, field: str, where: str = "") -> str:
        """The resolved path, if the policy lets the job read or write it; else ForbiddenPath naming `field`
        (and `where`, e.g. "frame 1002", for a path expanded from a pattern)."""
        if not isinstance(path, str) or not path or "\0" in path:
            raise ForbiddenPath(field, ": expected a path without NUL bytes")
        real = resolve(path)
        if not self._allowed(real):
            raise ForbiddenPath(
                field,
                f": {where + ': ' if where else ''}{path} is outside the server's allowed roots "
                f"({', '.join(self.roots)}; see --allow-root)",
            )
        return real

    read = write = check

    def colour_config(self, path: str, field: str, referenced: Iterable[str] = ()) -> str:
        """An OCIO config file (and the LUT files it references, as OCIO resolves them): under the roots, or
        readable by every local user anyway (a host's own config inside its installation)."""
        real = resolve(path)
        for what, file in [(path, real)] + [(f, resolve(f)) for f in referenced]:
            if not self._allowed(file) and not everyone_can_read(file):
                raise ForbiddenPath(
                    field,
                    f": {what} is outside the server's allowed roots and not readable by "
                    f"every user ({', '.join(self.roots)}; see --allow-root)",
                )
        return real


UNCONFINED = PathPolicy()


class InputSet:
    """The files a job reads; an output that resolves to one of them (by path or by inode) is refused."""

    def __init__(self):
        self._paths = {}  # real path -> what it is
        self._inodes = {}  # (device, inode) -> what it is

    def add(self, path: str, what: str) -> None:
        real = resolve(path)
        self._paths[real] = what
        try:
            st = os.stat(real)
            self._inodes[(st.st_dev, st.st_ino)] = what
        except OSError:
            pass

    def refuse_overwrite(self, real: str, field: str, shown: str) -> None:
        """`real`: an output's resolved path; `shown`: the path as the user gave it."""
        what = self._paths.get(real)
        if what is None:
            try:
                st = os.stat(real)
                what = self._inodes.get((st.st_dev, st.st_ino))
            except OSError:
                pass
        if what is not None:
            raise OutputConflict(field, f" {shown}: is {what}, an input of this job; refusing to overwrite it")
