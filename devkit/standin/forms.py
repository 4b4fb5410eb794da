"""Stripe's request encoding: ``a[b][0][c]=v`` form fields into nested dicts and lists.

``decode(pairs)`` raises ``FormError`` for fields whose brackets do not nest consistently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_PART = re.compile(r"\[([^\[\]]*)\]")
_HEAD = re.compile(r"^[A-Za-z0-9_]+$")


class FormError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _split(name: str) -> list[str]:
    head, _, rest = name.partition("[")
    if not _HEAD.match(head):
        raise FormError(name, f"Invalid parameter name: {name}")
    parts = [head]
    if rest:
        rest = "[" + rest
        found = _PART.findall(rest)
        if "".join(f"[{p}]" for p in found) != rest:
            raise FormError(name, f"Invalid parameter name: {name}")
        parts.extend(found)
    return parts


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_listify(node[k]) for k in sorted(node, key=int)]
        return {k: _listify(v) for k, v in node.items()}
    return node


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for name, value in pairs:
        parts = _split(name)
        node = root
        for i, given in enumerate(parts):
            last = i == len(parts) - 1
            # "a[]" appends: the next index
            part = given if given else str(sum(1 for k in node if k.isdigit()))
            if last:
                if isinstance(node.get(part), dict):
                    raise FormError(name, f"Invalid parameter name: {name}")
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise FormError(name, f"Invalid parameter name: {name}")
                node = child
    return _listify(root)  # type: ignore[no-any-return]
