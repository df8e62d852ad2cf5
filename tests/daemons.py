"""
Running the real daemons (C{twistd linkrouter}, C{twistd linkcollector}) as child processes
on loopback, for the integration tests: start, wait until they answer, stop or kill.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.devenv import make_certificate
from linkrouter.event import decode_line
from linkrouter.journal import segments
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring, new_key

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def daemon_material(case: SynchronousTestCase) -> tuple[FilePath[str], FilePath[str], Keyring]:
    """
    A private (0700) directory for a test's daemons holding a dev CA with a C{localhost}
    certificate and a new keyring in C{keyring.json}: the directory, the CA, the keyring.
    """
    directory = FilePath(case.mktemp())
    directory.makedirs()
    os.chmod(directory.path, 0o700)
    ca, _, _ = make_certificate(directory)
    keyring = Keyring((new_key(),))
    save_keyring(keyring, directory.child("keyring.json"))
    return directory, ca, keyring


class Daemon:
    """
    One C{twistd -n PLUGIN --config CONFIG} child; its output goes to C{output.log} beside
    the config, and is shown when a test fails.
    """

    def __init__(
        self, test: SynchronousTestCase, plugin: str, config: FilePath[str], port: int
    ) -> None:
        self.test = test
        self.plugin = plugin
        self.config = config
        self.port = port
        self.log = config.sibling(f"{plugin}-output.log")
        self.process: subprocess.Popen[bytes] | None = None
        test.addCleanup(self.kill)

    def start(self) -> Daemon:
        with open(self.log.path, "ab") as log:
            self.process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", self.plugin, "--config", self.config.path],
                cwd=self.config.parent().path,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return self.log.getContent().decode("utf-8", "replace") if self.log.exists() else ""

    def wait_listening(self, timeout: float = 60) -> None:
        """
        Wait until the port accepts connections; fail with the output if the process dies.
        """
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                self.test.fail(f"{self.plugin} exited {self.process.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.test.fail(f"{self.plugin} is not listening:\n{self.output()}")
                time.sleep(0.05)

    def stop(self, timeout: float = 60) -> int:
        """
        SIGTERM, and wait for the exit status.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.test.fail(f"{self.plugin} did not stop on SIGTERM:\n{self.output()}")
            raise

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def https(
    port: int,
    ca: FilePath[str],
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """
    One HTTPS request to 127.0.0.1 verified against C{ca} (for the name C{localhost}).
    """
    context = ssl.create_default_context(cafile=ca.path)
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        answer: Any = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer
    finally:
        connection.close()


def journal_events(journal: FilePath[str]) -> list[dict[str, Any]]:
    """
    Every event in the journal directory C{journal}, in order; each line must decode.
    """
    found = []
    for _, path in segments(journal):
        for line in path.getContent().splitlines():
            event = decode_line(line)
            assert event is not None, line
            found.append(event)
    return found
