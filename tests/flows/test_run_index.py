"""The run index after the MLflow store was lost: a stale entry starts a new run instead of failing forever."""

import logging

from lmloop.core import settings
from lmloop.core.config import PipelineConfig
from lmloop.registry import tracking
from lmloop.registry.runs import RunIndex, run_key


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_run_the_store_no_longer_has_is_replaced_by_a_new_one(prefect_harness) -> None:
    from prefect import flow

    from tasks.tracking import start_tracking

    home, key, lost = settings.home(), run_key("lost-store-test"), "0" * 32
    index = RunIndex(home.work / "index")
    index.record(key, lost, "failed")  # a failed run, resumable, but its store is gone
    assert index.resumable(key) == lost

    @flow
    def opener() -> str:
        return start_tracking(PipelineConfig(), "lost-store", ["x.txt"], key=key, home=home).run_id

    collect = _Collect()
    logging.getLogger("prefect.task_runs").addHandler(collect)  # the run logger the Prefect UI shows
    try:
        run_id = opener()
    finally:
        logging.getLogger("prefect.task_runs").removeHandler(collect)
    assert run_id != lost and tracking.run_exists(run_id)
    assert any(lost in m and "new run" in m for m in collect.messages), collect.messages
    index.record(key, run_id, "failed")
    assert index.resumable(key) == run_id, "an entry whose run exists is still resumed"
