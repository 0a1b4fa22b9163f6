"""The continual room's value: what one cycle did, each version named for what it is."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lmloop.core.values import Value


class CycleSummary(Value):
    """One continual cycle. ``previous_champion``: the champion it started from and was judged against;
    ``challenger``: the version it trained; ``champion``: the champion after the decision. ``promoted`` is
    None when there was nothing new (``reason`` says why; ``warning`` when the landing folder is missing)."""

    new_files: list[str]
    promoted: bool | None
    reason: str
    previous_champion: str | None
    challenger: str | None
    champion: str | None
    slices: dict[str, dict[str, float]] = Field(default_factory=dict)  # per slice, both versions' figures
    classification: dict[str, Any] = Field(default_factory=dict)  # the linear probe's, when configured
    run_id: str | None = None
    mix: dict[str, int] = Field(default_factory=dict)  # new and replayed documents trained on
    warning: str | None = None
    decision: str | None = None  # nothing-new, deferred, promoted, rejected, data-rejected
    batch: str | None = None
    assessment: dict[str, float] = Field(default_factory=dict)  # the retraining policy's figures
    retrain_reasons: list[str] = Field(default_factory=list)
