# -*- test-case-name: tests.test_enrich_useragent -*-
"""
Browser, operating system, device and platform from a User-Agent string, with C{ua-parser}.

The regexes ship inside C{ua-parser-builtins}, so this works offline. C{ua-parser-rs}, a
native matcher, is used when it is installed: it parses an unseen string in about 17 us
where the pure-Python matcher takes about 750 us (C{benchmarks/bench_enrich.py}).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from ua_parser import (
    OS,
    BasicResolver,
    Device,
    Domain,
    Matchers,
    Resolver,
    UserAgent,
    load_builtins,
    load_lazy_builtins,
)

from .model import Platform

_NativeResolver: Callable[[Matchers], Resolver] | None
try:
    from ua_parser.regex import Resolver as _NativeResolver
except ImportError:  # pragma: no cover - ua-parser-rs is a dependency, but only an accelerator
    _NativeResolver = None

__all__ = ["MAX_PARSED_LENGTH", "Agent", "AgentParser", "platform_of"]

MAX_PARSED_LENGTH = 2048
"""
Characters of a User-Agent that are parsed: the router keeps 512 bytes, which its escaping
of invalid bytes (C{\\xNN}) can stretch to four times as many characters; the rest is noise.
"""

_MOBILE_SYSTEMS = frozenset(
    {
        "Android",
        "BlackBerry OS",
        "BlackBerry Tablet OS",
        "Firefox OS",
        "HarmonyOS",
        "iOS",
        "iPadOS",
        "KaiOS",
        "Sailfish",
        "Symbian OS",
        "Tizen",
        "watchOS",
        "webOS",
        "Windows Phone",
    }
)
_DESKTOP_SYSTEMS = frozenset(
    {
        "Chrome OS",
        "ChromeOS",
        "Debian",
        "Fedora",
        "FreeBSD",
        "Gentoo",
        "Linux",
        "Linux Mint",
        "Mac OS",
        "Mac OS X",
        "macOS",
        "Mandriva",
        "NetBSD",
        "OpenBSD",
        "openSUSE",
        "Red Hat",
        "Solaris",
        "SUSE",
        "Ubuntu",
        "Windows",
    }
)
_DESKTOP_MAIL_CLIENTS = frozenset({"Outlook", "Thunderbird", "Apple Mail", "Windows Live Mail"})
"""Mail clients that run on desktops only, for User-Agents that do not name a system."""
_MOBILE_DEVICES = frozenset({"iPad", "iPhone", "iPod", "Generic Smartphone", "Generic Tablet"})
_CRAWLER_DEVICE = "Spider"
_UNKNOWN = "Other"


@attrs.frozen
class Agent:
    """
    What a User-Agent string says about the software that sent it; C{None} is unknown.

    @ivar crawler: C{ua-parser} recognises a crawler or fetcher (its device C{Spider}).
    """

    browser_family: str | None = None
    browser_version: str | None = None
    os_family: str | None = None
    os_version: str | None = None
    device: str | None = None
    platform: Platform = Platform.UNKNOWN
    crawler: bool = False


def _version(part: UserAgent | OS) -> str | None:
    numbers = []
    for number in (part.major, part.minor, part.patch):
        if number is None:
            break
        numbers.append(number)
    return ".".join(numbers) or None


def _known(family: str | None) -> str | None:
    return None if family in (None, _UNKNOWN, "") else family


def platform_of(browser: UserAgent | None, os: OS | None, device: Device | None) -> Platform:
    """
    The platform a parsed User-Agent runs on: phones and tablets are C{Mobile}; desktop
    operating systems, and desktop mail clients that name none (Outlook's
    C{ms-office}), are C{Desktop}; crawlers and anything else are C{Unknown}. C{WebMail}
    is not decided here: it depends on the image-proxy list (see L{ScannerList}).
    """
    if device is not None and device.family == _CRAWLER_DEVICE:
        return Platform.UNKNOWN
    if device is not None and device.family in _MOBILE_DEVICES:
        return Platform.MOBILE
    if os is not None and os.family in _MOBILE_SYSTEMS:
        return Platform.MOBILE
    if os is not None and os.family in _DESKTOP_SYSTEMS:
        return Platform.DESKTOP
    unnamed = os is None or os.family == _UNKNOWN
    if unnamed and browser is not None and browser.family in _DESKTOP_MAIL_CLIENTS:
        return Platform.DESKTOP
    return Platform.UNKNOWN


def _usable(user_agent: str) -> str:
    """
    C{user_agent} cut to L{MAX_PARSED_LENGTH} and made encodable: the native matcher refuses
    lone surrogates, which a decoded event can still carry.
    """
    user_agent = user_agent[:MAX_PARSED_LENGTH]
    if user_agent.isascii():
        return user_agent
    return user_agent.encode("utf-8", "replace").decode("utf-8")


def _best_resolver() -> Resolver:
    if _NativeResolver is not None:
        return _NativeResolver(load_lazy_builtins())
    return BasicResolver(load_builtins())  # pragma: no cover


@attrs.define
class AgentParser:
    """
    Parses User-Agent strings into L{Agent}s. It caches nothing: its caller caches the facts
    it derives from the string as a whole.

    @ivar resolver: a C{ua-parser} resolver; the fastest one installed by default.
    """

    resolver: Resolver = attrs.field(factory=_best_resolver)

    def parse(self, user_agent: str) -> Agent:
        """
        The L{Agent} of C{user_agent}; any string, however malformed, gives one.
        """
        result = self.resolver(_usable(user_agent), Domain.ALL)
        browser, os, device = result.user_agent, result.os, result.device
        return Agent(
            browser_family=_known(browser.family) if browser else None,
            browser_version=_version(browser) if browser else None,
            os_family=_known(os.family) if os else None,
            os_version=_version(os) if os else None,
            device=_known(device.family) if device else None,
            platform=platform_of(browser, os, device),
            crawler=device is not None and device.family == _CRAWLER_DEVICE,
        )
