"""The gRPC ceiling: an Authorization server whose Check does nothing but answer OK.

What grpc.aio itself costs per check on this machine; authz is measured against it.
``python bench/ceiling.py --port N [--loop uvloop] [--redis-url URL]``; with a Redis URL
each check also awaits one redis-py PING, which bounds what any one-Redis-call check can do.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2, status_pb2

from tollway.redis_client import connect

OK = pb.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=pb.OkHttpResponse())


class Empty(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    async def Check(self, request: Any, context: Any) -> Any:
        return OK


class Ping(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """The empty handler plus one redis-py PING per check: the floor for one Redis call."""

    def __init__(self, redis_url: str) -> None:
        self.redis = connect(redis_url)

    async def Check(self, request: Any, context: Any) -> Any:
        await self.redis.execute_command("PING")
        return OK


async def serve(port: int, redis_url: str | None) -> None:
    server = grpc.aio.server()
    handler = Ping(redis_url) if redis_url else Empty()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(handler, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--redis-url", help="PING this Redis once per check (redis-py, as authz uses)")
    args = p.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(args.port, args.redis_url))
    else:
        asyncio.run(serve(args.port, args.redis_url))
