"""The producer sends with the settings it is given: a broker URL or queue passed in is the one
used, not the process's own (``app.queue.producer``)."""

from __future__ import annotations

from app import queue
from app.config import Settings


def test_a_producer_is_built_from_and_cached_per_the_settings_given() -> None:
    one = Settings(broker_url="redis://127.0.0.1:6390/1", task_queue="q-one")
    other = Settings(broker_url="redis://127.0.0.1:6391/2", task_queue="q-two")
    first, second = queue.producer(one), queue.producer(other)
    assert first.conf.broker_url == "redis://127.0.0.1:6390/1"
    assert first.conf.task_default_queue == "q-one"
    assert second.conf.broker_url == "redis://127.0.0.1:6391/2"
    assert second.conf.task_default_queue == "q-two"
    # The same configuration again, even from another Settings object: the same app (its pool).
    again = Settings(broker_url="redis://127.0.0.1:6390/1", task_queue="q-one")
    assert queue.producer(again) is first
