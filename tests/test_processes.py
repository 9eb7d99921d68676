"""Two `deflect serve` processes on one PostgreSQL: shared metrics, aliases learned by one used by the other."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests
from conftest import ADMIN_TOKEN, TINY_KB, _free_port, write_kb

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ODD_QUERY = "the purple elephant code from the conference"


def _env(tmp_path, database_url) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFLECT_")}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "DEFLECT_CONFIG": str(tmp_path / "no-such.toml"),
        "DEFLECT_KB_DIR": str(tmp_path / "kb"),
        "DEFLECT_INDEX_DIR": str(tmp_path / "index"),
        "DEFLECT_DATABASE_URL": database_url,
        "DEFLECT_ADMIN_TOKEN": ADMIN_TOKEN,
        "DEFLECT_SYNC_INTERVAL_SECONDS": "0.5",
    }
    return env


def _wait_healthy(base: str, process: subprocess.Popen, log_path) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    pytest.fail(f"server did not start: {log_path.read_text()[-2000:]}")


@pytest.fixture
def two_servers(tmp_path, postgres_url):
    write_kb(tmp_path / "kb", TINY_KB)
    env = _env(tmp_path, postgres_url)
    cli = [sys.executable, "-m", "deflect.cli"]
    subprocess.run([*cli, "index"], env=env, check=True, capture_output=True, timeout=300)
    processes, bases = [], []
    for name in ("a", "b"):
        port = _free_port()
        log_path = tmp_path / f"{name}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed with the process below
        process = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append((process, log, log_path))
        bases.append(f"http://127.0.0.1:{port}")
    try:
        for base, (process, _, log_path) in zip(bases, processes):
            _wait_healthy(base, process, log_path)
        yield bases
    finally:
        for process, log, _ in processes:
            process.terminate()
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


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
