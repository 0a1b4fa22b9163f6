"""The registry room's value: a registered model version and the aliases it holds."""

from __future__ import annotations

from lmloop.core.values import Value


class Registered(Value):
    model_name: str
    model_version: str
    aliases: list[str]
