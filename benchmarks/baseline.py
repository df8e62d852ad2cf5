"""
The baseline the router benchmarks measure against: C{twisted.web} as it comes, one leaf
resource answering every request with a constant 302, and no access log (the router writes
none). C{bare_redirect.py} serves it over TLS for C{bench_router.py}; C{bench_resource.py}
drives it in process.
"""

from __future__ import annotations

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

__all__ = ["ConstantRedirect", "UnloggedSite"]


class UnloggedSite(Site):
    """
    Twisted's site as it comes, but without the access log (the router writes none).
    """

    def log(self, request: http.Request) -> None:
        pass


class ConstantRedirect(Resource):
    """
    A leaf answering everything with C{302 Found} to one location and an empty body.
    """

    isLeaf = True

    def __init__(self, location: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.location = location

    def render(self, request: Request) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", self.location)
        return b""
