"""
How fast links are signed and verified, against a bare HMAC-SHA256 measured in the same run.

The figure that matters is the ratio: this machine's speed varies, but the codec's cost
relative to the one HMAC it must compute does not. Rounds of the codec and of the baseline
are interleaved and the best round of each is kept, so a noisy neighbour slows both alike.

The block list's check on the redirect path is measured against verify alone: a click pays
for a few set lookups on top of its HMAC.

Run with C{make bench}, or C{python benchmarks/bench_codec.py [--quick]}.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from ada_url import normalize_url

from linkrouter.blocklist import BlockList
from linkrouter.codec import (
    Kind,
    Part,
    TrackedLink,
    _unescaped_cached,
    canonical_message,
    sign,
    verify,
)
from linkrouter.keys import Key, KeyState
from linkrouter.target import normalize_target

BASE = "https://click.example"
ISSUED_AT = 1_764_780_000
LINK_ID = "Qm9vS2l0ZW1fMDAx"

# A realistic mix: a short landing page, tracking parameters, a long reset token, an IDN.
TARGETS = [
    "https://www.example.com/pricing",
    "https://shop.example.com/products/42?utm_source=email&utm_medium=newsletter&utm_campaign=nov",
    "https://app.example.com/reset-password?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkw"
    "IiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQ",
    "https://bücher.example/straße?q=grüße#oben",
]


def variant(target: str, number: int) -> str:
    """
    C{target} with one more path segment, so no two variants share a parse.
    """
    scheme, _, rest = target.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}/v{number}/{path}"


def best_pair(
    subject: Callable[[], object],
    baseline: Callable[[], object],
    rounds: int,
    *,
    cold: bool = False,
) -> tuple[float, float]:
    """
    The shortest time of one call of C{subject} and of C{baseline}, in alternating rounds.
    With C{cold}, the issuer's target cache and the verifier's unescaping cache are emptied
    before each round.
    """
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for slot, function in enumerate((subject, baseline)):
            if cold:
                normalize_target.cache_clear()
                _unescaped_cached.cache_clear()
            start = time.perf_counter()
            function()
            best[slot] = min(best[slot], time.perf_counter() - start)
    return best[0], best[1]


def messages_for(paths: list[str], keys: dict[str, Key]) -> list[bytes]:
    """
    The messages the codec MACs for C{paths}: the baseline MACs messages of the same length.
    """
    links = [verify(path, keys) for path in paths]
    assert all(isinstance(link, TrackedLink) for link in links)
    return [
        canonical_message(Kind.CLICK, Part.HTML, link.key_id, LINK_ID, ISSUED_AT, link.target)
        for link in links
        if isinstance(link, TrackedLink) and link.target is not None
    ]


def report(label: str, count: int, seconds: float, baseline: float) -> None:
    print(
        f"{label:<44} {count / seconds:>10,.0f} /s   "
        f"ratio {baseline / seconds:.2f} of bare HMAC (aim >= 0.25)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds only (smoke test)")
    options = parser.parse_args(argv)
    repeats, rounds = (25, 2) if options.quick else (5_000, 7)

    key = Key("bench", b"\x42" * 32, KeyState.ACTIVE)
    keys = {key.key_id: key}
    secret = key.secret
    seen = TARGETS * repeats
    new = [variant(t, n) for n in range(repeats) for t in TARGETS]
    seen_paths = [
        urlsplit(sign(t, key, LINK_ID, Part.HTML, ISSUED_AT, base=BASE)).path for t in seen
    ]
    new_paths = [
        urlsplit(sign(t, key, LINK_ID, Part.HTML, ISSUED_AT, base=BASE)).path for t in new
    ]
    seen_messages = messages_for(seen_paths, keys)
    new_messages = messages_for(new_paths, keys)

    def bare(messages: list[bytes]) -> Callable[[], object]:
        return lambda: [hmac.new(secret, m, hashlib.sha256).digest() for m in messages]

    def signing(targets: list[str]) -> Callable[[], object]:
        return lambda: [sign(t, key, LINK_ID, Part.HTML, ISSUED_AT, base=BASE) for t in targets]

    count = len(seen)
    # A large list of each kind, none matching: every check walks the whole host suffix.
    blocklist = BlockList(
        link_ids=frozenset(f"L{n}" for n in range(10_000)),
        message_keys=frozenset(f"{n:012d}" for n in range(10_000)),
        key_ids=frozenset(f"k{n}" for n in range(10_000)),
        hosts=frozenset(f"spam{n}.example" for n in range(10_000)),
    )
    verify_time, verify_base = best_pair(
        lambda: [verify(p, keys) for p in seen_paths], bare(seen_messages), rounds
    )
    verify_new_time, verify_new_base = best_pair(
        lambda: [verify(p, keys) for p in new_paths], bare(new_messages), rounds, cold=True
    )
    seen_time, seen_base = best_pair(signing(seen), bare(seen_messages), rounds)
    new_time, new_base = best_pair(signing(new), bare(new_messages), rounds, cold=True)
    parse_time, parse_base = best_pair(
        lambda: [normalize_url(t) for t in new], bare(new_messages), rounds
    )

    print(
        f"python {sys.version.split()[0]}; {count:,} links a round over {len(TARGETS)} "
        f"targets of {[len(t) for t in TARGETS]} characters; best of {rounds} rounds"
    )
    print(f"{'bare hmac.new(key, msg, sha256).digest()':<44} {count / verify_base:>10,.0f} /s")
    report("verify, targets seen before (a campaign)", count, verify_time, verify_base)
    report("verify, every target new", count, verify_new_time, verify_new_base)
    # Many short rounds: the difference is small, so it must outlast a noisy neighbour.
    few = seen_paths[: max(len(TARGETS), count // 10)]
    keys_each = [keys] * len(few)
    blocked_time, verify_alone = best_pair(
        lambda: [blocklist.reason(link) for link in map(verify, few, keys_each)],
        lambda: [link for link in map(verify, few, keys_each)],
        rounds * 10,
    )
    print(
        f"{'verify + block list check (40,000 entries)':<44} {len(few) / blocked_time:>10,.0f} /s"
        f"   ratio {verify_alone / blocked_time:.2f} of verify alone (aim >= 0.85)"
    )
    report("sign, targets seen before (a bulk send)", count, seen_time, seen_base)
    report("sign, every target new (nothing cached)", count, new_time, new_base)
    report("  of which the WHATWG parse (ada-url) alone", count, parse_time, parse_base)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
