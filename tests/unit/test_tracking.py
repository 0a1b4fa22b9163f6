"""The MLflow store under concurrent use: several flows of one process writing the same records at once."""

import threading
from collections.abc import Callable
from pathlib import Path

from lmloop.registry import tracking
from tests.conftest import mlflow_store, store_client


def _at_once(calls: list[Callable[[], object]]) -> list[Exception]:
    """Run the calls in threads released together; the exceptions they raised."""
    barrier = threading.Barrier(len(calls))
    errors: list[Exception] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
        except Exception as e:  # noqa: BLE001 - returned to the test, which asserts on them
            errors.append(e)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_runs_logging_one_dataset_at_once_all_link_to_it(tmp_path: Path) -> None:
    """Regression: two continual cycles on one batch log the same validation set at the same moment.
    MLflow looks the dataset up and inserts it in one transaction, so both inserted it and one cycle
    failed on the unique key (CI, ``test_two_concurrent_cycles_promote_at_most_once``). Without the
    retry, most rounds here fail."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    digests = [f"digest-{i}" for i in range(8)]
    with mlflow_store(uri):
        runs = [tracking.start_run("concurrent", f"run-{i}") for i in range(6)]
        errors = [
            e
            for digest in digests
            for e in _at_once(
                [
                    lambda r=r, d=digest: tracking.log_dataset(r, "validation", d, source=__file__, context="eval")
                    for r in runs
                ]
            )
        ]
    assert errors == []
    client = store_client(uri)
    for run_id in runs:
        assert {d.dataset.digest for d in client.get_run(run_id).inputs.dataset_inputs} == set(digests)


def test_flows_starting_at_once_on_a_new_store_share_one_experiment(tmp_path: Path) -> None:
    """Two flows started together on a fresh home both find no experiment and both create it."""
    ids: dict[str, list[str]] = {f"flows-{i}": [] for i in range(8)}
    with mlflow_store(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        tracking.ensure_experiment("made-first")  # the store's tables exist before the race starts
        errors = [
            e
            for name, got in ids.items()
            for e in _at_once([lambda n=name, g=got: g.append(tracking.ensure_experiment(n))] * 6)
        ]
    assert errors == []
    assert all(len(got) == 6 and len(set(got)) == 1 for got in ids.values())


def test_slice_names_mlflow_refuses_are_logged_under_valid_keys_and_mapped_back(tmp_path: Path) -> None:
    """A data file ``export (1).jsonl`` or a label ``R&D`` failed every run after training (MLflow refuses
    the metric name); valid names stay as they are, and two names never meet in one key."""
    import json

    from lmloop.evaluation.report import flatten_slices

    metrics = flatten_slices(
        {
            "source": {"export (1).jsonl": {"perplexity": 3.0}, "export [1].jsonl": {"perplexity": 4.0}},
            "label": {"R&D": {"bits_per_byte": 1.5}, "news": {"bits_per_byte": 1.2}, "..": {"bits_per_byte": 1.0}},
        }
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow_store(uri):
        run = store_client(uri).create_run(tracking.ensure_experiment("names")).info.run_id
        tracking.log_metrics(run, metrics)
        logged = store_client(uri).get_run(run).data.metrics
        assert len(logged) == len(metrics) == 5 and logged["slice/label/news/bits_per_byte"] == 1.2
        (names,) = store_client(uri).list_artifacts(run, "metric_names")
        mapping = json.loads(Path(store_client(uri).download_artifacts(run, names.path, str(tmp_path))).read_text())
    assert {mapping[k] for k in logged if k in mapping} == set(metrics) - {"slice/label/news/bits_per_byte"}
    assert {logged[k] for k in mapping} == {3.0, 4.0, 1.5, 1.0}
    assert tracking.metric_key("slice/source/part-000.jsonl/perplexity") == "slice/source/part-000.jsonl/perplexity"
