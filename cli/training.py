"""The commands that train: ``run`` (from scratch or ``--from`` a pretrained LM), ``finetune`` and ``continual``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import (
    ConfigOpt,
    JsonOpt,
    SetOpt,
    WarmConfigOpt,
    app,
    console,
    emit_json,
    load,
    preflight,
    print_summary,
    sources,
    store_answers,
)
from cli.running import run_flow
from lmloop.core import settings

if TYPE_CHECKING:
    from lmloop.continual.values import CycleSummary
from lmloop.ops.preflight import check_base, check_data, check_landing


@app.command()
def run(
    config: ConfigOpt = "tiny",
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="File, folder or glob; repeatable.")] = None,
    set_: SetOpt = None,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name.")] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Continue a pretrained causal LM instead of starting from scratch: a model folder or "
            "hf:org/name[@revision] (model.base).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the full training flow: ingest, validate, split, tokenizer, pack, pretrain, evaluate, register."""
    cfg = load(config, set_)
    if base:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"base": base})})
    preflight(lambda: check_data(sources(data, cfg), cfg.data), as_json)
    if cfg.model.base:
        preflight(lambda: check_base(cfg.registry.model_name, cfg.model.base, cfg.model), as_json)
    from flows.training import training_flow

    result = run_flow(lambda: training_flow(config=cfg, data=data, run_name=run_name), as_json)
    print_summary(result, "lmloop run")
    if as_json:
        emit_json({"status": "ok", **result.model_dump(mode="json")})


@app.command()
def finetune(
    task: Annotated[str, typer.Option("--task", help="lm (continued training) or classification (a new head).")] = "lm",
    base: Annotated[
        str,
        typer.Option(
            "--from",
            help="What to start from: a registered alias or version, a model folder (save_pretrained layout), "
            "or a hub id hf:org/name[@revision] read from the Hugging Face cache.",
        ),
    ] = "champion",
    data: Annotated[list[str] | None, typer.Option("--data", "-d", help="File, folder or glob; repeatable.")] = None,
    config: WarmConfigOpt = None,
    set_: SetOpt = None,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train LoRA adapters (peft), merged before registering.")
    ] = False,
    test_data: Annotated[
        list[str] | None,
        typer.Option("--test-data", help="Classification: your own test file(s); default eval.test_sources."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a registered or pretrained model: continued LM training, or a classification head on labelled data."""
    if task not in ("lm", "classification"):
        console.print(f"[red]--task must be lm or classification, not {task!r}[/red]")
        raise typer.Exit(2)
    cfg = load(config, set_)
    preflight(lambda: check_data(sources(data, cfg), cfg.data, labels=task == "classification"), as_json)
    preflight(lambda: check_base(cfg.registry.model_name, base, cfg.model), as_json)
    if test_data:
        preflight(lambda: check_data(test_data, cfg.data), as_json)
    from flows.finetune import finetune_flow

    call = lambda: finetune_flow(task=task, config=cfg, data=data, base=base, lora=lora, test_data=test_data)  # noqa: E731
    result = run_flow(call, as_json)
    print_summary(result, f"lmloop finetune --task {task}")
    if task == "classification":
        m = result.metrics
        console.print(
            f"accuracy {m['accuracy']:.3f} (baseline TF-IDF + LR {m['baseline_accuracy']:.3f}), "
            f"macro-F1 {m['macro_f1']:.3f} (baseline {m['baseline_macro_f1']:.3f})"
        )
        if result.not_promoted:
            console.print(
                f"[yellow]registered without an alias:[/yellow] {result.not_promoted}. Use the baseline, or "
                "train longer / on more text; a version can still be aliased by hand in MLflow.",
                soft_wrap=True,
            )
    if as_json:
        emit_json({"status": "ok", **result.model_dump(mode="json")})


@app.command()
def continual(
    incoming: Annotated[
        str | None, typer.Option("--incoming", help="Landing folder; default LMLOOP_HOME/landing.")
    ] = None,
    config: WarmConfigOpt = None,
    set_: SetOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Retrain whatever the retraining policy (continual.policy) says.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """One continual-learning cycle: new files -> drift and the retraining policy -> replay mix -> warm start
    from @champion -> gate (-> a person's approval) -> promote?"""
    cfg = load(config, set_)
    if incoming is not None:
        preflight(lambda: check_landing(incoming), as_json)
    landing = Path(incoming or cfg.continual.landing or settings.home().landing)
    with store_answers(as_json):
        result = _nothing_to_do(landing, cfg.registry.model_name)
    if result is None:
        from flows.continual import continual_flow

        result = run_flow(lambda: continual_flow(config=cfg, incoming=incoming, force=force), as_json)
    verdict = {None: "nothing to do", True: "PROMOTED", False: "not promoted"}[result.promoted]
    if result.decision == "deferred":
        verdict = "deferred"
    console.print(f"continual: {verdict} — {result.reason}", style="yellow" if result.warning else None)
    for name, numbers in result.slices.items():
        console.print(
            f"  {name}: previous champion v{result.previous_champion} "
            f"{numbers['previous_champion_bits_per_byte']:.4f} vs challenger v{result.challenger} "
            f"{numbers['challenger_bits_per_byte']:.4f} bits/byte ({numbers['documents']:.0f} docs"
            + (f", {numbers['documents_guarded']:.0f} still holding" if "documents_guarded" in numbers else "")
            + ")"
        )
    if as_json:
        emit_json(result.model_dump(mode="json"))


def _nothing_to_do(landing: Path, name: str) -> CycleSummary | None:
    """A cycle's summary when there is nothing for it to do and no Prefect server is up to record it: told
    in a moment, without starting one. None when the flow should run."""
    import os

    from lmloop.continual.landing import has_work, nothing_new
    from lmloop.data.state import State
    from lmloop.ops.servers import running_prefect_api

    home = settings.home()
    if os.environ.get("PREFECT_API_URL") or running_prefect_api(home.path) or has_work(landing, State(home.state)):
        return None
    from lmloop.registry import model_registry

    return nothing_new(landing, model_registry.alias_version(name, "champion"))
