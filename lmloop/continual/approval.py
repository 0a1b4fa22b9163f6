"""A person's approval of a promotion the gate recommends (``continual.approval: required``): the request
and the answer live in the cycle's journal, so an answer given while no cycle waits (the waiting process was
killed) is applied by the rerun, and a rerun never asks twice."""

from __future__ import annotations

import getpass
import os
import socket
import time

from lmloop.continual.journal import ApprovalAnswer, ApprovalRequest, CycleJournal, awaiting_approval
from lmloop.core.errors import UserError
from lmloop.data.state import State
from lmloop.promotion.values import GateDecision


def request(
    state: State,
    batch: str,
    *,
    challenger: str,
    champion: str | None,
    corpus: str,
    files: list[dict[str, str]],
    flow_run_id: str | None,
    hours: float,
) -> ApprovalRequest:
    """Record that ``batch``'s promotion waits (from this process, in ``flow_run_id``); a rerun keeps the
    first request's deadline (the timeout counts from the first time a person was asked)."""
    journal = CycleJournal.of(state, batch)
    now = time.time()
    first = journal.approval
    made = ApprovalRequest(
        challenger=challenger,
        champion=champion,
        corpus=corpus,
        files=files,
        flow_run_id=flow_run_id,
        pid=os.getpid(),
        host=socket.gethostname(),
        requested_at=first.requested_at if first else now,
        expires_at=first.expires_at if first else now + hours * 3600.0,
    )
    journal.awaiting(state, made)
    return made


def answer(
    state: State, batch: str, *, approved: bool, comment: str, via: str, by: str | None = None
) -> ApprovalAnswer:
    """A person's answer to ``batch``'s request, recorded (the first answer stands); a user's mistake when
    ``batch`` waits for none."""
    journal = CycleJournal.of(state, batch)
    if journal.approval is None or journal.outcome is not None:
        waiting = ", ".join(j.batch for j in awaiting_approval(state)) or "none"
        raise UserError(f"{batch} is not waiting for an approval (waiting now: {waiting})")
    if journal.answer is not None:
        raise UserError(f"{batch} was answered already: {journal.answer.note()}")
    given = ApprovalAnswer(approved=approved, by=by or getpass.getuser(), at=time.time(), comment=comment, via=via)
    return journal.answered(state, given).answer or given


def timed_out(state: State, batch: str, hours: float) -> ApprovalAnswer:
    made = ApprovalAnswer(
        approved=False, by="lmloop", at=time.time(), comment=f"no answer within {hours:g} hours", via="timeout"
    )
    return CycleJournal.of(state, batch).answered(state, made).answer or made


def waiting_process_alive(made: ApprovalRequest) -> bool:
    """Whether the process that asked still waits (on this machine: its pid is alive; elsewhere: assumed)."""
    if made.host != socket.gethostname():
        return True
    try:
        os.kill(made.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def with_answer(decision: GateDecision, given: ApprovalAnswer) -> GateDecision:
    """The gate's recommendation as the person decided it: promoted only when approved; why, in the reason."""
    return decision.model_copy(
        update={
            "promote": decision.promote and given.approved,
            "reason": f"{decision.reason}; {given.note()}",
            "approval": given.note(),
        }
    )
