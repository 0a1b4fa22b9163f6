"""The continual-learning cycle in its own LMLOOP_HOME: a champion trained on distribution A, then
nothing new, a shifted batch B (promoted), a harmful batch (rejected), and two concurrent cycles."""

import json
import random
import threading
from pathlib import Path

import pytest

from lmloop.core import settings
from lmloop.core.config import PipelineConfig
from lmloop.core.presets import load_config
from lmloop.data.sample_data import write_corpus
from lmloop.data.state import State
from lmloop.registry import model_registry, tracking
from tests.conftest import mlflow_store

pytestmark = pytest.mark.slow
NAME = "continual-lm"


def _state() -> State:
    return State(settings.home().state)


def frozen_slices() -> dict[str, Path]:
    return _state().frozen_slices()


def history() -> list[dict]:
    return _state().history()


def state_dir() -> Path:
    return _state().root


def _config() -> PipelineConfig:
    sets = ["model.n_layer=2", "model.n_embd=64", "model.n_head=2", "model.block_size=64", "tokenizer.vocab_size=512"]
    sets += ["train.max_steps=200", "train.batch_size=16", "train.log_every=50", "eval.samples=0"]
    sets += ["finetune.max_steps=60", "finetune.batch_size=16", "finetune.log_every=20", "finetune.checkpoint_every=60"]
    # the gate as shipped (replay, tolerance, structure, supersession): what a user's cycles get
    sets += ["continual.bootstrap_samples=500", "continual.classification={accuracy: 0.1, macro_f1: 0.1}"]
    return load_config("tiny", [*sets, f"registry.model_name={NAME}"])


@pytest.fixture(scope="module")
def home(prefect_harness, tmp_path_factory: pytest.TempPathFactory):
    """A fresh home (MLflow store, state, caches) with a champion trained on distribution A."""
    from flows.training import training_flow

    root = tmp_path_factory.mktemp("continual-home")
    # the store goes back with the home: a later module of this process (another order, another pytest-xdist
    # worker) reads its own
    with pytest.MonkeyPatch.context() as mp, mlflow_store(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"):
        mp.setenv("LMLOOP_HOME", str(root))
        write_corpus(root / "a", seed=0, docs=1200, files=2)
        training_flow(config=_config(), data=[str(root / "a")])
        yield root


def _shuffled_batch(folder: Path, docs: int = 400) -> None:
    """Distribution A's words (the generator's seed 0, as the champion's) with their order destroyed."""
    source = folder.parent / f"{folder.name}-src"
    write_corpus(source, seed=0, docs=docs, files=1)
    rng = random.Random(0)
    folder.mkdir(parents=True)
    with (folder / "shuffled.jsonl").open("w") as f:
        for line in (source / "part-000.jsonl").open():
            words = json.loads(line)["text"].split()
            rng.shuffle(words)
            f.write(json.dumps({"text": " ".join(words)}) + "\n")


def test_nothing_new_exits_without_training(home: Path) -> None:
    from flows.continual import continual_flow

    (home / "empty").mkdir()
    out = continual_flow(config=_config(), incoming=str(home / "empty"))
    assert out.new_files == [] and out.promoted is None and "nothing new" in out.reason
    assert out.champion == model_registry.alias_version(NAME, "champion") == "1" and out.warning is None


def test_a_missing_landing_folder_is_a_warning_not_an_error(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flows.continual import continual_flow

    out = continual_flow(config=_config(), incoming=str(home / "not-there-yet"))
    assert out.promoted is None and "does not exist" in out.warning
    assert any(r.levelname == "WARNING" and "does not exist" in r.getMessage() for r in caplog.records)


def _stages(run_id: str) -> dict[str, object]:
    """The nested runs of a cycle, by stage."""
    client = tracking.client()
    experiment = client.get_run(run_id).info.experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run_id}'")
    return {r.info.run_name: r for r in children}


def _cycle(incoming: Path):
    """One cycle, and the Prefect flow run it was (name, tags, final state)."""
    from prefect.client.orchestration import get_client

    from flows.continual import continual_flow

    state = continual_flow(config=_config(), incoming=str(incoming), return_state=True)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    return state.result(raise_on_failure=False), flow_run


def test_a_shifted_batch_is_learned_and_promoted_without_forgetting_a(home: Path) -> None:
    from flows.continual import continual_flow

    write_corpus(home / "landing-b", seed=0, shift=True, docs=400, files=1)  # A's words, new statistics, a new topic
    out, flow_run = _cycle(home / "landing-b")
    batch = f"batch-{out.run_id[:8]}"
    cycle_name = tracking.client().get_run(out.run_id).info.run_name
    assert flow_run.name == cycle_name, "the Prefect flow run is named as the MLflow run: continual-<batch>"
    assert "decision:promoted" in flow_run.tags and flow_run.state.message.startswith(f"promoted v{out.challenger}")
    new, base = out.slices[batch], next(v for k, v in out.slices.items() if k.startswith("base-"))
    assert out.promoted is True, out.reason
    assert new["challenger_bits_per_byte"] < new["previous_champion_bits_per_byte"]
    assert base["challenger_bits_per_byte"] <= base["previous_champion_bits_per_byte"] + 0.05
    assert base["documents_guarded"] < base["documents"], "A's topics drifted: those old documents moved on"
    assert "drifted labels" in out.reason and "geology" not in out.reason, "a new topic has no old documents"
    assert out.previous_champion == "1" and out.champion == out.challenger != "1", "named for what they are"
    assert model_registry.alias_version(NAME, "champion") == out.challenger
    assert model_registry.alias_version(NAME, "previous_champion") == "1"
    version = tracking.client().get_model_version(NAME, out.challenger)
    tags = version.tags
    assert tags["gate.decision"] == "promoted" and tags["parent_version"] == "1"
    assert "# Gate: challenger" in version.description and "95% CI" in version.description
    assert "continual-learning flow" in tracking.client().get_registered_model(NAME).description
    cycle = tracking.client().get_run(out.run_id)
    assert cycle.info.run_name.startswith("continual-") and cycle.data.metrics["gate_promoted"] == 1.0
    stages = _stages(out.run_id)
    assert set(stages) == {"train", "evaluate", "gate"}, "one parent run, a nested run per stage"
    assert all(r.info.status == "FINISHED" for r in stages.values())
    assert "train_loss" in stages["train"].data.metrics and "test_bits_per_byte" in stages["evaluate"].data.metrics
    assert stages["gate"].data.metrics["gate_new_slice_improvement"] > 0
    gate_run = stages["gate"].info.run_id
    report = Path(tracking.client().download_artifacts(gate_run, "gate/report.md")).read_text()
    assert "95% CI" in report and "linear probe" in report
    from lmloop.ops.status import collect

    (like,) = [
        c
        for c in collect(NAME, "lmloop", settings.home(), tracking_uri=settings.tracking_uri())["comparisons"]
        if c["version"] == out.champion
    ]
    assert like["against"] == "1" and {"champion", "challenger"} <= like["slices"][batch].keys()
    assert like["slices"][batch]["challenger"] == pytest.approx(new["challenger_bits_per_byte"])
    comparison = Path(tracking.client().download_artifacts(gate_run, "gate/gate_comparison.png"))
    assert comparison.read_bytes()[:4] == b"\x89PNG"
    probe = out.classification
    assert probe["documents"] > 50 and probe["challenger"]["accuracy"] >= probe["champion"]["accuracy"] - 0.1
    assert float(tags["gate.probe_accuracy_challenger"]) == pytest.approx(probe["challenger"]["accuracy"])
    assert batch in frozen_slices() and out.mix["replay_documents"] > 0
    mixture = json.loads(Path(tracking.client().download_artifacts(out.run_id, "data/mixture.json")).read_text())
    assert sum(r["documents"] for r in mixture["replay"]) == out.mix["replay_documents"]
    inputs = tracking.client().get_run(out.run_id).inputs.dataset_inputs
    assert any(i.dataset.name == "train-mix" for i in inputs)
    assert continual_flow(config=_config(), incoming=str(home / "landing-b")).promoted is None, "watermark"


def test_a_harmful_batch_is_rejected_and_the_champion_stays(home: Path) -> None:

    champion = model_registry.alias_version(NAME, "champion")
    _shuffled_batch(home / "landing-harm")
    out, flow_run = _cycle(home / "landing-harm")
    assert out.promoted is False, out.reason
    assert flow_run.state.type.value == "COMPLETED" and "decision:rejected" in flow_run.tags
    assert flow_run.state.message.startswith(f"rejected v{out.challenger}") and "forgetting" in flow_run.state.message
    assert "forgetting" in out.reason and "drifted labels" not in out.reason, "unlabelled: all guarded"
    assert model_registry.alias_version(NAME, "champion") == champion == out.champion
    assert model_registry.alias_version(NAME, "challenger") == out.challenger
    assert history()[-1]["promoted"] is False
    from lmloop.core.errors import UserError
    from lmloop.promotion.moves import rollback

    with pytest.raises(UserError, match="rejected by the gate.*forgetting.*--force"):
        rollback(NAME, "try the rejected one", _state(), to_version=out.challenger)
    assert model_registry.alias_version(NAME, "champion") == champion, "refused: nothing moved"
    rollback(NAME, "on purpose", _state(), to_version=out.challenger, force=True)
    assert model_registry.alias_version(NAME, "champion") == out.challenger and history()[-1]["forced"] is True
    rollback(NAME, "back", _state(), to_version=champion)
    assert model_registry.alias_version(NAME, "champion") == champion


def test_two_concurrent_cycles_promote_at_most_once(home: Path) -> None:
    from flows.continual import continual_flow

    champion = model_registry.alias_version(NAME, "champion")
    write_corpus(home / "landing-c", seed=21, shift=True, docs=300, files=1)
    results: list = []
    cycles = [
        threading.Thread(
            target=lambda: results.append(continual_flow(config=_config(), incoming=str(home / "landing-c")))
        )
        for _ in range(2)
    ]
    for t in cycles:
        t.start()
    for t in cycles:
        t.join()
    assert len(results) == 2
    ran = [r for r in results if r.run_id is not None]
    # a cycle that reaches the landing folder after the other consumed the batch has nothing new: a valid
    # interleaving (a slow thread start), not a second cycle; cycles that both ran never share a run
    assert ran and len({r.run_id for r in ran}) == len(ran), "two runs, never one shared"
    assert all("nothing new" in r.reason and r.promoted is None for r in results if r.run_id is None)
    promoted = [r for r in results if r.promoted]
    assert len(promoted) <= 1
    expected = promoted[0].challenger if promoted else champion
    assert model_registry.alias_version(NAME, "champion") == expected
    assert len(json.loads((state_dir() / "watermark.json").read_text())) == 3  # batches b, harm and c


def test_a_batch_the_data_gate_rejects_is_consumed_once_and_the_next_good_file_trains(home: Path) -> None:
    """Rejected data: one FAILED run named for its batch, the reason tagged on both sides, the listing it points
    at exists, and the bad file is never read (or counted against a batch) again."""
    landing = home / "landing-d"
    landing.mkdir()
    (landing / "bad.jsonl").write_bytes(random.Random(1).randbytes(20_000))
    out, flow_run = _cycle(landing)
    assert flow_run.state.type.value == "FAILED" and "decision:data-rejected" in flow_run.tags
    listing = Path(str(out).split("(the list: ")[1].split(";")[0])
    assert listing.name == "validation.md" and "bad.jsonl" in listing.read_text()
    (rejected,) = _mlflow_runs_of(flow_run)
    assert rejected.info.run_name == flow_run.name and rejected.info.status == "FAILED"
    assert "not valid UTF-8" in rejected.data.tags["gate.reason"]
    again, second = _cycle(landing)
    assert again.promoted is None and "nothing new" in again.reason, "the bad file is consumed, as rejected"
    assert second.name == "continual-nothing-new" and "decision:nothing-new" in second.tags
    write_corpus(landing, seed=40, shift=True, docs=200, files=1)  # a good file lands beside the bad one
    trained, _ = _cycle(landing)
    assert trained.promoted is not None and [Path(f).name for f in trained.new_files] == ["shift-000.jsonl"]
    marks = json.loads((state_dir() / "watermark.json").read_text()).values()
    assert sum(1 for m in marks if "rejected" in m) == 1, "recorded once, with its reason"


def _mlflow_runs_of(flow_run) -> list:
    """The MLflow runs a Prefect flow run opened (their link tag points back at it)."""
    client = tracking.client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`lmloop.prefect.flow_run_id` = '{flow_run.id}'")
