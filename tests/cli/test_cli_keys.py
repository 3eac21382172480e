"""`keys list`, `keys revoke` and `keys rotate` against a real `computility up`: secrets shown
once and never listed, revocation and rotation in effect at once, the profile's own key."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import httpx
import jsonschema
import pytest
from cli_harness import Service, bad_input

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "cli"
TENANT = "cli-keys"


def validate(document: object, command: str) -> None:
    schema = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)


def new_key(service: Service, user: str, role: str = "user") -> str:
    r = service.api.post("/api/v1/tenants", json={"id": TENANT})
    assert r.status_code in (201, 409), r.text
    r = service.api.post(f"/api/v1/tenants/{TENANT}/keys", json={"user": user, "role": role})
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


def key_id(key: str) -> str:
    return key.split("_")[1]


def status_with(service: Service, key: str) -> int:
    with httpx.Client(base_url=service.url, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as c:
        return c.get("/api/v1/whoami").status_code


def as_key(key: str) -> dict[str, str]:
    return {"COMPUTILITY_API_KEY": key}


def with_profile(service: Service, home: Path, key: str) -> dict[str, str]:
    """An environment whose default profile holds `key` (and no key in the environment)."""
    config = home / "computility"
    config.mkdir(parents=True, exist_ok=True, mode=0o700)
    (config / "config.toml").write_text(f'[default]\nserver = "{service.url}"\n'
                                        f'api_key = "{key}"\n')
    (config / "config.toml").chmod(0o600)
    return {"XDG_CONFIG_HOME": str(home)}


def test_keys_list_shows_the_callers_keys_and_never_a_secret(service: Service) -> None:
    alice = new_key(service, "alice")
    alice2 = new_key(service, "alice")
    new_key(service, "bob")
    table = service.cli("keys", "list", env=as_key(alice))
    assert table.code == 0, table.describe()
    assert key_id(alice) in table.out and key_id(alice2) in table.out
    mine = service.cli("keys", "list", "--json", env=as_key(alice))
    validate(mine.json(), "keys-list")
    assert {k["id"] for k in mine.json()["keys"]} == {key_id(alice), key_id(alice2)}
    every = service.cli("keys", "list", "--tenant", TENANT, "--revoked", "--json")
    validate(every.json(), "keys-list")
    assert {key_id(alice), key_id(alice2)} <= {k["id"] for k in every.json()["keys"]}
    for result in (table, mine, every):
        assert alice.split("_", 2)[2] not in result.out + result.err
        assert alice2.split("_", 2)[2] not in result.out + result.err


def test_keys_revoke_stops_the_key_at_once_and_twice_is_once(service: Service) -> None:
    alice = new_key(service, "carol")
    spare = new_key(service, "carol")
    assert status_with(service, spare) == 200
    first = service.cli("keys", "revoke", key_id(spare), "--json", env=as_key(alice))
    validate(first.json(), "keys-revoke")
    assert first.json()["revoked_at"] is not None
    assert status_with(service, spare) == 401
    again = service.cli("keys", "revoke", key_id(spare), env=as_key(alice))
    assert again.code == 0 and "revoked" in again.err, again.describe()
    assert status_with(service, alice) == 200


def test_keys_rotate_prints_the_new_key_alone_once_and_the_old_one_stops(
    service: Service,
) -> None:
    dave = new_key(service, "dave")
    rotated = service.cli("keys", "rotate", key_id(dave), env=as_key(dave))
    assert rotated.code == 0, rotated.describe()
    new = rotated.out.strip()
    assert rotated.out == new + "\n" and new.startswith("cu_")
    assert "only time" in rotated.err and "COMPUTILITY_API_KEY" in rotated.err
    assert status_with(service, dave) == 401 and status_with(service, new) == 200


def test_keys_rotate_with_grace_keeps_the_old_key_working_for_a_while(service: Service) -> None:
    erin = new_key(service, "erin")
    rotated = service.cli("keys", "rotate", key_id(erin), "--grace", "1h", "--json")
    validate(rotated.json(), "keys-rotate")
    body = rotated.json()
    assert body["replaces"]["id"] == key_id(erin) and body["user"] == "erin"
    assert status_with(service, erin) == 200 and status_with(service, body["key"]) == 200


def test_rotating_the_profiles_own_key_updates_the_profile_when_asked(
    service: Service, tmp_path: Path,
) -> None:
    frank = new_key(service, "frank")
    env = with_profile(service, tmp_path, frank)
    rotated = service.cli("keys", "rotate", key_id(frank), "--grace", "10m",
                          "--update-profile", env=env)
    assert rotated.code == 0, rotated.describe()
    new = rotated.out.strip()
    saved = tomllib.loads((tmp_path / "computility" / "config.toml").read_text())
    assert saved["default"] == {"server": service.url, "api_key": new}
    assert "now holds the new key" in rotated.err
    assert service.cli("keys", "list", env=env).code == 0


def test_rotating_the_profiles_own_key_without_a_terminal_leaves_the_profile_and_says_so(
    service: Service, tmp_path: Path,
) -> None:
    grace = new_key(service, "grace")
    env = with_profile(service, tmp_path, grace)
    rotated = service.cli("keys", "rotate", key_id(grace), "--grace", "90", env=env)
    assert rotated.code == 0, rotated.describe()
    saved = tomllib.loads((tmp_path / "computility" / "config.toml").read_text())
    assert saved["default"]["api_key"] == grace
    assert "still holds the old key" in rotated.err


def test_a_provider_rotates_its_sites_agent_key_and_is_told_to_restart_the_agent(
    service: Service,
) -> None:
    provider = new_key(service, "keys-provider", "provider")
    with httpx.Client(base_url=service.url, timeout=30,
                      headers={"Authorization": f"Bearer {provider}"}) as c:
        r = c.post("/api/v1/sites", json={
            "id": "cli-keys-site", "region": "ZJK", "backend": "fake",
            "pools": [{"id": "cpu", "device": "EPYC-7763", "count": 2,
                       "price_per_cu_hour": 1}]})
        assert r.status_code == 201, r.text
    agent = r.json()["agent_key"]
    listed = service.cli("keys", "list", "--json", env=as_key(provider)).json()["keys"]
    assert {"role": "agent", "site": "cli-keys-site"}.items() <= next(
        k for k in listed if k["id"] == key_id(agent)).items()
    rotated = service.cli("keys", "rotate", key_id(agent), "--grace", "5m", env=as_key(provider))
    assert rotated.code == 0, rotated.describe()
    assert "restart" in rotated.err and "cli-keys-site" in rotated.err


@pytest.mark.parametrize(("args", "names"), [
    (("keys", "rotate", "abc", "--grace", "forever"), ("--grace",)),
    (("keys", "rotate", "abc", "--grace", "8d"), ("--grace",)),
    (("keys", "rotate", "abc", "--grace", "-5"), ("--grace",)),
    (("keys", "revoke", "not an id!"), ("KEY_ID",)),
])
def test_bad_key_arguments_are_refused_naming_them(
    service: Service, args: tuple[str, ...], names: tuple[str, ...],
) -> None:
    bad_input(service.cli(*args), *names)


def test_someone_elses_or_an_unknown_key_is_not_found(service: Service) -> None:
    hank = new_key(service, "hank")
    ivy = new_key(service, "ivy")
    for target in (key_id(ivy), "0123456789abcdef"):
        result = service.cli("keys", "revoke", target, env=as_key(hank))
        assert result.code != 0 and f"no key '{target}'" in result.err, result.describe()
        assert result.stdout == b""
    assert status_with(service, ivy) == 200
