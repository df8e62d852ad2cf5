"""
The issuer: rewrite every link of an outgoing email into a tracked link.

    >>> from linkrouter.rewrite import Rewriter, rewrite_message
    >>> rewriter = Rewriter(keyring.active, "https://click.example")
    >>> result = rewrite_message(rewriter, raw_email_bytes)
    >>> result.content        # the message to send
    >>> result.links          # LinkRecord values for the collector's POST /v1/links
    >>> result.skipped        # links left as written, and why

See C{docs/rewriting.rst} for what is rewritten and what is left.
"""

from .html import OPT_OUT_ATTRIBUTE
from .issuer import (
    LinkRecord,
    Mode,
    Rewriter,
    Rewritten,
    Skipped,
    SkipReason,
    rewrite_html,
    rewrite_text,
)
from .mime import rewrite_message

__all__ = [
    "OPT_OUT_ATTRIBUTE",
    "LinkRecord",
    "Mode",
    "Rewriter",
    "Rewritten",
    "SkipReason",
    "Skipped",
    "rewrite_html",
    "rewrite_message",
    "rewrite_text",
]
