"""
The twistd plugin C{linkcollector}: C{twistd -n linkcollector --config PATH}.

Lazy, so that listing twistd's plugins does not import the collector.
"""

from twisted.application.service import ServiceMaker

linkcollector = ServiceMaker(
    "linkrouter collector",
    "linkrouter.collector.tap",
    "The central API: takes the routers' click batches, enriches them, answers stats.",
    "linkcollector",
)
