"""The MLflow store under concurrent use: several flows of one process writing the same records at once."""

import threading
from collections.abc import Callable
from pathlib import Path

from lmloop import tracking
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
                [lambda r=r, d=digest: tracking.log_dataset(r, "validation", d, __file__, "eval") for r in runs]
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
