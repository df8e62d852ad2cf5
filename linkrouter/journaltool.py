# -*- test-case-name: tests.test_journaltool -*-
"""
Operator tools over a journal directory: check every line, and follow new events.

They only read: safe to run beside a live router.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from attrs import frozen
from twisted.python.filepath import FilePath

from .event import decode_line
from .journal import read_lines, segments

__all__ = ["Report", "follow", "format_event", "verify_journal"]


@frozen
class Report:
    """
    What C{journal verify} found.
    """

    events: int
    problems: tuple[str, ...]
    torn_tail: str | None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_journal(directory: FilePath[str]) -> Report:
    """
    Check every line's checksum and that sequence numbers rise by one, across segments. An
    unterminated or corrupt last line of the newest segment is a torn tail (a crash or a
    write in progress), not a problem: the router cuts it at start.
    """
    problems: list[str] = []
    torn: str | None = None
    count = 0
    previous: int | None = None
    found = segments(directory)
    for index, (_, path) in enumerate(found):
        lines = list(read_lines(path))
        for position, (offset, line) in enumerate(lines):
            where = f"{path.basename()}:{offset}"
            event = decode_line(line) if line.endswith(b"\n") else None
            if event is None:
                last = index == len(found) - 1 and position == len(lines) - 1
                if last:
                    torn = f"{where}: torn tail of {len(line)} bytes"
                else:
                    problems.append(f"{where}: corrupt line")
                continue
            count += 1
            sequence = int(event["seq"])
            if previous is not None and sequence != previous + 1:
                problems.append(f"{where}: sequence {sequence} follows {previous}")
            previous = sequence
    return Report(count, tuple(problems), torn)


def format_event(event: dict[str, Any]) -> str:
    """
    One event as one human-readable line.
    """
    return (
        f"{event.get('ts')} #{event.get('seq')} {event.get('kind')} {event.get('part')} "
        f"link={event.get('link')} key={event.get('key')} {event.get('method')} "
        f"ip={event.get('ip') or '-'} ua={orjson.dumps(event.get('ua', '')).decode()}"
    )


def follow(
    directory: FilePath[str],
    last: int = 10,
    forever: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bytes]:
    """
    The last C{last} good lines of the journal, then (with C{forever}) every new line as it
    is written, across new segments: C{tail -F} that understands segments and checksums.
    """
    found = segments(directory)
    backlog: list[bytes] = []
    for _, segment in reversed(found):  # newest first, only as far back as needed
        if len(backlog) >= last:
            break
        good = [line for _, line in read_lines(segment) if decode_line(line) is not None]
        backlog[:0] = good
    yield from backlog[len(backlog) - last :] if last else []
    if not forever:
        return
    number: int = found[-1][0] if found else 0
    path: FilePath[str] | None = found[-1][1] if found else None
    offset = path.getsize() if path is not None else 0
    pending = b""
    while True:
        newer = [(n, segment) for n, segment in segments(directory) if n > number]
        if path is not None and path.exists():
            with open(path.path, "rb") as file:
                file.seek(offset)
                data = file.read()
            offset += len(data)
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if decode_line(line) is not None:
                    yield line + b"\n"
        if newer and not pending:
            number, path = newer[0]
            offset = 0
            continue
        sleep(0.25)
