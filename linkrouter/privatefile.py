# -*- test-case-name: tests.test_privatefile -*-
"""
Reading a secret file (keyring, token, tokens): only its owner may read it.

A secret that group or others can read is refused at start-up with the fix in the message,
rather than used: the operator learns about it once, before it leaks.
"""

from __future__ import annotations

import os
import stat

from twisted.python.filepath import FilePath

__all__ = ["PrivateFileError", "read_private_file"]


class PrivateFileError(ValueError):
    """
    The secret file cannot be used; the message names it and the fix.
    """


def read_private_file(path: FilePath[str], what: str, max_size: int) -> bytes:
    """
    The content of the regular file at C{path}, which must be mode 0600 or stricter, not a
    symbolic link, and at most C{max_size} bytes.

    @param what: the file's role in messages, such as C{"token file"}.
    @raise PrivateFileError: with one line naming the file, the problem and the fix.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; reads of files ignore it
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(path.path, flags)
    except OSError as error:
        raise PrivateFileError(f"{what} {path.path} cannot be opened: {error.strerror}") from None
    except ValueError:  # a NUL byte in the path
        raise PrivateFileError(f"{what} {path.path!r} cannot be opened: not a path") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise PrivateFileError(f"{what} {path.path} is not a regular file")
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            raise PrivateFileError(
                f"{what} {path.path} has mode {mode:04o}: group or others may read it; "
                f"run 'chmod 600 {path.path}'"
            )
        if status.st_size > max_size:
            raise PrivateFileError(f"{what} {path.path} is over {max_size} bytes")
        content = os.read(fd, max_size + 1)
        if len(content) > max_size:  # it grew since fstat
            raise PrivateFileError(f"{what} {path.path} is over {max_size} bytes")
        return content
    finally:
        os.close(fd)
