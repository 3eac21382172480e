"""Usage & bills: the page shows the tenant's bill (the API's own figures), itemised by site and
device, with its daily spend; the CSV adds up to the bill to the micro-unit; a tenant sees only
its own bill; providers see what their sites earned; periods are the CLI's.

Tasks run on `FakeAgent` sites (each "runs" for ``FAKE_RUN_S`` seconds of billed time, a
thousandth of that in wall time) and are billed by the real ledger.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html import unescape
from typing import Any

import httpx
import pytest
from web_harness import Dashboard

from computility.server.web.pages.usage import period_window
from computility.testing.controlplane import FakeAgent, wait_until

CPU = "EPYC-7763"
UTC8 = timezone(timedelta(hours=8))


def run_tasks(user: httpx.Client, runs: list[float]) -> list[int]:
    """Submit one CPU task per run length (seconds billed) and wait until all succeeded."""
    body = {"tasks": [{"name": f"job-{i}", "run": "python work.py",
                       "resources": {"cpus": 2}, "envs": {"FAKE_RUN_S": str(s)},
                       "timeout": "2h"} for i, s in enumerate(runs)]}
    r = user.post("/api/v1/tasks/batch", json=body)
    assert r.status_code == 201, r.text
    ids = [int(t["id"]) for t in r.json()["tasks"]]

    def done() -> bool:
        got = [user.get(f"/api/v1/tasks/{i}").json()["state"] for i in ids]
        assert "failed" not in got
        return all(s == "succeeded" for s in got)

    wait_until(done, timeout=60, every=0.1)
    return ids


@pytest.fixture
def sites(dashboard: Dashboard) -> Iterator[list[FakeAgent]]:
    """Two sites of the provider tenant "hubs", in two regions at two prices."""
    agents = [
        FakeAgent(dashboard.url, dashboard.provider_key, "hub-zjk", {"cpu": (CPU, 8)},
                  region="ZJK", price_per_cu_hour=0.5, lease_wait_s=0.2).start(),
        FakeAgent(dashboard.url, dashboard.provider_key, "hub-gy", {"cpu": (CPU, 8)},
                  region="GA", price_per_cu_hour=0.3, lease_wait_s=0.2).start(),
    ]
    yield agents
    for agent in agents:
        agent.stop()


@pytest.fixture
def alice_api(dashboard: Dashboard) -> Iterator[httpx.Client]:
    with dashboard.server.client(dashboard.alice_key) as c:
        yield c


def api_bill(client: httpx.Client, period: str = "month") -> dict[str, Any]:
    window = period_window(period, datetime.now().timestamp(), 480)
    assert window is not None
    r = client.get("/api/v1/usage", params={"since": window[0], "until": window[1]})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def visible_text(html: str) -> str:
    """What a reader sees: no tags, attributes or scripts (the chart's JSON data included)."""
    html = re.sub(r"<script\b[^>]*>.*?</script>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]*>", " ", html))


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def chart_of(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="usage-daily">(.*?)</script>', html,
                      re.S)
    assert found is not None, "no chart data in the page"
    out: dict[str, Any] = json.loads(found.group(1))
    return out


def test_the_bill_is_shown_itemised_charted_and_the_csv_adds_up_to_it(
    dashboard: Dashboard, sites: list[FakeAgent], alice_api: httpx.Client
) -> None:
    run_tasks(alice_api, [600, 1200, 1800, 900])
    bill = api_bill(alice_api)
    assert bill["attempts"] == 4 and bill["total"] > 0
    alice = dashboard.session(dashboard.alice_key)

    page = alice.get("/usage")
    assert page.status_code == 200
    text = unescape(page.text)
    assert f"{bill['total']:,.2f} CNY" in text
    table = text[text.index('<table class="bill">'):]
    table = table[:table.index("</table>")]
    billed_sites = {a.site for a in sites if a.finished}
    assert billed_sites and all(site in table for site in billed_sites)
    assert CPU in table
    assert "Provider earnings" not in text  # a user has no sites
    assert '{"' not in visible_text(page.text)

    chart = chart_of(page.text)
    assert chart["unit"] == "CNY" and chart["series"][0]["label"] == "Spend"
    assert len(chart["x"]) == len(chart["series"][0]["values"]) >= 1
    assert sum(chart["series"][0]["values"]) == pytest.approx(bill["total"], abs=1e-6)

    export = alice.get("/usage.csv")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    assert export.headers["content-disposition"].startswith("attachment;")
    rows = csv_rows(export.text)
    total = rows[-1]
    lines = rows[:-1]
    assert total["site"] == "total" and {r["site"] for r in lines} == billed_sites
    assert sum(Decimal(r["total"]) for r in lines) == Decimal(total["total"])
    assert Decimal(total["total"]) == Decimal(str(bill["total"]))
    for part in ("compute", "energy", "network"):
        assert Decimal(total[part]) == Decimal(str(bill[part]))
    assert int(total["attempts"]) == bill["attempts"]
    assert float(total["cu_hours"]) == pytest.approx(bill["cu_hours"], abs=1e-5)


def test_a_tenant_sees_only_its_own_bill_and_the_operator_any(
    dashboard: Dashboard, sites: list[FakeAgent], alice_api: httpx.Client
) -> None:
    run_tasks(alice_api, [3600])
    bill = api_bill(alice_api)
    bob = dashboard.session(dashboard.bob_key)
    assert bob.get("/usage", params={"tenant": "alice-lab"}).status_code == 403
    assert bob.get("/usage.csv", params={"tenant": "alice-lab"}).status_code == 403
    own = unescape(bob.get("/usage").text)
    assert "Nothing was billed in this period." in own
    assert f"{bill['total']:,.2f} CNY" not in own

    operator = dashboard.session(dashboard.operator_key)
    theirs = operator.get("/usage", params={"tenant": "alice-lab"})
    assert theirs.status_code == 200 and f"{bill['total']:,.2f} CNY" in unescape(theirs.text)
    assert '<option value="alice-lab" selected>' in theirs.text
    export = operator.get("/usage.csv", params={"tenant": "alice-lab", "period": "all"})
    assert Decimal(csv_rows(export.text)[-1]["total"]) == Decimal(str(bill["total"]))
    assert "usage-alice-lab-all.csv" in export.headers["content-disposition"]
    unknown = operator.get("/usage", params={"tenant": "nobody-here"})
    assert unknown.status_code == 400 and "tenant: expected" in unescape(unknown.text)


def test_a_provider_sees_what_its_sites_earned(
    dashboard: Dashboard, sites: list[FakeAgent], alice_api: httpx.Client
) -> None:
    run_tasks(alice_api, [1200, 2400])
    bill = api_bill(alice_api)
    provider = dashboard.session(dashboard.provider_key)
    page = unescape(provider.get("/usage").text)
    assert "Provider earnings" in page and "Sites owned by hubs." in page
    earnings = page[page.index('<table class="earnings">'):]
    earnings = earnings[:earnings.index("</table>")]
    amounts = [Decimal(a.replace(",", "")) for a in re.findall(r"([\d,.]+) CNY", earnings)]
    # Every site the provider owns earned what alice was billed there (to the cent shown).
    assert sum(amounts) == pytest.approx(Decimal(str(bill["total"])), abs=Decimal("0.02"))
    billed_sites = {a.site for a in sites if a.finished}
    assert billed_sites and all(site in earnings for site in billed_sites)
    operator = unescape(dashboard.session(dashboard.operator_key).get("/usage").text)
    assert "Every site of the network" in operator
    assert all(site in operator for site in billed_sites)


@pytest.mark.parametrize("period", ["month", "day", "week", "all", "2026-02", "2026-02-28"])
def test_every_period_of_the_cli_is_understood(dashboard: Dashboard, period: str) -> None:
    alice = dashboard.session(dashboard.alice_key)
    assert alice.get("/usage", params={"period": period}).status_code == 200
    assert alice.get("/usage.csv", params={"period": period}).status_code == 200


def test_a_period_it_does_not_know_is_a_400_naming_the_field(dashboard: Dashboard) -> None:
    alice = dashboard.session(dashboard.alice_key)
    for period in ("yesterday", "2026-13", "2026-02-30", "2026/02"):
        for path in ("/usage", "/usage.csv"):
            r = alice.get(path, params={"period": period})
            assert r.status_code == 400, (path, period)
            assert f"period: expected month, day, week, all, YYYY-MM or YYYY-MM-DD, got " \
                   f"'{period}'" in unescape(r.text)


def test_the_usage_page_renders_in_both_languages(
    dashboard: Dashboard, sites: list[FakeAgent], alice_api: httpx.Client
) -> None:
    run_tasks(alice_api, [600])
    alice = dashboard.session(dashboard.alice_key)
    assert "Itemised by site and device" in alice.get("/usage").text
    alice.http.cookies.set("cu_lang", "zh")
    page = alice.get("/usage")
    assert page.status_code == 200
    assert all(w in page.text for w in ("用量与账单", "按站点与设备分项", "每日支出"))
    assert chart_of(page.text)["series"][0]["label"] == "支出"
    assert "period：应为" in alice.get("/usage?period=soon").text


def test_periods_are_read_in_the_networks_time_zone() -> None:
    """The CLI's ``--period`` values over [since, until), calendar ones at midnight UTC+8."""
    now = datetime(2026, 3, 15, 1, 30, tzinfo=UTC8).timestamp()
    midnight = datetime(2026, 3, 15, tzinfo=UTC8).timestamp()
    assert period_window("month", now, 480) == (datetime(2026, 3, 1, tzinfo=UTC8).timestamp(),
                                                now)
    assert period_window("day", now, 480) == (midnight, now)
    assert period_window("week", now, 480) == (now - 7 * 86400, now)
    assert period_window("all", now, 480) == (0.0, now)
    assert period_window("2025-12", now, 480) == (
        datetime(2025, 12, 1, tzinfo=UTC8).timestamp(), datetime(2026, 1, 1, tzinfo=UTC8)
        .timestamp())
    assert period_window("2024-02-29", now, 480) == (
        datetime(2024, 2, 29, tzinfo=UTC8).timestamp(),
        datetime(2024, 3, 1, tzinfo=UTC8).timestamp())
    for bad in ("2025-02-29", "2025-00", "month ", "", "1 week"):
        assert period_window(bad, now, 480) is None
