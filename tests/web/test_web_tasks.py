"""The tasks pages: a tenant sees its own tasks only, newest first, a page of 50 at a time; a
task's page tells where it is in its life, why it runs where it runs, what it printed and what
it cost, with no raw JSON; another tenant's task does not exist for you; cancelling needs the
session's form token.

Tasks are submitted through the API with the users' keys; a site's agent is played by hand
(lease, running, files, exit) where a test needs the logs, else no site is registered and the
tasks wait as pending.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest
from web_harness import Dashboard, Session

from computility.testing.controlplane import FakeAgent, wait_until

CPU = "EPYC-7763"
ROW_ID = re.compile(r'<td class="num"><a href="/tasks/(\d+)">')


def spec(name: str, run_s: float = 600.0) -> dict[str, Any]:
    return {"name": name, "run": "python train.py", "resources": {"cpus": 2},
            "envs": {"FAKE_RUN_S": str(run_s)}, "timeout": "1h"}


def submit(key_client: httpx.Client, *names: str) -> list[int]:
    r = key_client.post("/api/v1/tasks/batch", json={"tasks": [spec(n) for n in names]})
    assert r.status_code == 201, r.text
    return [int(t["id"]) for t in r.json()["tasks"]]


def listed(html: str) -> list[int]:
    return [int(i) for i in ROW_ID.findall(html)]


def visible_text(html: str) -> str:
    """What a reader sees: no tags, attributes or scripts (JSON data for charts included)."""
    html = re.sub(r"<script\b[^>]*>.*?</script>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]*>", " ", html))


@pytest.fixture
def users(dashboard: Dashboard) -> Iterator[dict[str, httpx.Client]]:
    clients = {"alice": dashboard.server.client(dashboard.alice_key),
               "bob": dashboard.server.client(dashboard.bob_key),
               "operator": dashboard.server.client(dashboard.operator_key)}
    yield clients
    for c in clients.values():
        c.close()


class HandAgent:
    """A registered site whose agent the test plays by hand, one step at a time."""

    def __init__(self, dashboard: Dashboard, site: str = "hub-a") -> None:
        self.fake = FakeAgent(dashboard.url, dashboard.provider_key, site,
                              {"cpu": (CPU, 16)}).register()
        self.http = self.fake.client()

    def lease(self) -> dict[str, Any]:
        got: list[dict[str, Any]] = []

        def leased() -> bool:
            r = self.http.post("/api/v1/agent/lease",
                               json={"free": {"cpu": 16}, "wait_s": 0.5})
            got.extend(r.json()["leases"])
            return bool(got)

        wait_until(leased, timeout=20)
        return got[0]

    def report(self, lease: dict[str, Any], **body: Any) -> None:
        r = self.http.post(f"/api/v1/agent/attempts/{lease['attempt']}/report",
                           json={"token": lease["token"], **body})
        assert r.status_code == 200, r.text

    def put(self, lease: dict[str, Any], stream: str, data: bytes) -> None:
        r = self.http.put(f"/api/v1/agent/attempts/{lease['attempt']}/files/{stream}",
                          content=data, headers={"X-Attempt-Token": str(lease["token"])})
        assert r.status_code == 204, r.text

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def hand(dashboard: Dashboard) -> Iterator[HandAgent]:
    agent = HandAgent(dashboard)
    yield agent
    agent.close()


# -- the list -------------------------------------------------------------------------------------


def test_the_list_shows_the_tenants_own_tasks_newest_first_50_a_page(
    dashboard: Dashboard, users: dict[str, httpx.Client]
) -> None:
    mine = submit(users["alice"], *[f"alice-{i}" for i in range(55)])
    theirs = submit(users["bob"], "bob-secret", "bob-other")
    alice = dashboard.session(dashboard.alice_key)

    first = alice.get("/tasks")
    assert first.status_code == 200
    assert listed(first.text) == sorted(mine, reverse=True)[:50]
    assert "bob-secret" not in first.text
    following = re.search(r'href="/tasks\?before=(\d+)" rel="next"', first.text)
    assert following is not None and int(following.group(1)) == sorted(mine)[5]
    second = alice.get(f"/tasks?before={following.group(1)}")
    assert listed(second.text) == sorted(mine, reverse=True)[50:]
    assert 'rel="next"' not in second.text

    # Pending tasks are unfinished: the table body polls its own fragment.
    assert 'hx-trigger="every 3s"' in first.text
    rows = alice.get("/tasks/rows")
    assert rows.status_code == 200 and rows.text.lstrip().startswith("<tbody")
    assert listed(rows.text) == listed(first.text)

    operator = dashboard.session(dashboard.operator_key)
    everyone = operator.get("/tasks")
    assert set(theirs) <= set(listed(everyone.text))
    assert "bob-corp" in everyone.text and "alice-lab" in everyone.text
    only_bob = operator.get("/tasks", params={"tenant": "bob-corp"})
    assert listed(only_bob.text) == sorted(theirs, reverse=True)
    provider = dashboard.session(dashboard.provider_key).get("/tasks")
    assert provider.status_code == 200 and listed(provider.text) == []  # "hubs" submitted none
    assert '{"' not in visible_text(first.text)


def test_the_list_searches_by_name_and_state_and_polls_while_it_may_change(
    dashboard: Dashboard, users: dict[str, httpx.Client]
) -> None:
    alice = dashboard.session(dashboard.alice_key)
    empty = alice.get("/tasks")
    assert listed(empty.text) == [] and 'hx-trigger="every 3s"' in empty.text  # new ones come
    ids = submit(users["alice"], "train-resnet", "train-bert", "eval-bert")
    assert listed(alice.get("/tasks/rows").text) == ids[::-1]
    users["alice"].post(f"/api/v1/tasks/{ids[0]}/cancel")
    assert listed(alice.get("/tasks", params={"q": "BERT"}).text) == [ids[2], ids[1]]
    assert listed(alice.get("/tasks", params={"q": "train", "state": "pending"}).text) == [
        ids[1]]
    assert listed(alice.get("/tasks", params={"state": "cancelled"}).text) == [ids[0]]
    older = alice.get("/tasks", params={"state": "cancelled", "before": str(ids[0] + 1)})
    assert listed(older.text) == [ids[0]] and "hx-trigger" not in older.text  # all finished
    assert listed(alice.get("/tasks", params={"q": "%"}).text) == []  # a literal '%'
    assert listed(alice.get("/tasks", params={"site": "nowhere"}).text) == []


def test_bad_list_queries_are_answered_with_a_page_naming_the_field(
    dashboard: Dashboard,
) -> None:
    alice = dashboard.session(dashboard.alice_key)
    for params, field in (({"state": "sleeping"}, "state"), ({"before": "abc"}, "before"),
                          ({"before": "0"}, "before"), ({"q": "x" * 300}, "q")):
        r = alice.get("/tasks", params=params)
        assert r.status_code == 400, params
        assert f"{field}: expected" in unescape(r.text)
        assert r.headers["content-type"].startswith("text/html")
    assert "one of pending, held" in unescape(alice.get("/tasks?state=x").text)
    assert alice.get("/tasks", params={"tenant": "bob-corp"}).status_code == 403
    assert alice.get("/tasks", params={"tenant": "alice-lab"}).status_code == 200


# -- one task -------------------------------------------------------------------------------------


def test_another_tenants_task_does_not_exist_for_alice_but_the_operator_sees_it(
    dashboard: Dashboard, users: dict[str, httpx.Client]
) -> None:
    (secret,) = submit(users["bob"], "bob-secret")
    alice = dashboard.session(dashboard.alice_key)
    theirs = alice.get(f"/tasks/{secret}")
    nothing = alice.get("/tasks/999999")
    assert theirs.status_code == nothing.status_code == 404
    assert "bob-secret" not in theirs.text
    def without_id(html: str) -> str:
        return re.sub(r"tasks(/|%2F)\d+", "tasks/ID", html)

    assert without_id(theirs.text) == without_id(nothing.text)  # nothing tells them apart
    for part in ("live", "log/stdout", "log/stdout.txt"):
        assert alice.get(f"/tasks/{secret}/{part}").status_code == 404
    assert alice.get("/tasks/not-a-number").status_code == 404
    assert alice.post(f"/tasks/{secret}/cancel").status_code == 404
    assert users["bob"].get(f"/api/v1/tasks/{secret}").json()["state"] == "pending"

    seen = dashboard.session(dashboard.operator_key).get(f"/tasks/{secret}")
    assert seen.status_code == 200 and "bob-secret" in seen.text and "bob-corp" in seen.text


def test_a_task_page_shows_timeline_explanation_logs_usage_and_cost_without_raw_json(
    dashboard: Dashboard, users: dict[str, httpx.Client], hand: HandAgent
) -> None:
    (task,) = submit(users["alice"], "hello-page")
    lease = hand.lease()
    hand.report(lease, state="running")
    hand.put(lease, "stdout", b"epoch 1 loss 0.93\nepoch 2 loss 0.41\n")
    hand.put(lease, "stderr", b"warning: <b>not bold</b>\n")
    alice = dashboard.session(dashboard.alice_key)

    running = alice.get(f"/tasks/{task}")
    assert running.status_code == 200
    assert f'hx-get="/tasks/{task}/log/stdout" hx-trigger="every 2s"' in running.text
    assert f'hx-get="/tasks/{task}/live" hx-trigger="every 3s"' in running.text
    assert "epoch 2 loss 0.41" in running.text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in running.text  # a log is text, never markup
    pane = alice.get(f"/tasks/{task}/log/stdout", headers={"HX-Request": "true"})
    assert pane.status_code == 200 and "epoch 1 loss 0.93" in pane.text

    hand.report(lease, state="exited", exit_code=0, run_s=600,
                usage={"wall_s": 601, "cpu_s": 1150, "max_rss_bytes": 3 * 2**30})
    api = users["alice"].get(f"/api/v1/tasks/{task}").json()
    assert api["state"] == "succeeded" and api["cost"] > 0

    done = alice.get(f"/tasks/{task}")
    html = done.text
    text = visible_text(html)
    # Timeline: every stage reached, and the attempt on its site with its exit code.
    for stage in ("Submitted", "Placed / queued", "Leased", "Running", "Ended"):
        assert stage in text
    assert "not yet" not in text
    attempts = html[html.index('<table class="attempts">'):]
    attempts = attempts[:attempts.index("</table>")]
    assert "hub-a / cpu" in attempts and "succeeded" in attempts and "10 min" in attempts
    # The scheduler's explanation, as a table of candidates.
    explain = html[html.index('<table class="candidates">'):]
    assert "hub-a / cpu" in explain[:explain.index("</table>")] and "chosen" in explain
    # Logs, usage, cost: the bill is the API's.
    assert "epoch 2 loss 0.41" in text
    assert "3,072 MiB" in text and "19 min 10 s" in text
    assert f"{api['cost']:,.2f} CNY" in text or f"{api['cost']:.6f}".rstrip("0") in text
    assert "kWh" in text and "kg CO2e" in text
    # Finished: nothing polls, the pane's fragment tells htmx to stop, no cancel button.
    assert 'hx-trigger="every' not in html and "/cancel" not in html
    assert alice.get(f"/tasks/{task}/log/stdout",
                     headers={"HX-Request": "true"}).status_code == 286
    whole = alice.get(f"/tasks/{task}/log/stdout.txt")
    assert whole.text == "epoch 1 loss 0.93\nepoch 2 loss 0.41\n"
    assert "attachment" in whole.headers["content-disposition"]
    assert '{"' not in text


def test_a_long_log_shows_its_last_64_kib_from_a_line_start(
    dashboard: Dashboard, users: dict[str, httpx.Client], hand: HandAgent
) -> None:
    (task,) = submit(users["alice"], "chatty")
    lease = hand.lease()
    lines = b"".join(b"line %06d of the log\n" % i for i in range(10_000))
    hand.put(lease, "stdout", lines)
    pane = dashboard.session(dashboard.alice_key).get(f"/tasks/{task}/log/stdout").text
    assert "line 009999 of the log" in pane and "line 000000" not in pane
    shown = pane.split("\n", 1)[1]
    assert "last 64 KiB" in pane and shown.startswith("line ")
    assert len(shown.encode()) <= 64 * 1024


def test_cancelling_needs_the_sessions_token_and_then_cancels(
    dashboard: Dashboard, users: dict[str, httpx.Client]
) -> None:
    (task,) = submit(users["alice"], "to-cancel")
    alice: Session = dashboard.session(dashboard.alice_key)
    page = alice.get(f"/tasks/{task}")
    assert f'action="/tasks/{task}/cancel"' in page.text

    refused = alice.post(f"/tasks/{task}/cancel", with_csrf=False)
    assert refused.status_code == 403
    assert users["alice"].get(f"/api/v1/tasks/{task}").json()["state"] == "pending"
    assert dashboard.session(dashboard.bob_key).post(f"/tasks/{task}/cancel").status_code == 404

    done = alice.post(f"/tasks/{task}/cancel")
    assert done.status_code == 303 and done.headers["location"] == f"/tasks/{task}"
    assert users["alice"].get(f"/api/v1/tasks/{task}").json()["state"] == "cancelled"
    assert f'action="/tasks/{task}/cancel"' not in alice.get(f"/tasks/{task}").text


def test_the_tasks_pages_render_in_both_languages(
    dashboard: Dashboard, users: dict[str, httpx.Client]
) -> None:
    (task,) = submit(users["alice"], "bilingual")
    alice = dashboard.session(dashboard.alice_key)
    english = alice.get(f"/tasks/{task}").text
    assert "Timeline" in english and "时间线" not in english
    alice.http.cookies.set("cu_lang", "zh")
    for path, words in (("/tasks", ("名称包含", "等待调度")),
                        (f"/tasks/{task}", ("时间线", "调度说明", "标准输出"))):
        r = alice.get(path)
        assert r.status_code == 200 and all(w in r.text for w in words), path
    bad = alice.get("/tasks?state=zzz")
    assert bad.status_code == 400 and "state：应为" in bad.text
