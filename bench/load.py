"""As-you-type load on a suggest server at 127.0.0.1: N clients typing benchmark questions.

    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 \
        --queries ../shared/benchmarks/banking77/queries.jsonl --clients 32 --seconds 10

Each client types questions word by word: every prefix of two or more words is one
POST /api/suggest, sent as soon as the previous answer arrived (a closed loop, no think
time unless --think-ms), with one session id per question. Clients type different
questions (client c takes questions offset+c, offset+c+N, ...). The run stops after
--seconds or --max-requests, whichever comes first; each request has a timeout. Reported:
requests, throughput, latency p50/p95/p99/max and errors (non-200 answers, answers that are
not the suggest JSON, timeouts and connection failures).

The client is a minimal asyncio HTTP/1.1 client with keep-alive (it reconnects when the
server closes), so that the load generator itself takes little of the CPU it shares with
the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


def typing_prefixes(text: str, min_words: int = 2) -> list[str]:
    """Every prefix of min_words or more words: what an as-you-type form sends."""
    words = text.split()
    return [" ".join(words[:n]) for n in range(min(min_words, len(words)), len(words) + 1)]


def read_questions(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


@dataclass
class LoadResult:
    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    server_cpu_s: float = 0.0  # filled in by callers that can see the server process
    client_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.errors

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.latencies_ms, p)) if self.latencies_ms else float("nan")

    def merge(self, other: LoadResult) -> LoadResult:
        return LoadResult(
            self.clients,
            self.seconds + other.seconds,
            self.latencies_ms + other.latencies_ms,
            self.errors + other.errors,
            (self.error_samples + other.error_samples)[:5],
            self.server_cpu_s + other.server_cpu_s,
            self.client_cpu_s + other.client_cpu_s,
        )

    def summary(self) -> dict:
        return {
            "clients": self.clients,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "throughput": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms), 2) if self.latencies_ms else float("nan"),
            "errors": self.errors,
        }


class HttpClient:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the whole answer."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, payload: dict) -> tuple[int, bytes]:
        body = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        version, status = status_line.split(b" ", 2)[:2]
        headers: dict[bytes, bytes] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            data = await self.reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
        else:
            data = await self.reader.read()
            await self.close()
        if version == b"HTTP/1.0" or headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return int(status), data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


async def _client(
    number: int,
    url: str,
    questions: list[str],
    clients: int,
    offset: int,
    deadline: float,
    budget: list[int],
    result: LoadResult,
    think_s: float,
    timeout_s: float,
    tag: str,
) -> None:
    parts = urlsplit(url)
    http = HttpClient(parts.hostname or "127.0.0.1", parts.port or 80)
    q = offset + number
    try:
        while True:
            text = questions[q % len(questions)]
            session = f"{tag}-c{number}-q{q}"
            for prefix in typing_prefixes(text):
                if time.perf_counter() >= deadline or budget[0] <= 0:
                    return
                budget[0] -= 1
                start = time.perf_counter()
                try:
                    status, data = await asyncio.wait_for(
                        http.post_json("/api/suggest", {"query": prefix, "session": session}), timeout_s
                    )
                    ok = status == 200 and "results" in json.loads(data)
                    problem = f"HTTP {status}: {data[:200]!r}"
                except (TimeoutError, OSError, EOFError, ValueError) as exc:
                    ok, problem = False, f"{type(exc).__name__}: {exc}"
                    await http.close()
                if ok:
                    result.latencies_ms.append((time.perf_counter() - start) * 1000)
                else:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(problem)
                if think_s:
                    await asyncio.sleep(think_s)
            q += clients
    finally:
        await http.close()


async def _run(url, questions, clients, seconds, max_requests, offset, think_ms, timeout_s, tag) -> LoadResult:
    result = LoadResult(clients)
    budget = [max_requests]
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(
            _client(c, url, questions, clients, offset, deadline, budget, result, think_ms / 1000, timeout_s, tag)
            for c in range(clients)
        )
    )
    result.seconds = time.perf_counter() - start
    return result


def run_load(
    url: str,
    questions: list[str],
    clients: int = 32,
    seconds: float = 10.0,
    max_requests: int = 100_000,
    offset: int = 0,
    think_ms: float = 0.0,
    timeout_s: float = 10.0,
    tag: str = "load",
) -> LoadResult:
    """Run one bounded load (time and count) and return its latencies and errors."""
    return asyncio.run(_run(url, questions, clients, seconds, max_requests, offset, think_ms, timeout_s, tag))


def main() -> None:
    parser = argparse.ArgumentParser(description="As-you-type load on a suggest server (127.0.0.1 only).")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--queries", default="../shared/benchmarks/banking77/queries.jsonl")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="Stop after this long (at most 120).")
    parser.add_argument("--max-requests", type=int, default=20_000, help="Stop after this many requests.")
    parser.add_argument("--offset", type=int, default=0, help="First question index.")
    parser.add_argument("--think-ms", type=float, default=0.0, help="Pause between keystroke requests.")
    args = parser.parse_args()
    host = urlsplit(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("load runs only against this machine (127.0.0.1)")
    result = run_load(
        args.url,
        read_questions(args.queries),
        args.clients,
        min(args.seconds, 120.0),
        args.max_requests,
        args.offset,
        args.think_ms,
    )
    print(json.dumps(result.summary()))
    for sample in result.error_samples:
        print("error:", sample)


if __name__ == "__main__":
    main()
