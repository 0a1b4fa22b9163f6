"""The promotion room's value: the gate's decision, champion against challenger, with its figures."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lmloop.core.values import Value


class GateDecision(Value):
    """Champion vs challenger on the new batch's held-out split and every frozen slice."""

    promote: bool
    reason: str
    batch: str
    slices: dict[str, dict[str, float]]
    comparison: dict[str, Any] = Field(description="lmloop.promotion.gate.Decision as a dict: slices, CIs, probe.")
    probe: dict[str, Any] = Field(default_factory=dict)

    def numbers(self) -> dict[str, float]:
        """The decision's key figures, flat: for model-version tags and run metrics."""
        new = self.comparison["new_slice"]
        out = {"new_slice_improvement": new["improvement"], "new_slice_ci_low": new["ci_low"]}
        for cmp in [new, *self.comparison.get("old_slices", [])]:  # both models, on the same documents
            out |= {
                f"slice.{cmp['name']}.champion_bits_per_byte": cmp["champion_bpb"],
                f"slice.{cmp['name']}.challenger_bits_per_byte": cmp["challenger_bpb"],
            }
        for metric, (champ, chall, _) in self.comparison.get("classification", {}).items():
            out |= {f"probe_{metric}_champion": champ, f"probe_{metric}_challenger": chall}
        return out
