"""Answering a promotion that waits for a person (``continual.approval: required``): ``approve`` and
``reject``. The answer is journalled first (a rerun of a stopped cycle applies it), then the waiting flow
run is resumed through the Prefect API with the same answer as its input."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.app import JsonOpt, app, console, emit_json, runnable, user_error
from lmloop.core import settings
from lmloop.core.errors import UserError

BatchArg = Annotated[str, typer.Argument(help="The batch waiting, as printed by the cycle and `lmloop status`.")]


@app.command()
def approve(
    batch: BatchArg,
    comment: Annotated[str, typer.Option(help="Why (kept in the gate history and on the version).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Approve the promotion a continual cycle waits for: the challenger becomes @champion."""
    _answer(batch, approved=True, comment=comment, as_json=as_json)


@app.command()
def reject(
    batch: BatchArg,
    reason: Annotated[str, typer.Option(help="Why the promotion is refused.")] = ...,  # type: ignore[assignment]
    as_json: JsonOpt = False,
) -> None:
    """Reject the promotion a continual cycle waits for: the champion stays, the batch is closed."""
    _answer(batch, approved=False, comment=reason, as_json=as_json)


def _answer(batch: str, *, approved: bool, comment: str, as_json: bool) -> None:
    from lmloop.continual import approval
    from lmloop.continual.journal import CycleJournal
    from lmloop.data.state import State

    state = State(settings.home().state)
    verb = "approve" if approved else "reject"
    try:
        given = approval.answer(state, batch, approved=approved, comment=comment, via=f"lmloop {verb}")
    except UserError as exc:
        if as_json:
            emit_json({"status": "error", "error": str(exc)})
        raise user_error(exc) from exc
    request = CycleJournal.of(state, batch).approval
    assert request is not None
    resumed = False
    if request.flow_run_id and approval.waiting_process_alive(request):
        resumed = _resume(request.flow_run_id, approved=approved, comment=comment, by=given.by)
    console.print(f"{batch}: {given.note()}", markup=False)
    if resumed:
        console.print("the waiting cycle goes on now")
    else:
        console.print(
            f"no cycle is waiting right now: the next `{runnable('lmloop')} continual` (or the schedule) applies it",
            soft_wrap=True,
        )
    if as_json:
        emit_json({"status": "ok", "batch": batch, **given.model_dump(mode="json"), "resumed": resumed})


def _resume(flow_run_id: str, *, approved: bool, comment: str, by: str) -> bool:
    """Resume the paused flow run with the answer as its input; False when it no longer waits."""
    from uuid import UUID

    from prefect.exceptions import FlowPauseTimeout, NotPausedError
    from prefect.flow_runs import resume_flow_run

    from cli.running import prefect_api

    with prefect_api():
        try:
            resume_flow_run(UUID(flow_run_id), run_input={"approve": approved, "comment": comment, "by": by})
        except (NotPausedError, FlowPauseTimeout):
            return False
    return True
