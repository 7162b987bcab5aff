"""The request budget shared by every upload and index job: at most N requests in any 60 seconds."""

from __future__ import annotations

import threading

from sensorcharts.providers import RateLimiter


class FakeTime:
    """A clock that moves only when someone sleeps: what each caller waited is recorded, never measured."""

    def __init__(self, start: float = 1_000_000.0):
        self.now, self.slept, self.lock = start, [], threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(round(seconds, 6))
            self.now += seconds


def test_a_burst_within_the_window_goes_at_once_and_the_next_waits_for_the_oldest():
    t = FakeTime()
    limiter = RateLimiter(3, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        limiter.acquire()
    assert t.slept == []
    t.now += 10
    limiter.acquire()  # the 4th within a minute waits until the 1st is 60 s old
    assert t.slept == [50.0]


def test_processes_sharing_the_file_share_one_window(tmp_path):
    t = FakeTime()
    first = RateLimiter(2, tmp_path / "rate", clock=t.clock, sleep=t.sleep)
    second = RateLimiter(2, tmp_path / "rate", clock=t.clock, sleep=t.sleep)
    first.acquire()
    second.acquire()
    assert t.slept == []
    first.acquire()
    assert t.slept == [60.0]


def test_a_retry_after_holds_every_caller(tmp_path):
    t = FakeTime()
    limiter = RateLimiter(600, tmp_path / "rate", clock=t.clock, sleep=t.sleep)
    RateLimiter(600, tmp_path / "rate", clock=t.clock, sleep=t.sleep).hold(30)
    limiter.acquire()
    assert t.slept == [30.0]


def test_a_rate_below_one_a_minute_spaces_single_requests():
    t = FakeTime()
    limiter = RateLimiter(0.5, clock=t.clock, sleep=t.sleep)
    limiter.acquire()
    limiter.acquire()
    assert t.slept == [120.0]
