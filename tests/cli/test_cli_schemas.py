"""The service commands' ``--json`` outputs and their committed schemas (``schemas/cli/``).

The schemas are generated from the wire models by ``scripts/build_cli_schemas.py``; the committed
files must be exactly what it writes (so they cannot drift from the models), and each command's
real output must validate against its file — also with every object closed to undocumented
fields, so the CLI cannot print a field the schema does not describe.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from cli_harness import CliResult, Service, run_all

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "cli"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_cli_schemas",
                                                  ROOT / "scripts" / "build_cli_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema(command: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
    return loaded


def closed(node: Any) -> Any:
    """The schema with every described object closed to other properties."""
    if isinstance(node, list):
        return [closed(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: closed(v) if k not in ("properties", "$defs") else
           {name: closed(sub) for name, sub in v.items()} for k, v in node.items()}
    if "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def validate(document: Any, command: str) -> None:
    committed = schema(command)
    jsonschema.Draft202012Validator.check_schema(committed)
    jsonschema.validate(document, committed, cls=jsonschema.Draft202012Validator)
    jsonschema.validate(document, closed(copy.deepcopy(committed)),
                        cls=jsonschema.Draft202012Validator)


def test_the_committed_schemas_are_what_the_generator_writes() -> None:
    built = generator().build()
    assert set(built) == {f"{c}.schema.json" for c in ("status", "submit", "cancel", "logs",
                                                       "sites", "quote", "explain", "usage",
                                                       "demo", "keys-list", "keys-revoke",
                                                       "keys-rotate")}
    for name, text in built.items():
        path = SCHEMAS / name
        assert path.exists(), f"{name} missing: run scripts/build_cli_schemas.py"
        assert path.read_text() == text, f"{name} is stale: run scripts/build_cli_schemas.py"


def test_the_generator_check_mode_finds_a_stale_file(tmp_path: Path) -> None:
    build = generator()
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "usage.schema.json").write_text("{}\n")
    assert build.main(["--out", str(tmp_path), "--check"]) == 1


def test_every_generated_schema_is_a_valid_draft_2020_12_schema() -> None:
    for name in generator().build():
        document = json.loads((SCHEMAS / name).read_text())
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(document)


@pytest.fixture(scope="module")
def outputs(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliResult]:
    """Every --json output, from real commands: a finished task, a cancelled one, a quote."""
    where = tmp_path_factory.mktemp("json")
    (where / "done.yaml").write_text("name: done\nrun: echo out; echo err >&2\n")
    (where / "sleeper.yaml").write_text("name: sleeper\nrun: sleep 60\n")
    done = service.cli("submit", "done.yaml", "--wait", "--json", cwd=where)
    sleeper = service.cli("submit", "sleeper.yaml", "--json", cwd=where)
    ended, waiting = (str(r.json()["tasks"][0]["id"]) for r in (done, sleeper))
    found = run_all(service, {
        "status": ("status", ended, "--json"),
        "status list": ("status", "--json", "--limit", "5"),
        "cancel": ("cancel", waiting, "--json"),
        "logs": ("logs", ended, "--json"),
        "logs one stream": ("logs", ended, "--stream", "stdout", "--json"),
        "sites": ("sites", "--json"),
        "quote": ("quote", "done.yaml", "--json"),
        "explain": ("explain", ended, "--json"),
        "usage": ("usage", "--json"),
        "usage of a month": ("usage", "--period", "2026-01", "--json"),
    }, cwd=where)
    service.wait_for(int(waiting), "cancelled", "succeeded", "failed", "lost")
    return {"submit --wait": done, "submit": sleeper, **found}


@pytest.mark.parametrize(
    ("output", "command"),
    [
        ("status", "status"), ("status list", "status"), ("submit", "submit"),
        ("submit --wait", "submit"), ("cancel", "cancel"), ("logs", "logs"),
        ("logs one stream", "logs"), ("sites", "sites"), ("quote", "quote"),
        ("explain", "explain"), ("usage", "usage"), ("usage of a month", "usage"),
    ],
)
def test_json_output_validates_against_its_committed_schema(outputs: dict[str, CliResult],
                                                            output: str, command: str) -> None:
    result = outputs[output]
    assert result.stdout.count(b"\n") == 1, result.describe()  # exactly one document
    validate(result.json(), command)


def test_the_outputs_hold_what_they_were_asked_for(outputs: dict[str, CliResult]) -> None:
    assert outputs["submit --wait"].json()["tasks"][0]["state"] == "succeeded"
    assert outputs["logs"].json()["stdout"] == "out\n"
    assert outputs["logs"].json()["stderr"] == "err\n"
    assert "stderr" not in outputs["logs one stream"].json()
    assert outputs["quote"].json()["candidates"]
    assert [c["chosen"] for c in outputs["explain"].json()["candidates"]].count(True) == 1


def test_a_document_that_breaks_a_schema_is_caught() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate({"tasks": [{"id": "seven"}]}, "status")
    with pytest.raises(jsonschema.ValidationError):
        validate({"task": 1, "state": "sleeping"}, "logs")
    with pytest.raises(jsonschema.ValidationError):  # an undocumented field
        validate({"task": 1, "state": "running", "stdin": ""}, "logs")
