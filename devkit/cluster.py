"""A local Redis Cluster of redis-server processes, for tests and benchmarks.

``LocalCluster(data_dir).start()`` starts ``masters`` redis-servers with cluster mode on free
loopback ports (and ``replicas`` more per master), joins them with ``redis-cli --cluster
create`` and waits until the cluster reports ok, every replica is in sync and every node's
view of the cluster names every replica (gossip spreads that view; a test that asks the
primary for its replica right after ``create`` could otherwise find none). ``url`` is the
``redis+cluster://`` URL every tollway service takes.
Every write is fsynced (AOF), so ``kill`` then ``restart`` loses nothing, like a single
redis-server in tests/e2e/test_load_faults.py.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from devkit import binaries
from devkit.stack import die_with_parent, free_port_pair, port_open, redis_argv, wait_for


class NodeExited(RuntimeError):
    """A redis-server of the cluster exited before it listened."""


@dataclass
class LocalCluster:
    data_dir: Path
    masters: int = 3
    replicas: int = 0  # per master
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def _argv(self, port: int) -> list[str]:
        node_dir = self.data_dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        return [
            *redis_argv(port, node_dir, debug=True, aof=True),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "15000",
        ]

    def start(self) -> LocalCluster:
        try:
            self._spawn_on_free_ports()
            subprocess.run(
                [
                    binaries.redis_cli(),
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            wait_for(self.ok, "redis cluster", 20)
            wait_for(self.replicas_in_sync, "redis cluster replicas", 20)
            wait_for(self.views_agree, "every node to see every replica", 20)
        except BaseException:
            self.stop()
            raise
        return self

    def ok(self) -> bool:
        for port in self.ports:
            out = subprocess.run(
                [binaries.redis_cli(), "-p", str(port), "cluster", "info"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            if "cluster_state:ok" not in out:
                return False
        return True

    def cli(self, port: int, *args: str) -> str:
        return subprocess.run(
            [binaries.redis_cli(), "-p", str(port), *args],
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    def replicas_in_sync(self) -> bool:
        """Every replica there is, linked to its primary with the initial sync done."""
        synced = 0
        for port in self.ports:
            info = self.cli(port, "info", "replication")
            synced += "master_link_status:up" in info and "master_sync_in_progress:0" in info
        return synced == self.masters * self.replicas

    def views_agree(self) -> bool:
        """Every node's CLUSTER NODES names every replica with its primary."""
        for port in self.ports:
            replicas = 0
            for line in self.cli(port, "cluster", "nodes").splitlines():
                fields = line.split()  # id ip:port@bus flags master-id ...
                replicas += len(fields) > 3 and "slave" in fields[2] and fields[3] != "-"
            if replicas != self.masters * self.replicas:
                return False
        return True

    def replica_of(self, port: int) -> int:
        """The port of a replica of the primary on ``port``, as the replica itself reports it
        (INFO replication): authoritative, where another node's view may lag by a gossip round."""
        for other in self.ports:
            info = self.cli(other, "info", "replication").split()
            if "role:slave" in info and f"master_port:{port}" in info:
                return other
        raise LookupError(f"no replica of 127.0.0.1:{port}")

    def kill_node(self, port: int) -> None:
        """SIGKILL one node, as a crash would."""
        proc = self.procs[self.ports.index(port)]
        proc.kill()
        proc.wait()

    def kill(self) -> None:
        """SIGKILL every node, as a crash of the whole cluster would."""
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.procs = []

    def _spawn_on_free_ports(self, attempts: int = 3) -> None:
        """Draw ports (each with its bus port free) and start the nodes; draw again if a node
        exits at start, as it does when another process took its port in between."""
        for attempt in range(attempts):
            self.ports = []
            while len(self.ports) < self.masters * (1 + self.replicas):
                port = free_port_pair(10000)
                if port not in self.ports:
                    self.ports.append(port)
            try:
                self._spawn()
                return
            except NodeExited:
                self.stop()
                if attempt == attempts - 1:
                    raise

    def _spawn(self) -> None:
        """Start a redis-server on each port and wait until every one listens; a node that
        exits first raises NodeExited with its log's tail (redis.log in its data directory)."""
        self.procs = []
        for port in self.ports:
            log = self.data_dir / str(port) / "redis.log"
            argv = self._argv(port)
            with log.open("ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
                    )
                )

        def listening() -> bool:
            for port, proc in zip(self.ports, self.procs, strict=True):
                if proc.poll() is not None:
                    tail = (self.data_dir / str(port) / "redis.log").read_text(errors="replace")
                    raise NodeExited(f"redis-server on {port} exited: {tail[-500:]}")
            return all(port_open(p) for p in self.ports)

        wait_for(listening, "redis-servers", 20)

    def restart(self) -> None:
        """Start every node again on its port, data directory and nodes.conf; wait until ok."""
        self._spawn()
        wait_for(self.ok, "redis cluster", 30)

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []
