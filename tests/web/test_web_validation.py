"""The validation pages over HTTP: an operator starts a run from the form, follows it to the
comparison of its policies, and cancels; users and providers are refused everywhere; forms
without the session's token are refused; both languages."""

from __future__ import annotations

import re
import time

from sqlalchemy import func, insert, select
from web_harness import Dashboard, Session

from computility.server.db import schema as db
from computility.testing.controlplane import wait_until

RUN_URL = re.compile(r"^/validation/(\d+)$")


def _start(op: Session, **fields: object) -> int:
    form = {"source": "synthetic", "synthetic": "200", "network": "default", "queue": "easy",
            "policy": ["cheapest", "fastest"], "seed": "0", **fields}
    r = op.post("/validation/runs", form)  # type: ignore[arg-type]
    assert r.status_code == 303, r.text
    found = RUN_URL.match(r.headers["location"])
    assert found is not None
    return int(found.group(1))


def _finished_status(op: Session, run_id: int) -> str:
    """The run's status fragment once it stops polling (the run has ended)."""
    html = ""

    def ended() -> bool:
        nonlocal html
        r = op.get(f"/validation/{run_id}/status")
        assert r.status_code == 200
        html = r.text
        return "hx-trigger" not in html

    wait_until(ended, timeout=90, every=0.3)
    return html


def _count_runs(dashboard: Dashboard) -> int:
    with dashboard.server.plane.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.validation_runs)).scalar()
                   or 0)


def test_the_form_offers_every_workload_network_and_policy(dashboard: Dashboard) -> None:
    op = dashboard.session(dashboard.operator_key)
    r = op.get("/validation")
    assert r.status_code == 200
    html = r.text
    assert 'action="/validation/runs"' in html and 'enctype="multipart/form-data"' in html
    assert 'name="csrf"' in html and 'type="file" name="upload"' in html
    assert '<option value="lublin_256"' in html  # the bundled trace
    for policy in ("cheapest", "fastest", "greenest", "balanced", "random", "round_robin",
                   "least_loaded", "nearest"):
        assert f'name="policy" value="{policy}"' in html
    assert 'value="generated"' in html and "No run yet." in html


def test_a_run_goes_from_the_form_to_the_comparison_of_its_policies(
        dashboard: Dashboard) -> None:
    op = dashboard.session(dashboard.operator_key)
    run_id = _start(op)
    page = op.get(f"/validation/{run_id}")
    assert page.status_code == 200 and f"Validation run #{run_id}" in page.text
    assert "200 synthetic tasks" in page.text and "cheapest, fastest" in page.text
    html = _finished_status(op, run_id)
    assert "Policies compared" in html and "200 jobs replayed on the national network" in html
    rows = re.findall(r'<th scope="row">([^<]+)</th>', html)
    assert rows == ["cheapest", "fastest"]
    assert 'class="num best' in html  # the two policies differ: some column has a winner
    for chart in ("bar-mean-wait-s", "bar-cost", "bar-carbon-kg", "line-utilization",
                  "line-waiting", "line-wait-percentiles"):
        assert f'<script type="application/json" id="{chart}">' in html
        assert f'data-series="{chart}"' in html
    # The finished run's own page shows the same, and the list links to it.
    assert "Policies compared" in op.get(f"/validation/{run_id}").text
    listing = op.get("/validation").text
    assert f'href="/validation/{run_id}"' in listing and "state-done" in listing


def test_fields_that_cannot_be_run_are_named_and_no_run_is_made(dashboard: Dashboard) -> None:
    op = dashboard.session(dashboard.operator_key)
    r = op.post("/validation/runs", {"source": "synthetic", "synthetic": "0", "network": "single",
                                     "queue": "lifo", "limit": "many"})
    assert r.status_code == 422
    assert "Expected a whole number from 1 to 100,000, got &#39;0&#39;." in r.text
    assert "Tick at least one policy" in r.text
    assert "Expected one of: fcfs, easy, conservative." in r.text
    assert "got &#39;many&#39;" in r.text
    assert _count_runs(dashboard) == 0


def test_an_unreadable_upload_is_named_by_its_line(dashboard: Dashboard) -> None:
    op = dashboard.session(dashboard.operator_key)
    swf = b"; MaxProcs: 64\n1 0 10 600 4 -1 -1 4 600 -1 1 1 1 1 1 1 -1 -1\n2 5 0 60 x\n"
    r = op.http.post("/validation/runs", data={
        "csrf": op.csrf, "source": "upload", "network": "single", "policy": "balanced",
        "queue": "easy", "format": "swf"}, files={"upload": ("cluster.swf", swf)})
    assert r.status_code == 422
    assert ("Line 3, field average cpu time: expected 18 numeric fields, "
            "got &#39;2 5 0 60 x&#39;") in r.text
    assert _count_runs(dashboard) == 0


def test_an_uploaded_trace_runs_on_its_own_machine(dashboard: Dashboard) -> None:
    op = dashboard.session(dashboard.operator_key)
    csv = b"id,submit_s,run_s,cpus\n" + b"".join(
        f"{i},{i * 30},{600 + i},{1 + i % 4}\n".encode() for i in range(1, 41))
    r = op.http.post("/validation/runs", data={
        "csrf": op.csrf, "source": "upload", "network": "default",
        "policy": ["balanced", "greenest"], "queue": "easy"},
        files={"upload": ("lab-jobs.csv", csv)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    html = _finished_status(op, run_id)
    assert "40 jobs replayed" in html
    assert "uploaded lab-jobs.csv" in op.get(f"/validation/{run_id}").text


def test_cancel_stops_a_long_run(dashboard: Dashboard) -> None:
    op = dashboard.session(dashboard.operator_key)
    run_id = _start(op, synthetic="100000", policy=["balanced", "cheapest", "greenest"])
    assert "Cancel the run" in op.get(f"/validation/{run_id}").text
    assert op.post(f"/validation/{run_id}/cancel", with_csrf=False).status_code == 403
    r = op.post(f"/validation/{run_id}/cancel")
    assert r.status_code == 303 and r.headers["location"] == f"/validation/{run_id}"
    html = op.get(f"/validation/{run_id}").text
    assert "The run was cancelled" in html and "hx-trigger" not in html
    time.sleep(1.2)
    assert "state-cancelled" in op.get(f"/validation/{run_id}/status").text


def test_users_and_providers_are_refused_on_every_validation_route(
        dashboard: Dashboard) -> None:
    op = dashboard.session(dashboard.operator_key)
    run_id = _start(op, synthetic="20", policy="balanced")
    for key in (dashboard.alice_key, dashboard.provider_key):
        who = dashboard.session(key)
        assert 'href="/validation"' not in who.get("/").text  # not in their menu either
        for path in ("/validation", f"/validation/{run_id}", f"/validation/{run_id}/status",
                     "/validation/999999"):
            r = who.get(path)
            assert r.status_code == 403 and "Not allowed" in r.text, path
        r = who.post("/validation/runs", {"source": "synthetic", "synthetic": "10",
                                          "policy": "balanced"})
        assert r.status_code == 403
        assert who.post(f"/validation/{run_id}/cancel").status_code == 403
    assert _count_runs(dashboard) == 1
    assert "state-cancelled" not in op.get(f"/validation/{run_id}").text


def test_forms_without_the_sessions_token_are_refused(dashboard: Dashboard) -> None:
    op = dashboard.session(dashboard.operator_key)
    r = op.post("/validation/runs", {"source": "synthetic", "synthetic": "10",
                                     "policy": "balanced"}, with_csrf=False)
    assert r.status_code == 403 and "Request refused" in r.text
    r = op.post("/validation/runs", {"source": "synthetic", "synthetic": "10",
                                     "policy": "balanced", "csrf": "forged"})
    assert r.status_code == 403
    assert _count_runs(dashboard) == 0


def test_past_runs_are_listed_newest_first_a_page_at_a_time(dashboard: Dashboard) -> None:
    with dashboard.server.plane.write() as conn:
        for i in range(25):
            conn.execute(insert(db.validation_runs).values(
                tenant_id="default", created_by="test", created_at=1.7e9 + i, state="cancelled",
                trace=f"synthetic:{i + 1}", network="default", policies=["balanced"],
                options={"queue": "easy"}, progress=0.0))
    op = dashboard.session(dashboard.operator_key)
    first = op.get("/validation").text
    shown = [int(n) for n in re.findall(r'href="/validation/(\d+)"', first)]
    assert shown == list(range(25, 5, -1))
    older = re.search(r'href="/validation\?before=(\d+)"', first)
    assert older is not None and older.group(1) == "6"
    second = op.get(f"/validation?before={older.group(1)}").text
    assert [int(n) for n in re.findall(r'href="/validation/(\d+)"', second)] == [5, 4, 3, 2, 1]
    assert "before=" not in second
    r = op.get("/validation?before=yesterday")
    assert r.status_code == 400 and "before: expected a run number" in r.text
    assert op.get("/validation/12345").status_code == 404
    assert op.get("/validation/abc").status_code == 404


def test_the_pages_speak_chinese(dashboard: Dashboard) -> None:
    op = dashboard.session(dashboard.operator_key)
    op.http.cookies.set("cu_lang", "zh")
    html = op.get("/validation").text
    assert "<h1>调度验证</h1>" in html and "开始验证" in html and "最低成本" in html
    run_id = _start(op)
    status = _finished_status(op, run_id)
    assert "策略对比" in status and "在全国算力网络上回放 200 个任务" in status
    assert re.findall(r'<th scope="row">([^<]+)</th>', status) == ["最低成本", "最快完成"]
    assert f"验证 #{run_id}" in op.get(f"/validation/{run_id}").text


def test_a_run_failed_by_a_restart_says_so_in_the_readers_language(
        dashboard: Dashboard) -> None:
    with dashboard.server.plane.write() as conn:
        conn.execute(insert(db.validation_runs).values(
            tenant_id="default", created_by="test", created_at=1.7e9, state="failed",
            trace="builtin:lublin_256", network="single", policies=["balanced", "fastest"],
            options={"queue": "fcfs"}, progress=0.4, message="the service restarted",
            started_at=1.7e9, finished_at=1.7e9 + 90))
    op = dashboard.session(dashboard.operator_key)
    html = op.get("/validation/1").text
    assert "The run failed:" in html and "the service restarted while the run was in" in html
    assert "trace lublin_256" in html and "the trace&#39;s own machine" in html
    assert "first come, first served" in html and "1 min 30 s" in html
    op.http.cookies.set("cu_lang", "zh")
    assert "验证进行中服务重启了" in op.get("/validation/1").text
