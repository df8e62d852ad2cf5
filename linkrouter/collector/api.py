# -*- test-case-name: tests.test_collector_api -*-
"""
The collector's HTTP API (C{docs/api.rst}): ingest, the link registry, the stats.

Every answer is JSON and never a traceback. Request bodies are bounded before they are
read (L{BoundedRequest}); a batch is parsed and enriched on a worker thread and answered
only once the store says it is durable, so a crash before the answer costs the router one
re-send, whose events are then counted as duplicates.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from ..limits import LimitedHTTPChannel
from ..linkid import MESSAGE_KEY_LENGTH, message_key
from ..site import QuietSite
from .ingest import BodyRefused, inflate, parse_batch
from .model import Enrichment, Event, IngestResult, LinkRecord
from .statsjson import stats_document
from .store import Stats, StatsQuery
from .tokens import Role, Tokens

__all__ = ["CollectorSite", "EventStore", "Limits", "StatsQueryError", "build_root", "stats_query"]

T = TypeVar("T")
RunBlocking = Callable[[Callable[[], T]], "Deferred[T]"]

_LINK_FIELDS = {"link", "url", "message", "part", "position", "tag", "recipient"}
_SECTIONS = (
    "totals",
    "bots",
    "browsers",
    "platforms",
    "os",
    "countries",
    "parts",
    "links",
    "series",
)
_LINK_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_MESSAGE_KEY = re.compile(rf"[A-Za-z0-9_-]{{{MESSAGE_KEY_LENGTH}}}")


class EventStore(Protocol):
    """
    The part of C{linkrouter.collector.store.IEventStore} the API uses (a typing protocol:
    zope interfaces do not type-check their methods).
    """

    description: str

    def open(self) -> Deferred[None]: ...
    def close(self) -> Deferred[None]: ...
    def ingest(self, rows: Sequence[tuple[Event, Enrichment]]) -> Deferred[IngestResult]: ...
    def register_links(self, records: Sequence[LinkRecord]) -> Deferred[int]: ...
    def stats(self, query: StatsQuery) -> Deferred[Stats]: ...


@attrs.frozen
class Limits:
    max_body_bytes: int = 16 * 1024 * 1024
    max_inflated_bytes: int = 64 * 1024 * 1024
    max_events: int = 100_000


_TOO_LARGE_BODY = b'{"error":"the request body is too big"}\n'
_TOO_LARGE = (
    b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)


class BoundedRequest(Request):
    """
    A request whose body may not pass the site's C{max_body_bytes}: a longer declared
    length, or a chunked body that grows past it, is answered 413 and the connection closed
    before any more of it is stored.
    """

    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        limit: int = self.channel.site.max_body_bytes  # type: ignore[attr-defined]
        if length is not None and length > limit:
            self.requestHeaders.removeHeader(b"expect")  # no 100 Continue after the 413
            self._refuse()
            return
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:  # the rest of a chunked body that arrived in the same read
            return
        self._received += len(data)
        if self._received > self.channel.site.max_body_bytes:  # type: ignore[attr-defined]
            self._refuse()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]

    def _refuse(self) -> None:
        self._refused = True
        self.content = None
        channel: LimitedHTTPChannel = self.channel  # type: ignore[assignment]
        channel.refuse(_TOO_LARGE)


class CollectorSite(QuietSite):
    """
    The collector's site: bounded request bodies, no access log (stats queries name tags and
    messages, which are the senders' business), HTTP/1.1.
    """

    requestFactory = BoundedRequest

    def __init__(self, resource: Resource, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)  # type: ignore[no-untyped-call]
        self.max_body_bytes = max_body_bytes


def _json(request: Request, status: int, document: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def _finish(request: Request, body: bytes) -> None:
    if not request.finished and not request._disconnected:
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()


class _Authorized(Resource):
    """
    A leaf that answers 401 unless the request carries a token of C{role}.
    """

    isLeaf = True
    log = Logger()
    role: Role

    def __init__(self, tokens: Callable[[], Tokens]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._tokens = tokens

    def holder(self, request: Request, name: str | None = None) -> str | None:
        holder = self._tokens().holder(self.role, request.getHeader(b"authorization"), name)
        if holder is None:
            request.setHeader(b"www-authenticate", b'Bearer, Basic realm="linkrouter"')
        return holder

    def _answer(self, request: Request, work: Deferred[tuple[int, Any]]) -> int:
        def done(answer: tuple[int, Any]) -> None:
            _finish(request, _json(request, *answer))

        def failed(failure: Failure) -> None:
            self.log.failure("collector request failed", failure)
            _finish(request, _json(request, 500, {"error": "internal error"}))

        work.addCallbacks(done, failed)
        return NOT_DONE_YET


class EventsResource(_Authorized):
    """
    C{POST /v1/events}: a router's batch (C{docs/sync-protocol.rst}).
    """

    role = Role.ROUTERS

    def __init__(
        self,
        tokens: Callable[[], Tokens],
        store: EventStore,
        enrich: Callable[[Sequence[Event]], list[Enrichment]],
        run: RunBlocking[Any],
        limits: Limits,
        observe: Callable[[str, int], None] = lambda outcome, count: None,
    ) -> None:
        super().__init__(tokens)
        self._store = store
        self._enrich = enrich
        self._run = run
        self._limits = limits
        self._observe = observe

    def render_POST(self, request: Request) -> bytes | int:
        claimed = request.getHeader(b"x-linkrouter-router")
        router = self.holder(request, claimed.decode("latin-1") if claimed else None)
        if router is None:
            return _json(request, 401, {"error": "no valid router token"})
        assert request.content is not None
        body = request.content.read()
        return self._answer(request, ensureDeferred(self._ingest(router, body)))

    async def _ingest(self, router: str, body: bytes) -> tuple[int, Any]:
        limits = self._limits

        def parse() -> tuple[Any, list[tuple[Event, Enrichment]]]:
            batch = parse_batch(
                inflate(body, limits.max_inflated_bytes), router, limits.max_events
            )
            return batch, list(zip(batch.events, self._enrich(batch.events), strict=True))

        try:
            batch, rows = await self._run(parse)
        except BodyRefused as error:
            self._observe("refused", 1)
            return error.status, {"error": str(error)}
        result = await self._store.ingest(rows) if rows else IngestResult(0, 0)
        self._observe("accepted", result.accepted)
        self._observe("duplicate", result.duplicates)
        self._observe("rejected", len(batch.rejected))
        answer = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": [{"line": r.line, "reason": r.reason} for r in batch.rejected],
        }
        return (422 if batch.rejected else 200), answer


class LinksResource(_Authorized):
    """
    C{POST /v1/links}: LinkID registrations as JSON lines (C{rewrite --links-out}), gzip or
    not.
    """

    role = Role.ISSUERS

    def __init__(
        self,
        tokens: Callable[[], Tokens],
        store: EventStore,
        run: RunBlocking[Any],
        limits: Limits,
    ) -> None:
        super().__init__(tokens)
        self._store = store
        self._run = run
        self._limits = limits

    def render_POST(self, request: Request) -> bytes | int:
        if self.holder(request) is None:
            return _json(request, 401, {"error": "no valid issuer token"})
        assert request.content is not None
        body = request.content.read()
        gzipped = (request.getHeader(b"content-encoding") or b"").lower() == b"gzip"
        return self._answer(request, ensureDeferred(self._register(body, gzipped)))

    async def _register(self, body: bytes, gzipped: bool) -> tuple[int, Any]:
        limits = self._limits

        def parse() -> tuple[list[LinkRecord], list[dict[str, Any]]]:
            data = inflate(body, limits.max_inflated_bytes) if gzipped else body
            lines = data.splitlines()
            if len(lines) > limits.max_events:
                raise BodyRefused(413, f"over {limits.max_events} lines")
            records, rejected = [], []
            for number, line in enumerate(lines, start=1):
                record = _link_record(line)
                if isinstance(record, str):
                    rejected.append({"line": number, "reason": record})
                else:
                    records.append(record)
            return records, rejected

        try:
            records, rejected = await self._run(parse)
        except BodyRefused as error:
            return error.status, {"error": str(error)}
        stored = await self._store.register_links(records) if records else 0
        return (422 if rejected else 200), {"registered": stored, "rejected": rejected}


def _link_record(line: bytes) -> LinkRecord | str:
    try:
        fields = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json recurses
        return "not JSON"
    if not isinstance(fields, dict):
        return "not a JSON object"
    unknown = fields.keys() - _LINK_FIELDS
    if unknown:
        return f"unknown {', '.join(sorted(unknown))[:200]}"
    link, url = fields.get("link"), fields.get("url")
    if not isinstance(link, str) or not _LINK_ID.fullmatch(link):
        return "invalid link"
    if (
        not isinstance(url, str)
        or not 0 < len(url) <= 8192
        or not url.startswith(("http:", "https:"))
    ):
        return "invalid url"
    texts = {name: fields.get(name) for name in ("message", "tag", "recipient")}
    for name, value in texts.items():
        if value is not None and (not isinstance(value, str) or len(value) > 998):
            return f"invalid {name}"
    part, position = fields.get("part"), fields.get("position")
    if part not in (None, "html", "text"):
        return "invalid part"
    if position is not None and (type(position) is not int or not 0 < position < 2**31):
        return "invalid position"
    return LinkRecord(
        link_id=link,
        url=url,
        message_id=texts["message"],
        part=part,
        position=position,
        tag=texts["tag"],
        recipient_hash=texts["recipient"],
    )


class StatsQueryError(ValueError):
    """
    A stats query parameter is invalid; the message names it.
    """


def _instant(name: str, value: str) -> int:
    """
    Milliseconds since the epoch for an ISO 8601 date or time, or seconds since the epoch.
    """
    try:
        if re.fullmatch(r"\d{1,12}(\.\d+)?", value):
            return int(float(value) * 1000)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise StatsQueryError(f"{name}: not an ISO 8601 time or seconds since the epoch") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def stats_query(arguments: dict[bytes, list[bytes]], make: Callable[..., T]) -> T:
    """
    The stats query of a request's arguments (C{docs/api.rst}), built with C{make} (the
    store's C{StatsQuery}).

    @raise StatsQueryError: a parameter is repeated, unknown or invalid.
    """
    values: dict[str, str] = {}
    for raw_name, raw_values in arguments.items():
        name = raw_name.decode("latin-1")
        if name not in ("from", "to", "tag", "message", "link", "bucket", "top"):
            raise StatsQueryError(f"{name[:40]}: unknown parameter")
        if len(raw_values) != 1:
            raise StatsQueryError(f"{name}: given more than once")
        try:
            values[name] = raw_values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise StatsQueryError(f"{name}: not UTF-8") from None
    start = _instant("from", values["from"]) if values.get("from") else None
    end = _instant("to", values["to"]) if values.get("to") else None
    message = values.get("message") or None
    if message is not None:
        if len(message) > 998:
            raise StatsQueryError("message: too long")
        if not _MESSAGE_KEY.fullmatch(message):
            message = message_key(message)
    link = values.get("link") or None
    if link is not None and not _LINK_ID.fullmatch(link):
        raise StatsQueryError("link: not a LinkID")
    tag = values.get("tag") or None
    if tag is not None and len(tag) > 998:
        raise StatsQueryError("tag: too long")
    bucket = values.get("bucket") or "hour"
    if bucket not in ("hour", "day"):
        raise StatsQueryError('bucket: not "hour" or "day"')
    top = values.get("top") or "10"
    if not re.fullmatch(r"[0-9]{1,3}", top) or not 1 <= int(top) <= 100:
        raise StatsQueryError("top: not a number from 1 to 100")
    return make(
        start_ms=start,
        end_ms=end,
        tag=tag,
        message=message,
        link=link,
        bucket=bucket,
        top=int(top),
    )


class StatsResource(_Authorized):
    """
    C{GET /v1/stats} and C{GET /v1/stats/<section>}.
    """

    role = Role.READERS

    def __init__(
        self,
        tokens: Callable[[], Tokens],
        store: EventStore,
        observe: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        super().__init__(tokens)
        self._store = store
        self._observe = observe

    def render_GET(self, request: Request) -> bytes | int:
        if self.holder(request) is None:
            return _json(request, 401, {"error": "no valid reader token"})
        section = None
        if request.postpath and request.postpath != [b""]:
            section = b"/".join(request.postpath).decode("latin-1")
            if section not in _SECTIONS:
                return _json(request, 404, {"error": "no such stats section"})
        try:
            query = stats_query(request.args or {}, StatsQuery)
        except StatsQueryError as error:
            return _json(request, 400, {"error": str(error)})
        return self._answer(request, ensureDeferred(self._stats(query, section)))

    async def _stats(self, query: StatsQuery, section: str | None) -> tuple[int, Any]:
        started = time.perf_counter()
        document = stats_document(query, await self._store.stats(query))
        self._observe(time.perf_counter() - started)
        if section is not None:
            document = {"query": document["query"], section: document[section]}
        return 200, document


class _Health(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"ok\n"


def build_root(
    events: EventsResource,
    links: LinksResource,
    stats: StatsResource,
    metrics: Resource,
    dashboard: Resource | None = None,
) -> Resource:
    """
    The collector's resource tree: C{/v1/events}, C{/v1/links}, C{/v1/stats[/…]},
    C{/healthz}, C{/metrics} and the dashboard at C{/}.
    """
    root = dashboard if dashboard is not None else Resource()
    v1 = Resource()
    v1.putChild(b"events", events)  # type: ignore[arg-type]
    v1.putChild(b"links", links)  # type: ignore[arg-type]
    v1.putChild(b"stats", stats)  # type: ignore[arg-type]
    root.putChild(b"v1", v1)  # type: ignore[arg-type]
    root.putChild(b"healthz", _Health())  # type: ignore[arg-type, no-untyped-call]
    root.putChild(b"metrics", metrics)  # type: ignore[arg-type]
    return root
