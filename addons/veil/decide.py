"""Which rule applies to an image, and what the request's verdict is (step 4, "decide")."""

from __future__ import annotations

import fnmatch
import ipaddress
import operator
from dataclasses import dataclass

from veil.findings import ImageReport
from veil.policy import DEFAULT_RULE, Policy, Rule

_OPERATORS = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
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
    user: str | None = None


@dataclass(frozen=True)
class ImageDecision:
    rule: Rule
    actions: tuple[str, ...]

    @property
    def message(self) -> str | None:
        return self.rule.message

    def severity(self) -> int:
        return min(SEVERITY.index(a) for a in self.actions) if self.actions else len(SEVERITY)


def decide(policy: Policy, context: RequestContext, report: ImageReport) -> ImageDecision:
    for rule in policy.rules:
        if rule_matches(rule, policy, context, report):
            return ImageDecision(rule, effective_actions(rule.actions))
    return ImageDecision(DEFAULT_RULE, DEFAULT_RULE.actions)


def effective_actions(actions: tuple[str, ...]) -> tuple[str, ...]:
    """Blur implies strip: thumbnails and XMP previews hold an unblurred copy of the face."""
    if "blur" in actions and "strip" not in actions:
        return (*actions, "strip")
    return actions


def rule_matches(rule: Rule, policy: Policy, ctx: RequestContext, report: ImageReport) -> bool:
    c = rule.conditions
    if c.services is not None and not ({ctx.service, ctx.vendor} & c.services):
        return False
    if c.hosts is not None and not any(fnmatch.fnmatch(ctx.host, h) for h in c.hosts):
        return False
    if c.users is not None and (ctx.user is None or ctx.user not in c.users):
        return False
    if c.groups is not None and not _in_groups(policy, ctx.user, c.groups):
        return False
    if c.clients is not None and not _client_in(ctx.client, c.clients):
        return False
    if c.formats is not None and report.format not in c.formats:
        return False
    if c.has is not None and not (report.kinds() & c.has):
        return False
    if c.faces is not None:
        op, count = c.faces
        if report.faces is None or not _OPERATORS[op](len(report.faces), count):
            return False
    return True


def _in_groups(policy: Policy, user: str | None, groups: frozenset[str]) -> bool:
    if user is None:
        return False
    return any(user in policy.groups.get(g, frozenset()) for g in groups)


def _client_in(client: str, networks: tuple) -> bool:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in net for net in networks)
