"""The one owner of ``@champion``: the first champion, promotion after the gate, and rollback — each
under one lock, each recorded.

MLflow's alias update is last-writer-wins, so every move happens inside a database lock and
re-reads ``@champion`` inside the lock: a challenger judged against a champion that has since moved
is not promoted. The lock is an EXCLUSIVE sqlite transaction on ``state/locks.db`` (every process using
that home), or, with ``LMLOOP_LOCK_URL=postgresql://...``, a PostgreSQL advisory lock shared by every
machine of a team. Every move lands as tags on the version and a line in ``state/gate_history.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lmloop.core import locks
from lmloop.core.errors import NoModel, UserError
from lmloop.core.faults import crash_point
from lmloop.data.state import State
from lmloop.promotion.values import PromotionOutcome, RollbackOutcome
from lmloop.registry import model_registry, tracking

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"


@contextmanager
def exclusive(name: str, state: State, timeout: float = 600.0) -> Iterator[None]:
    """Hold the promotion lock for ``name`` while the block runs (other holders wait up to ``timeout``)."""
    with locks.exclusive(name, state.locks_db, timeout):
        yield


def first_champion(name: str, version: str, state: State) -> bool:
    """Make ``version`` the champion when ``name`` has none yet (its first registered model). Returns
    whether it moved the alias."""
    with exclusive(f"champion:{name}", state):
        if model_registry.alias_version(name, CHAMPION) is not None:
            return False
        model_registry.set_alias(name, CHAMPION, version)
        tracking.client().set_model_version_tag(name, version, "gate.decision", "first champion")
        state.record({"event": "first_champion", "model": name, "champion": version, "promoted": True})
    return True


def _already_decided(name: str, challenger: str, state: State) -> dict[str, Any] | None:
    """The recorded gate event for ``challenger``, when a run applied its decision before a crash."""
    events = [e for e in state.history() if e.get("event") == "gate" and e.get("model") == name]
    return next((e for e in reversed(events) if e.get("challenger") == challenger), None)


def promote_if_better(
    name: str,
    challenger: str,
    *,
    judged_against: str | None,
    promote: bool,
    reason: str,
    numbers: dict[str, Any],
    state: State,
) -> PromotionOutcome:
    """Apply a gate decision made against ``judged_against``; re-read the champion under the lock first.
    Idempotent: a decision already applied (a rerun after a crash) is reported, not applied again."""
    with exclusive(f"champion:{name}", state):
        done = _already_decided(name, challenger, state)
        if done is not None:
            promoted = bool(done["promoted"])
            return PromotionOutcome(
                promoted=promoted,
                reason=done["reason"],
                champion_version=challenger if promoted else done["champion"],
                champion_moved=done["reason"].startswith("champion moved"),
            )
        current = model_registry.alias_version(name, CHAMPION)
        resumed = promote and current == challenger  # moved before a crash, not yet recorded
        moved = not resumed and current != judged_against
        if resumed:
            current = judged_against
        elif moved:
            promote, reason = (
                False,
                (
                    f"champion moved from v{judged_against} to v{current} while this challenger was evaluated; "
                    "not promoted, and the batch is left new: the next cycle judges it against the new champion"
                ),
            )
        if promote and not resumed:
            if current is not None:
                model_registry.set_alias(name, PREVIOUS, current)
            model_registry.set_alias(name, CHAMPION, challenger)
        elif not promote:
            model_registry.set_alias(name, CHALLENGER, challenger)
        crash_point("promotion-moved")
        tags = {"gate.decision": "promoted" if promote else "rejected", "gate.reason": reason[:5000]}
        tags |= {"gate.champion_version": current or "", **{f"gate.{k}": v for k, v in numbers.items()}}
        for key, value in tags.items():
            tracking.client().set_model_version_tag(name, challenger, key, str(value))
        event = {"event": "gate", "model": name, "challenger": challenger, "champion": current, "promoted": promote}
        state.record({**event, "reason": reason})
    return PromotionOutcome(
        promoted=promote, reason=reason, champion_version=challenger if promote else current, champion_moved=moved
    )


def rollback(
    name: str, reason: str, state: State, *, to_version: str | None = None, force: bool = False
) -> RollbackOutcome:
    """Move ``@champion`` back (to ``to_version`` or ``@previous_champion``) and record why. A version the
    gate rejected needs ``force``: without it the refusal quotes what the gate said."""
    with exclusive(f"champion:{name}", state):
        current = model_registry.alias_version(name, CHAMPION)
        target = to_version or model_registry.alias_version(name, PREVIOUS)
        if target is None:
            raise NoModel(f"{name}: no --to version given and no {PREVIOUS} alias to roll back to")
        if not model_registry.version_exists(name, target):
            raise NoModel(f"{name} has no version {target} (see `lmloop status`)")
        tags = tracking.client().get_model_version(name, target).tags
        if tags.get("gate.decision") == "rejected" and not force:
            raise UserError(
                f"{name} v{target} was rejected by the gate: {tags.get('gate.reason', '(no reason recorded)')}. "
                "Pass --force to make it champion anyway."
            )
        if current is not None:
            model_registry.set_alias(name, PREVIOUS, current)
            tracking.client().set_model_version_tag(name, current, "rollback.demoted_because", reason)
        model_registry.set_alias(name, CHAMPION, target)
        tracking.client().set_model_version_tag(name, target, "rollback.reason", reason)
        tracking.client().set_model_version_tag(name, target, "rollback.from_version", current or "")
        event = {"event": "rollback", "model": name, "from": current, "to": target, "reason": reason}
        state.record({**event, "forced": force} if force else event)
    return RollbackOutcome(model_name=name, champion_version=target, previous_champion=current, reason=reason)
