"""
The email corpus (C{tests/emails/}): every message rewritten exactly as its golden output,
and the rewriter's promises checked on each.

Regenerate the goldens after an intended change with
C{python -m tests.test_emails --regenerate} (see C{tests/emails/README.rst}).
"""

from __future__ import annotations

import email
import json
import sys
from email.message import EmailMessage
from email.policy import default

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Part
from linkrouter.keys import Key, KeyState
from linkrouter.rewrite import (
    Rewriter,
    Rewritten,
    rewrite_html,
    rewrite_message,
    rewrite_text,
)

from .rewriting import TRACKED

CORPUS = FilePath(__file__).sibling("emails")
GOLDEN = CORPUS.child("golden")
KEY = Key("golden", bytes(range(32)), KeyState.ACTIVE)
KEYS = {KEY.key_id: KEY}
ISSUED_AT = 1_764_780_000


def corpus() -> list[FilePath[str]]:
    return sorted(
        (f for f in CORPUS.children() if f.splitext()[1] in {".eml", ".html", ".txt"}),
        key=lambda f: f.basename(),
    )


def rewrite(source: FilePath[str]) -> Rewritten[bytes]:
    """
    C{source} rewritten with the corpus's fixed key, time and message id.
    """
    name, extension = source.splitext()
    message_id = f"<{FilePath(name).basename()}@corpus.linkrouter.test>"
    rewriter = Rewriter(KEY, "https://click.example", issued_at=ISSUED_AT, message_id=message_id)
    data = source.getContent()
    if extension == ".eml":
        return rewrite_message(rewriter, data)
    rewrite_part = rewrite_html if extension == ".html" else rewrite_text
    result = rewrite_part(rewriter, data.decode("utf-8", "surrogateescape"))
    content = result.content.encode("utf-8", "surrogateescape")
    return Rewritten(content, result.message_id, result.links, result.skipped)


def goldens(source: FilePath[str], result: Rewritten[bytes]) -> dict[str, bytes]:
    """
    The golden files of C{source} and what they must hold.
    """
    name, extension = source.splitext()
    stem = FilePath(name).basename()
    kind = extension.lstrip(".")
    links = "".join(json.dumps(r.as_json(), ensure_ascii=False) + "\n" for r in result.links)
    skipped = "".join(
        f"{s.part.value}\t{s.reason.name}\t{s.detail}\t{json.dumps(s.url)}\n"
        for s in result.skipped
    )
    return {
        f"{stem}.out{extension}": result.content,
        f"{stem}.{kind}.links.jsonl": links.encode("utf-8"),
        f"{stem}.{kind}.skipped.txt": skipped.encode("utf-8", "surrogateescape"),
    }


def _text_parts(data: bytes) -> list[EmailMessage]:
    message = email.message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    return list(message.walk())  # type: ignore[arg-type]


class CorpusTests(SynchronousTestCase):
    def test_corpusSize(self) -> None:
        """
        The corpus holds at least 25 messages.
        """
        self.assertGreaterEqual(len(corpus()), 25)

    def test_goldens(self) -> None:
        """
        Every message is rewritten exactly as its golden files say.
        """
        for source in corpus():
            for name, expected in goldens(source, rewrite(source)).items():
                golden = GOLDEN.child(name)
                self.assertTrue(golden.exists(), f"{name} missing: regenerate the goldens")
                self.assertEqual(golden.getContent(), expected, f"{name} differs")

    def test_linksVerify(self) -> None:
        """
        Every tracked link in every output verifies under the key, belongs to its message
        and leads to a URL of the mapping with the same LinkID.
        """
        from urllib.parse import urlsplit

        from linkrouter.codec import TrackedLink, verify

        for source in corpus():
            result = rewrite(source)
            by_id = {(r.link_id, r.part): r.url for r in result.links}
            found = TRACKED.findall(result.content.decode("utf-8", "replace"))
            if source.splitext()[1] == ".eml":
                found = [
                    link
                    for part in _text_parts(result.content)
                    if part.get_content_type() in {"text/html", "text/plain"}
                    and part.get_content_disposition() != "attachment"
                    and part.get_content_charset() != "x-user-defined-unknown"
                    for link in TRACKED.findall(part.get_content())
                ]
            for link in found:
                tracked = verify(urlsplit(link).path, KEYS)
                if not isinstance(tracked, TrackedLink):
                    continue  # a tracked link that came in the source (already tracked)
                self.assertEqual(by_id[(tracked.link_id, tracked.part)], tracked.target)

    def test_idempotent(self) -> None:
        """
        Rewriting an output again changes nothing (outputs carry no opt-out markers).
        """
        for source in corpus():
            once = rewrite(source)
            again = FilePath(self.mktemp() + source.splitext()[1])
            again.setContent(once.content)
            twice = rewrite(again)
            if b"linkrouter-no-track" in source.getContent().lower():
                continue  # the marker is consumed: its link is tracked on a second pass
            self.assertEqual(twice.content, once.content, source.basename())
            self.assertEqual(twice.links, (), source.basename())

    def test_nonTextPartsUntouched(self) -> None:
        """
        In every .eml, headers and every part that is not an inline text part decode to
        exactly what they were.
        """
        for source in corpus():
            if source.splitext()[1] != ".eml":
                continue
            before = _text_parts(source.getContent())
            after = _text_parts(rewrite(source).content)
            self.assertEqual(len(before), len(after))
            for old, new in zip(before, after, strict=True):
                inline_text = old.get_content_type() in {"text/html", "text/plain"} and (
                    old.get_content_disposition() != "attachment"
                )
                if inline_text:  # a 7bit part with a line made too long becomes QP
                    del old["content-transfer-encoding"], new["content-transfer-encoding"]
                self.assertEqual(old.items(), new.items())
                if not old.is_multipart() and not inline_text:
                    self.assertEqual(old.as_bytes(), new.as_bytes(), source.basename())

    def test_bothParts(self) -> None:
        """
        In the receipt, the URL in both parts has one LinkID and one record each part.
        """
        result = rewrite(CORPUS.child("transactional-receipt.eml"))
        html = {r.url: r.link_id for r in result.links if r.part is Part.HTML}
        text = {r.url: r.link_id for r in result.links if r.part is Part.TEXT}
        shared = set(html) & set(text)
        self.assertEqual(len(shared), 3)
        for url in shared:
            self.assertEqual(html[url], text[url])


def regenerate() -> None:
    """
    Write the golden files of every corpus message.
    """
    GOLDEN.makedirs(ignoreExistingDirectory=True)
    for source in corpus():
        for name, content in goldens(source, rewrite(source)).items():
            GOLDEN.child(name).setContent(content)
    print(f"wrote goldens for {len(corpus())} messages in {GOLDEN.path}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python -m tests.test_emails --regenerate")
    regenerate()
