"""
The C{twistd linkrouter} plugin: found by twistd, it imports nothing heavy until used.
"""

from twisted.application.service import ServiceMaker

linkrouter = ServiceMaker(
    "linkrouter",
    "linkrouter.tap",
    "The Link Router: verify tracked links and redirect, journaling each click.",
    "linkrouter",
)
