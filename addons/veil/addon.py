"""The mitmproxy glue. Thin on purpose: it routes flows and hands AI uploads to the pipeline.

Fail closed: an exception in a mitmproxy hook is logged and the flow continues unmodified,
so every hook that handles an AI upload catches its own errors and answers with a refusal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.utils import human

from veil import coach, resources
from veil.answer import NOTICE_HEADER, notice_header
from veil.audit import AuditError, AuditLog
from veil.catalogue import Catalogue, CatalogueError, Match
from veil.pipeline import Outcome, Pipeline, UploadRequest, too_large
from veil.policy import Policy, PolicyError, load_policy, parse_size
from veil.policy_watch import PolicyWatcher, Reload

logger = logging.getLogger(__name__)

MATCH_KEY = "veil.match"
NOTICE_KEY = "veil.notice"
DECIDED_KEY = "veil.decision"
CONTROL_KEY = "veil.control"  # a request for Veil itself (a coach continue link)
# mitmproxy's own cap on buffered bodies, as a multiple of max_upload: bodies without a
# Content-Length are buffered up to it (and refused past it), larger requests are refused early.
BODY_LIMIT_FACTOR = 4
VEIL_OPTIONS = {"veil_policy", "veil_services", "veil_audit", "veil_max_upload", "veil_workers"}
AUDIT_OPTIONS = {
    "veil_audit",
    "veil_audit_rotate",
    "veil_audit_retention",
    "veil_audit_seal_key",
    "veil_quarantine_key",
}
VEIL_OPTIONS |= AUDIT_OPTIONS
# How often (milliseconds) the policy file is checked for edits (hot reload).
POLICY_POLL_MS = 1000


class Veil:
    def __init__(self) -> None:
        self.catalogue = Catalogue()
        self._policy = Policy()
        self.audit: AuditLog | None = None
        self.pipeline: Pipeline | None = None
        self.pool: ThreadPoolExecutor | None = None
        self._configured = False
        self.watcher: PolicyWatcher | None = None
        self._watch_task: asyncio.Task | None = None
        self._body_limit_set: str | None = None  # the body_size_limit Veil set itself

    def running(self) -> None:
        if not self._configured:
            self.configure(set())
        if self._watch_task is None:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch_policy())

    def load(self, loader) -> None:
        loader.add_option("veil_policy", str, "", "Policy file (default: the built-in default).")
        loader.add_option(
            "veil_services", str, "", "Service catalogue (default: the built-in catalogue)."
        )
        loader.add_option("veil_audit", str, "audit", "Directory of the audit trail.")
        loader.add_option(
            "veil_max_upload", str, "", "Largest upload to an AI service (overrides the policy)."
        )
        loader.add_option("veil_workers", int, 2, "Threads that inspect and transform images.")
        loader.add_option(
            "veil_audit_rotate", str, "", "Start a new audit file: daily, at a size, or both."
        )
        loader.add_option(
            "veil_audit_retention", str, "", "Delete rotated audit files older than this (90d)."
        )
        loader.add_option("veil_audit_seal_key", str, "", "HMAC the audit chain with this key.")
        loader.add_option(
            "veil_quarantine_key", str, "", "Keep blocked images encrypted to this public key."
        )
        loader.add_option(
            "veil_policy_poll_ms", int, POLICY_POLL_MS, "Milliseconds between policy file checks."
        )

    def configure(self, updated: set[str]) -> None:
        if not self._configured:
            # Options left at their defaults never show up in `updated`: load everything once.
            updated = set(updated) | VEIL_OPTIONS
            self._configured = True
        if ctx.options.stream_large_bodies:
            raise exceptions.OptionsError(
                "stream_large_bodies lets upload bodies bypass inspection; Veil refuses to run "
                "with it set (use --max-upload to bound buffered uploads)"
            )
        try:
            if "veil_services" in updated:
                self.catalogue = Catalogue.load(ctx.options.veil_services or None)
            if updated & {"veil_policy", "veil_max_upload", "veil_services"}:
                path = Path(ctx.options.veil_policy or resources.policy_file("default.yaml"))
                self.watcher = PolicyWatcher(path, self._load_policy)
                self._policy = self._load_policy(path)
        except (CatalogueError, PolicyError, ValueError) as exc:
            raise exceptions.OptionsError(str(exc)) from exc
        if updated & AUDIT_OPTIONS:
            self._open_audit(Path(ctx.options.veil_audit))
        if "veil_workers" in updated:
            if self.pool is not None:
                self.pool.shutdown(wait=False)
            self.pool = ThreadPoolExecutor(ctx.options.veil_workers, thread_name_prefix="veil")
        if "veil_policy" in updated and self._policy.needs_faces():
            self._prepare_faces()
        self._bound_buffered_bodies()

    def _prepare_faces(self) -> None:
        """Load the face detector in the pool now, not on the first upload; say if it can't."""
        from veil import faces

        def report(future) -> None:
            # A warning, not an error: mitmproxy exits when an error is logged during start-up,
            # and this runs in the pool, racing it; the proxy must stay up to refuse uploads.
            if future.exception() is not None:
                logger.warning(
                    "face detection is unavailable, uploads under face rules will be refused: %s",
                    future.exception(),
                )

        assert self.pool is not None
        self.pool.submit(faces.prepare, self._policy.settings).add_done_callback(report)

    def _load_policy(self, path: Path) -> Policy:
        policy = load_policy(path, self.catalogue)
        if ctx.options.veil_max_upload:
            size = parse_size(ctx.options.veil_max_upload)
            policy.settings = dataclasses.replace(policy.settings, max_upload=size)
        return policy

    def _open_audit(self, directory: Path) -> None:
        if self.audit is not None:
            self.audit.close()
        try:
            self.audit = AuditLog.from_options(
                directory,
                rotate=ctx.options.veil_audit_rotate,
                retention=ctx.options.veil_audit_retention,
                seal_key_file=ctx.options.veil_audit_seal_key,
                quarantine_key_file=ctx.options.veil_quarantine_key,
            )
            self.audit.open()
        except AuditError as exc:
            raise exceptions.OptionsError(str(exc)) from exc
        self.pipeline = Pipeline(policy=lambda: self._policy, audit=self.audit)

    async def _watch_policy(self) -> None:
        """Hot reload: an edit to the policy file takes effect without a restart."""
        while True:
            await asyncio.sleep(max(ctx.options.veil_policy_poll_ms, 50) / 1000)
            watcher = self.watcher
            if watcher is None:
                continue
            result = await asyncio.to_thread(watcher.poll)
            if result is not None and watcher is self.watcher:
                await self._apply_reload(watcher.path, result)

    async def _apply_reload(self, path: Path, result: Reload) -> None:
        if result.policy is not None:
            self._policy = result.policy
            self._bound_buffered_bodies()
            if result.policy.needs_faces():
                self._prepare_faces()
            logger.info("policy reloaded from %s (%d rule(s))", path, len(result.policy.rules))
            return
        logger.error("policy edit rejected, the previous policy stays in force:\n%s", result.error)
        if self.pipeline is not None:
            try:
                await asyncio.to_thread(
                    self.pipeline.record_event,
                    "policy_reload_failed",
                    "error",
                    result.error or "",
                    policy=str(path),
                )
            except AuditError as exc:
                logger.critical("could not record the rejected policy edit: %s", exc)

    def _bound_buffered_bodies(self) -> None:
        limit = self._policy.settings.max_upload * BODY_LIMIT_FACTOR
        current = human.parse_size(ctx.options.body_size_limit)
        ours = ctx.options.body_size_limit == self._body_limit_set  # may follow a reload up
        if current is None or current > limit or (ours and current != limit):
            self._body_limit_set = str(limit)
            ctx.options.update(body_size_limit=self._body_limit_set)

    def done(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.audit is not None:
            self.audit.close()

    # Routing: open only AI traffic.

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        host = data.client_hello.sni or (
            data.context.server.address[0] if data.context.server.address else ""
        )
        if self.catalogue.service_for_host(host) is None:
            data.ignore_connection = True

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        try:
            await self._route(flow)
        except Exception:  # mitmproxy would log it and send the request on: fail closed
            logger.exception(
                "Veil could not route a request to %s; refusing it", flow.request.pretty_host
            )
            flow.metadata[DECIDED_KEY] = None
            flow.response = http.Response.make(
                502,
                b'{"error":{"type":"veil_internal_error","message":"Veil could not check '
                b'where this request goes, so it was stopped."}}',
                {"Content-Type": "application/json"},
            )

    async def _route(self, flow: http.HTTPFlow) -> None:
        """Mark an upload to an AI service for inspection; let everything else stream past."""
        request = flow.request
        if coach.is_control_path(request.path):
            service = self.catalogue.service_for_host(request.pretty_host)
            if service is not None:  # answered by Veil on the intercepted AI host
                flow.metadata[CONTROL_KEY] = service
                return
        match = self.catalogue.match(request.method, request.pretty_host, request.path)
        if match is None:
            request.stream = True  # not an AI service: never buffer or touch it
            return
        flow.metadata[MATCH_KEY] = match
        declared = request.headers.get("content-length", "")
        max_upload = self._policy.settings.max_upload
        if declared.isdigit() and int(declared) > max_upload:
            message = too_large(int(declared), max_upload)
            await self._refuse(flow, 413, "upload_too_large", message)

    async def request(self, flow: http.HTTPFlow) -> None:
        if CONTROL_KEY in flow.metadata and not (flow.response or flow.error):
            await self._answer_control(flow)
            return
        match: Match | None = flow.metadata.get(MATCH_KEY)
        if match is None or flow.response or flow.error or not flow.live:
            return
        try:
            if flow.request.raw_content is None:
                raise RuntimeError("the request body was not buffered")
            req = self._upload_request(flow, match)
            assert self.pipeline is not None
            outcome = await self._in_pool(self.pipeline.process, req)
            self._apply(flow, outcome)
        except Exception as exc:
            logger.exception("Veil failed while handling an upload; refusing it")
            message = "Veil hit an internal error while inspecting this upload, so it was stopped."
            await self._refuse(flow, 502, "veil_internal_error", message, verdict="error", exc=exc)

    async def _answer_control(self, flow: http.HTTPFlow) -> None:
        try:
            assert self.pipeline is not None
            req = self._upload_request(flow, Match(flow.metadata[CONTROL_KEY], None))
            outcome = await self._in_pool(self.pipeline.continue_after_coaching, req)
            assert outcome.answer is not None
            answer = outcome.answer
            flow.response = http.Response.make(answer.status, answer.body, answer.headers)
        except Exception:
            logger.exception("Veil failed to answer %s", flow.request.path.split("?")[0])
            flow.response = http.Response.make(
                502,
                b'{"error":{"type":"veil_internal_error"}}',
                {"Content-Type": "application/json"},
            )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        notice = flow.metadata.get(NOTICE_KEY)
        if notice:
            flow.response.headers[NOTICE_HEADER] = notice_header(notice)
        # Chat answers are server-sent events: stream every response, never buffer it.
        flow.response.stream = True

    async def error(self, flow: http.HTTPFlow) -> None:
        match: Match | None = flow.metadata.get(MATCH_KEY)
        if match is None or DECIDED_KEY in flow.metadata or self.pipeline is None:
            return
        # The upload never reached Veil's decision: mitmproxy refused its body (larger than
        # body_size_limit) or the client went away. Either way it did not leave; record it.
        message = flow.error.msg if flow.error else "connection error"
        over_limit = "body_size_limit" in message
        await asyncio.to_thread(  # an audit write (fsync): off the loop, not behind image work
            self.pipeline.refuse,
            self._upload_request(flow, match, with_body=False),
            413 if over_limit else 502,
            "upload_too_large" if over_limit else "transport_error",
            message,
            verdict="blocked" if over_limit else "error",
            rule="limits" if over_limit else "transport",
        )

    # Helpers.

    def _upload_request(
        self, flow: http.HTTPFlow, match: Match, *, with_body: bool = True
    ) -> UploadRequest:
        request = flow.request
        auth = flow.metadata.get("proxyauth")
        peer = flow.client_conn.peername
        return UploadRequest(
            method=request.method,
            host=request.pretty_host,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=(request.raw_content or b"") if with_body else b"",
            client=peer[0] if peer else "",
            service=match.service.id,
            vendor=match.service.vendor,
            user=auth[0] if auth else None,  # never the password
            size_declared=match.size_declared or _is_raw_upload(request),
        )

    def _apply(self, flow: http.HTTPFlow, outcome: Outcome) -> None:
        flow.metadata[DECIDED_KEY] = outcome.decision_id
        if outcome.answer is not None:
            answer = outcome.answer
            flow.response = http.Response.make(answer.status, answer.body, answer.headers)
            return
        if outcome.spliced is not None:
            flow.request.raw_content = outcome.spliced.body
            for name in outcome.spliced.remove_headers:
                flow.request.headers.pop(name, None)
            for name, value in outcome.spliced.set_headers.items():
                flow.request.headers[name] = value
        if outcome.notice:
            flow.metadata[NOTICE_KEY] = outcome.notice

    async def _in_pool[T](self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` in the worker pool (image work, sized by veil_workers), off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    async def _refuse(
        self,
        flow: http.HTTPFlow,
        status: int,
        error_type: str,
        message: str,
        *,
        verdict: str = "blocked",
        exc: Exception | None = None,
    ) -> None:
        """Answer from the proxy and record it; a last resort that must not raise itself."""
        match: Match = flow.metadata[MATCH_KEY]
        try:
            assert self.pipeline is not None
            req = self._upload_request(flow, match, with_body=False)
            if exc is not None:
                message = f"{message} ({type(exc).__name__})"
            outcome = await asyncio.to_thread(  # as in `error`
                self.pipeline.refuse,
                req,
                status,
                error_type,
                message,
                verdict=verdict,
                rule="on_error" if verdict == "error" else "limits",
            )
            self._apply(flow, outcome)
        except Exception:
            logger.exception("could not record a refused upload")
            flow.metadata[DECIDED_KEY] = None
            flow.response = http.Response.make(
                503, b'{"error":{"type":"veil_unavailable"}}', {"Content-Type": "application/json"}
            )


def _is_raw_upload(request: http.Request) -> bool:
    """A PUT/POST of the file itself: its size may have been announced earlier (DESIGN.md)."""
    ctype = request.headers.get("content-type", "").lower()
    return request.method in ("PUT", "POST") and not ctype.startswith(
        ("multipart/", "application/json", "text/")
    )
