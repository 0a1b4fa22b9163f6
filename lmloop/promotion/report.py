"""The promotion room's report: the gate's decision on a challenger, told to its run (tags, figures, the
Markdown report, the champion-versus-challenger plot), to the version's page in the registry, and to the
flow run as a page for a person."""

from __future__ import annotations

from pathlib import Path

from lmloop.core.plotting import plt, save
from lmloop.core.report import Reporter
from lmloop.promotion.gate import Decision
from lmloop.promotion.values import GateDecision, PromotionOutcome


def gate_comparison(decision: Decision, path: Path, title: str) -> Path:
    """Champion versus challenger bits per byte on every slice the gate judged; the new slice first,
    each labelled with the improvement and its 95% CI."""
    judged = decision.judged()
    names = [s.name for s in judged]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names) + 2), 4.5))
    x = range(len(names))
    width = 0.38
    ax.bar([i - width / 2 for i in x], [s.champion_bpb for s in judged], width, label="champion")
    ax.bar([i + width / 2 for i in x], [s.challenger_bpb for s in judged], width, label="challenger")
    for i, s in enumerate(judged):
        label = f"{s.improvement:+.3f}\n[{s.ci_low:+.3f}, {s.ci_high:+.3f}]"
        ax.text(i, max(s.champion_bpb, s.challenger_bpb), label, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), names, rotation=20, ha="right")
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title(title)
    ax.legend()
    ax.margins(y=0.2)
    return save(fig, path)


def report_gate(
    report: Reporter,
    decision: GateDecision,
    outcome: PromotionOutcome,
    *,
    name: str,
    challenger: str,
    champion: str | None,
    plots: Path,
) -> None:
    """The gate's run and the cycle's run get the decision as tags and its figures as metrics; the gate's
    run its Markdown report and plot; the challenger's version page the report (once); the flow run a page."""
    report.text(outcome.report, "gate/report.md")
    title = f"Gate: challenger v{challenger} vs champion v{champion}"
    report.artifact(gate_comparison(decision.comparison, plots / "gate_comparison.png", title), "gate")
    decided = "promoted" if outcome.promoted else "rejected"
    report.tags({"gate.decision": decided, "gate.reason": outcome.reason[:5000]}, with_parent=True)
    figures = {f"gate_{k}": v for k, v in decision.numbers().items()} | {"gate_promoted": float(outcome.promoted)}
    report.metrics(figures, with_parent=True)
    report.describe_version(name, challenger, outcome.report)  # the version's page shows why it was (not) promoted
    report.markdown(outcome.report, "gate-report", f"{name}: challenger v{challenger}")


def report_classifier_verdict(report: Reporter, outcome: PromotionOutcome, *, name: str, version: str) -> None:
    """The classifier gate's verdict on the run; a classifier refused below its baseline says why on its page."""
    report.tags({"gate.decision": "promoted" if outcome.promoted else "kept", "gate.reason": outcome.reason})
    if not outcome.promoted and outcome.reason.startswith(("below", "statistically tied")):
        report.describe_version(name, version, f"**Not a champion:** {outcome.reason}")
