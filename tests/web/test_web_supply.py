"""Supply and demand (operators only): capacity against demand over 1 h to 7 days, utilisation
per device type and site, prices and carbon; refreshed live by htmx; a bad range is named."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from web_harness import Dashboard

from computility.domain.devices import default_catalogue
from computility.server.db import schema as db
from computility.server.sampling import sample
from computility.testing.controlplane import FakeAgent, wait_until


def _chart(html: str, key: str) -> dict[str, Any]:
    found = re.search(rf'<script type="application/json" id="supply-{key}">(.*?)</script>',
                      html, re.S)
    assert found is not None, f"no {key} chart"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


@pytest.fixture
def busy_site(dashboard: Dashboard) -> Any:
    """A site of four A100s, two of them running alice's tasks, and an idle CPU site."""
    agent = FakeAgent(dashboard.url, dashboard.provider_key, "zjk-gpu",
                      {"gpu": ("A100-80GB", 4)}, region="ZJK", time_scale=1.0,
                      heartbeat_s=1.0).start()
    FakeAgent(dashboard.url, dashboard.provider_key, "ga-cpu", {"cpu": ("EPYC-7763", 64)},
              region="GA").register()
    spec = {"run": "x", "resources": {"cpus": 1, "accelerators": "A100-80GB:1"},
            "placement": {"sites": ["zjk-gpu"]}, "envs": {"FAKE_RUN_S": "600"}}
    with httpx.Client(base_url=dashboard.url, timeout=30,
                      headers={"Authorization": f"Bearer {dashboard.alice_key}"}) as c:
        assert c.post("/api/v1/tasks/batch", json={"tasks": [spec, spec]}).status_code == 201
    wait_until(lambda: len(agent.running()) == 2, timeout=60)
    try:
        yield agent
    finally:
        agent.stop()


def test_only_operators_see_supply_and_demand(dashboard: Dashboard) -> None:
    for key in (dashboard.alice_key, dashboard.provider_key):
        session = dashboard.session(key)
        for path in ("/supply", "/supply/charts"):
            r = session.get(path)
            assert r.status_code == 403 and "Not allowed" in r.text
    assert dashboard.session(dashboard.operator_key).get("/supply").status_code == 200


def test_each_range_draws_the_samples_inside_it(dashboard: Dashboard, busy_site: Any) -> None:
    now = time.time()
    for ago in (30 * 60, 3 * 3600, 12 * 3600, 3 * 86400):  # one tick in each wider range
        sample(dashboard.server.plane, now - ago)
    operator = dashboard.session(dashboard.operator_key)
    for span, points in (("1h", 1), ("6h", 2), ("24h", 3), ("7d", 4)):
        r = operator.get("/supply", params={"range": span})
        assert r.status_code == 200, r.text
        capacity = _chart(r.text, "capacity")
        assert len(capacity["x"]) == points, span
        assert all(now - RANGE_S[span] <= x <= now for x in capacity["x"])
    a100 = default_catalogue().get("A100-80GB").cu
    cpu = default_catalogue().get("EPYC-7763").cu
    capacity = _chart(r.text, "capacity")
    by_label = {s["label"]: s["values"] for s in capacity["series"]}
    assert by_label["capacity online"][-1] == pytest.approx(4 * a100 + 64 * cpu, abs=1e-3)
    assert by_label["busy"][-1] == pytest.approx(2 * a100, abs=1e-3)
    devices = {s["label"]: s["values"] for s in _chart(r.text, "devices")["series"]}
    assert devices["A100-80GB"][-1] == pytest.approx(50.0) and devices["EPYC-7763"][-1] == 0
    prices = _chart(r.text, "prices")
    assert prices["unit"] == "CNY" and prices["series"][1]["values"][-1] == pytest.approx(0.5)
    assert _chart(r.text, "carbon")["series"][0]["values"][-1] == pytest.approx(0.5)
    table = r.text.split('<table class="by-site">')[1]
    assert table.index("zjk-gpu") < table.index("ga-cpu")  # busiest first
    assert re.search(r"<td>A100-80GB</td>.*?50 %", r.text, re.S)


RANGE_S = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}


def test_a_bad_range_is_named_with_the_allowed_values(dashboard: Dashboard) -> None:
    operator = dashboard.session(dashboard.operator_key)
    for path in ("/supply", "/supply/charts"):
        r = operator.get(path, params={"range": "2y<b>"})
        assert r.status_code == 400
        assert "range: expected one of 1h, 6h, 24h, 7d, got &#39;2y&lt;b&gt;&#39;" in r.text
        assert "Traceback" not in r.text


def test_the_charts_refresh_live_from_a_fragment(dashboard: Dashboard) -> None:
    operator = dashboard.session(dashboard.operator_key)
    r = operator.get("/supply", params={"range": "6h"})
    assert 'hx-get="/supply/charts?range=6h" hx-trigger="every 10s"' in r.text
    fragment = operator.get("/supply/charts", params={"range": "6h"},
                            headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and "Capacity online" in fragment.text


def test_a_long_history_is_downsampled_to_at_most_300_points(dashboard: Dashboard) -> None:
    now = time.time()
    rows = [{"at": now - 60.0 * k, "site_id": "s", "pool_id": "p", "device": "EPYC-7763",
             "capacity_cu": 10.0, "busy_cu": 1.0 + k % 3, "queued_cu": 0.0, "queued_tasks": k % 5,
             "price_micro_per_cu_hour": 500_000, "electricity_price_micro": 400_000,
             "carbon_kg_per_kwh": 0.4, "online": True} for k in range(1, 1440)]
    with dashboard.server.plane.write() as conn:
        conn.execute(insert(db.samples), rows)
    r = dashboard.session(dashboard.operator_key).get("/supply", params={"range": "24h"})
    for key in ("capacity", "queue", "devices", "prices", "carbon"):
        chart = _chart(r.text, key)
        assert 200 <= len(chart["x"]) <= 300
        assert all(len(s["values"]) == len(chart["x"]) for s in chart["series"])


def test_supply_and_demand_speaks_chinese(dashboard: Dashboard) -> None:
    operator = dashboard.session(dashboard.operator_key)
    operator.http.cookies.set("cu_lang", "zh")
    r = operator.get("/supply")
    assert r.status_code == 200 and "按设备类型的利用率" in r.text and "24 小时" in r.text
    r = operator.get("/supply", params={"range": "bad"})
    assert r.status_code == 400 and "range（时间范围）" in r.text
