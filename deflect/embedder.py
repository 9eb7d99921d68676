"""Sentence-transformers wrapper: bundled default model, lazy loading, normalised batches.

Backends (setting embed_backend):

- ``onnx`` (default): the model's transformer is exported once to ONNX (torch's exporter,
  offline, from the local model) and cached on disk; later starts load only onnxruntime and
  the fast tokenizer, never torch. Vectors equal torch's (cosine > 0.999), at several times
  less CPU per query.
- ``onnx-int8``: the same export with int8 weights in blocks of 64 (onnxruntime's MatMulNBits),
  whose activations are quantised per token row and block: about a quarter less CPU per query,
  vectors within cosine 0.998 of float32 (bench/README.md, "Speed").
- ``torch``: sentence-transformers as is.

The export and its int8 quantisation are deflect.onnx_export (sentence-transformers' own ONNX
backend does not fit this project's transformers). Models whose pipeline is not Transformer +
mean/CLS pooling (+ Normalize) fall back to torch with a warning.

Single texts (as-you-type queries) go through an LRU cache and a micro-batcher that folds
concurrent queries into one encode; lists of texts (indexing) are encoded directly. Either
way texts are sorted by token length and split into runs by plan_runs, which weighs each
run's fixed cost against the padding of its shorter texts. Every backend gives a text the same
vector whichever texts share its run (int8 quantises each token row on its own).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .batching import LRUCache, MicroBatcher
from .errors import DeflectError
from .filemodes import open_up
from .onnx_export import INT8_MODEL_FILE, UnsupportedForOnnx, _export_key, export_in_child, quantize_in_child

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "onnx-int8", "torch")
# Queries at most this many texts long use the cache and the micro-batcher.
QUERY_BATCH_LIMIT = 1
MAX_QUERY_BATCH = 64
# Fixed cost of one ONNX run (reading the weights, launching every kernel) in tokens' worth of
# compute: on this project's 2-core EPYC a run of 1 x 4 tokens costs as much as 1 x 20, and
# each further token about 0.25 ms (bench/README.md, "Speed"). plan_runs trades padding against it.
RUN_COST_TOKENS = 16
# An encode whose last (longest) run has more tokens than this (rows x padded length) gives
# the arena's memory back after it; query micro-batches stay below, and keep a warm arena.
SHRINK_AFTER_TOKENS = 2048


class Embedder:
    """Turns texts into L2-normalised float32 vectors; the model loads on first use."""

    def __init__(
        self,
        model_name: str,
        batch_size: int = 64,
        backend: str = "onnx",
        cache_dir: str | os.PathLike | None = None,
        query_cache_size: int = 4096,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r} (choose from {', '.join(BACKENDS)})")
        self.model_name = model_name
        self.batch_size = batch_size
        self.backend = backend
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._runner = None
        self._lock = threading.Lock()
        self.query_cache = LRUCache(query_cache_size)
        self._batcher = MicroBatcher(self._encode_batch, max_batch=MAX_QUERY_BATCH, name="deflect-query-encoder")

    # -- loading ---------------------------------------------------------------------------

    @property
    def runner(self):
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                    self._runner = self._load()
        return self._runner

    def _load(self):
        try:
            return self._open()
        except (OSError, ValueError) as exc:  # no such model, or not one sentence-transformers can read
            raise model_unavailable(self.model_name, exc) from exc

    def _open(self):
        if self.backend.startswith("onnx"):
            try:
                return OnnxRunner.open(self.model_name, self.cache_dir, quantized=self.backend == "onnx-int8")
            except UnsupportedForOnnx as exc:
                log.warning("ONNX backend unavailable for %s (%s); using torch", self.model_name, exc)
        return TorchRunner(self.model_name)

    @property
    def active_backend(self) -> str:
        """The backend actually encoding ("torch" when ONNX was asked for but unsupported)."""
        return self.runner.backend

    @property
    def encoding_backend(self) -> str:
        """The backend that encodes, or will: a cached ONNX export means the model runs on ONNX,
        so this loads the model only when there is none yet (`deflect index` on an unchanged KB
        need not load it)."""
        if self._runner is None and self.backend.startswith("onnx") and self.cache_dir is not None:
            if (self.cache_dir / _export_key(self.model_name) / "deflect-onnx.json").exists():
                return self.backend
        return self.active_backend

    @property
    def dimension(self) -> int:
        return self.runner.dimension

    # -- encoding --------------------------------------------------------------------------

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Vectors for texts (rows in input order); a single text is served from cache or batched."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) <= QUERY_BATCH_LIMIT:
            return np.stack([self.encode_query(t) for t in texts])
        return self._encode_bulk(texts, progress)

    def encode_query(self, text: str) -> np.ndarray:
        """One query vector: LRU cache first, else folded with concurrent queries into one encode."""
        cached = self.query_cache.get(text)
        if cached is not None:
            return cached
        vector = np.array(self._batcher.submit(text), dtype=np.float32)  # a copy: callers may keep it
        vector.setflags(write=False)
        self.query_cache.put(text, vector)
        return vector

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return self.runner.encode(texts)

    def _encode_bulk(self, texts: list[str], progress: bool) -> np.ndarray:
        """Encode all texts sorted by length, in runs planned so that little is padding (plan_runs)."""
        runner = self.runner
        if isinstance(runner, TorchRunner):
            return runner.encode(texts, batch_size=self.batch_size, progress=progress)
        return runner.encode(texts, max_rows=self.batch_size, progress=progress)


def _terminal() -> bool:
    """Whether progress goes to a terminal (a bar) rather than a log file or journal (two lines)."""
    return sys.stderr is not None and sys.stderr.isatty()


def model_unavailable(model_name: str, exc: BaseException) -> DeflectError:
    """The one-line error for a model that cannot be loaded (nothing is downloaded at run time)."""
    fix = "set model to the folder of a sentence-transformers model, or leave it empty for the bundled all-MiniLM-L6-v2"
    from .models import MPNET_INSTALL, MPNET_NAMES

    if model_name.strip().lower() in MPNET_NAMES:
        return DeflectError(f"model {model_name} is not installed ({MPNET_INSTALL}); deflect downloads nothing at run time")
    if Path(model_name).exists():
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return DeflectError(f"cannot load the model in {model_name}: {cause}; {fix}")
    if model_name.startswith(("/", ".", "~")) or os.sep + os.sep in model_name or model_name.count("/") > 1:
        return DeflectError(f"model folder {model_name} does not exist: {fix}")
    return DeflectError(
        f"model {model_name!r} is neither a local folder nor in the Hugging Face cache, and deflect downloads "
        f"nothing at run time: {fix}, or download the model beforehand"
    )


class TorchRunner:
    backend = "torch"

    def __init__(self, model_name: str):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model_name, device="cpu")
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(getter())

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if progress and not _terminal():
            print(f"embedding {len(texts)} passages ...", file=sys.stderr, flush=True)
        vectors = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=progress and _terminal(),
        )
        if progress and not _terminal():
            print(f"embedded {len(texts)} passages", file=sys.stderr, flush=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)


class OnnxRunner:
    """onnxruntime + the fast tokenizer + pooling: what sentence-transformers computes, without torch."""

    backend = "onnx"

    def __init__(self, folder: Path, quantized: bool = False):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.backend = "onnx-int8" if quantized else "onnx"
        config = json.loads((folder / "deflect-onnx.json").read_text())
        self.pooling = config["pooling"]
        self.dimension = int(config["dimension"])
        self.inputs = list(config["inputs"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # padded per length-sorted chunk in encode()
        self.pad_id = int(config.get("pad_id", 0))
        options = ort.SessionOptions()
        # One encode runs at a time (the micro-batcher), so it may use every core; no spinning,
        # so idle encoder threads leave the CPU to the threads parsing HTTP requests.
        options.intra_op_num_threads = 0  # onnxruntime's choice: one thread per physical core
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        model = folder / (INT8_MODEL_FILE if quantized else "model.onnx")
        if quantized and not model.exists():
            quantize_in_child(folder / "model.onnx", model)
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        # After a big run (indexing long passages), hand the arena's memory back: kept, it would
        # leave a server that built its index hundreds of MB larger than one that loaded it.
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    @classmethod
    def open(cls, model_name: str, cache_dir: Path | None, quantized: bool = False) -> OnnxRunner:
        """Load the exported model from cache_dir, exporting it there first if needed."""
        key = _export_key(model_name)
        if cache_dir is not None:
            folder = cache_dir / key
            if (folder / "deflect-onnx.json").exists():
                return cls(folder, quantized)
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                scratch = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=cache_dir))
            except OSError as exc:
                log.warning("cannot cache the ONNX export in %s (%s); exporting to a temporary folder", cache_dir, exc)
            else:
                try:
                    export_in_child(model_name, scratch)
                    open_up(scratch)  # not mkdtemp's 0700: servers running as another user load it too
                    try:
                        os.rename(scratch, folder)
                    except OSError:  # another process exported it at the same time
                        shutil.rmtree(scratch, ignore_errors=True)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
                return cls(folder, quantized)
        with tempfile.TemporaryDirectory(prefix="deflect-onnx-") as scratch:
            export_in_child(model_name, Path(scratch))
            return cls(Path(scratch), quantized)  # the session holds the model in memory

    def encode(self, texts: list[str], max_rows: int = MAX_QUERY_BATCH, progress: bool = False) -> np.ndarray:
        """Vectors in input order; texts are sorted by token length and run in groups of similar length."""
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        runs = plan_runs(lengths[order], RUN_COST_TOKENS, max_rows)
        last = runs[-1] if runs else None  # the longest texts: the run that grows the arena most
        if progress and _terminal():
            from tqdm import tqdm

            runs = tqdm(runs, desc="embedding", unit="batch")
        elif progress:  # a log file or a journal: one line, not a bar redrawn with carriage returns
            print(f"embedding {len(texts)} passages in {len(runs)} batches ...", file=sys.stderr, flush=True)
        for start, end in runs:
            rows = order[start:end]
            out[rows] = self._run([encodings[i] for i in rows], shrink_if_big=(start, end) == last)
        if progress and not _terminal():
            print(f"embedded {len(texts)} passages", file=sys.stderr, flush=True)
        return out

    def _run(self, encodings: list, shrink_if_big: bool = False) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
            types[row, : len(e.ids)] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = types
        shrink = shrink_if_big and ids.size > SHRINK_AFTER_TOKENS
        hidden = self.session.run(None, feeds, self._shrink if shrink else None)[0]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)


def plan_runs(lengths: Sequence[int], run_cost: float, max_rows: int) -> list[tuple[int, int]]:
    """Split texts of ascending token lengths into runs [start, end) of at most max_rows.

    A run costs about `run_cost` (its fixed part, in tokens' worth of compute) plus its rows
    times its longest text (every row is padded to it). Dynamic programming over the split
    points minimises the total: texts of similar length share a run, and a very different one
    pays for a run of its own only when that is cheaper than the padding it would cause.
    """
    n = len(lengths)
    if n == 0:
        return []
    longest = np.asarray(lengths, dtype=np.float64)
    cost = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        starts = np.arange(max(0, end - max(1, max_rows)), end)
        total = cost[starts] + run_cost + (end - starts) * longest[end - 1]
        best = int(np.argmin(total))
        cost[end], cut[end] = total[best], starts[best]
    runs, end = [], n
    while end > 0:
        runs.append((int(cut[end]), end))
        end = int(cut[end])
    return runs[::-1]
