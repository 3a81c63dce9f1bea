"""The organisation's policy file: settings, groups and ordered rules (first match wins)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from veil import resources

ACTIONS = ("allow", "strip", "blur", "warn", "coach", "block")
BLUR_STYLES = ("blur", "pixelate", "solid")

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


class PolicyError(ValueError):
    """The policy file is invalid; the message names file, line and value."""


def parse_size(text: str | int) -> int:
    """`64MiB`, `10 MB`, `1048576` -> bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (expected e.g. 64MiB, 500KB or 1048576)")
    unit = m.group(2).lower() if m.group(2) else None
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class Settings:
    on_error: str = "block"  # an upload that cannot be inspected: block or allow
    max_upload: int = 64 * 2**20
    max_images: int = 32
    max_pixels: int = 100_000_000  # decompression-bomb guard, checked from the header
    keep_icc: bool = True
    face_threshold: float = 0.1
    face_canvas: int = 1280
    face_scale: float = 1.3
    face_rotations: bool = False  # extra rotated passes for photos without orientation
    blur_style: str = "blur"
    coach_ttl: int = 3600  # seconds an acknowledged coach notice lets uploads pass


@dataclass(frozen=True)
class Conditions:
    """A rule's `match`: every given condition must hold; a list means any of."""

    services: frozenset[str] | None = None
    hosts: tuple[str, ...] | None = None
    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    formats: frozenset[str] | None = None
    has: frozenset[str] | None = None
    faces: tuple[str, int] | None = None  # (operator, count), e.g. (">=", 1)


@dataclass(frozen=True)
class Rule:
    name: str
    actions: tuple[str, ...]
    conditions: Conditions = field(default_factory=Conditions)
    message: str | None = None
    line: int = 0


@dataclass
class Policy:
    settings: Settings = field(default_factory=Settings)
    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    source: str = "<built-in>"

    def needs_faces(self) -> bool:
        """Whether any rule could depend on faces (detection is skipped otherwise)."""
        for rule in self.rules:
            c = rule.conditions
            if "blur" in rule.actions or c.faces is not None or (c.has and "faces" in c.has):
                return True
        return False


# The built-in safe default: strip metadata from every image.
DEFAULT_RULE = Rule(name="built-in default", actions=("strip",))


def load_policy(path: str | Path | None = None) -> Policy:
    path = Path(path) if path else resources.policy_file("default.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str) -> Policy:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    settings = _parse_settings(doc.get("settings") or {}, source)
    groups = {str(k): frozenset(map(str, v or ())) for k, v in (doc.get("groups") or {}).items()}
    rules = [_parse_rule(i, spec, source) for i, spec in enumerate(doc.get("rules") or ())]
    return Policy(settings=settings, groups=groups, rules=rules, source=source)


def _parse_settings(spec: dict, source: str) -> Settings:
    values: dict = {}
    for key, value in spec.items():
        if key not in Settings.__dataclass_fields__:
            raise PolicyError(f"{source}: unknown setting {key!r}")
        values[key] = parse_size(value) if key == "max_upload" else value
    return Settings(**values)


def _parse_rule(index: int, spec: dict, source: str) -> Rule:
    actions = spec.get("action", "allow")
    actions = tuple([actions] if isinstance(actions, str) else actions)
    for action in actions:
        if action not in ACTIONS:
            raise PolicyError(f"{source}: rule {index + 1}: unknown action {action!r}")
    match = spec.get("match") or {}
    conditions = Conditions(
        services=_set(match.get("services")),
        hosts=tuple(match["hosts"]) if "hosts" in match else None,
        users=_set(match.get("users")),
        groups=_set(match.get("groups")),
        clients=tuple(ipaddress.ip_network(c, strict=False) for c in match["clients"])
        if "clients" in match
        else None,
        formats=_set(match.get("formats")),
        has=_set(match.get("has")),
        faces=_parse_comparison(match["faces"]) if "faces" in match else None,
    )
    return Rule(
        name=str(spec.get("name", f"rule {index + 1}")),
        actions=actions,
        conditions=conditions,
        message=spec.get("message"),
    )


def _set(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(map(str, [value] if isinstance(value, str) else value))


_COMPARISON = re.compile(r"^\s*(>=|<=|==|>|<|=)?\s*(\d+)\s*$")


def _parse_comparison(value: object) -> tuple[str, int]:
    m = _COMPARISON.match(str(value))
    if not m:
        raise ValueError(f"not a count comparison: {value!r} (expected e.g. '>=1')")
    op = m.group(1) or ">="
    return ("==" if op == "=" else op, int(m.group(2)))
