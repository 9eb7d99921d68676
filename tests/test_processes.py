"""Two `deflect serve` processes on one PostgreSQL: shared metrics, aliases learned by one used by the other."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import TINY_KB, write_kb
from server_support import ADMIN, Server, run_cli, server_env

ODD_QUERY = "the purple elephant code from the conference"


@pytest.fixture
def two_servers(tmp_path, postgres_url):
    write_kb(tmp_path / "kb", TINY_KB)
    env = server_env(tmp_path, postgres_url)
    run_cli(env, "index", timeout=300)
    servers = [Server(env, tmp_path / f"{name}.log") for name in ("a", "b")]
    try:
        for server in servers:
            server.wait_healthy()
        yield [server.base for server in servers]
    finally:
        for server in servers:
            server.stop()


def test_two_processes_share_events_metrics_and_aliases(two_servers):
    a, b = two_servers
    for n, base in enumerate((a, b, a, b)):
        answer = requests.post(f"{base}/api/suggest", json={"query": "I forgot my password", "session": f"s{n}"}, timeout=120).json()
        # each event goes to the other process than the search did
        other = b if base == a else a
        kind = ("click", "helpful", "ticket_created", "not_helpful")[n]
        body = {"search_id": answer["search_id"], "type": kind}
        if kind != "ticket_created":
            body["item_id"] = answer["results"][0]["id"]
        response = requests.post(f"{other}/api/events", json=body, timeout=120)
        assert response.status_code == 202, response.text

    until = time.time() + 60
    metrics_a = requests.get(f"{a}/api/metrics?until={until}", headers=ADMIN, timeout=120).json()
    metrics_b = requests.get(f"{b}/api/metrics?until={until}", headers=ADMIN, timeout=120).json()
    assert metrics_a == metrics_b
    assert metrics_a["totals"]["searches"] == 4
    assert metrics_a["events"] == {"click": 1, "helpful": 1, "not_helpful": 1, "ticket_created": 1, "vote": 0}

    before = requests.post(f"{b}/api/suggest", json={"query": ODD_QUERY, "types": ["article"]}, timeout=120).json()
    assert before["results"][0]["id"] != "billing/refunds"
    taught = requests.post(f"{a}/api/suggest", json={"query": ODD_QUERY}, timeout=120).json()
    learned = requests.post(
        f"{a}/api/events", json={"search_id": taught["search_id"], "type": "helpful", "item_id": "billing/refunds"}, timeout=30
    )
    assert learned.json()["alias"]["status"] == "learned"
    deadline = time.time() + 20
    top = None
    while time.time() < deadline:
        answer = requests.post(f"{b}/api/suggest", json={"query": ODD_QUERY, "types": ["article"]}, timeout=120).json()
        top = answer["results"][0]["id"]
        if top == "billing/refunds":
            break
        time.sleep(0.25)
    assert top == "billing/refunds"

    listed = requests.get(f"{b}/api/aliases", headers=ADMIN, timeout=120).json()["aliases"]
    [alias_id] = [row["id"] for row in listed if row["query"] == ODD_QUERY]
    assert requests.delete(f"{b}/api/aliases/{alias_id}", headers=ADMIN, timeout=120).status_code == 200
    deadline = time.time() + 20
    while time.time() < deadline:
        answer = requests.post(f"{a}/api/suggest", json={"query": ODD_QUERY, "types": ["article"]}, timeout=120).json()
        top = answer["results"][0]["id"]
        if top != "billing/refunds":
            break
        time.sleep(0.25)
    assert top != "billing/refunds"  # the deletion through B reached A
