# -*- test-case-name: tests.test_cli -*-
"""
The C{linkrouter} command: keys, signing and checking single links by hand, and rewriting the
links of whole emails.

Usage errors exit 2 and failures exit 1, each with one line on standard error, so scripts
and operators can tell a typo from a link that does not verify.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from twisted.python.filepath import FilePath

from . import __version__
from .blocklist import BlockListError, load_blocklist
from .codec import Kind, Part, Refusal, TargetRefused, sign, verify
from .config import ConfigError, load_config
from .cursor import load_cursor
from .devenv import DevPorts, make_devenv
from .event import decode_line
from .journaltool import follow, format_event, verify_journal
from .keyfile import load_keyring, save_keyring
from .keys import Keyring, KeyringInvalid, new_key
from .reader import backlog
from .rewrite import (
    Mode,
    Rewriter,
    Rewritten,
    Skipped,
    rewrite_html,
    rewrite_message,
    rewrite_text,
)
from .rewrite.mime import message_id_of
from .sync import STATUS_NAME

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Failure(Exception):
    """
    The command could not do what was asked; the message is the one line to print.
    """


class _Parser(argparse.ArgumentParser):
    """
    An argument parser whose usage errors are one line on standard error, exit status 2.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load(path: str) -> Keyring:
    try:
        return load_keyring(FilePath(path))
    except KeyringInvalid as error:
        raise _Failure(str(error)) from None


def _keygen(options: argparse.Namespace, out: TextIO) -> None:
    path = FilePath(options.keyring)
    created = _utc(int(time.time()))
    if path.exists() or path.islink():
        keyring = _load(options.keyring)
        previous = keyring.active
        key = new_key(keyring.by_id, created)
        keyring = keyring.rotated(key)
        message = (
            f"added key {key.key_id}, now active; key {previous.key_id} verifies only "
            f"(its links keep working)"
        )
    else:
        if not path.parent().isdir():
            raise _Failure(f"directory {path.parent().path} does not exist; create it first")
        key = new_key(None, created)
        keyring = Keyring((key,))
        message = f"created keyring {path.path} with active key {key.key_id}"
    try:
        save_keyring(keyring, path)
    except OSError as error:
        raise _Failure(f"cannot write keyring {path.path}: {error.strerror}") from None
    print(message, file=out)


def _sign(options: argparse.Namespace, out: TextIO) -> None:
    if options.open == (options.target is not None):
        raise _Failure("give a TARGET to sign, or --open for an open pixel (not both)")
    keyring = _load(options.keyring)
    issued_at = int(time.time()) if options.issued_at is None else options.issued_at
    link_id = options.link_id or secrets.token_urlsafe(12)
    try:
        link = sign(
            options.target,
            keyring.active,
            link_id,
            Part.TEXT if options.text else Part.HTML,
            issued_at,
            base=options.base,
            kind=Kind.OPEN if options.open else Kind.CLICK,
        )
    except TargetRefused as error:
        raise _Failure(f"not signed: {error}") from None
    except ValueError as error:
        raise _Failure(str(error)) from None
    print(link, file=out)


def _verify(options: argparse.Namespace, out: TextIO) -> None:
    keyring = _load(options.keyring)
    tracked: str = options.tracked
    path = tracked if tracked.startswith("/") else urlsplit(tracked).path
    result = verify(path, keyring.by_id)
    if isinstance(result, Refusal):
        raise _Failure(f"refused: {result.value}")
    key = keyring.by_id[result.key_id]
    fields = [
        ("target", result.target if result.target is not None else "(none: an open pixel)"),
        ("kind", result.kind.value),
        ("part", result.part.value),
        ("key", f"{key.key_id} ({key.state.value})"),
        ("link id", result.link_id),
        ("issued at", f"{_utc(result.issued_at)} ({result.issued_at})"),
    ]
    for name, value in fields:
        print(f"{name + ':':<11}{value}", file=out)
    if options.blocklist is not None:
        try:
            reason = load_blocklist(FilePath(options.blocklist)).reason(result)
        except BlockListError as error:
            raise _Failure(str(error)) from None
        if reason is not None:
            raise _Failure(f"blocked ({reason}): the router answers 410 Gone")


_TYPES = {".eml": "eml", ".html": "html", ".htm": "html", ".txt": "txt"}


def _redacted(url: str) -> str:
    """
    Enough of a skipped link to find it, without its query or fragment (tokens live there).
    """
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
    shown = url[:cut] if cut > url.find(":") else url[: url.find(":") + 1]
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return shown + ("..." if len(shown) < len(url) else "")


def _describe(skipped: Skipped) -> str:
    detail = f" ({skipped.detail})" if skipped.detail else ""
    return (
        f"skipped {skipped.part.value} link {_redacted(skipped.url)!r}: "
        f"{skipped.reason.value}{detail}"
    )


def _read_input(options: argparse.Namespace) -> tuple[bytes, str]:
    kind: str | None = options.type
    if options.input == "-":
        if kind is None:
            raise _Failure("reading standard input needs --type eml, html or txt")
        return sys.stdin.buffer.read(), kind
    path = FilePath(options.input)
    if kind is None:
        kind = _TYPES.get(path.splitext()[1].lower())
        if kind is None:
            raise _Failure(
                f"cannot tell the type of {path.path} from its name; give --type eml, html or txt"
            )
    try:
        return path.getContent(), kind
    except OSError as error:
        raise _Failure(f"cannot read {path.path}: {error.strerror}") from None


def _rewrite(options: argparse.Namespace, out: TextIO) -> None:
    keyring = _load(options.keyring)
    data, kind = _read_input(options)
    try:
        rewriter = Rewriter(
            keyring.active,
            options.base,
            Mode(options.mode),
            options.issued_at,
            options.message_id,
        )
    except ValueError as error:
        raise _Failure(str(error)) from None
    result: Rewritten[bytes] | Rewritten[str]
    if kind == "eml":
        result = rewrite_message(rewriter, data)
        content = result.content
        source = (
            "--message-id"
            if options.message_id
            else "the Message-ID header"
            if message_id_of(data)
            else "random"
        )
    else:
        rewrite = rewrite_html if kind == "html" else rewrite_text
        result = rewrite(rewriter, data.decode("utf-8", "surrogateescape"))
        content = result.content.encode("utf-8", "surrogateescape")
        source = "--message-id" if options.message_id else "random"
    if options.output in (None, "-"):
        buffer = getattr(out, "buffer", None)
        if buffer is not None:
            out.flush()
            buffer.write(content)
            buffer.flush()
        else:
            out.write(content.decode("utf-8", "surrogateescape"))
    else:
        try:
            FilePath(options.output).setContent(content)
        except OSError as error:
            raise _Failure(f"cannot write {options.output}: {error.strerror}") from None
    if options.links_out:
        lines = "".join(
            json.dumps(record.as_json(options.tag, options.recipient_hash)) + "\n"
            for record in result.links
        )
        try:
            FilePath(options.links_out).setContent(lines.encode("utf-8"))
        except OSError as error:
            raise _Failure(f"cannot write {options.links_out}: {error.strerror}") from None
    for skipped in result.skipped:
        print(_describe(skipped), file=sys.stderr)
    distinct = len({record.link_id for record in result.links})
    print(
        f"message id {result.message_id} ({source}): {distinct} destinations tracked, "
        f"{len(result.skipped)} links left as written",
        file=sys.stderr,
    )


def _journal_directory(options: argparse.Namespace) -> FilePath[str]:
    directory = FilePath(options.directory)
    if not directory.isdir():
        raise _Failure(f"{directory.path} is not a journal directory")
    return directory


def _journal_verify(options: argparse.Namespace, out: TextIO) -> None:
    report = verify_journal(_journal_directory(options))
    for problem in report.problems:
        print(problem, file=out)
    if report.torn_tail:
        print(f"{report.torn_tail} (cut by the router at start)", file=out)
    if not report.ok:
        raise _Failure(f"{len(report.problems)} problem(s) in {report.events} good events")
    print(f"ok: {report.events} events, checksums and sequence numbers intact", file=out)


def _journal_tail(options: argparse.Namespace, out: TextIO) -> None:
    directory = _journal_directory(options)
    try:
        for line in follow(directory, options.lines, options.follow):
            if options.json:
                out.write(line.decode("utf-8"))
            else:
                event = decode_line(line)
                assert event is not None
                print(format_event(event), file=out)
            out.flush()
    except KeyboardInterrupt:
        pass


def _journal_status(options: argparse.Namespace, out: TextIO) -> None:
    try:
        config = load_config(FilePath(options.config))
    except ConfigError as error:
        raise _Failure(str(error)) from None
    directory = config.journal_directory
    if not directory.isdir():
        raise _Failure(f"{directory.path} is not a journal directory")
    cursor, problem = load_cursor(directory, directory)
    events, size, oldest = backlog(directory, cursor)
    status_file = directory.child(STATUS_NAME)
    status: dict[str, Any] = {}
    if status_file.exists():
        try:
            status = json.loads(status_file.getContent())
        except ValueError:
            status = {}
    now = time.time()
    last = status.get("last_success")
    next_attempt = float(status.get("next_attempt") or 0.0)
    lines = [
        ("journal", directory.path),
        (
            "cursor",
            f"segment {cursor.segment}, offset {cursor.offset}, "
            f"next sequence {cursor.sequence}" + (f" ({problem})" if problem else ""),
        ),
        ("unsynced", f"{events} events, {size} bytes"),
        ("oldest", "-" if oldest is None else f"{_utc(int(oldest))} ({now - oldest:.0f} s ago)"),
        ("last sync", "never" if not last else f"{_utc(int(last))} ({now - last:.0f} s ago)"),
        (
            "failures",
            str(status.get("failures", 0))
            + (f", last: {status['last_error']}" if status.get("last_error") else ""),
        ),
        (
            "backoff",
            f"next attempt in {next_attempt - now:.1f} s" if next_attempt > now else "none",
        ),
        ("sync", config.sync_url or "off (no [sync] url in the config)"),
    ]
    for name, value in lines:
        print(f"{name + ':':<11}{value}", file=out)


def _devenv(options: argparse.Namespace, out: TextIO) -> None:
    directory = FilePath(options.directory)
    ports = DevPorts(options.port, options.admin_port, options.collector_port)
    made = make_devenv(directory, ports)
    print(f"{'made' if made else 'kept'} development material in {directory.path}", file=out)
    for plugin in ("linkcollector", "linkrouter"):
        config = directory.child(f"{plugin}.toml").path
        print(f"run: twistd -n {plugin} --config {config}", file=out)


def _seconds(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None


def _parser() -> _Parser:
    parser = _Parser(
        prog="linkrouter",
        description="Sign and check tracked links, and manage their keys.",
    )
    parser.add_argument("--version", action="version", version=f"linkrouter {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keygen = commands.add_parser(
        "keygen",
        help="create a keyring, or add a new active key to it",
        description=(
            "Create KEYRING (mode 0600) with one active key, or add a new active key to it; "
            "the previous active key becomes verify-only, so its links keep working."
        ),
    )
    keygen.add_argument("keyring", metavar="KEYRING", help="the keyring file")
    keygen.set_defaults(run=_keygen)

    signing = commands.add_parser(
        "sign",
        help="print the tracked link for a URL",
        description="Print the tracked link for TARGET, signed with the keyring's active key.",
    )
    signing.add_argument("--keyring", required=True, help="the keyring file")
    signing.add_argument("--base", required=True, help="the router's origin, https://HOST[:PORT]")
    signing.add_argument("--link-id", help="the LinkID (default: 16 random characters)")
    signing.add_argument("--text", action="store_true", help="the link is in the Text part")
    signing.add_argument("--open", action="store_true", help="an open pixel, not a click link")
    signing.add_argument(
        "--issued-at", type=_seconds, metavar="SECONDS", help="issue time (default: now)"
    )
    signing.add_argument("target", metavar="TARGET", nargs="?", help="the http(s) URL")
    signing.set_defaults(run=_sign)

    verifying = commands.add_parser(
        "verify",
        help="check a tracked link and print what it says",
        description="Check TRACKED (a link or its path) and print its target and fields; "
        "with --blocklist, exit 1 if the block list disables it.",
    )
    verifying.add_argument("--keyring", required=True, help="the keyring file")
    verifying.add_argument(
        "--blocklist", metavar="FILE", help="the router's block list: say if the link is blocked"
    )
    verifying.add_argument("tracked", metavar="TRACKED", help="the tracked link")
    verifying.set_defaults(run=_verify)

    rewriting = commands.add_parser(
        "rewrite",
        help="rewrite every link of an email into a tracked link",
        description=(
            "Rewrite every trackable link of IN (an .eml MIME message, an .html or a .txt "
            "part) into a tracked link signed with the keyring's active key; write the "
            "result to OUT (default: standard output) and the LinkID -> URL mapping as JSON "
            "lines to --links-out. Links left as written are reported on standard error."
        ),
    )
    rewriting.add_argument("--keyring", required=True, help="the keyring file")
    rewriting.add_argument(
        "--base", required=True, help="the router's origin, https://HOST[:PORT]"
    )
    rewriting.add_argument(
        "--mode",
        choices=[mode.value for mode in Mode],
        default=Mode.HTML_AND_TEXT.value,
        help="which parts get tracked links (default: html-and-text)",
    )
    rewriting.add_argument(
        "--message-id",
        metavar="ID",
        help="the message id LinkIDs derive from (default: the Message-ID header, else random)",
    )
    rewriting.add_argument(
        "--type", choices=["eml", "html", "txt"], help="the input's type (default: by extension)"
    )
    rewriting.add_argument(
        "--issued-at", type=_seconds, metavar="SECONDS", help="issue time (default: now)"
    )
    rewriting.add_argument("-o", "--output", metavar="OUT", help="where to write the result")
    rewriting.add_argument(
        "--links-out", metavar="FILE", help="write the mapping as JSON lines (POST /v1/links)"
    )
    rewriting.add_argument("--tag", help="a tag to put in every mapping line")
    rewriting.add_argument(
        "--recipient-hash", metavar="HASH", help="a recipient hash to put in every mapping line"
    )
    rewriting.add_argument("input", metavar="IN", help="the email file, or - for standard input")
    rewriting.set_defaults(run=_rewrite)

    journal = commands.add_parser(
        "journal",
        help="read a router's click journal",
        description="Read a router's click journal (safe beside a running router).",
    )
    journal_commands = journal.add_subparsers(dest="journal_command", required=True)
    tail = journal_commands.add_parser(
        "tail",
        help="print the newest events, and follow new ones with -f",
        description="Print the newest events of JOURNAL_DIR; with -f, follow new ones.",
    )
    tail.add_argument("directory", metavar="JOURNAL_DIR")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument("-n", "--lines", type=int, default=10, help="events to print first")
    tail.add_argument("--json", action="store_true", help="print the raw JSON lines")
    tail.set_defaults(run=_journal_tail)
    check = journal_commands.add_parser(
        "verify",
        help="check every line's checksum and sequence",
        description="Check every line's checksum and sequence number in JOURNAL_DIR; exit 1 "
        "if a line is corrupt or a sequence number is out of order.",
    )
    check.add_argument("directory", metavar="JOURNAL_DIR")
    check.set_defaults(run=_journal_verify)
    status = journal_commands.add_parser(
        "status",
        help="cursor, unsynced backlog, last sync and backoff",
        description="Show where sync stands for the router configured in PATH: the cursor, "
        "events and bytes not yet synced, the oldest unsynced event's age, the last sync "
        "and the current backoff.",
    )
    status.add_argument("--config", required=True, metavar="PATH")
    status.set_defaults(run=_journal_status)

    devenv = commands.add_parser(
        "devenv",
        help="make development material: a local CA, certificate, keyring and config",
        description="Make, once, what a router and a collector on loopback need in "
        "DIRECTORY: a local CA (ca.pem), a certificate for localhost, a keyring, the "
        "collector's tokens, linkrouter.toml and linkcollector.toml. Not for production.",
    )
    devenv.add_argument("directory", metavar="DIRECTORY")
    devenv.add_argument("--port", type=int, default=8443, help="HTTPS port (default 8443)")
    devenv.add_argument("--admin-port", type=int, default=9110, help="metrics port (default 9110)")
    devenv.add_argument(
        "--collector-port", type=int, default=8444, help="collector's HTTPS port (default 8444)"
    )
    devenv.set_defaults(run=_devenv)
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """
    Run the command in C{argv} (default: the process's arguments); return its exit status.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            options = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error already printed
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    run: Callable[[argparse.Namespace, TextIO], None] = options.run
    try:
        with redirect_stderr(err):
            run(options, out)
    except _Failure as failure:
        command = " ".join(
            filter(None, [options.command, getattr(options, "journal_command", "")])
        )
        print(f"linkrouter {command}: {failure}", file=err)
        return EXIT_FAILURE
    return 0


def _console() -> NoReturn:
    sys.exit(main())
