"""Listen on the key-changes channel and close the leases of keys whose record changed.

KeyStore publishes a key id on ``schema.KEY_CHANGES`` after every change to that key's record
(revocation, hold, billing status or tier from a webhook, rotation). Pub/sub delivers at most
once, so after any disconnect every lease is closed, and no new lease is taken until the
subscription is back: whatever was missed meanwhile cannot outlive the reconnect. A lease's
TTL bounds staleness even so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from authz.leases import LeaseBook
from tollway import schema
from tollway.cancel import reraise_if_cancelled
from tollway.logs import fields

log = logging.getLogger("tollway.authz.invalidation")
RECONNECT_S = 0.5


async def listen(redis: Any, leases: LeaseBook, ready: asyncio.Event | None = None) -> None:
    """Run until cancelled."""
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await redis.ping()  # a cluster client learns its slot map first (pub/sub needs it)
            await pubsub.subscribe(schema.KEY_CHANGES)
            leases.close_all()  # anything published before this subscription is unknown
            leases.accepting = True
            if ready is not None:
                ready.set()
            async for message in pubsub.listen():
                data = message.get("data")
                if isinstance(data, str):
                    leases.close(data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dropped connection: close everything, then resubscribe
            reraise_if_cancelled()
            leases.accepting = False  # no new leases until changes can reach them again
            leases.close_all()
            log.warning("invalidation_disconnected", extra=fields(error=repr(exc)))
            await asyncio.sleep(RECONNECT_S)
        finally:
            with contextlib.suppress(Exception):  # the connection may already be gone
                await pubsub.aclose()
