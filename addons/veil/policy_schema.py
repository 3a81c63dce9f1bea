"""Reads a policy file strictly: every problem is reported at once, with its line and column.

The YAML is composed into a node tree (not loaded into plain dicts) so that each value keeps
its position; problems read `policy.yaml:12:14: unknown action (got 'blokc'; expected one of
allow, strip, ...)`. Nothing is guessed: unknown keys, wrong types, unknown service ids,
malformed networks, sizes and comparisons, contradictory actions, duplicate names and rules
that can never match are all errors.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from veil import formats
from veil.catalogue import Catalogue, compile_host_pattern
from veil.findings import FINDING_KINDS
from veil.policy import (
    ACTIONS,
    BLUR_STYLES,
    CONDITION_KEYS,
    FACE_PRECISIONS,
    ON_ERROR,
    Conditions,
    Policy,
    PolicyError,
    Rule,
    Settings,
    parse_duration,
    parse_size,
)

SUPPORTED_VERSIONS = (1,)
TOP_KEYS = ("version", "settings", "groups", "rules")
RULE_KEYS = ("name", "match", "action", "message")
FORMAT_ALIASES = {"jpg": "jpeg", "heic": "heif", "tif": "tiff"}
MESSAGE_ACTIONS = ("warn", "coach", "block")  # the actions that show a message to the user
COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|=|>|<)\s*(\d+)\s*$")
HOST_PATTERN = re.compile(
    r"^(\*\.)?[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?(\.[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?)*$"
)
MERGE_TAG = "tag:yaml.org,2002:merge"
_INVALID = object()  # a value that could not be constructed (already reported)
USER_NAME = re.compile(r"^[^\s:]+$")  # HTTP Basic user ids cannot hold a colon


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based
    column: int  # 1-based
    what: str
    got: str | None = None
    expected: str | None = None

    def format(self, source: str) -> str:
        detail = "; ".join(
            part
            for part in (
                f"got {self.got}" if self.got is not None else "",
                f"expected {self.expected}" if self.expected else "",
            )
            if part
        )
        return f"{source}:{self.line}:{self.column}: {self.what}" + (
            f" ({detail})" if detail else ""
        )


def read_policy(text: str, source: str, catalogue: Catalogue) -> Policy:
    """The policy in `text`, or PolicyError listing every problem found in it."""
    reader = _Reader(text, source, catalogue)
    policy = reader.read()
    if reader.problems:
        problems = sorted(reader.problems, key=lambda p: (p.line, p.column))
        lines = [p.format(source) for p in problems]
        raise PolicyError("\n".join(lines), lines)
    return policy


class _Reader:
    def __init__(self, text: str, source: str, catalogue: Catalogue) -> None:
        self.text = text
        self.source = source
        self.catalogue = catalogue
        self.problems: list[Problem] = []
        self.loader = yaml.SafeLoader(text)
        self.group_names: set[str] = set()
        self.rule_nodes: list[Node] = []  # parallel to the rules read, for positions

    # Problems and values.

    def fail(
        self, node: Node, what: str, *, got: str | None = None, expected: str | None = None
    ) -> None:
        mark = node.start_mark
        got = _show(node) if got is None else got
        self.problems.append(Problem(mark.line + 1, mark.column + 1, what, got, expected))

    def value(self, node: Node) -> object:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.fail(node, f"not a plain YAML value: {getattr(exc, 'problem', exc)}")
            return _INVALID

    def mapping(self, node: Node, allowed: tuple[str, ...], what: str) -> dict[str, tuple]:
        """{key: (key node, value node)} of a mapping whose keys must be among `allowed`."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping", expected=f"keys {', '.join(allowed)}")
            return {}
        own_keys = {id(k) for k, _ in node.value if k.tag != MERGE_TAG}
        try:
            self.loader.flatten_mapping(node)  # `<<: *anchor` merges; own keys override them
        except yaml.YAMLError as exc:
            self.fail(node, f"bad merge in {what}: {getattr(exc, 'problem', exc)}")
            return {}
        seen: dict[str, tuple] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.fail(key_node, f"a key in {what} must be a name", expected=_one_of(allowed))
                continue
            if key in seen and id(seen[key][0]) not in own_keys:
                seen[key] = (key_node, value_node)
                continue
            if key in seen:
                first = seen[key][0].start_mark.line + 1
                self.fail(key_node, f"{key} is given twice in {what} (first on line {first})")
                continue
            if key not in allowed:
                self.fail(key_node, f"unknown key in {what}", expected=_one_of(allowed, near=key))
                continue
            seen[key] = (key_node, value_node)
        return seen

    def string_list(self, node: Node, what: str) -> list[tuple[Node, str]]:
        """A list of strings (a single string counts as a list of one)."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        if isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a list", expected="a list such as [a, b]")
            return []
        if isinstance(node, SequenceNode) and not items:
            self.fail(
                node,
                f"{what} is an empty list, which matches nothing",
                expected="at least one entry, or no such key to match any",
            )
        result = []
        for item in items:
            value = self.value(item) if isinstance(item, ScalarNode) else None
            if isinstance(value, str) and value.strip():
                result.append((item, value.strip()))
            elif value is _INVALID:
                continue
            elif isinstance(item, ScalarNode) and value is not None:
                self.fail(
                    item,
                    f"an entry of {what} must be text",
                    expected=f'a quoted string, e.g. "{item.value}"',
                )
            else:
                self.fail(item, f"an entry of {what} must be text", expected="a name")
        return result

    # The document.

    def read(self) -> Policy:
        try:
            root = self.loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            self._yaml_error(exc)
            return Policy(source=self.source)
        finally:
            self.loader.dispose()
        if root is None:
            self.problems.append(Problem(1, 1, "the policy file is empty", None, "version: 1"))
            return Policy(source=self.source)
        top = self.mapping(root, TOP_KEYS, "the policy")
        if not isinstance(root, MappingNode):
            return Policy(source=self.source)
        version = self._version(top.get("version"), root)
        settings = self._settings(top["settings"][1]) if "settings" in top else Settings()
        groups = self._groups(top["groups"][1]) if "groups" in top else {}
        rules = self._rules(top["rules"][1]) if "rules" in top else []
        self._unreachable(rules)
        return Policy(settings, groups, rules, self.source, version)

    def _yaml_error(self, exc: yaml.MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = f"not valid YAML: {exc.problem or exc.context}"
        text_line = (
            self.text.splitlines()[line - 1] if 0 < line <= len(self.text.splitlines()) else ""
        )
        hint = None
        if re.search(r":\s*[<>]=?", text_line):
            hint = 'a quoted comparison, e.g. faces: ">=1"'
        self.problems.append(Problem(line, column, what, None, hint))

    def _version(self, entry: tuple | None, root: Node) -> int:
        if entry is None:
            self.fail(root, "the policy has no version", got="none", expected="version: 1")
            return 1
        node = entry[1]
        version = self.value(node) if isinstance(node, ScalarNode) else None
        if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
            self.fail(node, "unsupported policy version", expected="1")
            return 1
        assert isinstance(version, int)
        return version

    # settings:

    def _settings(self, node: Node) -> Settings:
        allowed = tuple(f.name for f in fields(Settings))
        values: dict[str, object] = {}
        for key, (_, value_node) in self.mapping(node, allowed, "settings").items():
            check = _SETTING_CHECKS.get(key) or _check_by_default(getattr(Settings(), key))
            raw = self.value(value_node) if isinstance(value_node, ScalarNode) else None
            try:
                values[key] = check(raw)
            except ValueError as exc:
                self.fail(value_node, f"bad value for settings.{key}", expected=str(exc))
        return Settings(**values)  # type: ignore[arg-type]

    # groups:

    def _groups(self, node: Node) -> dict[str, frozenset[str]]:
        if not isinstance(node, MappingNode):
            self.fail(node, "groups must be a mapping", expected="groups: {name: [user, ...]}")
            return {}
        groups: dict[str, frozenset[str]] = {}
        for key_node, members_node in node.value:
            name = self.value(key_node) if isinstance(key_node, ScalarNode) else None
            if not isinstance(name, str) or not name.strip():
                self.fail(key_node, "a group name must be text", expected="a name")
                continue
            if name in groups:
                self.fail(key_node, f"group {name} is defined twice")
                continue
            if isinstance(members_node, SequenceNode) and not members_node.value:
                groups[name] = frozenset()  # an empty group is allowed: it matches nobody
                continue
            members = self.string_list(members_node, f"group {name}")
            groups[name] = frozenset(self._user_names(members, f"group {name}"))
        self.group_names = set(groups)
        return groups

    def _user_names(self, items: list[tuple[Node, str]], what: str) -> list[str]:
        names = []
        for item, name in items:
            if USER_NAME.match(name):
                names.append(name)
            else:
                self.fail(
                    item,
                    f"not a user name in {what}",
                    expected="a proxy-auth user name (no spaces, no ':')",
                )
        return names

    # rules:

    def _rules(self, node: Node) -> list[Rule]:
        if not isinstance(node, SequenceNode):
            self.fail(node, "rules must be a list", expected="a list of rules, each - name: ...")
            return []
        rules: list[Rule] = []
        names: dict[str, int] = {}
        for index, rule_node in enumerate(node.value):
            rule = self._rule(index, rule_node)
            if rule is None:
                continue
            if rule.name in names:
                self.fail(
                    _value_node(rule_node, "name") or rule_node,
                    f"two rules are named {rule.name!r} (the first on line {names[rule.name]}); "
                    "the audit trail tells rules apart by name",
                    expected="a unique name",
                )
            names.setdefault(rule.name, rule.line)
            rules.append(rule)
            self.rule_nodes.append(rule_node)
        return rules

    def _rule(self, index: int, node: Node) -> Rule | None:
        entries = self.mapping(node, RULE_KEYS, f"rule {index + 1}")
        if not isinstance(node, MappingNode):
            return None
        line = node.start_mark.line + 1
        name = self._rule_name(entries.get("name"), node, index)
        actions = self._actions(entries.get("action"), node, name)
        conditions = self._conditions(entries["match"][1]) if "match" in entries else Conditions()
        message = self._message(entries.get("message"), actions)
        return Rule(name, actions, conditions, message, line)

    def _rule_name(self, entry: tuple | None, node: Node, index: int) -> str:
        if entry is None:
            self.fail(
                node,
                f"rule {index + 1} has no name; the audit trail records it",
                got="none",
                expected="name: a-short-name",
            )
            return f"rule {index + 1}"
        value = self.value(entry[1]) if isinstance(entry[1], ScalarNode) else None
        if not isinstance(value, str) or not value.strip():
            self.fail(entry[1], "a rule name must be text", expected="name: a-short-name")
            return f"rule {index + 1}"
        return value.strip()

    def _actions(self, entry: tuple | None, node: Node, name: str) -> tuple[str, ...]:
        if entry is None:
            self.fail(node, f"rule {name!r} has no action", got="none", expected=_one_of(ACTIONS))
            return ("block",)
        items = self.string_list(entry[1], "action")
        actions: list[str] = []
        for item, action in items:
            if action not in ACTIONS:
                self.fail(item, "unknown action", expected=_one_of(ACTIONS, near=action))
            elif action in actions:
                self.fail(item, f"the action {action} is listed twice")
            else:
                actions.append(action)
        for what in _contradictions(actions):
            self.fail(entry[1], f"contradictory actions: {what}", expected=_ACTION_COMBINATIONS)
        return tuple(actions) or ("block",)

    def _message(self, entry: tuple | None, actions: tuple[str, ...]) -> str | None:
        if entry is None:
            return None
        value = self.value(entry[1]) if isinstance(entry[1], ScalarNode) else None
        if not isinstance(value, str) or not value.strip():
            self.fail(entry[1], "a message must be text", expected="message: Words for the user.")
            return None
        if not set(actions) & set(MESSAGE_ACTIONS):
            self.fail(
                entry[0],
                "this rule never shows its message: only warn, coach and block tell the user",
                got=f"action {', '.join(actions)}",
                expected="a warn, coach or block action, or no message",
            )
        return " ".join(value.split())

    # match:

    def _conditions(self, node: Node) -> Conditions:
        if isinstance(node, ScalarNode) and self.value(node) is None:
            return Conditions()  # `match:` with nothing under it: a catch-all
        entries = self.mapping(node, CONDITION_KEYS, "match")
        values: dict[str, object] = {}
        for key, (_, value_node) in entries.items():
            values[key] = getattr(self, f"_match_{key}")(value_node)
        return Conditions(**values)  # type: ignore[arg-type]

    def _match_services(self, node: Node) -> frozenset[str]:
        ids = set(self.catalogue.services)
        vendors = set(self.catalogue.vendors)
        known = sorted(ids) + sorted(vendors - ids)
        result = set()
        for item, name in self.string_list(node, "services"):
            if name in ids or name in vendors:
                result.add(name)
            else:
                self.fail(
                    item,
                    "unknown service",
                    expected="a service id or vendor from the catalogue: "
                    + _one_of(known, near=name),
                )
        return frozenset(result)

    def _match_hosts(self, node: Node) -> tuple[str, ...]:
        result = []
        for item, host in self.string_list(node, "hosts"):
            host = host.lower().rstrip(".")
            if not HOST_PATTERN.match(host):
                self.fail(
                    item,
                    "not a host name or pattern",
                    expected="a host such as chatgpt.com or *.oaiusercontent.com "
                    "(no scheme, port or path)",
                )
            elif "*" not in host and self.catalogue.service_for_host(host) is None:
                self.fail(
                    item,
                    "Veil never inspects this host: no service in the catalogue covers it",
                    expected="a host of a catalogue service",
                )
            else:
                result.append(host)
        return tuple(result)

    def _match_users(self, node: Node) -> frozenset[str]:
        return frozenset(self._user_names(self.string_list(node, "users"), "users"))

    def _match_groups(self, node: Node) -> frozenset[str]:
        result = set()
        for item, group in self.string_list(node, "groups"):
            if group in self.group_names:
                result.add(group)
            else:
                defined = sorted(self.group_names)
                self.fail(
                    item,
                    "unknown group",
                    expected="a group defined under groups: " + _one_of(defined, near=group)
                    if defined
                    else "a group defined under groups: (none is defined)",
                )
        return frozenset(result)

    def _match_clients(self, node: Node) -> tuple:
        result = []
        for item, text in self.string_list(node, "clients"):
            try:
                result.append(ipaddress.ip_network(text, strict=True))
            except ValueError as exc:
                expected = "a network such as 10.0.0.0/8, 2001:db8::/32 or one address"
                if "host bits set" in str(exc):
                    network = ipaddress.ip_network(text, strict=False)
                    expected = f"the network address: {network}"
                self.fail(item, "not a client network", expected=expected)
        return tuple(result)

    def _match_formats(self, node: Node) -> frozenset[str]:
        known = sorted(f for f in _KNOWN_FORMATS if formats.is_image_format(f))
        result = set()
        for item, name in self.string_list(node, "formats"):
            fmt = FORMAT_ALIASES.get(name.lower(), name.lower())
            if formats.is_image_format(fmt):
                result.add(fmt)
            else:
                self.fail(item, "unknown image format", expected=_one_of(known, near=name))
        return frozenset(result)

    def _match_has(self, node: Node) -> frozenset[str]:
        result = set()
        for item, kind in self.string_list(node, "has"):
            if kind in FINDING_KINDS:
                result.add(kind)
            else:
                self.fail(
                    item, "unknown finding", expected=_one_of(sorted(FINDING_KINDS), near=kind)
                )
        return frozenset(result)

    def _match_faces(self, node: Node) -> tuple[str, int] | None:
        value = self.value(node) if isinstance(node, ScalarNode) else None
        m = COMPARISON.match(value) if isinstance(value, str) else None
        if not m:
            self.fail(
                node,
                "not a face count comparison",
                expected='a quoted comparison such as ">=1", "==0" or "<3"',
            )
            return None
        op = {"=": "=="}.get(m.group(1), m.group(1))
        return (op, int(m.group(2)))

    # Rules that can never match.

    def _unreachable(self, rules: list[Rule]) -> None:
        vendors = self.catalogue.vendors
        for later_index, later in enumerate(rules):
            for earlier in rules[:later_index]:
                if covers(earlier.conditions, later.conditions, vendors):
                    why = (
                        "matches every upload"
                        if earlier.is_catch_all
                        else "already matches every upload this one matches"
                    )
                    self.fail(
                        self.rule_nodes[later_index],
                        f"rule {later.name!r} can never match: rule {earlier.name!r} "
                        f"(line {earlier.line}) above it {why}",
                        got=f"rule {later.name!r} after {earlier.name!r}",
                        expected="more specific rules first (first match wins)",
                    )
                    break


def covers(earlier: Conditions, later: Conditions, vendors: dict[str, list[str]]) -> bool:
    """Whether every upload `later` matches is matched by `earlier` (so `later` is dead).

    `vendors` maps each vendor name to its service ids (the catalogue's).
    """
    for key in earlier.given():
        mine, theirs = getattr(earlier, key), getattr(later, key)
        if theirs is None or not _COVERS[key](mine, theirs, vendors):
            return False
    return True


def _covers_services(mine: frozenset, theirs: frozenset, vendors: dict) -> bool:
    def expand(names: frozenset) -> set[str]:
        return {sid for n in names for sid in vendors.get(n, [n])}

    return expand(theirs) <= expand(mine)


def _covers_hosts(mine: tuple, theirs: tuple, vendors: dict) -> bool:
    patterns = [compile_host_pattern(h) for h in mine]
    return all(h in mine or ("*" not in h and any(p.match(h) for p in patterns)) for h in theirs)


def _covers_clients(mine: tuple, theirs: tuple, vendors: dict) -> bool:
    return all(any(t.version == m.version and t.subnet_of(m) for m in mine) for t in theirs)


def _covers_faces(mine: tuple, theirs: tuple, vendors: dict) -> bool:
    from veil.decide import compare

    # Comparisons are constant past the largest count named, so these counts decide it.
    counts = [*range(max(mine[1], theirs[1]) + 2), 10**6]
    return all(compare(mine, n) for n in counts if compare(theirs, n))


def _subset(mine: frozenset, theirs: frozenset, vendors: dict) -> bool:
    return theirs <= mine


_COVERS = {
    "services": _covers_services,
    "hosts": _covers_hosts,
    "users": _subset,
    "groups": _subset,
    "clients": _covers_clients,
    "formats": _subset,
    "has": _subset,  # any-of: fewer kinds to look for match fewer uploads
    "faces": _covers_faces,
}
assert set(_COVERS) == set(CONDITION_KEYS)

_ACTION_COMBINATIONS = (
    "block alone; allow alone or with warn/coach; strip, blur, warn, coach combined freely"
)


def _contradictions(actions: list[str]) -> Iterator[str]:
    if "block" in actions and len(actions) > 1:
        others = ", ".join(a for a in actions if a != "block")
        yield f"block refuses the upload, so {others} can never happen"
    if "allow" in actions:
        for changing in ("strip", "blur"):
            if changing in actions:
                yield f"allow sends the image unchanged, but {changing} changes it"


# Setting checks: each takes the YAML value and returns the setting or raises ValueError
# whose text says what was expected.


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in options:
            raise ValueError(_one_of(options))
        return str(value)

    return check


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("a whole number above 0")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _number(low: float, high: float) -> Callable[[object], float]:
    def check(value: object) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (low <= value <= high)
        ):
            raise ValueError(f"a number from {low:g} to {high:g}")
        return float(value)

    return check


def _size(value: object) -> int:
    try:
        size = parse_size(value) if isinstance(value, str | int) else -1
    except ValueError:
        size = -1
    if isinstance(value, bool) or size <= 0:
        raise ValueError("a size such as 64MiB, 500KB or 1048576")
    return size


def _duration(value: object) -> int:
    try:
        seconds = parse_duration(value) if isinstance(value, str | int) else -1
    except ValueError:
        seconds = -1
    if isinstance(value, bool) or seconds <= 0:
        raise ValueError("a duration such as 30m, 1h, 1d or 3600 (seconds)")
    return seconds


def _check_by_default(default: object) -> Callable[[object], object]:
    """Settings added without a dedicated check are checked against their default's type."""
    if isinstance(default, bool):
        return _boolean
    if isinstance(default, int):
        return _positive_int
    if isinstance(default, float):
        return _number(0, float("inf"))

    def text(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("text")
        return value

    return text


_SETTING_CHECKS: dict[str, Callable[[object], object]] = {
    "on_error": _choice(ON_ERROR),
    "max_upload": _size,
    "max_images": _positive_int,
    "max_pixels": _positive_int,
    "keep_icc": _boolean,
    "face_threshold": _number(0.0, 1.0),
    "face_match_threshold": _number(0.0, 1.0),
    "face_canvas": _positive_int,
    "face_scale": _number(1.0, 10.0),
    "face_rotations": _boolean,
    "face_precision": _choice(FACE_PRECISIONS),
    "blur_style": _choice(BLUR_STYLES),
    "coach_ttl": _duration,
}

_KNOWN_FORMATS = ("jpeg", "png", "gif", "webp", "heif", "avif", "tiff", "bmp", "jxl")


def _one_of(options, near: str | None = None) -> str:
    options = list(options)
    text = "one of " + ", ".join(options)
    if near is not None:
        close = difflib.get_close_matches(near, options, n=1)
        if close:
            text = f"{close[0]}? ({text})"
    return text


def _show(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        if all(isinstance(i, ScalarNode) for i in node.value) and len(node.value) <= 8:
            return "[" + ", ".join(i.value for i in node.value) + "]"
        return "a list"
    assert isinstance(node, ScalarNode)
    if node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~", "null"):
        return "nothing"
    if node.tag == "tag:yaml.org,2002:str":
        return repr(node.value)
    return node.value


def _value_node(node: Node, key: str) -> Node | None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key:
                return value_node
    return None
