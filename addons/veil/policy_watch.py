"""Hot reload: notice that the policy file changed and read it again.

`poll()` is cheap when nothing changed (one stat) and never raises; the addon calls it from a
worker thread every few seconds. An invalid edit comes back as an error and the caller keeps
the previous policy in force. A file caught half-written (it changed while being read) is
read again at the next poll instead of being reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from veil.policy import Policy, PolicyError

Signature = tuple[int, int, int] | None  # (mtime_ns, size, inode); None: the file is missing


def signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True)
class Reload:
    policy: Policy | None = None  # the new policy, when it is valid
    error: str | None = None  # why the edit was not taken, when it is not


class PolicyWatcher:
    def __init__(self, path: Path, load: Callable[[Path], Policy]) -> None:
        self.path = path
        self.load = load
        self.seen = signature(path)  # take it before the first load, so no edit is missed

    def poll(self) -> Reload | None:
        """A Reload when the file changed since the last poll, else None."""
        current = signature(self.path)
        if current == self.seen:
            return None
        if current is None:
            self.seen = None
            return Reload(error=f"{self.path}: the policy file is gone")
        try:
            policy = self.load(self.path)
        except PolicyError as exc:
            if signature(self.path) != current:
                return None  # written while we read it: look again next time
            self.seen = current
            return Reload(error=str(exc))
        except Exception as exc:  # the watcher must survive anything a reload throws
            self.seen = current
            return Reload(error=f"{self.path}: {type(exc).__name__}: {exc}")
        self.seen = current
        return Reload(policy=policy)
