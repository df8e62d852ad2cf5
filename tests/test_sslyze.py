"""
The live router's TLS graded by C{sslyze} (from PyPI): Mozilla "intermediate" compliance,
checked against the test CA, for an ECDSA and an RSA certificate; no known vulnerability;
the OCSP response stapled; HSTS on every kind of response.

sslyze pins an older C{cryptography} than pyOpenSSL needs, so it lives in a virtualenv of
its own, C{.venv-sslyze} at the top of the source tree, made here on first use (PyPI).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import socket
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from linkrouter.codec import Kind, Part, sign
from linkrouter.devenv import make_certificate
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring, new_key

from .daemons import Daemon, free_port, https
from .test_ocsp import ocsp_response

SSLYZE_REQUIREMENT = "sslyze>=6.3,<7"
TOP = FilePath(__file__).parent().parent()
HSTS = "max-age=63072000"
BASE = "https://localhost"
CURVES = {"X25519", "secp256r1", "secp384r1"}


def sslyze_command() -> str:
    """
    The C{sslyze} of C{.venv-sslyze}, installed there first if it is not; trial's workers
    take turns with a lock, so that only one installs it.
    """
    venv = TOP.child(".venv-sslyze")
    command = venv.descendant(["bin", "sslyze"])
    with open(TOP.child(".venv-sslyze.lock").path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not command.exists():
            python = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([python, "-m", "venv", "--clear", venv.path], check=True)
            pip = [venv.descendant(["bin", "python"]).path, "-m", "pip", "install", "--quiet"]
            subprocess.run([*pip, SSLYZE_REQUIREMENT], check=True, timeout=600)
    return command.path


def scan(test: SynchronousTestCase, port: int, ca: FilePath[str]) -> tuple[int, str, Any]:
    """
    sslyze's exit status, console report and JSON result for C{localhost:port}.
    """
    report = FilePath(test.mktemp())
    done = subprocess.run(
        [
            sslyze_command(),
            "--mozilla_config=intermediate",
            f"--certinfo_ca_file={ca.path}",
            "--http_headers",
            f"--json_out={report.path}",
            f"localhost:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    if not report.exists():
        test.fail(f"sslyze wrote no report (exit status {done.returncode}):\n{output}")
    [result] = json.loads(report.getContent())["server_scan_results"]
    return done.returncode, output, result


class SSLyzeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = FilePath(self.mktemp())
        self.directory.makedirs()
        self.keyring = Keyring((new_key(),))
        save_keyring(self.keyring, self.directory.child("keyring.json"))

    def router(self, kind: str, ocsp: bool) -> tuple[int, FilePath[str]]:
        """
        A live router with a C{kind} certificate for localhost, with a stapled OCSP
        response if C{ocsp}; its port and the CA.
        """
        directory = self.directory.child(kind)
        directory.makedirs()
        ca, chain, key = make_certificate(directory, kind=kind)
        extra = ""
        if ocsp:
            directory.child("ocsp.der").setContent(
                ocsp_response(directory, chain, now=datetime.datetime.now(datetime.UTC))
            )
            extra = 'ocsp_response = "ocsp.der"\n'
        port = free_port()
        config = directory.child("linkrouter.toml")
        config.setContent(
            f"""router_id = "tls-{kind}"
keyring = "{self.directory.child("keyring.json").path}"
[listen]
port = {port}
certificate = "{chain.basename()}"
private_key = "{key.basename()}"
{extra}[journal]
directory = "journal"
[admin]
port = false
""".encode()
        )
        Daemon(self, "linkrouter", config, port).start().wait_listening()
        return port, ca

    def assertGradesAPlus(self, port: int, ca: FilePath[str], kind: str) -> Any:
        """
        sslyze finds the router at C{port} compliant and not vulnerable; the certificate
        info is returned for more checks.
        """
        status, report, result = scan(self, port, ca)
        self.assertEqual(
            (result["connectivity_status"], result["scan_status"]), ("COMPLETED",) * 2
        )
        scans = result["scan_result"]
        failed = [name for name, each in scans.items() if each["status"] == "ERROR"]
        self.assertEqual(failed, [], report)
        self.assertIn("OK - Compliant", report)
        self.assertEqual(status, 0, report)

        def found(name: str) -> Any:
            return scans[name]["result"]

        for old in ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"]:
            self.assertFalse(found(f"{old}_cipher_suites")["is_tls_version_supported"], old)
        for new in ["tls_1_2", "tls_1_3"]:
            self.assertTrue(found(f"{new}_cipher_suites")["is_tls_version_supported"], new)
        suites = {
            accepted["cipher_suite"]["openssl_name"]
            for accepted in found("tls_1_2_cipher_suites")["accepted_cipher_suites"]
        }
        self.assertEqual(
            suites,
            {
                f"ECDHE-{'ECDSA' if kind == 'ecdsa' else 'RSA'}-{cipher}"
                for cipher in ["AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305"]
            },
        )
        self.assertFalse(found("heartbleed")["is_vulnerable_to_heartbleed"])
        self.assertFalse(found("openssl_ccs_injection")["is_vulnerable_to_ccs_injection"])
        self.assertTrue(found("robot")["robot_result"].startswith("NOT_VULNERABLE"))
        self.assertFalse(found("tls_compression")["supports_compression"])
        renegotiation = found("session_renegotiation")
        self.assertTrue(renegotiation["supports_secure_renegotiation"])
        self.assertFalse(renegotiation["is_vulnerable_to_client_renegotiation_dos"])
        self.assertTrue(found("tls_fallback_scsv")["supports_fallback_scsv"])
        self.assertTrue(found("tls_extended_master_secret")["supports_ems_extension"])
        curves = {curve["name"] for curve in found("elliptic_curves")["supported_curves"]}
        self.assertEqual(curves, CURVES)
        headers = found("http_headers")
        self.assertEqual(headers["strict_transport_security_header"]["max_age"], 63072000)
        [deployment] = found("certificate_info")["certificate_deployments"]
        trusted = {
            p["trust_store"]["name"]: p["was_validation_successful"]
            for p in deployment["path_validation_results"]
        }
        self.assertTrue(trusted["Supplied CA file"], trusted)
        self.assertTrue(deployment["received_chain_has_valid_order"])
        return deployment

    def test_ecdsaWithStapledOCSP(self) -> None:
        """
        With an ECDSA P-256 certificate and an OCSP response: compliant, no vulnerability,
        the response stapled and trusted; HSTS on a 302, a 404, a 405, the GIF and
        C{/healthz}.
        """
        port, ca = self.router("ecdsa", ocsp=True)
        deployment = self.assertGradesAPlus(port, ca, "ecdsa")
        self.assertEqual(deployment["ocsp_response"]["response_status"], "SUCCESSFUL")
        self.assertEqual(deployment["ocsp_response"]["certificate_status"], "GOOD")
        self.assertTrue(deployment["ocsp_response_is_trusted"])

        active = self.keyring.active
        click = urlsplit(sign("https://shop.example/", active, "L1", Part.HTML, 1, base=BASE)).path
        pixel = urlsplit(sign(None, active, "P1", Part.HTML, 1, base=BASE, kind=Kind.OPEN)).path
        for method, path, expected in [
            ("GET", click, 302),
            ("HEAD", click, 302),
            ("GET", "/nothing-here", 404),
            ("POST", click, 405),
            ("GET", pixel, 200),
            ("GET", "/healthz", 200),
        ]:
            status, headers, _ = https(port, ca, method, path)
            self.assertEqual(
                (status, headers.get("strict-transport-security")), (expected, HSTS), path
            )

    def test_rsa(self) -> None:
        """
        With an RSA-2048 certificate (no OCSP response): compliant, not vulnerable to
        ROBOT (no RSA key exchange), nothing stapled.
        """
        port, ca = self.router("rsa", ocsp=False)
        deployment = self.assertGradesAPlus(port, ca, "rsa")
        self.assertIsNone(deployment["ocsp_response"])

    def test_checkCanFail(self) -> None:
        """
        The same check fails a server on OpenSSL's defaults (C{openssl s_server}: X448,
        P-521 and CBC suites offered), so a pass above means something.
        """
        directory = self.directory.child("s_server")
        directory.makedirs()
        ca, chain, key = make_certificate(directory)
        port = free_port()
        defaults = ["-quiet", "-www", "-accept", str(port), "-cert", chain.path, "-key", key.path]
        server = subprocess.Popen(
            ["openssl", "s_server", *defaults],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(server.wait)
        self.addCleanup(server.kill)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                self.assertIsNone(server.poll(), "openssl s_server exited")
                self.assertLess(time.monotonic(), deadline, "openssl s_server is not listening")
                time.sleep(0.05)
        status, report, _ = scan(self, port, ca)
        self.assertEqual(status, 1, report)
        self.assertIn("FAILED - Not compliant", report)
