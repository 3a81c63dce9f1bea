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
from veil.formats import ImageError, detect, open_image
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
    p.add_argument(
        "--preview",
        action="store_true",
        help="detect faces and write NAME.faces.jpg with the boxes drawn into --out",
    )
    p.set_defaults(handler=handle)


@dataclass
class ScanResult:
    path: Path
    report: ImageReport | None = None
    decision: ImageDecision | None = None
    output: bytes | None = None
    error: str | None = None
    remaining: set[str] | None = None  # summaries of the findings still in the output
    traces: list[RuleTrace] = field(default_factory=list)
    data: bytes = b""  # the file as read

    @property
    def removed(self) -> list[str]:
        """Finding kinds the transform took out."""
        if self.report is None or self.remaining is None:
            return []
        return sorted({f.kind for f in self.report.findings if f.summary not in self.remaining})

    @property
    def matched(self) -> RuleTrace | None:
        """The rule that decided (None: the built-in safe default)."""
        return next((t for t in self.traces if t.matched), None)

    def status(self, summary: str) -> str:
        if self.output is None or self.remaining is None:
            return ""
        return "kept" if summary in self.remaining else "removed"

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
            if self.remaining is not None:
                result["remaining"] = sorted(self.remaining)
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
    if args.preview and not args.out:
        print("veil scan: --preview writes into a directory: add --out DIR", file=sys.stderr)
        return 2
    results = [scan_file(Path(f), policy, context, want_faces=args.preview) for f in args.files]
    if args.out:
        write_outputs(results, Path(args.out))
    if args.preview:
        write_previews(results, policy, Path(args.out))
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            print_result(r)
    return 1 if any(r.error for r in results) else 0


def scan_file(
    path: Path, policy: Policy, context: RequestContext, *, want_faces: bool = False
) -> ScanResult:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ScanResult(path, error=f"cannot read: {exc.strerror}")
    fmt = detect(data)
    try:
        want_faces = want_faces or needs_faces(policy, context)
        report = inspect(data, fmt or "unknown", policy.settings, want_faces=want_faces)
        decision, traces = explain(policy, context, report)
        output = None
        if not decision.refuses():
            output = transform(
                data, report, decision.actions, policy.settings, size_preserving=False
            )
        remaining = _remaining_kinds(output, report.format) if output is not None else None
    except (ImageError, RuntimeError) as exc:
        return ScanResult(path, error=f"cannot be inspected: {exc}")
    return ScanResult(path, report, decision, output, remaining=remaining, traces=traces, data=data)


def _remaining_kinds(output: bytes, fmt: str) -> set[str]:
    """What the transformed bytes still say, read back by the same inventory."""
    return {f.summary for f in open_image(output, fmt).findings()}


def write_outputs(results: list[ScanResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for r in results:
        if r.output is not None:
            (out / r.path.name).write_bytes(r.output)


def write_previews(results: list[ScanResult], policy: Policy, out: Path) -> None:
    from veil import faces

    for r in results:
        if r.report is not None and r.report.faces is not None:
            preview = faces.preview(r.data, r.report, policy.settings)
            (out / f"{r.path.stem}.faces.jpg").write_bytes(preview)


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
            status = r.status(f.summary)
            print(
                f"  {f.kind:<{width}}  {status:<7}  {f.summary}"
                if status
                else f"  {f.kind:<{width}}  {f.summary}"
            )
    else:
        print("  no metadata found")
    if rep.removed:
        how = "re-encoded" if rep.reencoded else "losslessly"
        print(f"  removes ({how}): {', '.join(rep.removed)}")
    if r.output is not None and rep.removed is not None:
        print(f"  bytes: {len(r.data)} -> {len(r.output)}")
    if rep.faces is not None:
        confident = rep.confident_faces
        unsure = len(rep.faces) - len(confident)
        more = f" (+{unsure} unsure box(es), below {rep.face_match_threshold})" if unsure else ""
        print(f"  faces: {len(confident)}{more}")
        for face in rep.faces:
            mark = "" if face in confident else "  unsure"
            box = f"{face.w}x{face.h} at {face.x},{face.y}"
            print(f"    {box}  confidence {face.confidence:.2f}{mark}")
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
    matched = r.matched
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
    matched = r.matched
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
