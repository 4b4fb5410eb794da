"""The circuit breaker's states, on a pinned clock."""

from __future__ import annotations

from authz.breaker import Breaker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_opens_after_threshold_and_probes_once_after_cooldown():
    """Closed until N failures; open for the cooldown; then exactly one probe."""
    clock = Clock()
    b = Breaker(3, 1.0, now=clock)
    for _ in range(2):
        b.failure()
    assert b.allow() and not b.is_open
    b.failure()
    assert b.is_open and not b.allow()
    clock.t += 1.01
    assert b.allow()  # the probe
    assert not b.allow()  # only one at a time


def test_probe_success_closes_and_failure_reopens():
    """A good probe closes the breaker; a bad one opens it for another cooldown."""
    clock = Clock()
    b = Breaker(1, 1.0, now=clock)
    b.failure()
    clock.t += 1.5
    assert b.allow()
    b.failure()
    assert b.is_open and not b.allow()
    clock.t += 1.5
    assert b.allow()
    b.success()
    assert not b.is_open and b.allow() and b.allow()


def test_success_resets_the_failure_count():
    """Failures must be consecutive to open the breaker."""
    b = Breaker(2, 1.0, now=Clock())
    b.failure()
    b.success()
    b.failure()
    assert not b.is_open
