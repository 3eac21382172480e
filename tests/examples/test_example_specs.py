"""Every task spec in ``examples/`` is valid and runs on the demo network as its comment says.

The specs are parsed with the contract's parser, then all are submitted at once, from their
files (so a relative ``workdir`` is uploaded as a user's would be), by one tenant of the demo
network (`computility.demo.network`: five emulated national clusters served by one real agent,
each task a real local process). Each test then checks what its example promises.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from computility.demo.network import DemoNetwork
from computility.wire.api import AttemptOut, Candidate, Explanation, TaskOut
from computility.wire.spec import parse_task_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPECS = sorted(EXAMPLES.glob("*.yaml"))
SPECS_BY_NAME = {p.stem: p for p in SPECS}
WAIT_S = 60.0


@dataclass(frozen=True)
class Ran:
    task: TaskOut
    stdout: str
    stderr: str
    attempts: list[AttemptOut]
    why: Explanation
    outputs: Path


def chosen(why: Explanation) -> Candidate:
    return next(c for c in why.candidates if c.chosen)


def test_the_examples_directory_holds_six_to_ten_task_specs() -> None:
    assert 6 <= len(SPECS) <= 10, [p.name for p in SPECS]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_example_is_a_valid_task_spec(path: Path) -> None:
    spec = parse_task_spec(path.read_text(encoding="utf-8"), str(path))
    assert spec.name, f"{path.name}: give the example a name, it shows in every table"
    if spec.workdir is not None:
        assert (path.parent / spec.workdir).is_dir(), f"{path.name}: workdir missing"


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Ran]]:
    downloads = tmp_path_factory.mktemp("outputs")
    with DemoNetwork() as net, net.client("climate-lab") as client:
        tasks = {path.stem: client.submit(path) for path in SPECS}
        out: dict[str, Ran] = {}
        for name, task in tasks.items():
            record = task.wait(WAIT_S)
            dest = downloads / name
            spec = parse_task_spec(SPECS_BY_NAME[name].read_text(encoding="utf-8"))
            if record.state == "succeeded" and spec.outputs:
                task.download(dest)
            out[name] = Ran(record, task.logs("stdout"), task.logs("stderr"),
                            client.attempts(task.id), client.explain(task.id), dest)
        yield out


@pytest.mark.parametrize("name", [p.stem for p in SPECS])
def test_example_succeeds_on_the_demo_network(ran: dict[str, Ran], name: str) -> None:
    r = ran[name]
    assert r.task.state == "succeeded", (r.task.reason, r.stdout, r.stderr)


def test_hello_says_where_it_ran(ran: dict[str, Ran]) -> None:
    r = ran["hello"]
    assert r.stdout.startswith(f"hello from {r.task.site} (")


def test_python_script_runs_setup_then_the_uploaded_script(ran: dict[str, Ran]) -> None:
    lines = ran["python-script"].stdout.splitlines()
    assert lines[0].startswith("Python 3.")  # setup
    assert lines[1:] == ["41538 primes up to 500000", "78498 primes up to 1000000",
                         "114155 primes up to 1500000", "148933 primes up to 2000000",
                         f"148933 primes below 2000001 on {ran['python-script'].task.site}"]


def test_gpu_task_gets_one_accelerator_of_those_it_accepts(ran: dict[str, Ran]) -> None:
    r = ran["gpu"]
    device = chosen(r.why).device
    assert device in {"A100-80GB", "L40S"}
    visible = r.stdout.split("CUDA_VISIBLE_DEVICES=")[1].split(",")[0]
    assert visible.isdigit()  # one device id
    assert r.stdout.startswith(f"device {device}, ")
    assert {c.device for c in r.why.candidates} == {"A100-80GB", "L40S"}


def test_dataset_task_runs_where_the_data_is_and_reads_it(ran: dict[str, Ran]) -> None:
    r = ran["dataset"]
    assert r.task.site == "qy-data"
    assert {c.site for c in r.why.candidates} == {"qy-data"}  # residency: local
    assert r.stdout.startswith("20000 daily values, mean 2 m temperature ")


def test_outputs_are_downloaded(ran: dict[str, Ran]) -> None:
    r = ran["outputs"]
    squares = (r.outputs / "results" / "squares.csv").read_text().splitlines()
    assert squares[0] == "1,1" and squares[-1] == "10,100"
    assert (r.outputs / "results" / "README.txt").read_text().startswith(f"made on {r.task.site}")


def test_retries_example_fails_once_and_succeeds_on_its_retry(ran: dict[str, Ran]) -> None:
    r = ran["retries"]
    assert (r.task.attempts, r.task.user_failures, r.task.infra_failures) == (2, 1, 0)
    assert [(a.state, a.exit_code) for a in r.attempts] == [("failed", 1), ("succeeded", 0)]
    assert r.stdout == "preprocessed 12 shards on the retry\n"


def test_cheapest_runs_on_the_cheapest_candidate_within_its_max_price(
    ran: dict[str, Ran],
) -> None:
    r = ran["cheapest"]
    best = chosen(r.why)
    assert best.price == min(c.price for c in r.why.candidates)
    assert r.task.quote_max is not None and r.task.quote_max <= 0.5
    assert r.task.cost <= 0.5


def test_deadline_greenest_runs_on_the_least_carbon_candidate(ran: dict[str, Ran]) -> None:
    r = ran["deadline-greenest"]
    assert chosen(r.why).carbon_kg == min(c.carbon_kg for c in r.why.candidates)
    assert r.stdout.startswith(f"started on {r.task.site} with 16 cores")
