"""
Tests for L{linkrouter.cli}: the C{linkrouter} command's subcommands, output and exit codes.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from urllib.parse import urlsplit

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.cli import EXIT_FAILURE, EXIT_USAGE, main
from linkrouter.keyfile import load_keyring, save_keyring
from linkrouter.keys import Key, Keyring, KeyState


class Run:
    """
    The result of one in-process run of the command.
    """

    def __init__(self, *argv: str) -> None:
        out, err = io.StringIO(), io.StringIO()
        self.status = main(list(argv), out, err)
        self.out = out.getvalue()
        self.err = err.getvalue()


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = FilePath(self.mktemp())
        directory.makedirs()
        self.keyring = directory.child("keyring.json")

    def assertOneLineError(self, run: Run, status: int, *words: str) -> None:
        self.assertEqual(run.status, status, run.err)
        self.assertEqual(run.out, "")
        self.assertEqual(run.err.count("\n"), 1, run.err)
        for word in words:
            self.assertIn(word, run.err)

    def sign(self, *argv: str) -> str:
        run = Run("sign", "--keyring", self.keyring.path, "--base", "https://c.example", *argv)
        self.assertEqual(run.status, 0, run.err)
        self.assertEqual(run.out.count("\n"), 1)
        return run.out.strip()

    def test_keygenCreatesThenRotates(self) -> None:
        """
        The first keygen creates a 0600 keyring with one active key; the next adds an active
        key and retires the previous one to verify-only.
        """
        first = Run("keygen", self.keyring.path)
        self.assertEqual(first.status, 0, first.err)
        self.assertIn("created keyring", first.out)
        self.assertEqual(stat.S_IMODE(os.stat(self.keyring.path).st_mode), 0o600)
        old = load_keyring(self.keyring).active
        second = Run("keygen", self.keyring.path)
        self.assertEqual(second.status, 0, second.err)
        ring = load_keyring(self.keyring)
        self.assertEqual(ring.by_id[old.key_id].state, KeyState.VERIFY)
        self.assertIn(f"key {old.key_id} verifies only", second.out)
        self.assertIn(ring.active.key_id, second.out)

    def test_linksSurviveRotation(self) -> None:
        """
        A link signed before a rotation still verifies after it, naming its retired key.
        """
        Run("keygen", self.keyring.path)
        link = self.sign("https://example.com/a")
        Run("keygen", self.keyring.path)
        run = Run("verify", "--keyring", self.keyring.path, link)
        self.assertEqual(run.status, 0, run.err)
        self.assertIn("(verify)", run.out)

    def test_keygenRefusesOpenKeyring(self) -> None:
        """
        keygen will not add a key to a keyring others can read: exit 1, one line, the fix.
        """
        Run("keygen", self.keyring.path)
        os.chmod(self.keyring.path, 0o644)
        self.assertOneLineError(Run("keygen", self.keyring.path), EXIT_FAILURE, "chmod 600")

    def test_keygenMissingDirectory(self) -> None:
        """
        keygen into a directory that does not exist fails with one clear line.
        """
        path = self.keyring.sibling("nope").child("k.json").path
        self.assertOneLineError(Run("keygen", path), EXIT_FAILURE, "does not exist")

    def test_signThenVerify(self) -> None:
        """
        sign prints one link; verify prints its target and every field.
        """
        Run("keygen", self.keyring.path)
        link = self.sign(
            "--link-id", "abc", "--issued-at", "1764780000", "https://bücher.example/ä"
        )
        self.assertTrue(link.startswith("https://c.example/1s/xn--bcher-kva.example%2F"))
        run = Run("verify", "--keyring", self.keyring.path, link)
        self.assertEqual(run.status, 0, run.err)
        key_id = load_keyring(self.keyring).active.key_id
        self.assertEqual(
            run.out.splitlines(),
            [
                "target:    https://xn--bcher-kva.example/%C3%A4",
                "kind:      click",
                "part:      html",
                f"key:       {key_id} (active)",
                "link id:   abc",
                "issued at: 2025-12-03T16:40:00Z (1764780000)",
            ],
        )

    def test_verifyAcceptsAPath(self) -> None:
        """
        verify takes a bare path as well as a whole link.
        """
        Run("keygen", self.keyring.path)
        path = urlsplit(self.sign("--text", "http://example.com/")).path
        run = Run("verify", "--keyring", self.keyring.path, path)
        self.assertIn("part:      text", run.out)

    def test_signOpenPixel(self) -> None:
        """
        --open signs an open pixel, which has no target.
        """
        Run("keygen", self.keyring.path)
        link = self.sign("--open")
        self.assertIn("/1o/", link)
        run = Run("verify", "--keyring", self.keyring.path, link)
        self.assertIn("kind:      open", run.out)

    def test_verifyRefusal(self) -> None:
        """
        A changed link fails verification: exit 1 and one line saying why.
        """
        Run("keygen", self.keyring.path)
        link = self.sign("https://example.com/a")
        tampered = link.replace("example.com", "exbmple.com")
        run = Run("verify", "--keyring", self.keyring.path, tampered)
        self.assertOneLineError(run, EXIT_FAILURE, "refused", "does not match")

    def test_verifyBlocked(self) -> None:
        """
        With --blocklist, verify prints the fields of a blocked link, then exits 1 with one
        line on standard error saying it is blocked and why; a link not listed exits 0.
        """
        Run("keygen", self.keyring.path)
        blocked = self.sign("--link-id", "abcdefghijkl7", "https://spam.example/a")
        other = self.sign("--link-id", "zyxwvutsrqpo1", "https://example.com/a")
        blocklist = self.keyring.sibling("blocklist.toml")
        blocklist.setContent(b'message_keys = ["abcdefghijkl"]\n')
        run = Run("verify", "--keyring", self.keyring.path, "--blocklist", blocklist.path, blocked)
        self.assertEqual(run.status, EXIT_FAILURE, run.err)
        self.assertIn("target:    https://spam.example/a", run.out)
        self.assertEqual(
            run.err,
            "linkrouter verify: blocked (message key abcdefghijkl is listed): "
            "the router answers 410 Gone\n",
        )
        run = Run("verify", "--keyring", self.keyring.path, "--blocklist", blocklist.path, other)
        self.assertEqual((run.status, run.err), (0, ""))

    def test_verifyBadBlocklist(self) -> None:
        """
        An invalid block list is one line naming the file and the problem, exit 1.
        """
        Run("keygen", self.keyring.path)
        link = self.sign("https://example.com/a")
        blocklist = self.keyring.sibling("blocklist.toml")
        blocklist.setContent(b'hosts = ["http://spam.example/"]\n')
        run = Run("verify", "--keyring", self.keyring.path, "--blocklist", blocklist.path, link)
        self.assertEqual(run.status, EXIT_FAILURE)
        self.assertEqual(run.err.count("\n"), 1, run.err)
        self.assertIn(blocklist.path, run.err)
        self.assertIn("hosts: 'http://spam.example/'", run.err)

    def test_verifyRevokedKey(self) -> None:
        """
        A link whose key was revoked is refused, saying so.
        """
        Run("keygen", self.keyring.path)
        link = self.sign("https://example.com/a")
        ring = load_keyring(self.keyring)
        old = ring.active
        ring = ring.rotated(Key("new", b"\x05" * 32, KeyState.ACTIVE))
        revoked = Keyring(
            tuple(
                Key(k.key_id, k.secret, KeyState.REVOKED) if k.key_id == old.key_id else k
                for k in ring
            )
        )
        save_keyring(revoked, self.keyring)
        run = Run("verify", "--keyring", self.keyring.path, link)
        self.assertOneLineError(run, EXIT_FAILURE, "revoked")

    def test_signRefusesUnsafeTarget(self) -> None:
        """
        A target that must not be signed fails with exit 1 and the reason.
        """
        Run("keygen", self.keyring.path)
        run = Run(
            "sign", "--keyring", self.keyring.path, "--base", "https://c.example", "javascript:x"
        )
        self.assertOneLineError(run, EXIT_FAILURE, "not signed", "http://")

    def test_signBadBase(self) -> None:
        """
        A base with a path, or plain http off loopback, fails with one line.
        """
        Run("keygen", self.keyring.path)
        for base in ["https://c.example/x", "http://c.example"]:
            run = Run("sign", "--keyring", self.keyring.path, "--base", base, "https://e.x/")
            self.assertOneLineError(run, EXIT_FAILURE, "base")

    def test_missingKeyring(self) -> None:
        """
        sign and verify with a missing keyring fail with one line naming the fix.
        """
        run = Run("verify", "--keyring", self.keyring.path, "/1s/x")
        self.assertOneLineError(run, EXIT_FAILURE, "does not exist", "linkrouter keygen")

    def test_usageErrors(self) -> None:
        """
        Usage errors exit 2 with one line on standard error.
        """
        cases = [
            (),
            ("frobnicate",),
            ("sign", "https://example.com"),
            ("sign", "--keyring", "k", "--base", "https://c.example", "--issued-at", "soon", "x"),
            ("verify", "--keyring", "k"),
        ]
        for argv in cases:
            run = Run(*argv)
            self.assertOneLineError(run, EXIT_USAGE, "error")

    def test_targetAndOpenAreExclusive(self) -> None:
        """
        sign needs exactly one of TARGET and --open.
        """
        Run("keygen", self.keyring.path)
        base = ("sign", "--keyring", self.keyring.path, "--base", "https://c.example")
        self.assertOneLineError(Run(*base), EXIT_FAILURE, "TARGET")
        self.assertOneLineError(Run(*base, "--open", "https://e.x/"), EXIT_FAILURE, "TARGET")

    def test_help(self) -> None:
        """
        --help describes every subcommand and exits 0.
        """
        run = Run("--help")
        self.assertEqual(run.status, 0)
        for command in ["keygen", "sign", "verify"]:
            self.assertIn(command, run.out)


class InstalledCommandTests(SynchronousTestCase):
    """
    The installed console script and twistd plugin, run as a user would run them.
    """

    def setUp(self) -> None:
        self.bin = os.path.dirname(sys.executable)
        self.cwd = FilePath(self.mktemp())
        self.cwd.makedirs()

    def run_installed(self, *argv: str) -> subprocess.CompletedProcess[str]:
        # From an empty directory, so only the installed project can be found.
        return subprocess.run(
            argv, cwd=self.cwd.path, capture_output=True, text=True, timeout=60, check=False
        )

    def test_consoleScript(self) -> None:
        """
        The installed C{linkrouter} script makes a keyring, signs and verifies, and exits 2
        with one line on a usage error.
        """
        script = os.path.join(self.bin, "linkrouter")
        self.assertEqual(self.run_installed(script, "keygen", "k.json").returncode, 0)
        signed = self.run_installed(
            script,
            "sign",
            "--keyring",
            "k.json",
            "--base",
            "https://c.example",
            "https://example.com/",
        )
        self.assertEqual(signed.returncode, 0, signed.stderr)
        checked = self.run_installed(
            script, "verify", "--keyring", "k.json", signed.stdout.strip()
        )
        self.assertEqual(checked.returncode, 0, checked.stderr)
        self.assertIn("target:    https://example.com/", checked.stdout)
        usage = self.run_installed(script, "sign")
        self.assertEqual(usage.returncode, 2)
        self.assertEqual(usage.stderr.count("\n"), 1, usage.stderr)

    def test_twistdListsPlugin(self) -> None:
        """
        twistd, run from the installed environment outside the checkout, lists linkrouter.
        """
        result = self.run_installed(os.path.join(self.bin, "twistd"), "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("linkrouter", result.stdout)
