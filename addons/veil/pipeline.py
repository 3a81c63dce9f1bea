"""The path of one upload, from request bytes to the bytes that leave (or the refusal).

    match -> extract -> inspect -> decide -> transform -> splice -> answer / audit

Nothing here knows about mitmproxy: the addon hands over an `UploadRequest` and applies the
`Outcome`; `veil scan` runs the same inspect/decide/transform code on files. Every failure
ends in a refusal that is recorded, unless the policy says `on_error: allow`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

from veil import coach, splice
from veil.answer import Answer, acknowledged, coaching, refusal
from veil.audit import AuditError, AuditLog, new_decision_id, phash
from veil.decide import ImageDecision, RequestContext, decide, may_blur, needs_faces
from veil.extract import Extraction, ExtractionLimitExceeded, Limits, Payload, extract
from veil.extract.encoding import EncodingError
from veil.faces import FaceDetectionUnavailable
from veil.findings import ImageReport
from veil.formats import ImageError
from veil.inspect import inspect
from veil.policy import Policy
from veil.transform import transform

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadRequest:
    """What the pipeline sees of a request to an AI service (no mitmproxy types)."""

    method: str
    host: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes  # as on the wire (Content-Encoding still applied)
    client: str
    service: str
    vendor: str
    user: str | None = None
    size_declared: bool = False

    @property
    def path_without_query(self) -> str:
        # Query strings of upload URLs carry signatures (SAS tokens): never recorded.
        return self.path.split("?", 1)[0]


@dataclass
class Outcome:
    """What to do with the request. `verdict` None: no image in it, leave it untouched."""

    verdict: str | None = None
    answer: Answer | None = None  # refuse with this instead of forwarding
    spliced: splice.SplicedRequest | None = None  # forward with this body and these headers
    notice: str | None = None  # `Veil-Notice` on the response (warn)
    record: dict | None = None
    decision_id: str | None = None

    @property
    def forwards(self) -> bool:
        return self.answer is None


@dataclass
class _Image:
    payload: Payload
    report: ImageReport
    decision: ImageDecision
    output: bytes = b""
    pending_phash: Future[str | None] | None = None  # started by phash.in_background


@dataclass
class Pipeline:
    policy: Callable[[], Policy]
    audit: AuditLog
    coach: coach.CoachLedger = field(default_factory=coach.CoachLedger)

    def process(self, req: UploadRequest) -> Outcome:
        started = time.perf_counter()
        decision_id = new_decision_id()
        policy = self.policy()
        try:
            return self._process(req, policy, decision_id, started)
        except AuditError as exc:
            return self._audit_unavailable(req, decision_id, exc)
        except Exception as exc:  # fail closed: every error ends refused and recorded
            return self._failed(req, policy, decision_id, started, exc)

    def _process(
        self, req: UploadRequest, policy: Policy, decision_id: str, started: float
    ) -> Outcome:
        settings = policy.settings
        if len(req.body) > settings.max_upload:
            message = too_large(len(req.body), settings.max_upload)
            return self.refuse(req, 413, "upload_too_large", message, decision_id=decision_id)
        body = splice.decode(req.body, req.headers, settings.max_upload)
        limits = Limits(max_images=settings.max_images, max_decoded=settings.max_upload)
        extraction = extract(
            body,
            req.headers.get("content-type", ""),
            size_declared=req.size_declared,
            limits=limits,
        )
        if not extraction.payloads:
            if extraction.documents:
                return self._note_documents(req, decision_id, started, extraction)
            return Outcome()
        context = RequestContext(
            service=req.service, vendor=req.vendor, host=req.host, client=req.client, user=req.user
        )
        want_faces = needs_faces(policy, context)  # the same for every image of the request
        blur_ahead = want_faces and may_blur(policy, context)
        # Face detection leaves a thumbnail to hash; otherwise hashing decodes the image, so
        # that starts now, alongside inspection.
        hashes = [None if want_faces else phash.in_background(p.data) for p in extraction.payloads]
        images = [
            self._inspect(p, policy, context, want_faces=want_faces, may_blur=blur_ahead)
            for p in extraction.payloads
        ]
        for image, hashing in zip(images, hashes, strict=True):
            image.pending_phash = hashing
        self._apply_acknowledgement(req, images)
        worst = min(images, key=lambda i: i.decision.severity())
        if worst.decision.refuses():
            return self._refuse_by_rule(req, policy, decision_id, started, images, worst)
        return self._forward(req, policy, decision_id, started, extraction, images, worst)

    def _note_documents(
        self, req: UploadRequest, decision_id: str, started: float, extraction: Extraction
    ) -> Outcome:
        """A PDF (no image) to an AI service: not inspected, but on record as having left."""
        record = self._base_record(req, decision_id, started, "allowed")
        record.update(
            rule="documents are not inspected",
            actions=["allow"],
            documents=_documents(extraction),
        )
        record = self.audit.write(record)
        return Outcome("allowed", None, None, None, record, decision_id)

    def _inspect(
        self,
        payload: Payload,
        policy: Policy,
        context: RequestContext,
        *,
        want_faces: bool,
        may_blur: bool,
    ) -> _Image:
        report = inspect(
            payload.data, payload.format, policy.settings, want_faces=want_faces, may_blur=may_blur
        )
        decision = decide(policy, context, report)
        if report.pixels_ahead is not None and not ("blur" in decision.actions and report.faces):
            report.pixels_ahead.close()  # not needed: free the decoded pixels now
            report.pixels_ahead = None
        return _Image(payload, report, decision)

    def _apply_acknowledgement(self, req: UploadRequest, images: list[_Image]) -> None:
        """Who acknowledged a coach notice passes that service's coach rules for a while."""
        if not any("coach" in i.decision.actions for i in images):
            return
        grant = self.coach.grant_for(coach.identity(req.user, req.client), req.service)
        if grant is None:
            return
        for image in images:
            if "coach" in image.decision.actions:
                image.decision = image.decision.after_acknowledgement(grant.decision_id)

    def _forward(
        self,
        req: UploadRequest,
        policy: Policy,
        decision_id: str,
        started: float,
        extraction: Extraction,
        images: list[_Image],
        worst: _Image,
    ) -> Outcome:
        for image in images:
            image.output = transform(
                image.payload.data,
                image.report,
                image.decision.actions,
                policy.settings,
                size_preserving=image.payload.size_declared,
            )
            image.payload.replace(image.output)
        warned = any("warn" in i.decision.actions for i in images)
        if warned:
            verdict = "warned"
        elif extraction.changed:
            verdict = "transformed"
        else:
            verdict = "allowed"
        spliced = splice.rebuild(extraction.splice(), req.headers) if extraction.changed else None
        notice = _notice(images) if warned else None
        record = self._record(req, decision_id, started, verdict, images, worst)
        if extraction.documents:
            record["documents"] = _documents(extraction)
        if notice:
            record["message"] = notice
        acknowledgement = next(
            (i.decision.acknowledged for i in images if i.decision.acknowledged), None
        )
        if acknowledgement:
            record["acknowledged"] = acknowledgement  # the coach_acknowledged record
        record = self.audit.write(record)
        return Outcome(verdict, None, spliced, notice, record, decision_id)

    def _refuse_by_rule(
        self,
        req: UploadRequest,
        policy: Policy,
        decision_id: str,
        started: float,
        images: list[_Image],
        worst: _Image,
    ) -> Outcome:
        coached = "block" not in worst.decision.actions
        verdict = "coached" if coached else "blocked"
        rule = worst.decision.rule.name
        message = worst.decision.message or _default_refusal(req, worst, coached)
        record = self._record(req, decision_id, started, verdict, images, worst)
        record["message"] = message
        if not coached:  # optional: the originals, encrypted to the operator's key
            record.update(self.audit.quarantine(decision_id, [i.payload.data for i in images]))
        record = self.audit.write(record)
        if coached:
            who = coach.identity(req.user, req.client)
            url = self.coach.issue(
                req.host, who=who, service=req.service, rule=rule, decision_id=decision_id
            )
            answer = coaching(
                message,
                decision_id,
                req.headers,
                rule=rule,
                service=req.service,
                continue_url=url,
                ttl=policy.settings.coach_ttl,
            )
        else:
            answer = refusal(403, "upload_blocked", message, decision_id, req.headers, rule=rule)
        return Outcome(verdict, answer, None, None, record, decision_id)

    def continue_after_coaching(self, req: UploadRequest) -> Outcome:
        """The user followed a coach notice's continue link: record it, then let them pass."""
        who = coach.identity(req.user, req.client)
        try:
            ticket = self.coach.read(req.path, who)
        except coach.CoachLinkError as exc:
            logger.warning("refused a coach continue link from %s: %s", who, exc)
            return Outcome(answer=refusal(403, "coach_link_invalid", str(exc), None, req.headers))
        decision_id = new_decision_id()
        ttl = self.policy().settings.coach_ttl
        record = self._base_record(req, decision_id, time.perf_counter(), "coached")
        record.update(
            event="coach_acknowledged",
            service=ticket.service,
            rule=ticket.rule,
            coached_decision=ticket.decision_id,
            message=f"acknowledged the coach notice; uploads pass for {ttl} s",
        )
        try:
            record = self.audit.write(record)
        except AuditError as exc:
            return self._audit_unavailable(req, decision_id, exc)
        grant = self.coach.acknowledge(ticket, ttl, decision_id)
        answer = acknowledged(ticket.service, grant.until, decision_id, req.headers)
        return Outcome("coached", answer, None, None, record, decision_id)

    def record_event(self, event: str, verdict: str, message: str, **details: object) -> dict:
        """An audit record that is not about an upload (a policy reload that failed, ...)."""
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "decision_id": new_decision_id(),
            "event": event,
            **dict.fromkeys(("client", "user", "service", "host", "method", "path", "rule")),
            "actions": [],
            "verdict": verdict,
            "images": [],
            "duration_ms": 0,
            "message": message,
            **details,
        }
        return self.audit.write(record)

    def refuse(
        self,
        req: UploadRequest,
        status: int,
        error_type: str,
        message: str,
        *,
        verdict: str = "blocked",
        rule: str = "limits",
        decision_id: str | None = None,
    ) -> Outcome:
        """Refuse and record an upload without looking at its images (size, transport, glue)."""
        decision_id = decision_id or new_decision_id()
        record = self._base_record(req, decision_id, time.perf_counter(), verdict)
        record.update(rule=rule, actions=["block"], message=message)
        if verdict == "error":
            record["error"] = {"type": error_type, "message": message}
        try:
            record = self.audit.write(record)
        except AuditError as exc:
            return self._audit_unavailable(req, decision_id, exc)
        answer = refusal(status, error_type, message, decision_id, req.headers)
        return Outcome(verdict, answer, None, None, record, decision_id)

    def _failed(
        self,
        req: UploadRequest,
        policy: Policy,
        decision_id: str,
        started: float,
        exc: Exception,
    ) -> Outcome:
        uninspectable = isinstance(
            exc, (ImageError, EncodingError, ExtractionLimitExceeded, ValueError)
        )
        if not uninspectable:
            logger.exception("internal error while inspecting an upload (%s)", decision_id)
        allow = policy.settings.on_error == "allow"
        record = self._base_record(req, decision_id, started, "error")
        record.update(
            rule="on_error",
            actions=["allow" if allow else "block"],
            error={"type": type(exc).__name__, "message": str(exc)[:500]},
        )
        try:
            record = self.audit.write(record)
        except AuditError as audit_exc:
            return self._audit_unavailable(req, decision_id, audit_exc)
        if allow:
            return Outcome("error", None, None, None, record, decision_id)
        if isinstance(exc, FaceDetectionUnavailable):
            message = f"This upload could not be checked for faces, so it was stopped: {exc}"
            answer = refusal(503, "face_detection_unavailable", message, decision_id, req.headers)
        elif uninspectable:
            message = f"This upload could not be inspected, so it was stopped: {exc}"
            answer = refusal(403, "upload_uninspectable", message, decision_id, req.headers)
        else:
            message = "Veil hit an internal error while inspecting this upload, so it was stopped."
            answer = refusal(502, "veil_internal_error", message, decision_id, req.headers)
        return Outcome("error", answer, None, None, record, decision_id)

    def _audit_unavailable(self, req: UploadRequest, decision_id: str, exc: Exception) -> Outcome:
        logger.critical("AUDIT TRAIL UNAVAILABLE, refusing upload %s: %s", decision_id, exc)
        message = "The upload was stopped because it could not be recorded in the audit trail."
        answer = refusal(503, "audit_unavailable", message, decision_id, req.headers)
        return Outcome("error", answer, None, None, None, decision_id)

    def _base_record(
        self, req: UploadRequest, decision_id: str, started: float, verdict: str
    ) -> dict:
        return {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "decision_id": decision_id,
            "client": req.client,
            "user": req.user,
            "service": req.service,
            "host": req.host,
            "method": req.method,
            "path": req.path_without_query,
            "rule": None,
            "actions": [],
            "verdict": verdict,
            "images": [],
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }

    def _record(
        self,
        req: UploadRequest,
        decision_id: str,
        started: float,
        verdict: str,
        images: list[_Image],
        worst: _Image,
    ) -> dict:
        record = self._base_record(req, decision_id, started, verdict)
        record["rule"] = worst.decision.rule.name
        record["actions"] = list(worst.decision.actions)
        record["images"] = [_image_record(i) for i in images]
        return record


def _documents(extraction: Extraction) -> list[dict]:
    return [{"format": d.format, "where": d.locator, "bytes": d.size} for d in extraction.documents]


def _image_record(image: _Image) -> dict:
    data_in = image.payload.data
    data_out = image.output or data_in
    sha256_in = hashlib.sha256(data_in).hexdigest()
    unchanged = data_out is data_in or data_out == data_in
    entry = image.report.to_record()
    entry.update(
        where=image.payload.locator,
        rule=image.decision.rule.name,
        actions=list(image.decision.actions),
        bytes_in=len(data_in),
        bytes_out=len(data_out),
        sha256_in=sha256_in,
        sha256_out=sha256_in if unchanged else hashlib.sha256(data_out).hexdigest(),
        phash=_perceptual_hash(image),
    )
    return entry


def _perceptual_hash(image: _Image) -> str | None:
    """Finds resized and re-encoded copies (veil audit find)."""
    if image.pending_phash is not None:
        return image.pending_phash.result()
    return phash.perceptual_hash(image.payload.data, image.report.thumbnail)


def _notice(images: list[_Image]) -> str:
    messages = [i.decision.message for i in images if "warn" in i.decision.actions]
    text = next((m for m in messages if m), None)
    return text or "This image was checked by your organisation's upload policy."


def _default_refusal(req: UploadRequest, image: _Image, coached: bool = False) -> str:
    if coached:
        return (
            f"Your organisation asks you to check before uploading this image to "
            f"{req.service} (rule {image.decision.rule.name!r})."
        )
    return (
        f"Uploading this image to {req.service} is not allowed by your organisation's "
        f"policy (rule {image.decision.rule.name!r})."
    )


def too_large(size: int, max_upload: int) -> str:
    return f"The upload is {size} bytes; uploads to AI services may be at most {max_upload} bytes."
