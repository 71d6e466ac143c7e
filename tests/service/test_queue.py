"""Routing: the producer sends with the settings it is given (``app.queue.producer``), each task
to its kind of work's queue, at its priority."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from app import queue
from app.config import Settings
from tests.conftest import REDIS_URL


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


def test_every_kind_of_work_has_a_queue_setting_and_every_task_a_kind() -> None:
    from dlcprune.names import CPU_WORK, GPU_WORK, WORK_KINDS

    settings = Settings(task_queue="dp", queue_score="gpu-jobs")
    assert {kind: settings.queue_name(kind) for kind in WORK_KINDS} == {
        "index": "dp.index",
        "score": "gpu-jobs",
        "shards": "dp.shards",
        "export": "dp.export",
        "evaluate": "dp.evaluate",
    }
    assert set(queue.TASK_KINDS.values()) <= set(WORK_KINDS)
    assert queue.queue_for(queue.RUN_JOB, settings) == "gpu-jobs"
    assert queue.queue_for(queue.INDEX_DATASET, settings) == "dp.index"
    assert queue.worker_queues(GPU_WORK, settings) == ["gpu-jobs", "dp.shards"]
    assert queue.worker_queues(CPU_WORK, settings) == ["dp.index", "dp.export", "dp.evaluate"]
    assert set(GPU_WORK) | set(CPU_WORK) == set(WORK_KINDS) and not set(GPU_WORK) & set(CPU_WORK)
    with pytest.raises(ValueError, match="unknown kinds"):
        queue.worker_queues(("gpu",), settings)
    with pytest.raises(ValueError, match="queue names"):
        Settings(queue_index="a queue; with spaces")


def test_tasks_land_on_their_queue_in_the_list_of_their_priority() -> None:
    """On the real Redis: a task goes to its kind's queue, into the list of its priority
    (``<queue>``, ``<queue>:1``, ``<queue>:2``, high to low), which workers pop in that order."""
    prefix = f"dlcprune_prio_{uuid.uuid4().hex[:8]}"
    settings = Settings(broker_url=REDIS_URL, task_queue=prefix)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ident = uuid.uuid4()
        for priority in ("low", "high", "normal", "high"):
            assert queue.send(queue.RUN_JOB, ident, settings, priority=priority)
        assert queue.send(queue.INDEX_DATASET, ident, settings)
        score = settings.queue_name("score")
        lists = queue.priority_lists(score)
        assert lists == [score, f"{score}:1", f"{score}:2"]
        assert [client.llen(name) for name in lists] == [2, 1, 1]
        index = queue.priority_lists(settings.queue_name("index"))
        assert [client.llen(name) for name in index] == [0, 1, 0]  # normal: the default
        message = json.loads(client.lindex(lists[0], 0))
        assert message["headers"]["task"] == queue.RUN_JOB
        assert message["headers"]["argsrepr"] == repr([str(ident)])
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
