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


def effective_actions(actions: tuple[str, ...]) -> tuple[str, ...]:
    """Blur implies strip: thumbnails and XMP previews hold an unblurred copy of the face."""
    if "blur" in actions and "strip" not in actions:
        return (*actions, "strip")
    return actions


def rule_matches(rule: Rule, policy: Policy, ctx: RequestContext, report: ImageReport) -> bool:
    c = rule.conditions
    return all(_CHECKS[key](c, policy, ctx, report)[0] for key in c.given())


def checks(rule: Rule, policy: Policy, ctx: RequestContext, report: ImageReport) -> Iterator[Check]:
    c = rule.conditions
    for key in c.given():
        held, why = _CHECKS[key](c, policy, ctx, report)
        yield Check(key, held, why())


def compare(comparison: tuple[str, int], count: int) -> bool:
    op, n = comparison
    return _OPERATORS[op](count, n)


# One function per condition: (held, a callable giving the reason in words).
_Result = tuple[bool, Callable[[], str]]


def _services(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> _Result:
    assert c.services is not None
    held = bool({ctx.service, ctx.vendor} & c.services)
    return (
        held,
        lambda: (
            f"{ctx.service} (vendor {ctx.vendor}) is {'' if held else 'not '}in {_list(c.services)}"
        ),
    )


def _hosts(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> _Result:
    host = ctx.host.lower().rstrip(".")
    held = any(p.match(host) for p in c.host_patterns)
    return held, lambda: f"{host} {'matches' if held else 'matches none of'} {_list(c.hosts)}"


def _users(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> _Result:
    assert c.users is not None
    if not ctx.user:
        return False, lambda: "the upload is not authenticated (no proxy-auth user)"
    held = ctx.user in c.users
    return held, lambda: f"user {ctx.user} is {'' if held else 'not '}in {_list(c.users)}"


def _groups(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> _Result:
    assert c.groups is not None
    if not ctx.user:
        return False, lambda: "the upload is not authenticated (no proxy-auth user)"
    member_of = policy.groups_of(ctx.user) & c.groups
    if member_of:
        return True, lambda: f"user {ctx.user} is in group {_list(member_of)}"
    return False, lambda: f"user {ctx.user} is in none of the groups {_list(c.groups)}"


def _clients(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> _Result:
    assert c.clients is not None
    address = client_address(ctx.client)
    inside = [n for n in c.clients if address is not None and address in n]
    if inside:
        return True, lambda: f"client {address} is in {inside[0]}"
    return (
        False,
        lambda: (
            f"client {ctx.client or '(unknown)'} is in none of " + _list(str(n) for n in c.clients)
        ),
    )


def _formats(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> _Result:
    assert c.formats is not None
    held = r.format in c.formats
    return held, lambda: f"{r.format} is {'' if held else 'not '}in {_list(c.formats)}"


def _has(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> _Result:
    assert c.has is not None
    found = r.kinds() & c.has
    if found:
        return True, lambda: f"found {_list(found)}"
    present = _list(r.kinds()) if r.kinds() else "nothing"
    return False, lambda: f"none of {_list(c.has)} found (found: {present})"


def _faces(c: Conditions, policy: Policy, ctx: RequestContext, r: ImageReport) -> _Result:
    assert c.faces is not None
    wanted = f"{c.faces[0]}{c.faces[1]}"
    if r.faces is None:
        return False, lambda: f"faces were not detected (needs {wanted})"
    held = compare(c.faces, len(r.faces))
    return held, lambda: f"{len(r.faces or ())} face(s), needs {wanted}"


_CHECKS = {
    "services": _services,
    "hosts": _hosts,
    "users": _users,
    "groups": _groups,
    "clients": _clients,
    "formats": _formats,
    "has": _has,
    "faces": _faces,
}
assert set(_CHECKS) == set(CONDITION_KEYS)


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
