"""
How fast the real router answers clicks over TLS, against a bare twisted.web 302 measured in
the same run.

Both servers are C{twistd} processes on 127.0.0.1 with the same TLS options
(C{linkrouter.tls.server_options}) and no access log; C{wrk} (Debian's) loads them with one
thread and 16 keep-alive connections for a bounded time. The router is the installed
C{twistd linkrouter} with a journal on disk (group fsync every 0.2 s), asked for one valid
signed click link, so every request verifies an HMAC, redirects and is journaled; the
baseline (C{bare_redirect.py}) is a plain C{Site} whose leaf answers the same request line
with one constant 302. Rounds alternate between the two and the best of each is kept, so a
noisy neighbour slows both alike; the figure that matters is the ratio, router over bare
(aim >= 0.85). The server's CPU time per request (all its threads, from C{/proc}) is printed
too: it is what the rate would be bound by on a machine of its own.

Then one new TLS connection per request (C{Connection: close}; one click is one handshake in
real life), for an ECDSA P-256 and an RSA-2048 certificate, router and bare. wrk's latency
there excludes the connection and the handshake (it times from the request's first byte),
and one wrk thread is close to saturated by the client side of the handshakes, so in this
mode the server CPU per request is the figure to compare.

Then several instances on one port: two C{twistd linkrouter} processes sharing a port with
C{listen.reuse_port} (each its own router id and journal), against one, keep-alive with
L{PAIR_CONNECTIONS} connections so that the kernel has enough of them to spread; wrk runs
on the same machine. The ratio, two over one, is what a second instance buys on this
machine's cores (aim >= 1.6 on two cores).

Run with C{make bench}, or C{python benchmarks/bench_router.py [--quick]}; C{wrk} must be
installed (C{apt-get install wrk}).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.backends.openssl.backend import backend
from twisted.python.filepath import FilePath

from linkrouter.codec import Part, sign
from linkrouter.devenv import make_certificate
from linkrouter.keyfile import save_keyring
from linkrouter.keys import Keyring, new_key

TARGET = "https://shop.example.com/products/42?utm_source=email&utm_medium=newsletter"
AIM = 0.85
CONNECTIONS = 16
PAIR_AIM = 1.6
PAIR_CONNECTIONS = 32
BIN = Path(sys.executable).parent
BARE_SERVER = Path(__file__).resolve().with_name("bare_redirect.py")
CLOSE_SCRIPT = 'wrk.headers["Connection"] = "close"\n'
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Load:
    """
    What one C{wrk} run measured.
    """

    rate: float
    """Requests per second."""
    p50: float
    """Median latency, seconds."""
    p99: float
    """99th-percentile latency, seconds."""
    requests: int
    problems: str
    """wrk's socket-error and non-2xx/3xx lines, if any."""
    cpu: float = 0.0
    """The server process's CPU time (all threads, user and system) per request, seconds."""
    client_cpu: float = 0.0
    """wrk's own CPU time (user and system) per request, seconds."""

    def summary(self) -> str:
        text = (
            f"{self.rate:>8,.0f} req/s  p50 {self.p50 * 1e3:6.2f} ms  "
            f"p99 {self.p99 * 1e3:6.2f} ms  server CPU {self.cpu * 1e6:5.0f} us/req"
        )
        return f"{text}  ({self.problems})" if self.problems else text


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> Load:
    """
    The rate, median and 99th percentile of C{wrk --latency}'s report.
    """
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    count = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    if rate is None or p50 is None or p99 is None or count is None:
        raise RuntimeError(f"cannot read wrk's report:\n{output}")
    problems = re.findall(r"^\s+((?:Socket errors|Non-2xx or 3xx responses):.*)$", output, re.M)
    return Load(
        float(rate.group(1)),
        _seconds(p50.group(1)),
        _seconds(p99.group(1)),
        int(count.group(1)),
        "; ".join(problems),
    )


def cpu_seconds(pid: int) -> float:
    """
    The user and system CPU time process C{pid} has used so far, all its threads.
    """
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    server: Server, seconds: int, script: Path | None = None, connections: int = CONNECTIONS
) -> Load:
    """
    Load C{server} (loopback only) with one wrk thread and C{connections} connections.
    """
    assert urlsplit(server.url).hostname == "127.0.0.1", server.url
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout=5s"]
    if script is not None:
        command += ["-s", str(script)]
    pids = [server.pid, *server.other_pids]
    before = sum(map(cpu_seconds, pids))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [*command, server.url], capture_output=True, text=True, timeout=seconds + 30, check=True
    )
    used = sum(map(cpu_seconds, pids)) - before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    load = parse_wrk(done.stdout)
    requests = max(load.requests, 1)
    return replace(load, cpu=used / requests, client_cpu=client / requests)


def ceiling(one: Load, two: Load) -> str:
    """
    What the machine's cores allow the two-instance run, wrk included: the one instance is
    bound by its own CPU per request (one core), the pair by all cores shared between the
    routers and the load tool, so two over one is at most 2 * router / (router + wrk) on two
    cores, whatever the router does.
    """
    cores = os.cpu_count() or 1
    bound = cores / (two.cpu + two.client_cpu) / (1 / one.cpu)
    return (
        f"wrk's own CPU {two.client_cpu * 1e6:.0f} us/req; the {cores} cores allow 2/1 at "
        f"most {min(bound, 2.0):.2f} with these CPU costs (cores / (router + wrk) per request "
        f"against one router's core)"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    """
    A started server: where to send requests, and the CA its certificate chains to.
    """

    name: str
    url: str
    ca: Path
    admin_port: int | None = None
    pid: int = 0
    other_pids: tuple[int, ...] = ()
    """The other processes serving the same port (C{listen.reuse_port})."""


def _wait_until_redirecting(server: Server, process: subprocess.Popen[bytes]) -> None:
    context = ssl.create_default_context(cafile=str(server.ca))
    parts = urlsplit(server.url)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {process.returncode}")
        connection = http.client.HTTPSConnection(
            "127.0.0.1", parts.port, context=context, timeout=5
        )
        try:
            connection.request("GET", parts.path)
            response = connection.getresponse()
            response.read()
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        finally:
            connection.close()
        if (response.status, response.getheader("location")) != (302, TARGET):
            raise RuntimeError(f"{server.name} answered {response.status}, not 302 to {TARGET}")
        return


def _wait_until_metrics(server: Server, process: subprocess.Popen[bytes]) -> None:
    # a second instance on a shared port: the port answers already, its admin port not yet
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {process.returncode}")
        try:
            metrics(server)
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def running(
    server: Server,
    command: list[str],
    directory: Path,
    env: dict[str, str] | None = None,
    ready: Callable[[Server, subprocess.Popen[bytes]], None] = _wait_until_redirecting,
) -> Iterator[Server]:
    """
    Run C{command} in C{directory} until the block ends; its output goes to a log file there.
    It has started once C{ready} returns.
    """
    log = (directory / "output.log").open("wb")
    process = subprocess.Popen(
        command,
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        ready(server, process)
        yield replace(server, pid=process.pid)
    except Exception:
        log.flush()
        tail = (directory / "output.log").read_text(errors="replace")[-2000:]
        print(f"--- {server.name} output:\n{tail}", file=sys.stderr)
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _material(directory: Path, kind: str) -> tuple[Path, Path, Path]:
    directory.mkdir(mode=0o700)
    ca, chain, key = make_certificate(FilePath(str(directory)), kind=kind)
    return Path(ca.path), Path(chain.path), Path(key.path)


def start_router(stack: ExitStack, directory: Path, kind: str) -> Server:
    """
    The installed C{twistd linkrouter} with a fresh keyring, C{kind} certificate and
    journal, with default journal settings.
    """
    ca, chain, key = _material(directory, kind)
    keyring = Keyring((new_key(),))
    save_keyring(keyring, FilePath(str(directory / "keyring.json")))
    port, admin_port = free_port(), free_port()
    config = directory / "linkrouter.toml"
    config.write_text(
        f"""router_id = "bench"
keyring = "keyring.json"
[listen]
port = {port}
certificate = "{chain.name}"
private_key = "{key.name}"
[journal]
directory = "journal"
[admin]
port = {admin_port}
"""
    )
    link = sign(TARGET, keyring.active, "bench-link", Part.HTML, 1_764_780_000, base="https://x")
    path = urlsplit(link).path
    server = Server(f"router ({kind})", f"https://127.0.0.1:{port}{path}", ca, admin_port)
    command = [str(BIN / "twistd"), "-n", "--pidfile=", "linkrouter", "--config", str(config)]
    return stack.enter_context(running(server, command, directory))


def start_pair(stack: ExitStack, directory: Path) -> tuple[Server, Server]:
    """
    Two C{twistd linkrouter} instances sharing one port with C{listen.reuse_port}, as
    L{start_router} otherwise (ECDSA); each has its own router id, journal and admin port.

    @return: the pair, as one server whose CPU is both processes', and the second instance
        alone, for its metrics.
    """
    ca, chain, key = _material(directory, "ecdsa")
    keyring = Keyring((new_key(),))
    save_keyring(keyring, FilePath(str(directory / "keyring.json")))
    link = sign(TARGET, keyring.active, "bench-link", Part.HTML, 1_764_780_000, base="https://x")
    port = free_port()
    started = []
    for name, ready in [("a", _wait_until_redirecting), ("b", _wait_until_metrics)]:
        instance = directory / name
        instance.mkdir(mode=0o700)
        admin_port = free_port()
        config = instance / "linkrouter.toml"
        config.write_text(
            f"""router_id = "bench-{name}"
keyring = "../keyring.json"
[listen]
port = {port}
certificate = "../{chain.name}"
private_key = "../{key.name}"
reuse_port = true
[journal]
directory = "journal"
[admin]
port = {admin_port}
"""
        )
        server = Server(
            f"router {name}", f"https://127.0.0.1:{port}{urlsplit(link).path}", ca, admin_port
        )
        command = [str(BIN / "twistd"), "-n", "--pidfile=", "linkrouter", "--config", str(config)]
        started.append(stack.enter_context(running(server, command, instance, ready=ready)))
    first, second = started
    return replace(first, name="2 routers, one port", other_pids=(second.pid,)), second


def start_bare(stack: ExitStack, directory: Path, kind: str, path: str) -> Server:
    """
    The baseline, C{bare_redirect.py}, with a C{kind} certificate; requests ask for C{path},
    the router's link, so that both parse the same request.
    """
    ca, chain, key = _material(directory, kind)
    port = free_port()
    env = {
        "BARE_PORT": str(port),
        "BARE_CERTIFICATE": str(chain),
        "BARE_PRIVATE_KEY": str(key),
        "BARE_LOCATION": TARGET,
    }
    server = Server(f"bare ({kind})", f"https://127.0.0.1:{port}{path}", ca)
    command = [str(BIN / "twistd"), "-n", "--pidfile=", "-y", str(BARE_SERVER)]
    return stack.enter_context(running(server, command, directory, env))


def metrics(server: Server) -> str:
    """
    The router's Prometheus metrics page.
    """
    assert server.admin_port is not None
    connection = http.client.HTTPConnection("127.0.0.1", server.admin_port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def redirects(server: Server) -> float:
    """
    How many redirects the router has answered.
    """
    found = re.search(
        r'^linkrouter_requests_total\{outcome="redirect"\} (\S+)$', metrics(server), re.M
    )
    return float(found.group(1)) if found else 0.0


def journal_figures(server: Server) -> str:
    """
    Clicks answered, events written and dropped, from the router's metrics.
    """
    time.sleep(0.5)  # one group fsync and write round
    text = metrics(server)

    def total(pattern: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{pattern} (\S+)$", text, re.MULTILINE))

    redirects = total(r'linkrouter_requests_total\{outcome="redirect"\}')
    written = total("linkrouter_events_written_total")
    dropped = total(r"linkrouter_events_dropped_total\{[^}]*\}")
    return f"{redirects:,.0f} redirects, {written:,.0f} events journaled, {dropped:,.0f} dropped"


def best(
    servers: list[Server],
    rounds: int,
    seconds: int,
    script: Path | None = None,
    connections: int = CONNECTIONS,
) -> dict[str, Load]:
    """
    The best of each server over C{rounds} alternating rounds: the fastest round's rate and
    latency, and the lowest server CPU per request of any round.
    """
    found: dict[str, Load] = {}
    for _ in range(rounds):
        for server in servers:
            load = wrk(server, seconds, script, connections)
            kept = found.get(server.name, load)
            if load.rate > kept.rate:
                kept, load = load, kept
            found[server.name] = replace(kept, cpu=min(kept.cpu, load.cpu))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s runs, no warm-up (smoke test)")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    options = parser.parse_args(argv)
    seconds = 1 if options.quick else options.seconds
    rounds: int = options.rounds
    if shutil.which("wrk") is None:
        print("bench_router: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1

    # a terminated benchmark still stops its servers: the finally blocks run on SystemExit
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    load_average = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-router-") as temporary, ExitStack() as stack:
        root = Path(temporary)
        close = root / "close.lua"
        close.write_text(CLOSE_SCRIPT)
        router = start_router(stack, root / "router-ecdsa", "ecdsa")
        router_rsa = start_router(stack, root / "router-rsa", "rsa")
        bare = start_bare(stack, root / "bare-ecdsa", "ecdsa", urlsplit(router.url).path)
        bare_rsa = start_bare(stack, root / "bare-rsa", "rsa", urlsplit(router_rsa.url).path)
        pair, second = start_pair(stack, root / "pair")
        if not options.quick:
            for server in (bare, router, bare_rsa, router_rsa, pair):
                wrk(server, 1)  # warm-up: imports, caches, first journal segment

        print(
            f"python {sys.version.split()[0]}, {backend.openssl_version_text()}, "
            f"{os.cpu_count()} cores, load average {load_average:.2f} before; "
            f"wrk -t1 -c{CONNECTIONS} -d{seconds}s on 127.0.0.1, best of {rounds} alternating "
            "rounds"
        )
        kept = best([bare, router], rounds, seconds)
        ratio = kept[router.name].rate / kept[bare.name].rate
        print("keep-alive, ECDSA P-256:")
        print(f"  bare twisted.web 302      {kept[bare.name].summary()}")
        print(f"  router (verify, journal)  {kept[router.name].summary()}")
        verdict = "" if ratio >= AIM else "  BELOW TARGET"
        print(
            f"  ratio router/bare {ratio:.2f} (aim >= {AIM}){verdict}; by server CPU "
            f"{kept[bare.name].cpu / kept[router.name].cpu:.2f}"
        )

        fresh = best([bare, router, bare_rsa, router_rsa], rounds, seconds, close)
        print("new TLS connection per request (Connection: close; latency without handshake):")
        for label, server in [
            ("bare, ECDSA P-256", bare),
            ("router, ECDSA P-256", router),
            ("bare, RSA-2048", bare_rsa),
            ("router, RSA-2048", router_rsa),
        ]:
            print(f"  {label:<24}{fresh[server.name].summary()}")

        def ratios(top: Server, bottom: Server) -> str:
            high, low = fresh[top.name], fresh[bottom.name]
            return f"{high.rate / low.rate:.2f} (by server CPU {low.cpu / high.cpu:.2f})"

        print(f"  router/bare: ECDSA {ratios(router, bare)}, RSA {ratios(router_rsa, bare_rsa)}")
        print(
            f"  RSA-2048/ECDSA P-256: router {ratios(router_rsa, router)}, "
            f"bare {ratios(bare_rsa, bare)}"
        )
        print(f"journal, ECDSA router: {journal_figures(router)}")

        before = redirects(pair), redirects(second)
        shared = best([router, pair], rounds, seconds, connections=PAIR_CONNECTIONS)
        share = redirects(pair) - before[0], redirects(second) - before[1]
        print(
            f"several instances on one port (listen.reuse_port), keep-alive, ECDSA P-256, "
            f"wrk -t1 -c{PAIR_CONNECTIONS}:"
        )
        print(f"  1 router                  {shared[router.name].summary()}")
        print(f"  2 routers, one port       {shared[pair.name].summary()}")
        scale = shared[pair.name].rate / shared[router.name].rate
        verdict = "" if scale >= PAIR_AIM else "  BELOW TARGET"
        print(
            f"  ratio 2/1 {scale:.2f} (aim >= {PAIR_AIM} on {os.cpu_count()} cores, wrk "
            f"included){verdict}; redirects answered by a/b "
            f"{share[0] / max(sum(share), 1):.0%}/{share[1] / max(sum(share), 1):.0%}"
        )
        print(f"  {ceiling(shared[router.name], shared[pair.name])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
