"""
Tests for L{linkrouter.privatefile}: a secret file is read only if its owner alone may read it.
"""

from __future__ import annotations

import os
import threading

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.privatefile import PrivateFileError, read_private_file

SECRET = b"the secret\n"


class ReadPrivateFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = FilePath(self.mktemp())
        directory.makedirs()
        self.path = directory.child("token")

    def write(self, content: bytes, mode: int) -> None:
        self.path.setContent(content)
        os.chmod(self.path.path, mode)

    def refused(self, max_size: int = 1024) -> str:
        """
        Reading the file is refused; the one-line message, which names the file and its role.
        """
        error = self.assertRaises(
            PrivateFileError, read_private_file, self.path, "token file", max_size
        )
        message = str(error)
        self.assertIn(f"token file {self.path.path}", message)
        self.assertNotIn("\n", message)
        return message

    def test_ownerOnlyModesAccepted(self) -> None:
        """
        0600 and 0400 are read; so is a file with the owner's execute bit, which exposes
        nothing to anyone else.
        """
        for mode in [0o600, 0o400, 0o700]:
            self.write(SECRET, mode)
            self.assertEqual(read_private_file(self.path, "token file", 1024), SECRET)

    def test_groupOrOthersRefused(self) -> None:
        """
        Any permission bit for group or others is refused, naming the mode and the fix.
        """
        for mode in [0o640, 0o604, 0o644, 0o660, 0o606, 0o620, 0o602, 0o610, 0o601, 0o666]:
            self.write(SECRET, mode)
            message = self.refused()
            self.assertIn(f"{mode:04o}", message)
            self.assertIn(f"chmod 600 {self.path.path}", message)

    def test_symlinkRefused(self) -> None:
        """
        A symbolic link is refused even to a 0600 file: its target's permissions are not
        the ones an operator sees on the link.
        """
        target = self.path.sibling("real")
        target.setContent(SECRET)
        os.chmod(target.path, 0o600)
        os.symlink(target.path, self.path.path)
        self.assertIn("cannot be opened", self.refused())

    def test_danglingSymlinkRefused(self) -> None:
        """
        A symbolic link to nothing is refused like a missing file.
        """
        os.symlink(self.path.sibling("nothing").path, self.path.path)
        self.assertIn("cannot be opened", self.refused())

    def test_directoryRefused(self) -> None:
        """
        A directory is not a regular file.
        """
        self.path.makedirs()
        os.chmod(self.path.path, 0o700)
        self.assertIn("not a regular file", self.refused())

    def test_fifoRefused(self) -> None:
        """
        A named pipe is not a regular file; when a writer holds it open, it is refused.
        """
        os.mkfifo(self.path.path, 0o600)
        writer = os.open(self.path.path, os.O_RDWR | os.O_NONBLOCK)
        self.addCleanup(os.close, writer)
        self.assertIn("not a regular file", self.refused())

    def test_fifoWithoutWriterDoesNotHang(self) -> None:
        """
        A named pipe that nobody writes is refused at once rather than blocking start-up
        forever in C{open}. (The 5-second bound only stops a broken implementation from
        hanging the test run; a correct one answers immediately.)
        """
        os.mkfifo(self.path.path, 0o600)
        outcome: list[BaseException | bytes] = []

        def read() -> None:
            try:
                outcome.append(read_private_file(self.path, "token file", 1024))
            except BaseException as error:
                outcome.append(error)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(5)
        hung = reader.is_alive()
        if hung:  # release the blocked open so the thread ends
            os.close(os.open(self.path.path, os.O_WRONLY | os.O_NONBLOCK))
            reader.join()
        self.assertFalse(hung, "read_private_file blocked opening a FIFO")
        self.assertIsInstance(outcome[0], PrivateFileError)

    def test_missing(self) -> None:
        """
        A missing file is named with the system's reason.
        """
        message = self.refused()
        self.assertIn("cannot be opened", message)
        self.assertIn("No such file", message)

    def test_missingDirectory(self) -> None:
        """
        A path through a missing directory is refused the same way.
        """
        self.path = self.path.child("below")
        self.assertIn("cannot be opened", self.refused())

    def test_sizeLimit(self) -> None:
        """
        A file of exactly C{max_size} bytes is read whole; one byte more is refused.
        """
        self.write(b"x" * 100, 0o600)
        self.assertEqual(read_private_file(self.path, "token file", 100), b"x" * 100)
        self.write(b"x" * 101, 0o600)
        self.assertIn("over 100 bytes", self.refused(100))

    def test_emptyFileRead(self) -> None:
        """
        An empty file is read as empty: what it must hold is its reader's business.
        """
        self.write(b"", 0o600)
        self.assertEqual(read_private_file(self.path, "token file", 1024), b"")

    def test_nulInPathRefused(self) -> None:
        """
        A path with a NUL byte (possible through a TOML C{\\u0000} escape) is refused with
        L{PrivateFileError}, not a bare C{ValueError} from C{os.open}.
        """
        path = FilePath(self.path.path + "\x00x")
        message = str(self.assertRaises(PrivateFileError, read_private_file, path, "key", 9))
        self.assertNotIn("\n", message)
