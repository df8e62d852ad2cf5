# -*- test-case-name: tests.test_collector_api -*-
"""
The stats API's JSON document (C{docs/api.rst}) from the store's L{Stats}.

The store counts in the shape that is cheapest to sum (clicks and opens, bots apart); the
API answers in the shape a reader wants (totals, human and bot side by side, ISO times).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .store import Stats, StatsQuery, Tally

__all__ = ["stats_document"]


def _iso(milliseconds: int | None) -> str | None:
    if milliseconds is None:
        return None
    return _second(milliseconds) + f".{milliseconds % 1000:03d}Z"


def _second(milliseconds: int) -> str:
    return datetime.fromtimestamp(milliseconds // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _breakdown(tallies: tuple[Tally, ...]) -> list[dict[str, Any]]:
    rows = []
    for tally in tallies:
        total, bot = tally.clicks + tally.opens, tally.bot_clicks + tally.bot_opens
        name = tally.value if tally.value is not None else "Unknown"
        rows.append({"name": name, "total": total, "human": total - bot, "bot": bot})
    return rows


def stats_document(query: StatsQuery, stats: Stats) -> dict[str, Any]:
    """
    Every section of C{GET /v1/stats} for C{query}.
    """
    clicks, opens = stats.clicks, stats.opens
    return {
        "query": {
            "from": _iso(query.start_ms),
            "to": _iso(query.end_ms),
            "tag": query.tag,
            "message": query.message,
            "link": query.link,
            "bucket": query.bucket,
            "top": query.top,
        },
        "totals": {
            "clicks": clicks.total,
            "unique_clicks": clicks.unique,
            "opens": opens.total,
            "unique_opens": opens.unique,
            "human": clicks.human + opens.human,
            "bot": clicks.bot + opens.bot,
            "first_click": _iso(stats.first_click_ms),
            "last_click": _iso(stats.last_click_ms),
        },
        "bots": [
            {"reason": tally.value, "events": tally.clicks + tally.opens}
            for tally in stats.bot_reasons
        ],
        "browsers": _breakdown(stats.browsers),
        "platforms": _breakdown(stats.platforms),
        "os": _breakdown(stats.systems),
        "countries": _breakdown(stats.countries),
        "parts": _breakdown(stats.parts),
        "links": [
            {
                "link": link.link_id,
                "url": link.url,
                "clicks": link.clicks,
                "human": link.clicks - link.bot_clicks,
                "bot": link.bot_clicks,
            }
            for link in stats.top_links
        ],
        "series": [
            {
                "start": _second(point.start_ms) + "Z",
                "clicks": point.clicks,
                "opens": point.opens,
                "human": point.clicks + point.opens - point.bot_clicks - point.bot_opens,
                "bot": point.bot_clicks + point.bot_opens,
            }
            for point in stats.series
        ],
    }
