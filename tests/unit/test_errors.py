"""One error tree: every error tollway raises on purpose is a TollwayError, and the JSON error
body is built in one place, escaped."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

from authz.http_wire import error as plain
from tollway.errors import TollwayError, error_body

PACKAGES = ("tollway", "authz", "webhook", "metering", "portal", "cli")
# Not errors for a caller: the lean Redis client's transport failures (mapped to
# StoreUnavailable by the check store), and the portal's page-carrying control flow.
OUTSIDE = {"StoreConnectionError", "ReplyLost", "StoreTimeout", "RefusedPage"}


def defined_exceptions() -> list[type[BaseException]]:
    found = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == info.name:
                    found.append(obj)
    return found


def test_every_error_tollway_raises_is_in_the_tree():
    stray = [f"{e.__module__}.{e.__name__}" for e in defined_exceptions()
             if e.__name__ not in OUTSIDE and not issubclass(e, TollwayError)]  # fmt: skip
    assert stray == []


def test_the_error_body_escapes_what_it_carries():
    """A message with quotes, a backslash or a newline stays one valid JSON document, in the
    body authz's HTTP front answers too."""
    message = 'a "quoted" \\ message\nwith a newline'
    assert json.loads(error_body("bad_request", message)) == {
        "error": {"code": "bad_request", "message": message}
    }
    raw = plain(400, "bad_request", message)
    assert json.loads(raw.split(b"\r\n\r\n", 1)[1]) == json.loads(
        error_body("bad_request", message)
    )
