"""Which rule applies to an image, and what the request's verdict is (step 4, "decide").

Rules are tried in order and the first whose conditions all hold wins; an image no rule
matches gets the built-in safe default (strip). `explain` runs the same checks and keeps the
reasons, for `veil scan`.
"""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from veil.findings import ImageReport
from veil.policy import CONDITION_KEYS, DEFAULT_RULE, Conditions, Policy, Rule

_OPERATORS = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}

# Most severe first: the request's verdict is the most severe of its images' decisions.
SEVERITY = ("block", "coach", "warn", "blur", "strip", "allow")


@dataclass(frozen=True)
class RequestContext:
    """Who sends what, where: the facts about a request that rules can match."""

    service: str
    vendor: str
    host: str
    client: str
    user: str | None = None  # the proxy-auth user name; None when unauthenticated


@dataclass(frozen=True)
class ImageDecision:
    rule: Rule
    actions: tuple[str, ...]
    acknowledged: str | None = None  # the coach acknowledgement that let this image pass

    @property
    def message(self) -> str | None:
        return self.rule.message

    def severity(self) -> int:
        return min(SEVERITY.index(a) for a in self.actions) if self.actions else len(SEVERITY)

    def refuses(self) -> bool:
        return "block" in self.actions or "coach" in self.actions

    def after_acknowledgement(self, acknowledgement: str) -> ImageDecision:
        """The decision once the user acknowledged the coach notice: the rest still applies."""
        rest = tuple(a for a in self.actions if a != "coach") or ("allow",)
        return ImageDecision(self.rule, rest, acknowledgement)


@dataclass(frozen=True)
class Check:
    """One condition of a rule, evaluated: whether it held, and why in words."""

    key: str
    held: bool
    why: str


@dataclass(frozen=True)
class RuleTrace:
    rule: Rule
    checks: tuple[Check, ...]

    @property
    def matched(self) -> bool:
        return all(c.held for c in self.checks)


def decide(policy: Policy, context: RequestContext, report: ImageReport) -> ImageDecision:
    for rule in policy.rules:
        if rule_matches(rule, policy, context, report):
            return ImageDecision(rule, effective_actions(rule.actions))
    return ImageDecision(DEFAULT_RULE, DEFAULT_RULE.actions)


def explain(
    policy: Policy, context: RequestContext, report: ImageReport
) -> tuple[ImageDecision, list[RuleTrace]]:
    """The decision and, for every rule tried up to the one that matched, its checks."""
    traces = []
    for rule in policy.rules:
        trace = RuleTrace(rule, tuple(checks(rule, policy, context, report)))
        traces.append(trace)
        if trace.matched:
            return ImageDecision(rule, effective_actions(rule.actions)), traces
    return ImageDecision(DEFAULT_RULE, DEFAULT_RULE.actions), traces


IMAGE_KEYS = ("formats", "has", "faces")  # conditions on the image; the rest are on the request


def needs_faces(policy: Policy, ctx: RequestContext) -> bool:
    """Whether deciding on (and transforming) an image of this request may need its faces.

    Only the rules that can apply to this request count (`applicable_rules`). Face detection
    is the costliest part of inspection, so a policy that blurs only for one service does
    not pay for it on every other.
    """
    return any(rule.uses_faces for rule in applicable_rules(policy, ctx))


def may_blur(policy: Policy, ctx: RequestContext) -> bool:
    """Whether an image of this request may end up blurred (worth decoding its pixels early)."""
    return any("blur" in rule.actions for rule in applicable_rules(policy, ctx))


def applicable_rules(policy: Policy, ctx: RequestContext) -> Iterator[Rule]:
    """The rules that can apply to some image of this request: those whose request conditions
    (service, host, user, group, client) hold, up to the first that takes every image."""
    for rule in policy.rules:
        c = rule.conditions
        given = c.given()
        if not all(
            _CONDITIONS[k].held(c, policy, ctx, _NO_IMAGE) for k in given if k not in IMAGE_KEYS
        ):
            continue
        yield rule
        if not any(k in IMAGE_KEYS for k in given):
            return


def effective_actions(actions: tuple[str, ...]) -> tuple[str, ...]:
    """Blur implies strip: thumbnails and XMP previews hold an unblurred copy of the face."""
    if "blur" in actions and "strip" not in actions:
        return (*actions, "strip")
    return actions


def rule_matches(rule: Rule, policy: Policy, ctx: RequestContext, report: ImageReport) -> bool:
    c = rule.conditions
    return all(_CONDITIONS[key].held(c, policy, ctx, report) for key in c.given())


def checks(rule: Rule, policy: Policy, ctx: RequestContext, report: ImageReport) -> Iterator[Check]:
    c = rule.conditions
    for key in c.given():
        condition = _CONDITIONS[key]
        held = condition.held(c, policy, ctx, report)
        yield Check(key, held, condition.why(c, policy, ctx, report, held))


def compare(comparison: tuple[str, int], count: int) -> bool:
    op, n = comparison
    return _OPERATORS[op](count, n)


# One pair of functions per condition: whether it holds (fast, used for every image and
# rule), and why in words (only for explanations).
class _Condition(NamedTuple):
    held: Callable[[Conditions, Policy, RequestContext, ImageReport], bool]
    why: Callable[[Conditions, Policy, RequestContext, ImageReport, bool], str]


def _services(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> bool:
    assert c.services is not None
    return ctx.service in c.services or ctx.vendor in c.services


def _services_why(c: Conditions, p: Policy, ctx: RequestContext, r: ImageReport, held: bool) -> str:
    assert c.services is not None
    return f"{ctx.service} (vendor {ctx.vendor}) is {'' if held else 'not '}in {_list(c.services)}"


def _hosts(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> bool:
    host = ctx.host.lower().rstrip(".")
    return any(p.match(host) for p in c.host_patterns)


def _hosts_why(c: Conditions, p: Policy, ctx: RequestContext, r: ImageReport, held: bool) -> str:
    assert c.hosts is not None
    host = ctx.host.lower().rstrip(".")
    return f"{host} {'matches' if held else 'matches none of'} {_list(c.hosts)}"


def _users(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> bool:
    assert c.users is not None
    return bool(ctx.user) and ctx.user in c.users


def _users_why(c: Conditions, p: Policy, ctx: RequestContext, r: ImageReport, held: bool) -> str:
    assert c.users is not None
    if not ctx.user:
        return _UNAUTHENTICATED
    return f"user {ctx.user} is {'' if held else 'not '}in {_list(c.users)}"


def _groups(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> bool:
    assert c.groups is not None
    return any(ctx.user in policy.groups.get(g, ()) for g in c.groups) if ctx.user else False


def _groups_why(c: Conditions, p: Policy, ctx: RequestContext, r: ImageReport, held: bool) -> str:
    assert c.groups is not None
    if not ctx.user:
        return _UNAUTHENTICATED
    if held:
        return f"user {ctx.user} is in group {_list(p.groups_of(ctx.user) & c.groups)}"
    return f"user {ctx.user} is in none of the groups {_list(c.groups)}"


def _clients(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> bool:
    assert c.clients is not None
    address = client_address(ctx.client)
    return address is not None and any(address in n for n in c.clients)


def _clients_why(c: Conditions, p: Policy, ctx: RequestContext, r: ImageReport, held: bool) -> str:
    assert c.clients is not None
    address = client_address(ctx.client)
    if held:
        network = next(n for n in c.clients if address in n)
        return f"client {address} is in {network}"
    return f"client {ctx.client or '(unknown)'} is in none of {_list(c.clients)}"


def _formats(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> bool:
    assert c.formats is not None
    return r.format in c.formats


def _formats_why(c: Conditions, p: Policy, ctx: RequestContext, r: ImageReport, held: bool) -> str:
    assert c.formats is not None
    return f"{r.format} is {'' if held else 'not '}in {_list(c.formats)}"


def _has(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> bool:
    assert c.has is not None
    return not c.has.isdisjoint(r.kinds())


def _has_why(c: Conditions, p: Policy, ctx: RequestContext, r: ImageReport, held: bool) -> str:
    assert c.has is not None
    if held:
        return f"found {_list(r.kinds() & c.has)}"
    return f"none of {_list(c.has)} found (found: {_list(r.kinds()) if r.kinds() else 'nothing'})"


def _faces(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> bool:
    assert c.faces is not None
    return r.faces is not None and compare(c.faces, len(r.confident_faces))


def _faces_why(c: Conditions, p: Policy, ctx: RequestContext, r: ImageReport, held: bool) -> str:
    assert c.faces is not None
    wanted = f"{c.faces[0]}{c.faces[1]}"
    if r.faces is None:
        return f"faces were not detected (needs {wanted})"
    return f"{len(r.confident_faces)} face(s), needs {wanted}"


_NO_IMAGE = ImageReport("none", 0, 0)  # request conditions never look at the image
_UNAUTHENTICATED = "the upload is not authenticated (no proxy-auth user)"
_CONDITIONS = {
    "services": _Condition(_services, _services_why),
    "hosts": _Condition(_hosts, _hosts_why),
    "users": _Condition(_users, _users_why),
    "groups": _Condition(_groups, _groups_why),
    "clients": _Condition(_clients, _clients_why),
    "formats": _Condition(_formats, _formats_why),
    "has": _Condition(_has, _has_why),
    "faces": _Condition(_faces, _faces_why),
}
assert set(_CONDITIONS) == set(CONDITION_KEYS)


def client_address(client: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address; IPv4 seen through a dual-stack socket (::ffff:a.b.c.d) as IPv4."""
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _list(items) -> str:
    return "[" + ", ".join(sorted(str(i) for i in items)) + "]"
