"""The promotion room's values: the gate's decision (champion against challenger, with its figures) and what
applying a decision, or a rollback, did to ``@champion``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lmloop.core.values import Value
from lmloop.promotion.gate import Decision


class GateDecision(Value):
    """Champion vs challenger on the new batch's held-out split and every frozen slice."""

    promote: bool
    reason: str
    batch: str
    slices: dict[str, dict[str, float]]
    comparison: Decision
    probe: dict[str, Any] = Field(default_factory=dict)
    approval: str | None = None  # a person's answer (who, when, why), when promotion needed one

    def numbers(self) -> dict[str, float]:
        """The decision's key figures, flat: for model-version tags and run metrics."""
        out: dict[str, float] = {}
        if new := self.comparison.new_slice:
            out |= {"new_slice_improvement": new.improvement, "new_slice_ci_low": new.ci_low}
        for cmp in self.comparison.judged():  # both models, on the same documents
            out |= {
                f"slice.{cmp.name}.champion_bits_per_byte": cmp.champion_bpb,
                f"slice.{cmp.name}.challenger_bits_per_byte": cmp.challenger_bpb,
            }
        for metric, (champ, chall, _) in self.comparison.classification.items():
            out |= {f"probe_{metric}_champion": champ, f"probe_{metric}_challenger": chall}
        return out


class PromotionOutcome(Value):
    """What a decision did, applied under the promotion lock: ``promoted``, why, and the champion after it.
    ``champion_moved``: the champion changed while the challenger was judged (not promoted; its batch is
    left new). ``report``: the gate's Markdown report, when the LM gate made the decision."""

    promoted: bool
    reason: str
    champion_version: str | None
    champion_moved: bool = False
    report: str = ""


class RollbackOutcome(Value):
    """``@champion`` moved back by hand: from ``previous_champion`` to ``champion_version``, and why."""

    model_name: str
    champion_version: str
    previous_champion: str | None
    reason: str
