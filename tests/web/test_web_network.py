"""The network page and each site's page: every site the viewer may see, on a schematic map
(area by capacity, colour by load) and in a table; a site's pools, queue, prices and power."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import httpx
import pytest
from web_harness import Dashboard

from computility.server.web.render import money
from computility.testing.controlplane import FakeAgent, wait_until

CIRCLE = re.compile(r'<circle cx="[^"]+" cy="[^"]+" r="([0-9.]+)" data-site="([^"]+)" '
                    r'data-load="([0-9.]+)"\s+fill="(#[0-9a-f]{6})"')
RED, GREEN = "#c62828", "#1a7f37"


def _register(dashboard: Dashboard, body: dict[str, object]) -> None:
    with httpx.Client(base_url=dashboard.url, timeout=30,
                      headers={"Authorization": f"Bearer {dashboard.provider_key}"}) as c:
        r = c.post("/api/v1/sites", json=body)
        assert r.status_code == 201, r.text


def _circles(html: str) -> dict[str, tuple[float, float, str]]:
    """site -> (radius, load, colour) of every circle on the map."""
    return {site: (float(r), float(load), colour)
            for r, site, load, colour in CIRCLE.findall(html)}


@pytest.fixture
def network(dashboard: Dashboard) -> Iterator[FakeAgent]:
    """Three sites of provider tenant ``hubs``: a big GPU site whose agent runs (fully busy
    once the test submits eight one-GPU tasks), a small idle CPU site, and one that only
    ``bob-corp`` may use."""
    big = FakeAgent(dashboard.url, dashboard.provider_key, "zjk-big",
                    {"gpu": ("A100-80GB", 8)}, region="ZJK", time_scale=1.0,
                    heartbeat_s=1.0, price_per_cu_hour=0.8).start()
    FakeAgent(dashboard.url, dashboard.provider_key, "ga-small", {"cpu": ("EPYC-7763", 16)},
              region="GA", price_per_cu_hour=0.25).register()
    _register(dashboard, {"id": "tf-private", "region": "TF", "backend": "fake",
                          "tenants": ["bob-corp"],
                          "pools": [{"id": "cpu", "device": "EPYC-7763", "count": 32,
                                     "price_per_cu_hour": 0.3}]})
    try:
        yield big
    finally:
        big.stop()


def _fill(dashboard: Dashboard, agent: FakeAgent) -> list[int]:
    """Eight one-GPU tasks of alice running on the big site (for ten minutes)."""
    spec = {"run": "train", "resources": {"cpus": 1, "accelerators": "A100-80GB:1"},
            "placement": {"sites": ["zjk-big"]}, "envs": {"FAKE_RUN_S": "600"}}
    with httpx.Client(base_url=dashboard.url, timeout=30,
                      headers={"Authorization": f"Bearer {dashboard.alice_key}"}) as c:
        r = c.post("/api/v1/tasks/batch", json={"tasks": [spec] * 8})
        assert r.status_code == 201, r.text
        ids = [t["id"] for t in r.json()["tasks"]]
    wait_until(lambda: len(agent.running()) == 8, timeout=60)
    return ids


def test_the_map_and_table_show_each_site_the_viewer_may_see_with_a_link(
        dashboard: Dashboard, network: FakeAgent) -> None:
    seen = {}
    for name, key in (("operator", dashboard.operator_key), ("alice", dashboard.alice_key),
                      ("bob", dashboard.bob_key), ("provider", dashboard.provider_key)):
        r = dashboard.session(key).get("/")
        assert r.status_code == 200, r.text
        seen[name] = set(_circles(r.text))
        for site in seen[name]:
            assert f'href="/sites/{site}"' in r.text
    everyone = {"zjk-big", "ga-small", "tf-private"}
    assert seen["operator"] == seen["provider"] == seen["bob"] == everyone
    assert seen["alice"] == {"zjk-big", "ga-small"}  # tf-private admits bob-corp only


def test_circles_are_sized_by_capacity_and_coloured_by_load(
        dashboard: Dashboard, network: FakeAgent) -> None:
    _fill(dashboard, network)
    operator = dashboard.session(dashboard.operator_key)
    r = operator.get("/")
    circles = _circles(r.text)
    big, small = circles["zjk-big"], circles["ga-small"]
    assert big[0] > small[0]  # 8 A100s are far more CU than 16 cores
    assert big[1] == pytest.approx(1.0) and big[2] == RED
    assert small[1] == 0.0 and small[2] == GREEN
    assert "0 % · 50 % · 100 %" in r.text  # the legend
    row = re.search(r'<a href="/sites/zjk-big">zjk-big</a>(.*?)</tr>', r.text, re.S)
    assert row is not None and "100 %" in row.group(1) and "Zhangjiakou" in row.group(1)
    # Totals: the busy CU of 8 A100s, and every site online but the one with no agent.
    assert re.search(r"Busy</div>\s*<div class=\"stat\">156\.0 CU", r.text), r.text[:3000]


def test_a_sites_page_shows_its_pools_queue_price_and_power(
        dashboard: Dashboard, network: FakeAgent) -> None:
    ids = _fill(dashboard, network)
    operator = dashboard.session(dashboard.operator_key)
    r = operator.get("/sites/zjk-big")
    assert r.status_code == 200, r.text
    text = r.text
    assert "A100-80GB" in text and "0.80 CNY" in text  # the pool and its price per CU-h
    queue = dict(re.findall(r'class="stat queue-(\w+)">(\d+)<', text))
    assert queue["queued"] == "0" and int(queue["leased"]) + int(queue["running"]) == 8
    assert "0.5000 CNY" in text and "0.500" in text  # flat electricity and carbon (FakeAgent)
    assert "Zhangjiakou" in text and "hubs" in text
    for task in ids:
        assert f'href="/tasks/{task}"' in text  # an operator sees the latest tasks
    assert 'id="site-electricity"' in text and 'id="site-carbon"' in text


def test_a_site_on_its_regions_curves_shows_the_price_and_carbon_of_this_hour(
        dashboard: Dashboard, network: FakeAgent) -> None:
    _register(dashboard, {"id": "ga-curves", "region": "GA", "backend": "fake",
                          "pools": [{"id": "cpu", "device": "EPYC-7763", "count": 8,
                                     "price_per_cu_hour": 0.2}]})
    base = dashboard.server.plane.base
    model = next(s for s in base.sites if s.region == "GA")
    zone = dt.timezone(dt.timedelta(minutes=base.utc_offset_minutes))
    before = dt.datetime.now(zone).hour
    r = dashboard.session(dashboard.alice_key).get("/sites/ga-curves")
    after = dt.datetime.now(zone).hour
    assert r.status_code == 200
    assert any(money(model.electricity_price_curve[h], "CNY", 4) in r.text
               and f"{model.carbon_curve[h]:.3f}" in r.text for h in {before, after})
    chart = re.search(r'id="site-electricity">(.*?)</script>', r.text, re.S)
    assert chart is not None
    values = [float(v) for v in re.search(r'"values":\[([^\]]*)\]', chart.group(1))
              .group(1).split(",")]  # type: ignore[union-attr]
    assert values == [round(p / 1e6, 4) for p in model.electricity_price_curve]


def test_only_an_operator_or_the_owner_sees_the_latest_tasks_of_a_site(
        dashboard: Dashboard, network: FakeAgent) -> None:
    ids = _fill(dashboard, network)
    for key, shown in ((dashboard.operator_key, True), (dashboard.provider_key, False),
                       (dashboard.alice_key, False), (dashboard.bob_key, False)):
        r = dashboard.session(key).get("/sites/zjk-big")
        assert r.status_code == 200
        assert (f'href="/tasks/{ids[0]}"' in r.text) is shown
    # The owner sees its site busy with other tenants' work, but not what that work is.
    owner = dashboard.session(dashboard.provider_key).get("/sites/zjk-big").text
    assert owner.count("another tenant&#39;s task") >= 1
    assert "another tenant&#39;s task" not in dashboard.session(dashboard.operator_key).get(
        "/sites/zjk-big").text


def test_an_unknown_or_invisible_site_is_not_found(
        dashboard: Dashboard, network: FakeAgent) -> None:
    alice = dashboard.session(dashboard.alice_key)
    for path in ("/sites/nowhere", "/sites/tf-private"):
        r = alice.get(path)
        assert r.status_code == 404 and "Not found" in r.text
    assert dashboard.session(dashboard.bob_key).get("/sites/tf-private").status_code == 200


def test_the_pages_speak_chinese_when_asked(dashboard: Dashboard, network: FakeAgent) -> None:
    operator = dashboard.session(dashboard.operator_key)
    operator.http.cookies.set("cu_lang", "zh")
    home = operator.get("/")
    assert home.status_code == 200
    assert "在线站点" in home.text and "张家口" in home.text and "Zhangjiakou" not in home.text
    assert "东经" in home.text and "北纬" in home.text  # the grid's labelled degrees
    site = operator.get("/sites/ga-small")
    assert site.status_code == 200 and "资源池" in site.text and "贵安" in site.text
    operator.http.cookies.set("cu_lang", "en")
    home = operator.get("/")
    assert "Sites online" in home.text and "Zhangjiakou" in home.text and "°E" in home.text


def test_the_sites_table_pages_by_site_id(dashboard: Dashboard, network: FakeAgent) -> None:
    operator = dashboard.session(dashboard.operator_key)
    r = operator.get("/", params={"after": "ga-small"})
    table = r.text.split('<table class="sites">')[1]
    assert "tf-private" in table and "zjk-big" in table and ">ga-small<" not in table
    assert len(_circles(r.text)) == 3  # the map always shows them all
