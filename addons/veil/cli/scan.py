"""`veil scan FILE...`: what the policy would find in these images and do to them, offline.

It runs the proxy's own inspect / decide / transform code, without a proxy.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from veil.catalogue import Catalogue
from veil.decide import ImageDecision, RequestContext, RuleTrace, explain, needs_faces
from veil.findings import ImageReport
from veil.formats import ImageError, detect
from veil.inspect import inspect
from veil.policy import Policy, PolicyError, load_policy
from veil.transform import transform


def add_parser(commands) -> None:
    p = commands.add_parser(
        "scan", help="what the policy would find and do to these images, offline"
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="image files")
    p.add_argument("--policy", help="policy file (default: policies/default.yaml or built-in)")
    p.add_argument("--service", default="chatgpt", help="service id the upload goes to")
    p.add_argument("--user", help="the uploading user (proxy-auth name)")
    p.add_argument("--client", default="127.0.0.1", help="the uploading client's address")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--out", help="write the transformed images into this directory")
    p.set_defaults(handler=handle)


@dataclass
class ScanResult:
    path: Path
    report: ImageReport | None = None
    decision: ImageDecision | None = None
    output: bytes | None = None
    error: str | None = None
    traces: list[RuleTrace] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # finding kinds the transform took out

    def to_json(self) -> dict:
        result: dict = {"file": str(self.path)}
        if self.error:
            result["error"] = self.error
            return result
        assert self.report is not None and self.decision is not None
        result.update(self.report.to_record())
        result["rule"] = self.decision.rule.name
        result["actions"] = list(self.decision.actions)
        if self.output is not None:
            result["bytes_out"] = len(self.output)
        result["explanation"] = explanation_record(self)
        return result


def handle(args: argparse.Namespace) -> int:
    from veil.cli.run import default_policy_path

    try:
        policy = load_policy(args.policy or default_policy_path())
    except PolicyError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    catalogue = Catalogue.load()
    service = catalogue.services.get(args.service)
    if service is None:
        known = ", ".join(sorted(catalogue.services))
        print(f"veil scan: unknown service {args.service!r}; one of: {known}", file=sys.stderr)
        return 2
    context = RequestContext(
        service=service.id,
        vendor=service.vendor,
        host=service.hosts[0],
        client=args.client,
        user=args.user,
    )
    results = [scan_file(Path(f), policy, context) for f in args.files]
    if args.out:
        write_outputs(results, Path(args.out))
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            print_result(r)
    return 1 if any(r.error for r in results) else 0


def scan_file(path: Path, policy: Policy, context: RequestContext) -> ScanResult:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ScanResult(path, error=f"cannot read: {exc.strerror}")
    fmt = detect(data)
    try:
        report = inspect(
            data, fmt or "unknown", policy.settings, want_faces=needs_faces(policy, context)
        )
        decision, traces = explain(policy, context, report)
        output = None
        removed: list[str] = []
        if not decision.refuses():
            output = transform(
                data, report, decision.actions, policy.settings, size_preserving=False
            )
            removed = removed_kinds(report, data, output, policy)
    except (ImageError, RuntimeError) as exc:
        return ScanResult(path, error=f"cannot be inspected: {exc}")
    return ScanResult(path, report, decision, output, traces=traces, removed=removed)


def removed_kinds(report: ImageReport, data: bytes, output: bytes, policy: Policy) -> list[str]:
    """What the transform really took out: the output inspected again, compared."""
    if output == data:
        return []
    after = inspect(output, report.format, policy.settings, want_faces=False)
    return sorted({f.kind for f in report.findings} - {f.kind for f in after.findings})


def write_outputs(results: list[ScanResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r.output is not None:
            (out / r.path.name).write_bytes(r.output)


def print_result(r: ScanResult) -> None:
    print(f"{r.path}")
    if r.error:
        print(f"  ERROR: {r.error}")
        return
    assert r.report is not None and r.decision is not None
    rep = r.report
    print(f"  {rep.format} {rep.width}x{rep.height}")
    if rep.findings:
        width = max(len(f.kind) for f in rep.findings)
        for f in rep.findings:
            print(f"  {f.kind:<{width}}  {f.summary}")
    else:
        print("  no metadata found")
    if rep.faces is not None:
        print(f"  faces: {len(rep.faces)}")
    for line in explanation_lines(r):
        print(f"  {line}")


def explanation_lines(r: ScanResult) -> list[str]:
    """Which rule matched and why, which rules before it did not, and what would change."""
    assert r.report is not None and r.decision is not None
    decision = r.decision
    lines = []
    for trace in r.traces:
        if trace.matched:
            continue
        failed = "; ".join(c.why for c in trace.checks if not c.held)
        lines.append(f"skipped {trace.rule.name} ({trace.rule.where()}): {failed}")
    rule = decision.rule
    lines.append(f"rule: {rule.name} ({rule.where()}) -> {', '.join(decision.actions)}")
    matched = next((t for t in r.traces if t.matched), None)
    if matched is None:
        lines.append("  because no rule of the policy matched (the built-in safe default)")
    elif not matched.checks:
        lines.append("  because it matches every upload")
    for check in matched.checks if matched else ():
        lines.append(f"  because {check.key}: {check.why}")
    lines.extend(_effects(r))
    return lines


def _effects(r: ScanResult) -> list[str]:
    assert r.report is not None and r.decision is not None
    actions = r.decision.actions
    message = r.decision.message
    if "block" in actions:
        return [f"would block the upload: {message or '(the default refusal message)'}"]
    if "coach" in actions:
        return [
            f"would hold the upload back with a coach notice: {message or '(default text)'}",
            "  once the user follows its continue link, their uploads to this service pass",
        ]
    effects = []
    if "blur" in actions:
        effects.append(f"would blur {len(r.report.faces or [])} face(s)")
    if r.removed:
        effects.append(f"would remove: {', '.join(r.removed)}")
    kept = sorted({f.kind for f in r.report.findings} - set(r.removed))
    if kept and ("strip" in actions or "blur" in actions):
        effects.append(f"would keep: {', '.join(kept)}")
    if not effects:
        effects.append("would send the image unchanged")
    if "warn" in actions:
        effects.append(f"would tell the user (Veil-Notice): {message or '(default notice)'}")
    return effects


def explanation_record(r: ScanResult) -> dict:
    assert r.decision is not None
    matched = next((t for t in r.traces if t.matched), None)
    return {
        "rule": r.decision.rule.name,
        "line": r.decision.rule.line or None,
        "because": [f"{c.key}: {c.why}" for c in matched.checks] if matched else [],
        "skipped": [
            {
                "rule": t.rule.name,
                "line": t.rule.line,
                "failed": [f"{c.key}: {c.why}" for c in t.checks if not c.held],
            }
            for t in r.traces
            if not t.matched
        ],
        "refused": r.decision.refuses(),
        "message": r.decision.message,
        "removed": r.removed,
        "blurred_faces": len(r.report.faces or [])
        if r.report and "blur" in r.decision.actions
        else 0,
    }
