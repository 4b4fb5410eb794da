"""Turn a ``Decision`` into Envoy's CheckResponse, serialized (xds-protos messages).

The OK path is the hot one, and nearly all of it repeats: the status, the upstream headers and
the metadata are the same for every request of a key, and the RateLimit-* headers take few
distinct values. Protobuf's wire format merges concatenated messages (repeated fields append,
submessages merge), so an OK response is the cached serialization of its fixed part followed
by one cached, serialized single-header CheckResponse per client header: a concatenation of
bytes instead of building and serializing the message each time. Every fragment is made by
protobuf itself; tests compare the result with the message built the plain way.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2

from authz import AUTH_SERVICE
from authz.decision import CREDITS_HEADER, Decision, Headers
from tollway.usage_stamp import METADATA_KEY

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_JSON = base_pb2.HeaderValueOption(
    header=base_pb2.HeaderValue(key="content-type", value="application/json"),
    append_action=_OVERWRITE,
)
_OK_STATUS = status_pb2.Status(code=code_pb2.OK)
CACHE_SIZE = 16_384  # entries per cache; a miss costs a plain build, never a wrong answer


def _options(headers: Headers) -> list[Any]:
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, value=v), append_action=_OVERWRITE
        )
        for k, v in headers
    ]


def _metadata(d: Decision) -> Any:
    meta = struct_pb2.Struct()
    meta.update({"customer": d.customer, "tier": d.tier, "key_id": d.key_id})
    if d.usage_stamp:
        meta[METADATA_KEY] = d.usage_stamp
    if d.reason is not None:
        meta["reason"] = d.reason.value
    return meta


def message(d: Decision) -> Any:
    """The CheckResponse for ``d`` as a message: an OK with headers, or a denial with a JSON body."""
    if d.reason is None:
        return pb.CheckResponse(
            status=_OK_STATUS,
            ok_response=pb.OkHttpResponse(
                headers=_options(d.upstream_headers),
                headers_to_remove=d.strip,
                response_headers_to_add=_options(d.client_headers),
            ),
            dynamic_metadata=_metadata(d),
        )
    status = d.reason.http_status
    grpc_code = code_pb2.UNAUTHENTICATED if status == 401 else code_pb2.PERMISSION_DENIED
    return pb.CheckResponse(
        status=status_pb2.Status(code=grpc_code, message=d.reason.value),
        denied_response=pb.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=status),
            headers=[_JSON, *_options(d.client_headers)],
            body=d.body(),
        ),
        dynamic_metadata=_metadata(d),
    )


@lru_cache(maxsize=CACHE_SIZE)
def _ok_fixed(
    customer: str, tier: str, key_id: str, upstream: Headers, strip: tuple[str, ...]
) -> bytes:
    d = Decision(
        None, key_id=key_id, customer=customer, tier=tier, upstream_headers=upstream, strip=strip
    )
    return bytes(message(d).SerializeToString())


@lru_cache(maxsize=CACHE_SIZE)
def _client_header(key: str, value: str) -> bytes:
    ok = pb.OkHttpResponse(response_headers_to_add=_options(((key, value),)))
    return bytes(pb.CheckResponse(ok_response=ok).SerializeToString())


# A prepaid balance differs on every request: cached, it would only evict the lines that repeat.
_fresh_header = _client_header.__wrapped__


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, body: bytes) -> bytes:
    """A length-delimited protobuf field: its tag byte, length and body."""
    return bytes((tag,)) + _varint(len(body)) + body


_STAMP_KEY = _field(0x0A, METADATA_KEY.encode())  # Struct.fields entry: key = 1


def _stamp(text: str) -> bytes:
    """A CheckResponse holding only dynamic_metadata {METADATA_KEY: text}, written by hand:
    it differs on every request, and building it through protobuf costs several times more.
    (The
    CheckResponse's dynamic_metadata is field 4; Struct.fields 1; a map entry's value 2;
    Value.string_value 3. tests/unit/test_responses.py checks it against protobuf's own.)"""
    value = _field(0x1A, text.encode())
    return _field(0x22, _field(0x0A, _STAMP_KEY + _field(0x12, value)))


def build(d: Decision) -> bytes:
    """The serialized CheckResponse for ``d`` (what ``message(d)`` serializes to, merged)."""
    if d.reason is None:
        fixed = _ok_fixed(d.customer, d.tier, d.key_id, d.upstream_headers, d.strip)
        out = fixed + b"".join(
            [
                _client_header(k, v) if k != CREDITS_HEADER else _fresh_header(k, v)
                for k, v in d.client_headers
            ]
        )
        return out + _stamp(d.usage_stamp) if d.usage_stamp else out
    return bytes(message(d).SerializeToString())


def _identity(body: bytes) -> bytes:
    return body


def add_to_server(servicer: Any, server: Any) -> None:
    """Register ``servicer.Check`` (which returns serialized bytes) as Envoy's Authorization
    service: the generated helper would serialize a message; here the bytes pass through."""
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            servicer.Check,
            request_deserializer=pb.CheckRequest.FromString,
            response_serializer=_identity,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(AUTH_SERVICE, handlers),))
    server.add_registered_method_handlers(
        AUTH_SERVICE, handlers
    )  # grpc's faster lookup, as generated
