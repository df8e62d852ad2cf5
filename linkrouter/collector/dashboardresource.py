# -*- test-case-name: tests.test_dashboard -*-
"""
The collector's dashboard: one page, its script, style and icon, served from the package.

The page carries no data. Its script fetches C{v1/stats} from the same origin (see
C{docs/api.rst}), so this resource needs no store and is tested against a fake stats API.
The files are read once, when the resource is made: a running collector serves what it
started with, and a missing file stops start-up rather than a page view.

Nothing here loads from another origin, so the dashboard works offline; the content
security policy holds the page to that, and forbids inline script, so a string from the API
that slipped into the markup could not run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from importlib.resources import files

import attrs
from twisted.web.http import CACHED
from twisted.web.resource import Resource
from twisted.web.server import Request

from ..headers import HeaderBlock, header_block, set_headers

__all__ = [
    "ASSET_TYPES",
    "CONTENT_SECURITY_POLICY",
    "PAGE",
    "Asset",
    "DashboardResource",
    "load_assets",
]

PAGE = "index.html"
"""The page served at C{/}; every other file is served under C{/dashboard/}."""

ASSET_TYPES = {
    PAGE: b"text/html; charset=utf-8",
    "dashboard.js": b"text/javascript; charset=utf-8",
    "dashboard.css": b"text/css; charset=utf-8",
    "icon.svg": b"image/svg+xml",
}
"""Every file of the C{dashboard} package directory that is served, with its content type."""

CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    b"frame-ancestors 'none'"
)
"""
Same origin only, for every kind of resource: no CDN, no inline script, no inline style
attribute in markup, no framing by another site.
"""

_SECURITY = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
)
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_NOT_FOUND = header_block((*_SECURITY, _TEXT))
_NOT_ALLOWED = header_block((*_SECURITY, _TEXT, (b"allow", b"GET, HEAD")))


@attrs.frozen
class Asset:
    """
    One served file: its bytes and content type, and an entity tag for revalidation
    (C{Cache-Control: no-cache} makes a browser ask each time; the tag makes the answer
    a bodiless 304 when nothing changed).
    """

    body: bytes
    content_type: bytes
    etag: bytes = attrs.field(init=False)

    @etag.default
    def _etag(self) -> bytes:
        return b'"' + hashlib.sha256(self.body).hexdigest()[:20].encode("ascii") + b'"'


def load_assets() -> dict[str, Asset]:
    """
    Every file of L{ASSET_TYPES}, read from the installed package.

    @raise OSError: if one is missing (a broken install).
    """
    directory = files("linkrouter.collector.dashboard")
    return {
        name: Asset(directory.joinpath(name).read_bytes(), content_type)
        for name, content_type in ASSET_TYPES.items()
    }


class _Answer(Resource):
    """
    A leaf answering GET and HEAD with one asset (or 404 without one) and 405 otherwise.
    """

    isLeaf = True

    def __init__(self, asset: Asset | None, headers: HeaderBlock) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._asset = asset
        self._headers = headers

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            set_headers(request, _NOT_ALLOWED)
            return b"Method not allowed\n"
        if self._asset is None:
            request.setResponseCode(404)
            set_headers(request, _NOT_FOUND)
            return b"Not found\n"
        set_headers(request, self._headers)
        if request.setETag(self._asset.etag) == CACHED:
            return b""
        return self._asset.body


class _Challenge(Resource):
    """
    401 with a Basic challenge: the browser asks for a user name (any) and the reader token.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(401)
        set_headers(request, _NOT_FOUND)
        request.setHeader(b"www-authenticate", b'Basic realm="linkrouter dashboard"')
        return b"A reader token is needed: any user name, the token as password.\n"


_CHALLENGE = _Challenge()  # type: ignore[no-untyped-call]


class DashboardResource(Resource):
    """
    The collector's root resource as far as the dashboard goes: C{/} is the page,
    C{/dashboard/<name>} its files, and any other path 404, unless a child was put there
    with C{putChild} (the collector puts its API at C{v1} and its health check at
    C{healthz}). Anything but GET and HEAD is answered 405.

    @param assets: the files by name, as L{load_assets} reads them (the default).
    @param allowed: whether a request may see the page; one that may not is answered 401
        with a Basic challenge, so a browser asks for the reader's token once and sends it
        with the page's own API calls too. The files hold no data and need no token.
    """

    def __init__(
        self,
        assets: Mapping[str, Asset] | None = None,
        allowed: Callable[[Request], bool] = lambda request: True,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._allowed = allowed
        if assets is None:
            assets = load_assets()
        self._page = _Answer(assets[PAGE], self._headers_for(assets[PAGE]))
        self._files = {
            name.encode("ascii"): _Answer(asset, self._headers_for(asset))
            for name, asset in assets.items()
            if name != PAGE
        }
        self._missing = _Answer(None, _NOT_FOUND)

    @staticmethod
    def _headers_for(asset: Asset) -> HeaderBlock:
        return header_block((*_SECURITY, (b"content-type", asset.content_type)))

    def getChild(self, path: bytes, request: Request) -> Resource:
        rest = request.postpath or []
        if path == b"" and not rest:
            return self._page if self._allowed(request) else _CHALLENGE
        if path == b"dashboard" and len(rest) == 1:
            return self._files.get(rest[0], self._missing)
        return self._missing

    def render(self, request: Request) -> bytes:
        # Only a request whose path has no segment at all (not even "/") gets here.
        return self._missing.render(request)
