"""The MLflow run around a flow: opened (or resumed after a crash) first, finished last."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger, task
from prefect.exceptions import TerminationSignal

from lmloop.core.config import PipelineConfig
from lmloop.core.errors import UserError
from lmloop.core.faults import crash_point
from lmloop.core.settings import Home
from lmloop.core.values import Run
from lmloop.data.gate import DataValidationError
from lmloop.registry import tracking
from lmloop.registry.report import RunReport
from lmloop.registry.runs import RunIndex

# What stops a flow from outside: Ctrl-C, a stop request, and SIGTERM where Prefect's own handler takes it
# (while a flow runs and no stop request listens: Prefect raises TerminationSignal, then hands the signal on)
INTERRUPTS = (KeyboardInterrupt, SystemExit, TerminationSignal)


@task(retries=2, retry_delay_seconds=2)
def start_tracking(config: PipelineConfig, run_name: str | None, sources: list[str], *, key: str, home: Home) -> Run:
    """Open the MLflow run every stage logs into, or resume the one ``key``'s crashed or failed attempt left."""
    index = RunIndex(home.run_index)
    previous = index.resumable(key)
    if previous and not tracking.run_exists(previous):
        get_run_logger().warning(
            "the run index points at MLflow run %s, which %s no longer has: starting a new run",
            previous,
            tracking.tracking_uri(),
        )
        previous = None
    if previous:
        tracking.reopen_run(previous)
        index.record(key, previous, "running")
        return Run(run_id=previous, home=home)
    tags = {"lmloop.config_hash": config.digest(), **_prefect_links()}
    run_id = tracking.start_run(config.registry.experiment, run_name, tags)
    tracking.log_params(run_id, {**config.flat(), "data.sources": sources})
    tracking.log_dict(run_id, config.model_dump(mode="json"), "config.json")
    index.record(key, run_id, "running")
    return Run(run_id=run_id, home=home)


def _prefect_links() -> dict[str, str]:
    """The Prefect flow run this MLflow run belongs to, and its description with the link (the UI's
    description panel renders Markdown)."""
    from prefect.runtime import flow_run

    if not flow_run.get_id():
        return {}
    url = flow_run.get_flow_run_ui_url() or ""  # none when the command's own server stops with it
    name = f"{flow_run.get_flow_name()}/{flow_run.get_name()}"
    what = f"Prefect flow run [{name}]({url})" if url else f"Prefect flow run {name} (`lmloop ui` shows it)"
    return {
        "lmloop.prefect.flow_run_id": str(flow_run.get_id()),
        "lmloop.prefect.flow_run_url": url,
        "mlflow.note.content": f"Started by {what}.",
    }


# What each stage handled, from the metrics it logged: (metric, unit), first found wins.
_AMOUNTS = {
    "ingest_data": [("ingest_rows_read", "rows read"), ("ingest_bytes_read", "bytes")],
    "validate_data": [("data_rows", "documents accepted")],
    "split_data": [("train_documents", "training documents")],
    "mix_and_pack": [("new_documents", "new documents")],
    "tokenize_and_pack": [("train_blocks", "training blocks")],
    "pretrain_model": [("train_tokens", "tokens")],
    "finetune_lm": [("train_tokens", "tokens")],
    "evaluate_model": [("test_tokens", "test tokens"), ("test_documents", "test documents")],
}


def _amount(stage: str, metrics: dict[str, float]) -> str:
    found = next(((metrics[m], unit) for m, unit in _AMOUNTS.get(stage, []) if m in metrics), None)
    return f"{found[0]:,.0f} {found[1]}" if found else ""


def _stage_table(run: Run) -> None:
    """A Prefect table artifact (and the same table in the MLflow run): each stage's task, what it handled
    (rows, documents, tokens), its state and seconds."""
    from prefect.artifacts import create_table_artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.runtime import flow_run

    if not flow_run.get_id():
        return
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.get_id()])))
    metrics = tracking.metrics_with_stages(run.run_id)
    rows = [
        {
            "stage": (stage := t.name.rsplit("-", 1)[0]),
            "amount": _amount(stage, metrics),
            "state": t.state_name or "",
            "seconds": round(t.total_run_time.total_seconds(), 2),
        }
        for t in sorted(tasks, key=lambda t: t.start_time or t.expected_start_time)
        if t.start_time is not None
    ]
    if rows:
        create_table_artifact(rows, key="stages", description=f"Stages of MLflow run {run.run_id}")
        tracking.log_table(run.run_id, rows, "stages.json")


def name_flow_run(name: str) -> None:
    """Name the Prefect flow run this code runs in after what it does (the MLflow run's name), in place of
    Prefect's random one; nothing outside a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if flow_run.get_id():
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.get_id(), name=name)


def tag_flow_run(*tags: str) -> None:
    """Add ``tags`` to the Prefect flow run this code runs in (the UI filters runs by tag)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if flow_run.get_id():
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(flow_run.get_id()).tags
            client.update_flow_run(flow_run.get_id(), tags=list(dict.fromkeys([*current, *tags])))


@task
def finish_tracking(run: Run, key: str, status: str, *, reason: str | None = None) -> None:
    """``status``: complete (FINISHED), rejected (data gate, ``reason`` tagged; a re-run starts afresh),
    refused (a user's mistake found after the run opened, ``reason`` tagged and in its description: KILLED,
    never FAILED; a re-run starts afresh) or failed (resumable). An interrupted run (Ctrl-C, SIGTERM) ends
    KILLED, and is resumable."""
    if status == "rejected":
        tracking.set_tags(run.run_id, {"gate.decision": "data_rejected", "gate.reason": (reason or "")[:5000]})
    if status == "refused":
        why = (reason or "")[:5000]
        tracking.set_tags(run.run_id, {"lmloop.outcome": "refused", "lmloop.refused": why})
        tracking.set_tags(run.run_id, {"mlflow.note.content": f"**Refused:** {why}"})
    if status == "complete":
        try:  # a report: reading the task runs back must never fail the run it describes
            _stage_table(run)
        except Exception as exc:  # noqa: BLE001
            get_run_logger().warning("stage table not written: %s", exc)
    ended = {"complete": "FINISHED", "refused": "KILLED"}.get(status, "FAILED")
    tracking.finish_run(run.run_id, ended)
    RunIndex(run.home.run_index).record(key, run.run_id, "rejected" if status == "refused" else status)


class _Prefect:
    """Prefect's side of a room's report: artifacts of the flow run, lines in its log."""

    def markdown(self, text: str, key: str, description: str) -> None:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(text, key=key, description=description)

    def link(self, url: str, text: str, description: str) -> None:
        from prefect.artifacts import create_link_artifact

        create_link_artifact(url, link_text=text, description=description)

    def say(self, message: str) -> None:
        get_run_logger().info(message)


def reporter(run: Run) -> RunReport:
    """Where a room reports what a task did: ``run``'s MLflow run (and its parent, for a stage run), and
    this flow run's Prefect artifacts and log."""
    return RunReport(run.run_id, ui=run.home.mlflow_ui, parent_id=run.parent_id, publish=_Prefect())


@contextmanager
def stage_run(run: Run, stage: str) -> Iterator[Run]:
    """One stage of ``run`` as its own MLflow run, nested under it (the experiment view shows the loop:
    a cycle, then its train, evaluate and gate runs); it writes under the parent's work folder."""
    child = Run(run_id=tracking.child_run(run.run_id, stage), home=run.home, parent_id=run.run_id)
    try:
        yield child
    except Exception:
        tracking.finish_run(child.run_id, "FAILED")
        raise
    except INTERRUPTS:
        tracking.finish_run(child.run_id, "KILLED")
        raise
    tracking.finish_run(child.run_id, "FINISHED")


@contextmanager
def tracked_run(
    config: PipelineConfig, run_name: str | None, sources: list[str], *, home: Home, key: str
) -> Iterator[Run]:
    """The MLflow run around a flow's stages: finished as complete, rejected (data gate) or failed (resumable)."""
    run = start_tracking(config, run_name, sources, key=key, home=home)
    try:
        crash_point("run-started")
        yield run
    except DataValidationError as exc:
        finish_tracking(run, key, "rejected", reason=exc.details or str(exc))
        tag_flow_run("decision:data-rejected")
        raise
    except UserError as exc:  # found after the run opened: too little data to pack, a config the base contradicts
        finish_tracking(run, key, "refused", reason=str(exc))
        tag_flow_run("decision:refused")
        raise
    except Exception:
        finish_tracking(run, key, "failed")
        raise
    except INTERRUPTS:  # Ctrl-C / SIGTERM: no new task now, the flow is stopping
        tracking.finish_run(run.run_id, "KILLED")
        RunIndex(run.home.run_index).record(key, run.run_id, "failed")  # resumable, like a failure
        raise
    finish_tracking(run, key, "complete")
