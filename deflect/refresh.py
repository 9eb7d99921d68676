"""Settings -> this process's embedder and an up-to-date index, without serving it.

What a Runtime does before it serves, and what `deflect index` and `deflect eval` do on
their own: one embedder per model in a process, the model id an index records (so vectors
of different models or quantisations never mix), the build under the index folder's lock,
and recording a built version in the database so running servers load it.
"""

from __future__ import annotations

from .settings import Settings

_EMBEDDERS: dict[tuple, object] = {}


def make_embedder(settings: Settings):
    """One embedder (and model in memory) per model, batch size and backend in a process.

    The ONNX export is cached under <index_dir>/onnx when that folder (or its parent)
    exists, else it is redone in a temporary folder once per process.
    """
    from pathlib import Path

    from .embedder import Embedder

    key = (settings.model_name, settings.encode_batch_size, settings.embed_backend, settings.query_cache_size)
    if key not in _EMBEDDERS:
        index_dir = Path(settings.index_dir)
        cache_dir = index_dir / "onnx" if index_dir.exists() or index_dir.parent.exists() else None
        _EMBEDDERS[key] = Embedder(
            settings.model_name,
            settings.encode_batch_size,
            backend=settings.embed_backend,
            cache_dir=cache_dir,
            query_cache_size=settings.query_cache_size,
        )
    return _EMBEDDERS[key]


def model_id_for(settings: Settings) -> str:
    from .models import model_identity
    from .onnx_export import INT8_BLOCK

    identity = model_identity(settings.model)
    # int8 vectors differ (slightly) from the float model's and from another quantisation's:
    # never mix them in one index. The backend that counts is the one actually encoding: a model
    # the ONNX export cannot run (or whose export failed) is encoded by torch, in float32.
    if settings.embed_backend == "onnx-int8" and make_embedder(settings).encoding_backend == "onnx-int8":
        return identity + f"+int8-b{INT8_BLOCK}"
    return identity


def refresh_index(settings: Settings, progress: bool = False, publish=None):
    """Bring the index up to date with the KB (embedding only what changed).

    Builds hold the index folder's lock, so processes sharing the folder take turns and
    each one starts from the version the previous one saved. `publish(version)` runs
    before the lock is released, so the version recorded last is always the live one.
    """
    from pathlib import Path

    from .calibration import fit_calibration
    from .index import KBFolderMissing, build_index
    from .replicas import build_lock

    if not Path(settings.kb_dir).is_dir():  # said before a model is loaded (or exported) for nothing
        raise KBFolderMissing(settings.kb_dir)
    embedder = make_embedder(settings)
    with build_lock(settings.index_dir):
        index, report = build_index(
            settings.kb_dir,
            settings.index_dir,
            embedder,
            model_id_for(settings),
            settings.default_locale,
            settings.passage_chars,
            progress=progress,
            max_article_bytes=settings.max_article_bytes,
            calibrate=lambda idx: fit_calibration(
                idx, embedder, target_false_answer=settings.target_false_answer, answer_threshold=settings.answer_threshold
            ),
        )
        if publish is not None:
            publish(index.version)
    return index, report


def publish_index(settings: Settings, version: str) -> None:
    """Record a version built outside a server (`deflect index`) so running servers load it."""
    from . import db
    from .replicas import publish_version

    engine = db.make_engine(settings.database_url)
    try:
        db.upgrade(engine)
        publish_version(engine, version)
    finally:
        engine.dispose()
