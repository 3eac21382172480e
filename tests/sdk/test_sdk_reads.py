"""The read side of the API through the SDK (quote, explain, sites, usage, whoami) and the
error classes a caller can catch."""

from __future__ import annotations

import uuid

import pytest

from computility.demo.network import DemoNetwork
from computility.sdk import (
    ApiError,
    Client,
    InvalidRequest,
    NotFound,
    Unauthorized,
    calls,
)
from computility.sdk.calls import Call
from computility.wire.api import TaskOut

DEMO_SITES = {"zjk-wind", "yrd-ai", "tf-hydro", "ga-cloud", "qy-data"}


def test_quote_prices_every_site_that_can_run_the_task(client: Client) -> None:
    quote = client.quote({"run": "python train.py", "workdir": "/not/uploaded/for/a/quote",
                          "resources": {"cpus": 8, "estimate": "2h"}})

    assert quote.currency == "CNY"
    assert {c.site for c in quote.candidates} == DEMO_SITES
    assert all(c.price > 0 and c.run_s > 0 for c in quote.candidates)


def test_a_gpu_quote_names_only_sites_with_that_gpu(client: Client) -> None:
    quote = client.quote({"run": "x", "resources": {"accelerators": "A100:2"}})

    assert {c.site for c in quote.candidates} == {"yrd-ai"}
    assert {c.device for c in quote.candidates} == {"A100-80GB"}


def test_explain_says_where_a_task_ran_and_why(client: Client) -> None:
    task = client.submit({"name": "explained", "run": "true",
                          "placement": {"policy": "greenest"}})
    task.wait(timeout=30, check=True)

    why = client.explain(task.id)

    assert why.task == task.id and why.site == task.record.site
    assert why.policy == "greenest"
    chosen = [c for c in why.candidates if c.chosen]
    assert [c.site for c in chosen] == [task.record.site]


def test_sites_lists_the_five_demo_sites_online(client: Client) -> None:
    sites = client.sites()

    assert {s.id for s in sites} == DEMO_SITES
    assert all(s.online for s in sites)
    assert client.site("qy-data").datasets[0].id == "era5-china-2023"


def test_usage_counts_the_tenants_attempts(client: Client) -> None:
    client.submit({"name": "metered", "run": "true"}).wait(timeout=30, check=True)

    usage = client.usage()

    assert usage.tenant == "climate-lab" and usage.currency == "CNY"
    assert usage.attempts >= 1 and usage.cu_hours > 0


def test_whoami_names_the_keys_tenant_and_role(demo: DemoNetwork, client: Client) -> None:
    assert client.whoami()["tenant"] == "climate-lab"
    assert client.whoami()["role"] == "user"
    with demo.client("operator") as operator:
        assert operator.whoami()["role"] == "operator"


def test_a_missing_task_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as raised:
        client.get(10**12)
    assert raised.value.status == 404


def test_another_tenants_task_is_not_found(demo: DemoNetwork, client: Client) -> None:
    theirs = client.submit({"name": "private", "run": "true"})
    with demo.client("vision-startup") as other, pytest.raises(NotFound):
        other.get(theirs.id)


def test_a_bad_key_is_unauthorized(demo: DemoNetwork) -> None:
    with Client(demo.url, "not-a-key") as stranger, pytest.raises(Unauthorized) as raised:
        stranger.whoami()
    assert raised.value.status == 401


def test_a_bad_spec_sent_raw_is_an_invalid_request_naming_the_field(client: Client) -> None:
    raw = calls.submit({"run": "true", "resources": {"cpus": "many"}}, uuid.uuid4().hex)

    with pytest.raises(InvalidRequest) as raised:
        client.call(raw)

    error = raised.value
    assert error.status == 422
    assert [e["field"] for e in error.errors] == ["resources.cpus"]
    assert "cpus" in str(error)


def test_a_call_can_be_made_by_hand(client: Client) -> None:
    """`Client.call` sends any `Call`, so an endpoint the SDK has no method for is reachable."""
    task = client.submit({"name": "by-hand", "run": "true"})
    got = client.call(Call("GET", f"/api/v1/tasks/{task.id}", calls.model(TaskOut)))
    assert got.id == task.id
    with pytest.raises(ApiError) as raised:
        client.call(Call("GET", "/api/v1/no-such-route", calls.raw))
    assert raised.value.status == 404
