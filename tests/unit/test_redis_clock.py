"""The Redis clock estimate: the least delayed reply wins, and old samples are forgotten."""

from __future__ import annotations

from authz.redis_clock import WINDOW_S, RedisClock


class Clocks:
    def __init__(self) -> None:
        self.ms = 1_000_000.0
        self.mono = 0.0


def test_no_deadline_before_a_sample_then_the_best_sample_dates_it():
    c = Clocks()
    clock = RedisClock(now_ms=lambda: c.ms, monotonic=lambda: c.mono)
    assert clock.deadline(80) == ""
    clock.learn(int(c.ms) + 500 - 3)  # Redis is 500 ms ahead; this reply took 3 ms to arrive
    clock.learn(int(c.ms) + 500 - 1)  # a faster reply: a better estimate
    clock.learn(int(c.ms) + 500 - 9)  # a slow one changes nothing
    assert clock.offset_ms == 499
    assert clock.deadline(80) == str(int(c.ms) + 499 + 80)


def test_samples_older_than_the_window_are_forgotten():
    c = Clocks()
    clock = RedisClock(now_ms=lambda: c.ms, monotonic=lambda: c.mono)
    clock.learn(int(c.ms) + 100)
    c.mono += WINDOW_S + 0.1
    clock.learn(int(c.ms) + 40)  # the clocks drifted: the new window's best sample takes over
    c.mono += WINDOW_S + 0.1
    clock.learn(int(c.ms) + 40)
    assert clock.offset_ms == 40
