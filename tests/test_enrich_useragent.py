"""
Tests for L{linkrouter.collector.useragent}: browsers, systems, devices and platforms of real
User-Agents, and garbage that must not break the parser.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from ua_parser import BasicResolver, load_builtins

from linkrouter.collector.model import Platform
from linkrouter.collector.useragent import MAX_PARSED_LENGTH, Agent, AgentParser

DESKTOP, MOBILE, UNKNOWN = Platform.DESKTOP, Platform.MOBILE, Platform.UNKNOWN

# (User-Agent, browser, browser version, system, system version, device, platform)
REAL_AGENTS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        *("Chrome", "131.0.0", "Windows", "10", None, DESKTOP),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
        *("Edge", "131.0.2903", "Windows", "10", None, DESKTOP),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/18.1 Safari/605.1.15",
        *("Safari", "18.1", "Mac OS X", "10.15.7", "Mac", DESKTOP),
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        *("Firefox", "133.0", "Linux", None, None, DESKTOP),
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        *("Firefox", "133.0", "Ubuntu", None, None, DESKTOP),
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        *("Chrome", "131.0.0", "Chrome OS", "14541.0.0", None, DESKTOP),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        *("Mobile Safari", "18.1", "iOS", "18.1", "iPhone", MOBILE),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.81 Mobile Safari/537.36",
        *("Chrome Mobile", "131.0.6778", "Android", "14", "Samsung SM-S918B", MOBILE),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.81 Mobile Safari/537.36",
        *("Chrome Mobile", "131.0.6778", "Android", "14", "Pixel 8", MOBILE),
    ),
    (
        # A tablet counts as Mobile: the platform has no tablet of its own.
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        *("Chrome", "131.0.0", "Android", "13", "SM-X710", MOBILE),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0]",
        *("Facebook", "470.0", "iOS", "17.5", "iPhone", MOBILE),
    ),
    # Mail clients.
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        *("Apple Mail", "605.1.15", "Mac OS X", "10.15.7", "Mac", DESKTOP),
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Mobile/15E148",
        *("Mobile Safari UI/WKWebView", None, "iOS", "17.6", "iPad", MOBILE),
    ),
    (
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
        *("Outlook", "2016", "Windows", "10", None, DESKTOP),
    ),
    (
        # Outlook for Windows fetches images with this; it names no system.
        "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
        *("Outlook", "2016", None, None, None, DESKTOP),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
        *("Thunderbird", "128.5.0", "Windows", "10", None, DESKTOP),
    ),
    # Machines.
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        *("Googlebot", "2.1", None, None, "Spider", UNKNOWN),
    ),
    (
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        *("bingbot", "2.0", None, None, "Spider", UNKNOWN),
    ),
    ("curl/8.5.0", *("curl", "8.5.0", None, None, None, UNKNOWN)),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/131.0.0.0 Safari/537.36",
        *("HeadlessChrome", "131.0.0", "Windows", "10", None, DESKTOP),
    ),
    ("", *(None, None, None, None, None, UNKNOWN)),
]


class RealAgentTests(SynchronousTestCase):
    parser = AgentParser()

    def test_realAgents(self) -> None:
        """
        Current browsers, mail clients and crawlers give their exact browser, system,
        device and platform; a crawler is flagged as one.
        """
        for user_agent, browser, version, system, system_version, device, platform in REAL_AGENTS:
            agent = self.parser.parse(user_agent)
            self.assertEqual(
                agent,
                Agent(
                    browser,
                    version,
                    system,
                    system_version,
                    device,
                    platform,
                    crawler=device == "Spider",
                ),
                user_agent,
            )

    def test_pureResolverAgrees(self) -> None:
        """
        Without the native matcher, the pure-Python one (the fallback) gives the same
        answers, so the accelerator changes speed only.
        """
        basic = AgentParser(BasicResolver(load_builtins()))
        for user_agent, *_ in REAL_AGENTS[:6]:
            self.assertEqual(basic.parse(user_agent), self.parser.parse(user_agent))


class GarbageTests(SynchronousTestCase):
    parser = AgentParser()

    def test_longGarbage(self) -> None:
        """
        10 KB of escaped invalid bytes, control characters and unbalanced parentheses parse
        to an unknown agent; the time is bounded because only the first
        L{MAX_PARSED_LENGTH} characters are looked at (see L{test_cutAtMaximum}).
        """
        garbage = ("\\xff\\xfe(\x00Mozilla/5.0 (;" * 700)[:10_240]
        self.assertEqual(len(garbage), 10_240)
        self.assertEqual(self.parser.parse(garbage).platform, Platform.UNKNOWN)

    def test_loneSurrogate(self) -> None:
        """
        A lone surrogate, which the native matcher cannot take, is replaced, not fatal.
        """
        agent = self.parser.parse("Mozilla/5.0 (Windows NT 10.0) \ud800 Firefox/133.0")
        self.assertEqual(agent.browser_family, "Firefox")

    def test_cutAtMaximum(self) -> None:
        """
        What follows L{MAX_PARSED_LENGTH} characters is not parsed.
        """
        agent = self.parser.parse(" " * MAX_PARSED_LENGTH + "Firefox/133.0")
        self.assertIsNone(agent.browser_family)

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=3000))
    def test_anyText(self, user_agent: str) -> None:
        """
        Any text parses to an agent, the same one every time.
        """
        self.assertEqual(self.parser.parse(user_agent), self.parser.parse(user_agent))
