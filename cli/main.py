"""``lmloop`` command line: the Typer app (:mod:`cli.app`) with its commands, by group: training
(:mod:`cli.training`) and operating what it made (:mod:`cli.operate`). Heavy imports (Prefect, MLflow, torch)
happen inside commands, after :func:`lmloop.core.settings.configure_environment` has set the offline and
telemetry defaults."""

# each module registers its commands on the app; `lmloop --help` lists them in this order
from cli import training  # noqa: F401

# isort: split
from cli import operate  # noqa: F401

# isort: split
from cli import approval  # noqa: F401
from cli.app import app

__all__ = ["app"]
