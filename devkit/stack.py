"""Start, watch and stop the local stack's processes: redis-server, authz, the echo upstream and
Envoy. ``tollway dev`` drives it for people and the e2e tests drive it on free ports.

Every child gets PR_SET_PDEATHSIG, so that if this process dies, even by SIGKILL, its children
die with it and nothing is left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO

from devkit import binaries, envoy_config

Sink = Callable[[str, str], None]  # (process name, line)


def _ephemeral_low() -> int:
    """Where the kernel's range of ports for outgoing connections begins."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def bind_free(sock: socket.socket) -> int:
    """Bind ``sock`` to a free loopback port, below the kernel's ephemeral range when there is
    room: a port drawn from that range can be taken by any outgoing connection while its
    service restarts (`make test-stress` saw a restarted receiver fail to bind its port)."""
    low = _ephemeral_low()
    first = max(1024, low - 16384)
    if low - first >= 4096:
        for _ in range(200):
            port = first + secrets.randbelow(low - first)
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    sock.bind(("127.0.0.1", 0))
    return int(sock.getsockname()[1])


def free_port() -> int:
    with socket.socket() as s:
        return bind_free(s)


def free_port_pair(offset: int) -> int:
    """A free loopback port whose ``port + offset`` is free too, both below the ephemeral range
    (Redis Cluster's bus listens on port + 10000; a bus port an outgoing connection holds makes
    the node exit at start)."""
    low = _ephemeral_low()
    first = max(1024, low - 16384)
    if low - offset - first < 1024:  # no room below the range: any pair will do
        first, low = 1024, 65536
    for _ in range(200):
        port = first + secrets.randbelow(low - offset - first)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return port
    raise OSError(f"no free pair of loopback ports {offset} apart")


def redis_argv(
    port: int, data_dir: Path, persist: bool = False, debug: bool = False, aof: bool = False
) -> list[str]:
    """A redis-server on loopback. ``persist``: a clean shutdown writes dump.rdb, so a restart
    keeps the data. ``aof``: every write is fsynced to an append-only file before Redis
    answers, so even a SIGKILL loses nothing. ``debug``: allow DEBUG commands (DEBUG SLEEP)."""
    argv = [
        binaries.redis_server(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "3600 1" if persist else "",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes" if aof else "no",
        "--appendfsync",
        "always",
    ]
    return argv + (["--enable-debug-command", "local"] if debug else [])


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:  # noqa: S310 (our own loopback URL)
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass
class Ports:
    envoy: int = 10000
    envoy_admin: int = 9901
    authz: int = 9191
    authz_metrics: int = 9192
    upstream: int = 8080
    redis: int = 6380
    webhook: int = 8081
    standin: int = 12111
    metering: int = 8082
    receiver: int = 9193  # the access-log receiver's gRPC port
    receiver_metrics: int = 9194
    portal: int = 8083
    portal_metrics: int = 9195
    api: int = 8084  # the management API
    api_verify: int = 8085  # its verify listener
    smtp: int = 2525  # the dev SMTP sink the portal mails through
    authz_workers: int = 9200  # worker i also listens on authz_workers + i

    @classmethod
    def free(cls) -> Ports:
        """Distinct free ports: every socket stays bound until all are drawn, so the OS cannot
        hand the same port out twice. authz_metrics and authz_workers get a free pair (port and
        port + 1), since authz worker i uses them + i; tests run up to two workers."""
        socks: list[socket.socket] = []

        def bind(port: int = 0) -> int:
            sock = socket.socket()
            try:
                if port:
                    sock.bind(("127.0.0.1", port))
                else:
                    port = bind_free(sock)
            except OSError:
                sock.close()
                raise
            socks.append(sock)
            return port

        try:
            ports = {}
            for f in fields(cls):
                ports[f.name] = bind()
                while f.name in ("authz_metrics", "authz_workers"):
                    try:
                        bind(ports[f.name] + 1)
                        break
                    except OSError:
                        ports[f.name] = bind()
            return cls(**ports)
        finally:
            for sock in socks:
                sock.close()


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    ready: Callable[[], bool]
    pump: threading.Thread


@dataclass
class Stack:
    ports: Ports
    tiers: Path
    state_dir: Path
    sink: Sink
    redis_url: str | None = None  # None: run our own redis-server on ports.redis
    # True: run the Stripe stand-in and point the webhook service at it. False: the
    # environment's STRIPE_API_KEY / TOLLWAY_STRIPE_API_BASE say where Stripe is.
    standin: bool = True
    # The stack's own secrets, drawn fresh for each stack: none is written in the repository.
    webhook_secret: str = field(default_factory=lambda: f"whsec_dev_{secrets.token_hex(16)}")
    usage_log_secret: str = field(default_factory=lambda: secrets.token_hex(16))  # authz+receiver
    authz_workers: int = 1
    authz_mode: str = "grpc"  # or "http": Envoy's ext_authz transport (envoy-http.yaml)
    redis_aof: bool = False  # fsync every write: a SIGKILLed redis-server loses nothing
    # Access-log receivers: "receiver" on ports.receiver, then "receiver-1"... on free ports.
    # Two or more let one restart while Envoy streams to another.
    receivers: int = 1
    portal: bool = False  # also run the customer portal and an SMTP sink for its mail
    api: bool = False  # also run the management API
    # TLS from Envoy to authz and the receivers (envoy/snippets/tls.yaml); they need the
    # matching TOLLWAY_TLS_* in env.
    envoy_tls: envoy_config.UpstreamTls | None = None
    portal_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    # With the portal, the webhook service's /checkout and /keys/claim answer only it.
    backend_token: str = field(default_factory=lambda: secrets.token_hex(16))
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    # Each receiver's (gRPC, /metrics) ports, by name: drawn when the stack starts.
    receiver_ports: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.envoy}"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.ports.redis}/0"

    @property
    def standin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.standin}"

    def _child_env(self) -> dict[str, str]:
        # A local stack stops at once; the e2e rolling-restart test sets a drain of its own.
        env = {
            "TOLLWAY_AUTHZ_DRAIN_S": "0",
            "TOLLWAY_USAGE_LOG_SECRET": self.usage_log_secret,
            **os.environ,
            **self.env,
            "PYTHONUNBUFFERED": "1",
        }
        if self.standin:
            env["TOLLWAY_STRIPE_API_BASE"] = self.standin_url
            env["STRIPE_WEBHOOK_SECRET"] = self.webhook_secret
        hook = f"http://127.0.0.1:{self.ports.webhook}"
        portal = f"http://127.0.0.1:{self.ports.portal}"
        # With the portal, Checkout ends on its welcome page, which shows the key once.
        success = f"{portal}/welcome" if self.portal else f"{hook}/keys/claim"
        env.setdefault(
            "TOLLWAY_CHECKOUT_SUCCESS_URL", f"{success}?session_id={{CHECKOUT_SESSION_ID}}"
        )
        env.setdefault("TOLLWAY_PORTAL_WEBHOOK_URL", hook)
        # An abandoned Checkout goes back to the pricing page (without the portal, nowhere
        # better than the webhook service's health answer).
        env.setdefault(
            "TOLLWAY_CHECKOUT_CANCEL_URL", f"{portal}/" if self.portal else f"{hook}/healthz"
        )
        # After buying credits, back to the dashboard (the balance shows once the webhook is in).
        env.setdefault(
            "TOLLWAY_CREDITS_RETURN_URL",
            f"{portal}/dashboard" if self.portal else f"{hook}/healthz",
        )
        env.setdefault("TOLLWAY_PORTAL_SECRET", self.portal_secret)
        if self.portal:
            env.setdefault("TOLLWAY_BACKEND_TOKEN", self.backend_token)
        env.setdefault("TOLLWAY_PORTAL_URL", portal)
        env.setdefault("TOLLWAY_PUBLIC_API_URL", self.url)
        env.setdefault("TOLLWAY_SMTP_PORT", str(self.ports.smtp))
        # This stack's own: usage spooled for its store is never found by another run's.
        env.setdefault("TOLLWAY_SPOOL_DIR", str(self.state_dir / "spool"))
        return env

    def _spawn(self, name: str, argv: list[str], ready: Callable[[], bool]) -> Proc:
        env = self._child_env()
        popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=die_with_parent,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
        )
        assert popen.stdout is not None
        pump = threading.Thread(target=self._pump, args=(name, popen.stdout), daemon=True)
        pump.start()
        proc = Proc(name, argv, popen, ready, pump)
        self.procs[name] = proc
        return proc

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        with stream:
            for raw in stream:
                self.sink(name, raw.decode("utf-8", "replace").rstrip("\n"))

    def _await(self, proc: Proc, timeout_s: float = 20.0) -> None:
        def check() -> bool:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} on start")
            return proc.ready()

        wait_for(check, proc.name, timeout_s)

    def start(self, name: str) -> Proc:
        """Start one of the stack's processes by name and wait until it is ready."""
        return self.start_process(name, *self._spec(name))

    def start_process(self, name: str, argv: list[str], ready: Callable[[], bool]) -> Proc:
        """Start any other process under the stack's care (the bench's own Envoy and gRPC
        ceiling): same environment, output to the sink, dies with us, stopped by stop_all."""
        proc = self._spawn(name, argv, ready)
        self._await(proc)
        return proc

    def _spec(self, name: str) -> tuple[list[str], Callable[[], bool]]:
        p = self.ports
        py = sys.executable
        if name == "redis":
            data = self.state_dir / "redis"
            data.mkdir(parents=True, exist_ok=True)
            argv = redis_argv(p.redis, data.resolve(), persist=True, aof=self.redis_aof)
            return argv, lambda: port_open(p.redis)
        if name == "authz":
            argv = [
                py,
                "-m",
                "authz",
                "--port",
                str(p.authz),
                "--metrics-port",
                str(p.authz_metrics),
                "--redis-url",
                self.effective_redis_url,
                "--tiers",
                str(self.tiers),
                "--workers",
                str(self.authz_workers),
                "--mode",
                self.authz_mode,
            ]
            if self.authz_workers > 1:
                argv += ["--worker-port-base", str(p.authz_workers)]
            return argv, lambda: port_open(p.authz)
        if name == "standin":
            argv = [
                py,
                "-m",
                "devkit.standin",
                "--port",
                str(p.standin),
                "--webhook-url",
                f"http://127.0.0.1:{p.webhook}/webhooks/stripe",
            ]
            return argv, lambda: port_open(p.standin)
        # The services on Redis with an HTTP /healthz: (module, port).
        served = {
            "webhook": ("webhook", p.webhook),
            "metering": ("metering", p.metering),
            "portal": ("portal", p.portal),
            "api": ("api", p.api),
        }
        if name in served:
            module, port = served[name]
            extra = {"api": ["--verify-port", str(p.api_verify)],
                     "portal": ["--metrics-port", str(p.portal_metrics)]}.get(name, [])  # fmt: skip
            return self._service([module, "--port", str(port), *extra], port)
        if name in self.receiver_ports:
            grpc_port, metrics = self.receiver_ports[name]
            argv = ["metering", "receive", "--port", str(grpc_port)]
            return self._service([*argv, "--metrics-port", str(metrics)], metrics)
        if name == "mailsink":
            argv = [py, "-m", "devkit.mailsink", "--port", str(p.smtp)]
            return argv, lambda: port_open(p.smtp)
        if name == "upstream":
            argv = [py, "-m", "devkit.upstream", "--port", str(p.upstream)]
            return argv, lambda: port_open(p.upstream)
        if name == "envoy":
            # Several workers: Envoy balances over each one's own port (AuthzSettings.worker_port_base).
            authz: int | list[int] = p.authz
            if self.authz_workers > 1:
                authz = [p.authz_workers + i for i in range(self.authz_workers)]
            config = envoy_config.render(
                p.envoy,
                p.envoy_admin,
                authz,
                p.upstream,
                envoy_config.source_for(self.authz_mode),
                [g for g, _ in self.receiver_ports.values()],
            )
            if self.envoy_tls is not None:
                config = envoy_config.with_upstream_tls(config, self.envoy_tls)
            path = envoy_config.write(config, self.state_dir / "envoy.yaml")
            argv = [
                binaries.envoy(),
                "-c",
                str(path),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--concurrency",
                "2",
            ]
            return argv, lambda: http_ok(f"http://127.0.0.1:{p.envoy_admin}/ready")
        raise KeyError(name)

    def _service(self, args: list[str], health: int) -> tuple[list[str], Callable[[], bool]]:
        """``python -m <args>`` on the stack's Redis and tier table, ready once GET /healthz
        on port ``health`` answers 200."""
        argv = [sys.executable, "-m", *args, "--redis-url", self.effective_redis_url]
        argv += ["--tiers", str(self.tiers)]
        return argv, lambda: http_ok(f"http://127.0.0.1:{health}/healthz")

    def start_all(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.receiver_ports = {"receiver": (self.ports.receiver, self.ports.receiver_metrics)}
        for i in range(1, self.receivers):
            self.receiver_ports[f"receiver-{i}"] = (free_port(), free_port())
        names = ["upstream", "authz", "webhook", "metering", *self.receiver_ports, "envoy"]
        if self.api:
            names.append("api")
        if self.portal:
            names += ["mailsink", "portal"]
        if self.standin:
            names.insert(0, "standin")
        if self.redis_url is None:
            names.insert(0, "redis")
        try:
            for name in names:
                self.start(name)
        except BaseException:
            self.stop_all()
            raise

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].popen.send_signal(sig)

    def stop(self, name: str, timeout_s: float = 10.0) -> int | None:
        """SIGTERM one process, SIGKILL it if it lingers; returns its exit code."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.popen.poll() is None:
            proc.popen.terminate()
            try:
                proc.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        proc.pump.join(5)  # the child's output is drained and its pipe closed
        return proc.popen.returncode

    def kill(self, name: str) -> int:
        """SIGKILL one process, as a crash would; returns its exit code."""
        proc = self.procs.pop(name)
        proc.popen.kill()
        code = proc.popen.wait()
        proc.pump.join(5)
        return code

    def stop_all(self) -> None:
        # Front to back: clients first, so nothing is mid-request against a stopped backend;
        # then any process started with start_process, newest first.
        for name in [
            "portal",
            "mailsink",
            "api",
            "envoy",
            *self.receiver_ports,
            "metering",
            "webhook",
            "standin",
            "authz",
            "upstream",
            "redis",
        ]:
            self.stop(name)
        for name in reversed(list(self.procs)):
            self.stop(name)
