"""Timing of sources: replay timestamped messages at N× real time, and poll live sources at an interval."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Protocol, TypeVar

from backend.errors import Unavailable

log = logging.getLogger(__name__)


class Timestamped(Protocol):
    ts: datetime


T = TypeVar("T", bound=Timestamped)


def paced(messages: Iterable[T], speed: float = 1.0, stop: threading.Event | None = None) -> Iterator[T]:
    """Release each message when its timestamp, counted from the first message's and divided by `speed`, has
    elapsed on the wall clock. Stops early when `stop` is set."""
    stop = stop or threading.Event()
    first: datetime | None = None
    origin = 0.0
    for message in messages:
        if first is None:
            first, origin = message.ts, time.monotonic()
        delay = origin + (message.ts - first).total_seconds() / speed - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        yield message


def polled(read: Callable[[], Iterable[T]], interval: float, count: int | None = None,
           stop: threading.Event | None = None) -> Iterator[T]:
    """Call `read` every `interval` seconds (`count` times, or until `stop`). A failing first read is fatal (wrong
    URL, no driver); later failures are logged and retried at the next tick, as a long-running collector must."""
    stop = stop or threading.Event()
    due, done = time.monotonic(), 0
    while count is None or done < count:
        try:
            yield from read()
        except Unavailable as exc:
            if done == 0:
                raise
            log.warning("%s; retrying in %.0f s", exc, interval)
        done += 1
        if count is not None and done >= count:
            return
        due += interval
        if stop.wait(max(0.0, due - time.monotonic())):
            return
