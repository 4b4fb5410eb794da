"""Turn a ``Decision`` into Envoy's CheckResponse (xds-protos messages)."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2

from authz.decision import Decision, Headers

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_JSON = base_pb2.HeaderValueOption(
    header=base_pb2.HeaderValue(key="content-type", value="application/json"),
    append_action=_OVERWRITE,
)
_OK_STATUS = status_pb2.Status(code=code_pb2.OK)


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
    if d.reason is not None:
        meta["reason"] = d.reason.value
    return meta


def build(d: Decision) -> Any:
    """The CheckResponse for ``d``: an OK with headers, or a denial with a JSON body."""
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
