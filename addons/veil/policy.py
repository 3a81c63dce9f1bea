"""The organisation's policy: settings, groups and ordered rules (first match wins).

This module holds the model and the entry points; `veil.policy_schema` reads a policy file
strictly (every problem reported with its line and column) and builds the model.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from veil import resources

if TYPE_CHECKING:
    from veil.catalogue import Catalogue

ACTIONS = ("allow", "strip", "blur", "warn", "coach", "block")
BLUR_STYLES = ("blur", "pixelate", "solid")
FACE_PRECISIONS = ("int8", "float32")
ON_ERROR = ("block", "allow")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    None: 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.IGNORECASE)
_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class PolicyError(ValueError):
    """The policy file is invalid; the message names file, line and value of every problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def parse_size(text: str | int) -> int:
    """`64MiB`, `10 MB`, `1048576` -> bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (expected e.g. 64MiB, 500KB or 1048576)")
    unit = m.group(2).lower() if m.group(2) else None
    return int(float(m.group(1)) * _UNITS[unit])


def parse_duration(text: str | int) -> int:
    """`90s`, `30m`, `1h`, `1d`, `3600` -> seconds."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30m, 1h or 3600)")
    unit = m.group(2).lower() if m.group(2) else None
    return int(float(m.group(1)) * _SECONDS[unit])


@dataclass(frozen=True)
class Settings:
    on_error: str = "block"  # an upload that cannot be inspected: block or allow
    max_upload: int = 64 * 2**20
    max_images: int = 32
    max_pixels: int = 100_000_000  # decompression-bomb guard, checked from the header
    keep_icc: bool = True
    face_threshold: float = 0.1  # boxes from here up are blurred
    face_match_threshold: float = 0.4  # boxes from here up count as faces for rules
    face_canvas: int = 1024
    face_scale: float = 1.3
    face_rotations: bool = False  # extra rotated passes for photos without orientation
    face_precision: str = "int8"  # the detector's arithmetic: int8 (faster) or float32
    blur_style: str = "blur"
    coach_ttl: int = 3600  # seconds an acknowledged coach notice lets uploads pass


@dataclass(frozen=True)
class Conditions:
    """A rule's `match`: every given condition must hold; a list means any of."""

    services: frozenset[str] | None = None  # service ids or vendor names
    hosts: tuple[str, ...] | None = None  # catalogue-style patterns: "*.example.com"
    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    formats: frozenset[str] | None = None
    has: frozenset[str] | None = None
    faces: tuple[str, int] | None = None  # (operator, count), e.g. (">=", 1)

    @cached_property
    def host_patterns(self) -> tuple[re.Pattern[str], ...]:
        from veil.catalogue import compile_host_pattern

        return tuple(compile_host_pattern(h) for h in self.hosts or ())

    def given(self) -> tuple[str, ...]:
        """The names of the conditions this rule sets (none: a catch-all)."""
        return self._given

    @cached_property
    def _given(self) -> tuple[str, ...]:
        return tuple(name for name in CONDITION_KEYS if getattr(self, name) is not None)


CONDITION_KEYS = ("services", "hosts", "users", "groups", "clients", "formats", "has", "faces")


@dataclass(frozen=True)
class Rule:
    name: str
    actions: tuple[str, ...]
    conditions: Conditions = field(default_factory=Conditions)
    message: str | None = None
    line: int = 0

    @property
    def is_catch_all(self) -> bool:
        return not self.conditions.given()

    @property
    def uses_faces(self) -> bool:
        """Whether deciding or applying this rule needs the image's faces."""
        c = self.conditions
        return "blur" in self.actions or c.faces is not None or bool(c.has and "faces" in c.has)

    def where(self) -> str:
        return f"line {self.line}" if self.line else "built in"


@dataclass
class Policy:
    settings: Settings = field(default_factory=Settings)
    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    source: str = "<built-in>"
    version: int = 1

    def needs_faces(self) -> bool:
        """Whether any rule could depend on faces (detection is skipped otherwise)."""
        return any(rule.uses_faces for rule in self.rules)

    def groups_of(self, user: str | None) -> set[str]:
        if not user:
            return set()
        return {name for name, members in self.groups.items() if user in members}


# The built-in safe default: strip metadata from every image no rule matched.
DEFAULT_RULE = Rule(name="built-in default", actions=("strip",))


def load_policy(path: str | Path | None = None, catalogue: Catalogue | None = None) -> Policy:
    """Read and strictly validate a policy file; raises PolicyError listing every problem."""
    path = Path(path) if path else resources.policy_file("default.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: the policy file is not UTF-8 text: {exc.reason}") from exc
    return parse_policy(text, str(path), catalogue)


def parse_policy(text: str, source: str, catalogue: Catalogue | None = None) -> Policy:
    from veil.policy_schema import read_policy

    return read_policy(text, source, catalogue or _builtin_catalogue())


@cache
def _builtin_catalogue() -> Catalogue:
    from veil.catalogue import Catalogue

    return Catalogue.load()
