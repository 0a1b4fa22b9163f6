"""The journal of one continual cycle, ``state/cycles/<batch>.json``: the parent it was planned from, the
gate's decision, what applying it did, and its close. One class with its transitions; each writes the file
atomically, so a rerun after a crash reads back how far the cycle got and repeats nothing already done.
"""

from __future__ import annotations

import json
import time

from lmloop.core.faults import crash_point
from lmloop.core.files import write_text_atomic
from lmloop.core.values import Value
from lmloop.data.state import State
from lmloop.data.values import Corpus
from lmloop.promotion.gate import report_markdown
from lmloop.promotion.values import GateDecision, PromotionOutcome


class Closing(Value):
    """What closing the cycle records: its corpus (trained ids, replay, frozen slice) and its landing files."""

    corpus: str
    files: list[dict[str, str]]


class ApprovalRequest(Value):
    """A promotion the gate recommends, waiting for a person: which versions, where the cycle's corpus is (a
    rerun after a crash applies the answer without training again), the flow run that waits and until when."""

    challenger: str
    champion: str | None
    corpus: str
    files: list[dict[str, str]]
    flow_run_id: str | None
    pid: int
    host: str
    requested_at: float
    expires_at: float


class ApprovalAnswer(Value):
    """A person's answer (or the timeout's): who, when, why, and how it came (``lmloop approve``, the Prefect UI)."""

    approved: bool
    by: str
    at: float
    comment: str = ""
    via: str

    def note(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.at))
        verb = "approved" if self.approved else "rejected"
        return f"{verb} by {self.by} at {when} via {self.via}" + (f": {self.comment}" if self.comment else "")


class CycleJournal(Value):
    batch: str
    parent: str | None = None  # the champion version the cycle warm-starts from and is judged against
    decision: GateDecision | None = None
    approval: ApprovalRequest | None = None
    answer: ApprovalAnswer | None = None
    outcome: PromotionOutcome | None = None
    closing: Closing | None = None
    closed: bool = False

    @classmethod
    def of(cls, state: State, batch: str) -> CycleJournal:
        path = state.cycle_file(batch)
        return (
            cls.model_validate({**json.loads(path.read_text()), "batch": batch}) if path.exists() else cls(batch=batch)
        )

    def _moved(self, state: State, **changes: object) -> CycleJournal:
        moved = self.model_validate({**self.model_dump(), **changes})
        write_text_atomic(state.cycle_file(self.batch), moved.model_dump_json(indent=2, exclude={"batch"}))
        return moved

    def planned(self, state: State, parent: str) -> CycleJournal:
        return self._moved(state, parent=parent)

    def judged(self, state: State, decision: GateDecision) -> CycleJournal:
        return self._moved(state, decision=decision)

    def awaiting(self, state: State, request: ApprovalRequest) -> CycleJournal:
        return self._moved(state, approval=request)

    def answered(self, state: State, answer: ApprovalAnswer) -> CycleJournal:
        """The first answer stands (a person's, then the flow's copy of the same, never both)."""
        return self if self.answer is not None else self._moved(state, answer=answer)

    def decided(self, state: State, outcome: PromotionOutcome) -> CycleJournal:
        return self._moved(state, outcome=outcome)

    def closing_with(self, state: State, corpus: Corpus, files: list[dict[str, str]]) -> CycleJournal:
        return self._moved(state, closing=Closing(corpus=corpus.root, files=files))

    def finish_close(self, state: State) -> CycleJournal:
        """The batch's training documents count as trained on, its corpus becomes a replay source, its test
        split a frozen slice, its files are consumed (watermark); then the cycle is closed. Each step is
        idempotent: an interrupted close is finished by running it again."""
        assert self.closing is not None, f"cycle {self.batch}: closing was never recorded"
        state.record_training_data(Corpus(root=self.closing.corpus), self.batch)
        crash_point("cycle-recorded")
        state.advance_watermark(self.closing.files, self.batch)
        return self._moved(state, closed=True)


def apply_gate(
    decision: GateDecision, *, name: str, challenger: str, champion: str | None, state: State
) -> PromotionOutcome:
    """Apply the gate's decision on ``challenger`` (judged against ``champion``) under the promotion lock
    and render its report with both versions, once per batch: a rerun returns what the journal recorded."""
    from lmloop.promotion.moves import promote_if_better  # MLflow: not for reading a journal (`has_work`)

    journal = CycleJournal.of(state, decision.batch)
    if journal.outcome is not None:
        return journal.outcome
    outcome = promote_if_better(
        name,
        challenger,
        judged_against=champion,
        promote=decision.promote,
        reason=decision.reason,
        numbers=decision.numbers(),
        state=state,
    )
    report = report_markdown(decision.comparison, champion, challenger)
    if decision.approval:
        report += f"\n**Approval:** {decision.approval}\n"
    if not outcome.promoted and decision.promote:
        report += f"\n**Not applied:** {outcome.reason}\n"
    outcome = outcome.model_copy(update={"report": report})
    crash_point("promotion-recorded")
    journal.decided(state, outcome)
    return outcome


def close_cycle(state: State, corpus: Corpus, files: list[dict[str, str]], batch: str) -> None:
    """The end of a continual cycle as one recorded transition: the intent first, then each step
    (:meth:`CycleJournal.finish_close`); a close a crash interrupted is finished by :func:`finish_pending`."""
    CycleJournal.of(state, batch).closing_with(state, corpus, files).finish_close(state)


def _interrupted(state: State) -> list[CycleJournal]:
    journals = [CycleJournal.of(state, path.stem) for path in state.cycle_files()]
    return [j for j in journals if j.closing is not None and not j.closed]


def awaiting_approval(state: State) -> list[CycleJournal]:
    """Cycles whose recommended promotion waits for a person's answer."""
    journals = [CycleJournal.of(state, path.stem) for path in state.cycle_files()]
    return [j for j in journals if j.approval is not None and j.answer is None and j.outcome is None]


def pending(state: State) -> list[str]:
    """Cycles whose close a crash interrupted."""
    return [j.batch for j in _interrupted(state)]


def finish_pending(state: State) -> list[str]:
    """Complete every cycle whose close a crash interrupted; returns their batch names."""
    return [j.finish_close(state).batch for j in _interrupted(state)]
