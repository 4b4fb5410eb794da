"""The gRPC ceiling: an Authorization server whose Check does nothing but answer OK.

What grpc.aio itself costs per check on this machine; authz is measured against it.
``python bench/ceiling.py --port N [--loop uvloop] [--redis-port R]``; with a Redis port, the
gRPC lean reference: each check also awaits one EVALSHA of the HTTP lean reference's script
through its client (bench/reference.py), on a key derived from x-api-key. What one Redis round
trip per check costs a grpc.aio handler, with none of tollway's work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2, status_pb2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reference import Redis, load_script, reference_key

OK = pb.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=pb.OkHttpResponse())


class Empty(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    async def Check(self, request: Any, context: Any) -> Any:
        return OK


class Reference(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """The empty handler plus one EVALSHA per check: the gRPC lean reference."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def Check(self, request: Any, context: Any) -> Any:
        key = request.attributes.request.http.headers.get("x-api-key", "")
        await self.redis.evalsha(reference_key(key.encode()))
        return OK


async def serve(port: int, redis_port: int | None) -> None:
    server = grpc.aio.server()
    handler = Reference(await load_script(redis_port)) if redis_port else Empty()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(handler, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--redis-port", type=int, help="one EVALSHA per check on this local Redis")
    args = p.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(args.port, args.redis_port))
    else:
        asyncio.run(serve(args.port, args.redis_port))
