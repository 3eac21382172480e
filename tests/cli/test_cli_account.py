"""`sites`, `usage`, `login`, shell completion, and what the CLI says when it has no service to
talk to (bad input of these commands: test_cli_bad_input.py)."""

from __future__ import annotations

import stat
import tomllib
from datetime import datetime
from pathlib import Path

import pytest
from cli_harness import SITE, Call, CliResult, Service, run_all

from computility.testing.controlplane import free_port


@pytest.fixture(scope="module")
def results(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliResult]:
    """What these commands print, run side by side (each is its own process either way)."""
    service.cli("run", "--quiet", "--", "true")  # something to bill
    nowhere = f"http://127.0.0.1:{free_port()}"
    fresh = tmp_path_factory.mktemp("no-profile")
    def completing(words: str, cword: int) -> Call:
        return Call((), {"_COMPUTILITY_COMPLETE": "complete_bash", "COMP_WORDS": words,
                         "COMP_CWORD": str(cword)})

    results = run_all(service, {
        "sites": ("sites",),
        "usage": ("usage",),
        "usage month": ("usage", "--json"),
        "usage day": ("usage", "--period", "day", "--json"),
        "usage 2026-01": ("usage", "--period", "2026-01", "--json"),
        "completion script": ("--show-completion", "bash"),
        "complete command": completing("computility sta", 1),
        "complete choice": completing("computility run --policy ", 3),
        "unreachable": Call(("status",), {"COMPUTILITY_SERVER": nowhere,
                                          "COMPUTILITY_API_KEY": "cu_a_b"}),
        "no profile": Call(("status",), {"XDG_CONFIG_HOME": str(fresh)}),
    })
    return results


def test_sites_shows_the_local_site_online_with_whole_values(
    results: dict[str, CliResult]
) -> None:
    result = results["sites"]
    assert result.code == 0, result.describe()
    header, *rows = result.out.splitlines()
    assert header.split()[:6] == ["site", "owner", "region", "backend", "online", "seen"]
    row = next(r.split() for r in rows if r.split()[0] == SITE)
    assert row[1:5] == ["default", row[2], "local", "yes"]
    assert "…" not in result.out  # not a terminal: no column is cut


def test_usage_shows_the_bill_of_this_month(results: dict[str, CliResult]) -> None:
    result = results["usage"]
    assert result.code == 0, result.describe()
    rows = {line.split()[0]: line.split()[1:] for line in result.out.splitlines()}
    assert rows["tenant"] == ["default"]
    assert rows["period"] == ["month"]
    assert int(rows["attempts"][-1]) >= 1
    assert rows["total"][-1] == "CNY"


def local_midnight(year: int, month: int, day: int = 1) -> float:
    return datetime(year, month, day).astimezone().timestamp()


def test_usage_periods_are_windows_of_local_time(results: dict[str, CliResult]) -> None:
    now = datetime.now()
    month = results["usage month"].json()
    assert month["since"] == local_midnight(now.year, now.month)
    assert month["attempts"] >= 1
    day = results["usage day"].json()
    assert day["since"] == local_midnight(now.year, now.month, now.day)
    assert day["attempts"] >= 1
    january = results["usage 2026-01"].json()
    assert (january["since"], january["until"]) == (local_midnight(2026, 1),
                                                    local_midnight(2026, 2))


def test_shell_completion_script_and_completions(results: dict[str, CliResult]) -> None:
    script = results["completion script"]
    assert script.code == 0, script.describe()
    assert "_COMPUTILITY_COMPLETE=complete_bash" in script.out
    assert "complete " in script.out and "computility" in script.out
    assert results["complete command"].out.split() == ["status"]
    assert results["complete choice"].out.split() == ["balanced", "cheapest", "fastest",
                                                      "greenest"]


def test_a_service_that_does_not_answer_is_one_line_and_exit_1(
    results: dict[str, CliResult]
) -> None:
    result = results["unreachable"]
    assert result.code == 1, result.describe()
    assert result.stdout == b""
    (line,) = result.err.strip().splitlines()
    assert line.startswith("computility: cannot reach http://127.0.0.1:")


def test_without_a_profile_the_cli_says_how_to_get_one(results: dict[str, CliResult]) -> None:
    result = results["no profile"]
    assert result.code == 2, result.describe()
    (line,) = result.err.strip().splitlines()
    assert "computility up" in line and "computility login" in line


def test_login_saves_a_private_profile_that_the_next_command_uses(service: Service,
                                                                   tmp_path: Path) -> None:
    key = service.key
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    login = service.cli("login", "--server", service.url + "/", "--key", "-",
                        env=env, stdin=key.encode() + b"\n")
    assert login.code == 0, login.describe()
    assert "logged in" in login.err
    saved = tmp_path / "config" / "computility" / "config.toml"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert tomllib.loads(saved.read_text())["default"] == {"server": service.url,
                                                           "api_key": key}
    sites = service.cli("sites", "--json", env=env).json()["sites"]
    assert SITE in [s["id"] for s in sites]


def test_login_with_a_key_the_service_refuses_saves_nothing(service: Service,
                                                            tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = service.cli("login", "--server", service.url, "--key", "cu_0123_notakey", env=env)
    assert result.code == 1, result.describe()
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"computility: login: {service.url} refused the key")
    assert not (tmp_path / "config" / "computility" / "config.toml").exists()
