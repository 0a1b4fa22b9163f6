"""The promotion gate: does the challenger beat the champion on the same frozen eval slices?

Both models score every document of every slice (NLL in bits, and its UTF-8 bytes). On the new
slice the improvement is the champion's minus the challenger's bits per byte, and a paired
bootstrap over documents gives its 95% confidence interval: promote only if the whole interval
lies above ``margin``. On every old slice the challenger may be worse by at most ``tolerance``
bits per byte (the forgetting guard); configured classification metrics may drop at most their
tolerance. The decision, every number and the reason come back as one record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from lmloop.core.values import Value

if TYPE_CHECKING:  # the gate only reads scores; importing evaluation (torch) would slow `lmloop status`
    from lmloop.evaluation.evaluate import DocScores

LN2 = float(np.log(2))


class SliceComparison(Value):
    name: str
    documents: int
    champion_bpb: float
    challenger_bpb: float
    improvement: float  # champion - challenger, bits per byte: > 0 means the challenger is better
    ci_low: float
    ci_high: float


class Decision(Value):
    """What the gate found: promote or not, why, and every comparison it judged on."""

    promote: bool
    reason: str
    new_slice: SliceComparison | None
    old_slices: list[SliceComparison] = Field(default_factory=list)
    # metric -> (champion, challenger, allowed drop), from the linear probe
    classification: dict[str, tuple[float, float, float]] = Field(default_factory=dict)

    def judged(self) -> list[SliceComparison]:
        """The new slice first, then the old ones."""
        return ([self.new_slice] if self.new_slice else []) + self.old_slices


def paired_bootstrap(
    champion: DocScores, challenger: DocScores, name: str, *, samples: int = 2000, seed: int = 0
) -> SliceComparison:
    """Improvement in bits per byte on one slice, with a 95% CI from resampling documents (paired)."""
    if len(champion.nll) != len(challenger.nll) or not np.array_equal(champion.bytes, challenger.bytes):
        raise ValueError(f"slice {name!r}: champion and challenger must score the same documents")
    delta_bits = (champion.nll - challenger.nll) / LN2
    n = len(delta_bits)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(samples, n))
    boot = delta_bits[idx].sum(axis=1) / champion.bytes[idx].sum(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return SliceComparison(
        name=name,
        documents=n,
        champion_bpb=champion.bits_per_byte(),
        challenger_bpb=challenger.bits_per_byte(),
        improvement=float(delta_bits.sum() / champion.bytes.sum()),
        ci_low=float(low),
        ci_high=float(high),
    )


def decide(
    new: tuple[str, DocScores, DocScores] | None,
    old: list[tuple[str, DocScores, DocScores]],
    margin: float,
    tolerance: float,
    classification: dict[str, tuple[float, float, float]] | None = None,
    samples: int = 2000,
) -> Decision:
    """``new``/``old``: (slice name, champion scores, challenger scores). ``classification``: metric ->
    (champion value, challenger value, allowed drop). Returns the decision with its reason."""
    new_cmp = paired_bootstrap(new[1], new[2], new[0], samples=samples) if new else None
    old_cmp = [paired_bootstrap(c, h, name, samples=samples) for name, c, h in old]
    reasons = []
    if new_cmp is None:
        reasons.append("no new held-out slice to judge improvement on")
    elif new_cmp.ci_low <= margin:
        reasons.append(
            f"new slice {new_cmp.name!r}: improvement {new_cmp.improvement:+.4f} bits/byte, 95% CI "
            f"[{new_cmp.ci_low:+.4f}, {new_cmp.ci_high:+.4f}] not entirely above the margin {margin:+.4f}"
        )
    for cmp in old_cmp:
        if cmp.improvement < -tolerance:
            reasons.append(
                f"forgetting on {cmp.name!r}: {cmp.challenger_bpb:.4f} vs champion {cmp.champion_bpb:.4f} bits/byte "
                f"(worse by {-cmp.improvement:.4f} > tolerance {tolerance:.4f})"
            )
    for metric, (champ, chall, allowed) in (classification or {}).items():
        if chall < champ - allowed:
            reasons.append(f"{metric} dropped from {champ:.4f} to {chall:.4f} (allowed drop {allowed:.4f})")
    if reasons:
        return Decision(
            promote=False,
            reason="; ".join(reasons),
            new_slice=new_cmp,
            old_slices=old_cmp,
            classification=dict(classification or {}),
        )
    assert new_cmp is not None
    why = (
        f"better on {new_cmp.name!r} by {new_cmp.improvement:+.4f} bits/byte (95% CI [{new_cmp.ci_low:+.4f}, "
        f"{new_cmp.ci_high:+.4f}] > margin {margin:+.4f}); no old slice worse than {tolerance:.4f}"
    )
    if classification:
        why += "; " + ", ".join(f"{m} {c:.4f} -> {h:.4f} within {a:.4f}" for m, (c, h, a) in classification.items())
    return Decision(
        promote=True, reason=why, new_slice=new_cmp, old_slices=old_cmp, classification=dict(classification or {})
    )


def report_markdown(decision: Decision, champion: str | None, challenger: str) -> str:
    verdict = "PROMOTED" if decision.promote else "REJECTED"
    lines = [
        f"# Gate: challenger v{challenger} {verdict} (champion v{champion or '-'})",
        "",
        f"**Reason:** {decision.reason}",
        "",
        "| slice | docs | champion bits/byte | challenger bits/byte | improvement | 95% CI |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for cmp in decision.judged():
        lines.append(
            f"| {cmp.name} | {cmp.documents} | {cmp.champion_bpb:.4f} | {cmp.challenger_bpb:.4f} | "
            f"{cmp.improvement:+.4f} | [{cmp.ci_low:+.4f}, {cmp.ci_high:+.4f}] |"
        )
    if decision.classification:
        lines += [
            "",
            "| classification metric (linear probe) | champion | challenger | allowed drop |",
            "|---|---:|---:|---:|",
        ]
        for metric, (champ, chall, allowed) in decision.classification.items():
            lines.append(f"| {metric} | {champ:.4f} | {chall:.4f} | {allowed:.4f} |")
    return "\n".join(lines) + "\n"
