"""Validation shared by the stand-in's endpoints, with Stripe's error shape: each check raises
``ParamError`` (message, param, code), and ``stripe_error`` renders it as Stripe's
``{"error": {...}}`` body."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from devkit.standin.forms import decode


class ParamError(Exception):
    def __init__(self, message: str, param: str, code: str = "parameter_invalid") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def stripe_error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"type": kind, "message": message}
    if param:
        body["param"] = param
    if code:
        body["code"] = code
    return web.json_response({"error": body}, status=status, headers=headers)


async def read_params(request: web.Request) -> dict[str, Any]:
    """The query string plus, for a POST, the form body, decoded Stripe's way (``a[b][0]=v``)."""
    pairs = list(request.query.items())
    if request.method == "POST" and request.can_read_body:
        form = await request.post()
        pairs += [(k, v) for k, v in form.items() if isinstance(v, str)]
    return decode(pairs)


def check_params(
    params: dict[str, Any], allowed: set[str], required: frozenset[str] | set[str] = frozenset()
) -> None:
    for name in params:
        if name not in allowed and name != "expand":
            raise ParamError(f"Received unknown parameter: {name}", name, "parameter_unknown")
    for name in sorted(required):
        if name not in params or params[name] == "":
            raise ParamError(f"Missing required param: {name}.", name, "parameter_missing")


def check_metadata(meta: Any, param: str = "metadata") -> dict[str, str]:
    if meta in (None, ""):
        return {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ParamError("Invalid object", param)
    if len(meta) > 50:
        raise ParamError("Metadata can have up to 50 keys", param)
    for k, v in meta.items():
        if len(k) > 40:
            raise ParamError(f"Metadata keys can be up to 40 characters long: {k}", f"{param}[{k}]")
        if len(v) > 500:
            raise ParamError(
                f"Metadata values can be up to 500 characters long: {k}", f"{param}[{k}]"
            )
    return meta


def check_len(params: dict[str, Any], name: str, limit: int) -> None:
    v = params.get(name)
    if v is not None and (not isinstance(v, str) or len(v) > limit):
        raise ParamError(f"Invalid string: {name} must be at most {limit} characters", name)


def check_tiers(p: dict[str, Any]) -> None:
    """billing_scheme=tiered needs tiers_mode and tiers, the last one up_to=inf, each with an
    amount; per_unit (the default) needs unit_amount(_decimal) and no tiers."""
    if p.get("billing_scheme", "per_unit") not in ("per_unit", "tiered"):
        raise ParamError("Invalid billing_scheme", "billing_scheme")
    if p.get("billing_scheme") != "tiered":
        if "tiers" in p or "tiers_mode" in p:
            raise ParamError("tiers need billing_scheme=tiered", "tiers")
        return
    tiers = p.get("tiers")
    if p.get("tiers_mode") not in ("graduated", "volume"):
        raise ParamError("Missing required param: tiers_mode.", "tiers_mode")
    if not isinstance(tiers, list) or not tiers or not all(isinstance(t, dict) for t in tiers):
        raise ParamError("Missing required param: tiers.", "tiers")
    for i, t in enumerate(tiers):
        last = i == len(tiers) - 1
        if (t.get("up_to") == "inf") != last or (not last and not str(t.get("up_to")).isdigit()):
            raise ParamError(
                "Only the last tier may be up_to=inf, and it must be", f"tiers[{i}][up_to]"
            )
        if "unit_amount" not in t and "unit_amount_decimal" not in t and "flat_amount" not in t:
            raise ParamError("Each tier needs an amount", f"tiers[{i}]")
