"""
The baseline of C{bench_router.py}: a bare C{twisted.web} leaf resource answering every
request with one constant 302, behind the router's own TLS options, in a plain C{Site}
without an access log.

Whatever the router does beyond this (its HTTP limits, verifying the link, its headers,
metrics, handing the click to the journal) is what the benchmark's ratio measures. Run it as
the router runs::

    BARE_PORT=8444 BARE_CERTIFICATE=localhost.pem BARE_PRIVATE_KEY=localhost-key.pem \\
        twistd -n --pidfile= -y benchmarks/bare_redirect.py

C{BARE_LOCATION} sets the Location (default C{https://www.example.com/}). It listens on
127.0.0.1 only.
"""

from __future__ import annotations

import os
import sys

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Application
from twisted.internet import reactor
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.python.filepath import FilePath

from linkrouter.tap import CLIENT_TIMEOUT
from linkrouter.tls import server_options

# twistd -y runs this file from the server's own directory: find baseline.py beside it
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baseline import ConstantRedirect, UnloggedSite


def bare_service(
    port: int, certificate: FilePath[str], private_key: FilePath[str], location: bytes
) -> StreamServerEndpointService:
    """
    The baseline's listener on 127.0.0.1:C{port}, with the router's TLS options.
    """
    options = server_options(certificate, private_key)
    resource = ConstantRedirect(location)
    site = UnloggedSite(resource, timeout=CLIENT_TIMEOUT)  # type: ignore[no-untyped-call]
    endpoint = SSL4ServerEndpoint(reactor, port, options, interface="127.0.0.1")
    return StreamServerEndpointService(endpoint, site)


application = Application("bare-redirect")
bare_service(
    int(os.environ["BARE_PORT"]),
    FilePath(os.environ["BARE_CERTIFICATE"]),
    FilePath(os.environ["BARE_PRIVATE_KEY"]),
    os.environ.get("BARE_LOCATION", "https://www.example.com/").encode("ascii"),
).setServiceParent(application)
