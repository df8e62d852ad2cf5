# -*- test-case-name: tests.test_journal -*-
"""
The one step every durable file change here ends with.
"""

from __future__ import annotations

import os

from twisted.python.filepath import FilePath

__all__ = ["fsync_directory"]


def fsync_directory(directory: FilePath[str]) -> None:
    """
    Flush C{directory} itself, so that a file created, renamed or removed in it stays so
    after a crash (fsync of the file alone does not make its name durable).
    """
    fd = os.open(directory.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
