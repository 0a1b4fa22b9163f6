"""The shape of the code: no import cycles between modules or packages, the library above nothing of
flows/tasks/cli, the library's rooms in order (core <- data <- training <- evaluation <- registry <- promotion
<- continual <- ops), flows that wire tasks without touching MLflow or the durable state themselves, and
LMLOOP_HOME resolved in one place (``lmloop.core.settings``), never inside library code."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lmloop", "flows", "tasks", "data_checks", "cli")
# what resolves the home from the environment; settings.py is the one module allowed to call these
HOME_RESOLVERS = {"home", "lmloop_home", "mlruns_dir", "preset_dirs"}
# what resolves the stores (MLflow's tracking URI and artifact root, the promotion lock's URL, the UI's address):
# the edges (cli, flows) resolve them and pass them in; in the library only the adapters of those stores read
# them, each for its own store (a URI may hold a password, so it never travels in a value Prefect persists)
STORE_RESOLVERS = {"tracking_uri", "artifact_root", "lock_url", "mlflow_ui_url"}
STORE_ADAPTERS = {
    "lmloop/registry/tracking.py": {"tracking_uri", "artifact_root"},
    "lmloop/core/locks.py": {"lock_url"},
}
# the environment variables behind them: read by lmloop.core.settings alone
STORE_VARIABLES = ("MLFLOW_TRACKING_URI", "LMLOOP_LOCK_URL", "LMLOOP_MLFLOW_UI_URL", "LMLOOP_HOME")
# the library's rooms, lowest first: a room imports only rooms below it (and itself)
ROOMS = ("core", "data", "training", "evaluation", "registry", "promotion", "continual", "ops")
# what a flow may not call itself (it calls a task, which calls these): MLflow and the durable state
FLOWS_MAY_NOT_IMPORT = (
    "mlflow",
    "lmloop.registry.tracking",
    "lmloop.registry.model_registry",
    "lmloop.data.state",
    "lmloop.promotion.moves",
)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if parts[-1] != "__main__":  # an entry script: nothing imports it
                found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path], source: str | None = None) -> set[str]:
    """Every project module ``path`` imports, at module level or inside functions (a lazy import is an edge too)."""
    out = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
    return out & set(modules)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_no_module_imports_itself_back() -> None:
    graph = _graph()
    for name in graph:  # a package's __init__ may import its own modules; anything else is a cycle
        graph[name] = {m for m in graph[name] if not (m.startswith(name + ".") and "__init__" in str(_modules()[name]))}
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_packages_are_layered_cli_above_flows_above_tasks_above_the_library() -> None:
    packages: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for name, imported in _graph().items():
        packages[name.split(".")[0]] |= {m.split(".")[0] for m in imported} - {name.split(".")[0]}
    try:
        list(TopologicalSorter(packages).static_order())
    except CycleError as exc:
        pytest.fail(f"package cycle: {' -> '.join(exc.args[1])}")
    assert packages["lmloop"] <= {"data_checks"} and packages["data_checks"] == set(), packages
    assert "cli" not in packages["flows"] | packages["tasks"]


def _room(module: str) -> int | None:
    parts = module.split(".")
    return ROOMS.index(parts[1]) if parts[0] == "lmloop" and len(parts) > 2 and parts[1] in ROOMS else None


def _room_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for name, imported in graph.items():
        if (level := _room(name)) is None:
            continue
        found += [f"{name} imports {m} (a room above it)" for m in imported if (_room(m) or 0) > level]
    return found


def test_every_library_module_lives_in_a_room() -> None:
    loose = [n for n in _modules() if n.startswith("lmloop.") and _room(n) is None and n.split(".")[1] not in ROOMS]
    assert loose == [], f"modules outside the rooms {ROOMS}: {loose}"


def test_rooms_import_only_the_rooms_below_them() -> None:
    assert _room_violations(_graph()) == []


def test_the_room_rule_catches_a_planted_violation() -> None:
    modules = _modules()
    graph = _graph()
    planted = "from lmloop.registry import tracking\n" + modules["lmloop.data.ingest"].read_text()
    graph["lmloop.data.ingest"] = _imports(modules["lmloop.data.ingest"], modules, planted)
    assert _room_violations(graph) == ["lmloop.data.ingest imports lmloop.registry.tracking (a room above it)"]


def _flow_violations(sources: dict[str, str]) -> list[str]:
    found = []
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            found += [f"{name}:{node.lineno} {t}" for t in targets if t.startswith(FLOWS_MAY_NOT_IMPORT)]
    return found


def test_flows_wire_tasks_and_never_call_mlflow_or_the_state_themselves() -> None:
    sources = {p.name: p.read_text() for p in (ROOT / "flows").glob("*.py")}
    assert _flow_violations(sources) == []
    planted = {"continual.py": "from lmloop.registry import tracking\n" + sources["continual.py"]}
    assert _flow_violations(planted) == ["continual.py:1 lmloop.registry.tracking"]


def _home_calls(path: Path, resolvers: set[str] = HOME_RESOLVERS, source: str | None = None) -> list[str]:
    calls = []
    for node in ast.walk(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in resolvers:
            if isinstance(node.value, ast.Name) and node.value.id == "settings":
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}: settings.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "lmloop.core.settings":
            calls += [f"{path.relative_to(ROOT)}:{node.lineno}: {a.name}" for a in node.names if a.name in resolvers]
        elif isinstance(node, ast.Constant) and node.value in STORE_VARIABLES:  # os.environ["..."], getenv("...")
            calls.append(f"{path.relative_to(ROOT)}:{node.lineno}: ${node.value}")
    return calls


def _library() -> list[Path]:
    """Every module below the edges: the library (settings.py, the one resolver, aside), tasks, data checks."""
    library = [p for p in (ROOT / "lmloop").rglob("*.py") if p != ROOT / "lmloop" / "core" / "settings.py"]
    return library + list((ROOT / "tasks").glob("*.py")) + list((ROOT / "data_checks").glob("*.py"))


def _store_calls(path: Path, source: str | None = None) -> list[str]:
    allowed = STORE_ADAPTERS.get(str(path.relative_to(ROOT)), set())
    return _home_calls(path, STORE_RESOLVERS - allowed, source)


def test_the_stores_are_resolved_at_the_edge_and_read_only_by_their_adapters() -> None:
    """The tracking URI, artifact root, lock URL and UI address: resolved by the CLI and the flows and passed
    in (``status``, ``ui``, the home's UI address), read in the library only by MLflow's adapter (tracking
    URI, artifact root) and the locks (lock URL); no library module reads their variables."""
    calls = [call for path in _library() for call in _store_calls(path)]
    assert calls == [], calls
    status = ROOT / "lmloop" / "ops" / "status.py"
    planted = status.read_text().replace("settings.redact(tracking_uri)", "settings.redact(settings.tracking_uri())")
    assert _store_calls(status, planted) == ["lmloop/ops/status.py:" + _line_of(planted, "settings.tracking_uri()")]
    planted = 'import os\nURL = os.environ.get("LMLOOP_LOCK_URL")\n'
    assert _store_calls(status, planted) == ["lmloop/ops/status.py:2: $LMLOOP_LOCK_URL"]


def _line_of(source: str, text: str) -> str:
    return f"{next(i for i, line in enumerate(source.splitlines(), 1) if text in line)}: settings.tracking_uri"


def test_library_code_never_resolves_the_home_itself() -> None:
    """Folders are arguments; the CLI and the flows (the edges) resolve LMLOOP_HOME once and pass it down."""
    calls = [call for path in _library() for call in _home_calls(path)]
    assert calls == [], calls
