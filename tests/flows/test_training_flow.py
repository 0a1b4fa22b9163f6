"""The whole training flow under Prefect's test harness, MLflow on sqlite in a temp home."""

import json
from pathlib import Path

import mlflow
import pytest

from lmloop.core import settings
from lmloop.core.config import PipelineConfig
from lmloop.data.gate import DataValidationError
from lmloop.registry import model_registry, tracking
from tests.conftest import store_client

pytestmark = pytest.mark.slow


def test_flow_trains_evaluates_and_registers_a_champion(trained: dict, tiny_config: PipelineConfig) -> None:
    name = tiny_config.registry.model_name
    assert trained["model_name"] == name and trained["aliases"] == ["champion"]
    assert model_registry.alias_version(name, "champion") == trained["model_version"]
    version = tracking.client().get_model_version(name, trained["model_version"])
    assert version.tags["config_hash"] == tiny_config.digest()
    assert len(version.tags["manifest_digest"]) == 16
    assert len(version.tags["git_commit"]) in (7, 40) or version.tags["git_commit"] == "unknown"
    metrics = trained["metrics"]
    assert metrics["test_perplexity"] < metrics["unigram_perplexity"]
    assert trained["validation"]["success"] is True


def test_loss_fell_and_metrics_were_logged_every_n_steps(trained: dict) -> None:
    client = tracking.client()
    history = client.get_metric_history(trained["run_id"], "train_loss")
    assert [m.step for m in history] == [10, 20, 30, 40]
    assert history[-1].value < history[0].value
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_steps"] == "40"
    assert {"test_perplexity", "test_bits_per_byte", "unigram_perplexity"} <= set(run.data.metrics)
    assert run.inputs.dataset_inputs, "the ingested data is logged as an MLflow dataset input"
    train = next(i.dataset for i in run.inputs.dataset_inputs if i.dataset.name == "train")
    profile = json.loads(train.profile)
    assert profile["rows"] > 0 and profile["tokens"] > profile["rows"] and profile["sources"], profile
    assert "doc_id" in train.schema
    assert run.data.tags["lmloop.prefect.flow_run_id"] and "Prefect flow run" in run.data.tags["mlflow.note.content"]
    docs = {a.path for a in client.list_artifacts(trained["run_id"], "data/data_docs")}
    assert "data/data_docs/index.html" in docs and len(docs) >= 3, "GX's pages: the files and the corpus"
    stages = json.loads(Path(client.download_artifacts(trained["run_id"], "stages.json")).read_text())
    assert stages["columns"][:2] == ["stage", "amount"]
    assert {"ingest_data", "pretrain_model"} <= {row[0] for row in stages["data"]}


def test_plots_are_logged_as_png_artifacts(trained: dict) -> None:
    client = tracking.client()
    plots = {Path(a.path).name: a.file_size for a in client.list_artifacts(trained["run_id"], "plots")}
    assert set(plots) >= {"training_curves.png", "slices_bits_per_byte.png"}
    for name in ("training_curves.png", "slices_bits_per_byte.png"):
        assert Path(client.download_artifacts(trained["run_id"], f"plots/{name}")).read_bytes()[:4] == b"\x89PNG"


def test_stage_outputs_hold_artifact_config_and_metrics(trained: dict) -> None:
    work = Path(trained["work_dir"])
    model_dir = work / "model"
    assert (model_dir / "model.safetensors").exists()
    assert json.loads((model_dir / "metrics.json").read_text())["test_perplexity"] > 1
    assert json.loads((work / "data" / "manifest.json").read_text())["files"]
    assert work.is_relative_to(settings.lmloop_home())


def test_registered_model_loads_back_and_generates(trained: dict, tiny_config: PipelineConfig) -> None:
    tracking.client()
    pipe = mlflow.transformers.load_model(f"models:/{tiny_config.registry.model_name}@champion")
    out = pipe("Tire stezoubi", max_new_tokens=8, do_sample=False)
    assert out[0]["generated_text"].startswith("Tire stezoubi")
    assert len(out[0]["generated_text"]) > len("Tire stezoubi")


def test_bad_data_stops_before_training_and_registers_nothing(
    prefect_harness, tmp_path: Path, tiny_config: PipelineConfig
) -> None:
    from flows.training import training_flow

    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["fine text"] * 30 + [""]))
    cfg = tiny_config.model_copy(update={"registry": tiny_config.registry.model_copy(update={"model_name": "never"})})
    with pytest.raises(DataValidationError) as err:
        training_flow(config=cfg, data=[str(bad)])
    assert "bad.jsonl:31" in err.value.details and "\n" not in str(err.value), "the list once, by the CLI"
    assert "expect_column_value_lengths_to_be_between" in err.value.report["failed_expectations"]
    assert tracking.client().search_model_versions("name='never'") == []


def test_the_first_champion_is_set_under_the_lock_and_recorded(trained: dict, tiny_config: PipelineConfig) -> None:
    """Regression: the first version used to become champion outside the promotion lock, with no record."""
    from lmloop.data.state import State
    from lmloop.promotion.moves import first_champion

    name, state = tiny_config.registry.model_name, State(settings.home().state)
    firsts = [e for e in state.history() if e["event"] == "first_champion" and e["model"] == name]
    assert [e["champion"] for e in firsts] == [trained["model_version"]]
    assert tracking.client().get_model_version(name, trained["model_version"]).tags["gate.decision"] == "first champion"
    assert not first_champion(name, "999", state), "a model that has a champion keeps it"
    assert model_registry.alias_version(name, "champion") == trained["model_version"]


def test_prefect_sees_the_data_flowing_from_task_to_task(trained: dict) -> None:
    """Stages pass values, so Prefect records each task's upstream tasks (the UI draws these edges)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    # this flow run, not the first "training" run of the session's Prefect (another module may have run one)
    tags = store_client(trained["tracking_uri"]).get_run(trained["run_id"]).data.tags
    flow_run_id = tags["lmloop.prefect.flow_run_id"]
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    names = {t.id: t.name.rsplit("-", 1)[0] for t in tasks}
    upstream = {
        names[t.id]: {
            names[i.id] for inputs in t.task_inputs.values() for i in inputs if getattr(i, "id", None) in names
        }
        for t in tasks
    }
    assert {"ingest_data", "start_tracking"} <= upstream["validate_data"]
    assert "validate_data" in upstream["split_data"]
    assert "split_data" in upstream["train_tokenizer"]
    assert {"split_data", "train_tokenizer"} <= upstream["tokenize_and_pack"]
    assert "tokenize_and_pack" in upstream["pretrain_model"]
    assert {"pretrain_model", "split_data", "tokenize_and_pack"} <= upstream["evaluate_model"]
    assert "evaluate_model" in upstream["register_model"]


def test_evaluation_is_capped_and_records_what_it_scored(trained: dict, tiny_config: PipelineConfig) -> None:
    metrics = trained["metrics"]
    assert metrics["test_documents"] <= tiny_config.eval.max_documents <= 2000
    assert metrics["test_documents"] <= metrics["test_documents_total"]
    scored = json.loads((Path(trained["work_dir"]) / "model" / "metrics.json").read_text())["evaluated_doc_ids"]
    assert len(scored) == metrics["test_documents"]


def test_an_evaluation_cap_that_binds_scores_a_fixed_sample(
    trained: dict, tiny_config: PipelineConfig, tmp_path
) -> None:
    """Before: the cap above never bound (about 60 test documents under 2,000). The trained model evaluated again
    (a copy of its folder) under a cap of half its test split: exactly that many documents, the same ones every
    time (a sample by document hash, the same for every model)."""
    import shutil

    from lmloop.data.values import Corpus
    from lmloop.evaluation.evaluate import evaluate
    from lmloop.training.values import Blocks, TrainedModel

    work = Path(trained["work_dir"])
    total = int(trained["metrics"]["test_documents_total"])
    cap = total // 2
    cfg = tiny_config.eval.model_copy(update={"max_documents": cap, "samples": 0})
    corpus = Corpus(root=str(work / "data"))
    blocks = Blocks(
        path=str(work / "blocks"), block_size=tiny_config.model.block_size, tokenizer=str(work / "tokenizer")
    )
    scored = []
    for attempt in ("a", "b"):
        model = tmp_path / attempt
        shutil.copytree(work / "model", model)
        out = evaluate(TrainedModel(dir=str(model)), corpus, blocks, cfg=cfg, sources=[])
        assert out.metrics["test_documents"] == cap < out.metrics["test_documents_total"] == total
        scored.append(json.loads((model / "metrics.json").read_text())["evaluated_doc_ids"])
    assert len(scored[0]) == cap and scored[0] == scored[1], "the same documents every time"
    everything = json.loads((work / "model" / "metrics.json").read_text())["evaluated_doc_ids"]
    assert set(scored[0]) < set(everything), "a sample of the split the uncapped run scored"
