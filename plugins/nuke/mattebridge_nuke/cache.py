"""The node's matte cache on disk: what the internal Reads show, and what a change of prompts puts aside.

Layout under the cache folder (default: next to the script, `mattebridge/<node name>`):

    <object>/<object>.####.exr           published mattes: the internal Read of each object reads these
    .stash/<object>/<object>.####.<kind>.<key>.exr
                                         mattes whose key no longer matches (kept so that an undo, or
                                         moving a point back, brings them back without tracking)
    .manifest.json, .journal.jsonl       (object, frame) -> (kind, key) of published and stashed mattes,
                                         and the key context of the last action (keys.py)
    .prompts.json                        the prompts of the last action (docs/prompts.md)

(Object names cannot start with '.', so no object folder meets these names.)

A farm render needs only the published files: the Reads see a frame's matte or, where none is
published, nothing (black). Everything else is bookkeeping for the Nuke session.

Thread safety: one lock per cache folder in this process; the Track thread publishes while the main
thread syncs after knob changes.
"""

import json
import os
import shutil
import threading
import uuid
from typing import Dict, List, Optional, Tuple

from .keys import KeyContext

MANIFEST = ".manifest.json"
JOURNAL = ".journal.jsonl"
PROMPTS = ".prompts.json"
STASH_PER_FRAME = 4  # versions of one (object, frame) kept aside; older ones are deleted

_caches: Dict[str, "MatteCache"] = {}
_caches_guard = threading.Lock()


def open_cache(root: str) -> "MatteCache":
    """The one MatteCache of a folder in this process (its manifest is shared by every thread)."""
    root = os.path.abspath(root)
    with _caches_guard:
        cache = _caches.get(root)
        if cache is None:
            cache = _caches[root] = MatteCache(root)
        return cache


def move_file(src: str, dest: str) -> None:
    """Rename, or (another file system: the server's staging folder is in the temp dir) copy next to
    `dest` and rename there, so readers never see half a file."""
    try:
        os.replace(src, dest)
    except OSError:
        tmp = dest + ".%s.tmp" % uuid.uuid4().hex[:8]
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        os.unlink(src)


def frame_name(obj: str, frame: int) -> str:
    """`<object>.%04d.exr`: what Nuke's `####` expands to (printf %04d, so frame -1 is -001)."""
    return "%s.%04d.exr" % (obj, frame)


class MatteCache:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.lock = threading.RLock()
        with self.lock:
            self._load()

    # --- paths -------------------------------------------------------------------------------------
    def published_path(self, obj: str, frame: int) -> str:
        return os.path.join(self.root, obj, frame_name(obj, frame))

    def read_pattern(self, obj: str) -> str:
        return os.path.join(self.root, obj, obj + ".####.exr")

    def _stash_path(self, obj: str, frame: int, kind: str, key: str) -> str:
        return os.path.join(self.root, ".stash", obj, "%s.%04d.%s.%s.exr" % (obj, frame, kind, key))

    # --- manifest ----------------------------------------------------------------------------------
    def _load(self) -> None:
        self.published: Dict[str, Dict[int, Tuple[str, str]]] = {}
        self.stash: Dict[str, Dict[int, List[Tuple[str, str]]]] = {}
        self.context_doc: Optional[dict] = None
        path = os.path.join(self.root, MANIFEST)
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    doc = json.load(f)
                self.published = {
                    o: {int(fr): tuple(v) for fr, v in per.items()} for o, per in doc.get("published", {}).items()
                }
                self.stash = {
                    o: {int(fr): [tuple(v) for v in vs] for fr, vs in per.items()}
                    for o, per in doc.get("stash", {}).items()
                }
                self.context_doc = doc.get("context")
            except (OSError, ValueError, TypeError, AttributeError):
                self.published, self.stash, self.context_doc = {}, {}, None  # unreadable: start afresh
        journal = os.path.join(self.root, JOURNAL)
        if os.path.exists(journal):  # what happened since the last save (a crash mid-track loses nothing)
            with open(journal, encoding="utf-8") as f:
                for line in f:
                    try:
                        self._apply(json.loads(line))
                    except (ValueError, KeyError, TypeError):
                        break  # a torn last line
        self._forget_missing()

    def _forget_missing(self) -> None:
        """Entries whose files someone deleted by hand."""
        for obj, per in list(self.published.items()):
            for frame in [f for f in per if not os.path.exists(self.published_path(obj, f))]:
                del per[frame]
        for obj, per in list(self.stash.items()):
            for frame, entries in list(per.items()):
                per[frame] = [e for e in entries if os.path.exists(self._stash_path(obj, frame, *e))]

    def _apply(self, op: dict) -> None:
        obj, frame = op["obj"], int(op["frame"])
        if op["op"] == "publish":
            self.published.setdefault(obj, {})[frame] = (op["kind"], op["key"])
        elif op["op"] == "unpublish":
            self.published.get(obj, {}).pop(frame, None)
        elif op["op"] == "stash":
            entries = self.stash.setdefault(obj, {}).setdefault(frame, [])
            entry = (op["kind"], op["key"])
            if entry not in entries:
                entries.append(entry)
        elif op["op"] == "unstash":
            entries = self.stash.get(obj, {}).get(frame, [])
            if (op["kind"], op["key"]) in entries:
                entries.remove((op["kind"], op["key"]))

    def _record(self, **op) -> None:
        self._apply(op)
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, JOURNAL), "a", encoding="utf-8") as f:
            f.write(json.dumps(op) + "\n")

    def save(self) -> None:
        with self.lock:
            os.makedirs(self.root, exist_ok=True)
            doc = {
                "version": 1,
                "published": {o: {str(f): list(v) for f, v in per.items()} for o, per in self.published.items() if per},
                "stash": {
                    o: {str(f): [list(e) for e in vs] for f, vs in per.items() if vs} for o, per in self.stash.items()
                },
                "context": self.context_doc,
            }
            tmp = os.path.join(self.root, MANIFEST + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f)
            os.replace(tmp, os.path.join(self.root, MANIFEST))
            journal = os.path.join(self.root, JOURNAL)
            if os.path.exists(journal):
                os.unlink(journal)

    def save_prompts(self, prompts_json: dict) -> None:
        os.makedirs(self.root, exist_ok=True)
        tmp = os.path.join(self.root, PROMPTS + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(prompts_json, f, indent=1)
        os.replace(tmp, os.path.join(self.root, PROMPTS))

    # --- what is there -----------------------------------------------------------------------------
    def context(self) -> Optional[KeyContext]:
        return KeyContext.from_json(self.context_doc) if self.context_doc else None

    def entry(self, obj: str, frame: int) -> Optional[Tuple[str, str]]:
        with self.lock:
            return self.published.get(obj, {}).get(frame)

    def published_frames(self, obj: str) -> List[int]:
        with self.lock:
            return sorted(self.published.get(obj, {}))

    # --- keeping the published mattes in line with the knobs -------------------------------------
    def update(self, ctx: KeyContext) -> Tuple[int, int]:
        """Make `ctx` current and sync: returns (mattes put aside, mattes brought back)."""
        with self.lock:
            self.context_doc = ctx.to_json()
            result = self._sync(ctx)
            self.save()
            return result

    def _current(self) -> Optional[KeyContext]:
        return KeyContext.from_json(self.context_doc) if self.context_doc else None

    def _sync(self, ctx: KeyContext) -> Tuple[int, int]:
        stashed = restored = 0
        for obj, per in list(self.published.items()):
            for frame, (kind, key) in list(per.items()):
                if ctx.key(obj, frame, kind) != key:
                    self._to_stash(obj, frame)
                    stashed += 1
        for obj, per in list(self.stash.items()):
            for frame, entries in list(per.items()):
                if frame in self.published.get(obj, {}):
                    continue
                for kind, key in list(entries):
                    if ctx.key(obj, frame, kind) == key and self._from_stash(obj, frame, kind, key):
                        restored += 1
                        break
        return stashed, restored

    def _to_stash(self, obj: str, frame: int) -> None:
        kind, key = self.published[obj][frame]
        dest = self._stash_path(obj, frame, kind, key)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        src = self.published_path(obj, frame)
        if os.path.exists(src):
            os.replace(src, dest)
            self._record(op="stash", obj=obj, frame=frame, kind=kind, key=key)
        self._record(op="unpublish", obj=obj, frame=frame)
        entries = self.stash.get(obj, {}).get(frame, [])
        while len(entries) > STASH_PER_FRAME:  # the oldest versions go
            old_kind, old_key = entries[0]
            try:
                os.unlink(self._stash_path(obj, frame, old_kind, old_key))
            except OSError:
                pass
            self._record(op="unstash", obj=obj, frame=frame, kind=old_kind, key=old_key)

    def _from_stash(self, obj: str, frame: int, kind: str, key: str) -> bool:
        src, dest = self._stash_path(obj, frame, kind, key), self.published_path(obj, frame)
        self._record(op="unstash", obj=obj, frame=frame, kind=kind, key=key)
        if not os.path.exists(src):
            return False
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(src, dest)
        self._record(op="publish", obj=obj, frame=frame, kind=kind, key=key)
        return True

    def missing(self, targets: Dict[str, Dict[int, Tuple[str, str]]]) -> Dict[str, Dict[int, Tuple[str, str]]]:
        """The targets (keys.KeyContext.targets) not published yet; ones found aside are brought back."""
        out: Dict[str, Dict[int, Tuple[str, str]]] = {}
        with self.lock:
            for obj, per in targets.items():
                for frame, (kind, key) in per.items():
                    if self.published.get(obj, {}).get(frame) == (kind, key):
                        continue
                    if (kind, key) in self.stash.get(obj, {}).get(frame, []):
                        if frame in self.published.get(obj, {}):
                            self._to_stash(obj, frame)
                        if self._from_stash(obj, frame, kind, key):
                            continue
                    out.setdefault(obj, {})[frame] = (kind, key)
        return out

    def publish(self, obj: str, frame: int, kind: str, key: str, src: str) -> bool:
        """Move a finished matte file into place if its key is still the current one (True); a matte made
        for prompts that changed meanwhile goes aside instead (False)."""
        with self.lock:
            ctx = self._current()
            current = ctx is not None and ctx.key(obj, frame, kind) == key
            if self.published.get(obj, {}).get(frame) == (kind, key):
                os.unlink(src)  # the same matte is already there
                return True
            if not current:
                dest = self._stash_path(obj, frame, kind, key)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                move_file(src, dest)
                self._record(op="stash", obj=obj, frame=frame, kind=kind, key=key)
                return False
            if frame in self.published.get(obj, {}):
                self._to_stash(obj, frame)
            dest = self.published_path(obj, frame)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            move_file(src, dest)
            self._record(op="publish", obj=obj, frame=frame, kind=kind, key=key)
            return True

    # --- housekeeping ------------------------------------------------------------------------------
    def purge_stash(self) -> int:
        """Delete the mattes put aside; returns how many."""
        with self.lock:
            count = sum(len(v) for per in self.stash.values() for v in per.values())
            shutil.rmtree(os.path.join(self.root, ".stash"), ignore_errors=True)
            self.stash = {}
            self.save()
            return count

    def clear(self) -> None:
        """Delete every matte of this cache (published and aside)."""
        with self.lock:
            for obj in list(self.published) + list(self.stash):
                shutil.rmtree(os.path.join(self.root, obj), ignore_errors=True)
            self.published, self.stash = {}, {}
            shutil.rmtree(os.path.join(self.root, ".stash"), ignore_errors=True)
            self.save()
