"""The index: incremental builds with the real model, manifest, atomic save/load."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_KB, write_kb

from deflect.articles import PARSER_VERSION
from deflect.index import build_index
from deflect.index_folder import KBIndex, current_version_dir, load_index, save_index
from deflect.kb_folder import load_kb

MODEL_ID = "bundled-test-model"


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner):
        self.inner = inner
        self.texts: list[str] = []

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode(self, texts, progress: bool = False):
        self.texts.extend(texts)
        return self.inner.encode(texts, progress=progress)


@pytest.fixture
def counting(embedder):
    return CountingEmbedder(embedder)


@pytest.fixture
def kb(tmp_path) -> Path:
    return write_kb(tmp_path / "kb", TINY_KB)


@pytest.fixture
def index_dir(tmp_path) -> Path:
    return tmp_path / "index"


def build(kb, index_dir, embedder, model_id=MODEL_ID, **kwargs):
    return build_index(kb, index_dir, embedder, model_id, **kwargs)


def passage_count(kb: Path, rel: str | None = None, passage_chars: int = 700) -> int:
    articles, _ = load_kb(kb, passage_chars=passage_chars)
    return sum(len(a.passages) for a in articles if rel is None or a.path == rel)


def vectors_by_path(index) -> dict[str, np.ndarray]:
    out: dict[str, list[int]] = {}
    for i, passage in enumerate(index.passages):
        out.setdefault(index.articles[passage["article"]]["path"], []).append(i)
    return {path: index.vectors[rows] for path, rows in out.items()}


def snapshot(index_dir: Path) -> dict[str, bytes]:
    """Every file of the live version plus CURRENT, byte for byte."""
    folder = current_version_dir(index_dir)
    files = {p.relative_to(index_dir).as_posix(): p.read_bytes() for p in folder.iterdir()}
    files["CURRENT"] = (index_dir / "CURRENT").read_bytes()
    return files


def test_first_build_embeds_every_passage(kb, index_dir, counting):
    index, report = build(kb, index_dir, counting)
    expected = passage_count(kb)
    assert report.rebuilt is True
    assert sorted(report.added) == sorted(TINY_KB)
    assert report.changed == [] and report.removed == [] and report.unchanged == 0
    assert report.embedded_passages == expected == len(counting.texts)
    assert index.vectors.shape == (expected, counting.dimension)
    assert index.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-4)
    assert sorted(a["path"] for a in index.articles) == sorted(TINY_KB)
    assert len(index.passages) == expected
    assert report.version == index.version
    assert current_version_dir(index_dir).name == f"v-{index.version}"


def test_second_build_embeds_nothing_and_keeps_the_version(kb, index_dir, counting):
    first, _ = build(kb, index_dir, counting)
    before = snapshot(index_dir)
    counting.texts.clear()
    second, report = build(kb, index_dir, counting)
    assert counting.texts == []
    assert report.embedded_passages == 0
    assert report.changed_anything is False
    assert report.unchanged == len(TINY_KB)
    assert second.version == first.version == report.version
    assert snapshot(index_dir) == before
    assert len(list(index_dir.glob("v-*"))) == 1


def test_editing_one_file_re_embeds_only_it(kb, index_dir, counting):
    first, _ = build(kb, index_dir, counting)
    old = vectors_by_path(first)
    path = kb / "billing" / "refunds.md"
    path.write_text(path.read_text() + "\n## Partial refunds\n\nWe never give partial refunds for unused seats.\n")
    counting.texts.clear()
    second, report = build(kb, index_dir, counting)
    assert report.changed == ["billing/refunds.md"]
    assert report.added == [] and report.removed == [] and report.unchanged == len(TINY_KB) - 1
    assert report.embedded_passages == passage_count(kb, "billing/refunds.md") == len(counting.texts)
    assert any("partial refunds" in t for t in counting.texts)
    assert second.version != first.version
    assert current_version_dir(index_dir).name == f"v-{second.version}"
    new = vectors_by_path(second)
    for rel in TINY_KB:
        if rel != "billing/refunds.md":
            assert np.array_equal(new[rel], old[rel]), rel  # reused, not re-embedded
    assert new["billing/refunds.md"].shape[0] == old["billing/refunds.md"].shape[0] + 1
    assert second.manifest["files"]["billing/refunds.md"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_adding_a_file_embeds_only_the_new_one(kb, index_dir, counting):
    build(kb, index_dir, counting)
    write_kb(kb, {"data/export.md": "# Export your data\n\nDownload every task as CSV or JSON from Settings.\n"})
    counting.texts.clear()
    index, report = build(kb, index_dir, counting)
    assert report.added == ["data/export.md"]
    assert report.changed == [] and report.removed == [] and report.unchanged == len(TINY_KB)
    assert report.embedded_passages == passage_count(kb, "data/export.md") == len(counting.texts)
    assert "data/export" in {a["id"] for a in index.articles}
    assert load_index(index_dir).version == index.version


def test_deleting_a_file_removes_it(kb, index_dir, counting):
    build(kb, index_dir, counting)
    (kb / "integrations" / "slack.md").unlink()
    counting.texts.clear()
    index, report = build(kb, index_dir, counting)
    assert report.removed == ["integrations/slack.md"]
    assert counting.texts == [] and report.embedded_passages == 0
    loaded = load_index(index_dir)
    for idx in (index, loaded):
        assert "integrations/slack" not in {a["id"] for a in idx.articles}
        assert "integrations/slack.md" not in idx.manifest["files"]
        assert len(idx.passages) == idx.vectors.shape[0] == passage_count(kb)
        assert all(0 <= p["article"] < len(idx.articles) for p in idx.passages)
        assert "integrations/slack" not in idx.bodies


def test_a_file_turned_draft_leaves_the_index(kb, index_dir, counting):
    build(kb, index_dir, counting)
    path = kb / "integrations" / "slack.md"
    path.write_text("---\ndraft: true\n---\n" + path.read_text())
    index, report = build(kb, index_dir, counting)
    assert report.removed == ["integrations/slack.md"]
    assert "integrations/slack" not in {a["id"] for a in index.articles}


def test_model_change_forces_a_full_rebuild(kb, index_dir, counting):
    first, _ = build(kb, index_dir, counting)
    counting.texts.clear()
    index, report = build(kb, index_dir, counting, model_id="some-other-model")
    assert report.rebuilt is True
    assert sorted(report.added) == sorted(TINY_KB) and report.unchanged == 0
    assert report.embedded_passages == passage_count(kb) == len(counting.texts)
    assert index.manifest["model"] == "some-other-model"
    assert load_index(index_dir).manifest["model"] == "some-other-model"
    assert index.version != first.version


def test_each_file_s_last_content_change_is_kept_across_builds_and_a_model_change(kb, index_dir, counting):
    """manifest changed_at: what review.check_answered counts as news for questions asked before."""
    first, _ = build(kb, index_dir, counting)
    assert set(first.manifest["changed_at"].values()) == {None}  # the first index of a folder: not known
    path = kb / "billing" / "refunds.md"
    path.write_text(path.read_text() + "\nRefunds take 5 days.\n")
    write_kb(kb, {"data/export.md": "# Export your data\n\nDownload every task as CSV.\n"})
    second, _ = build(kb, index_dir, counting)
    changed = second.manifest["changed_at"]
    assert changed["billing/refunds.md"] > 0 and changed["data/export.md"] > 0
    assert {changed[p] for p in TINY_KB if p != "billing/refunds.md"} == {None}
    rebuilt, report = build(kb, index_dir, counting, model_id="some-other-model")
    assert report.rebuilt and rebuilt.manifest["changed_at"] == changed  # the same contents: no news


def test_passage_size_change_forces_a_full_rebuild(kb, index_dir, counting):
    build(kb, index_dir, counting)
    counting.texts.clear()
    index, report = build(kb, index_dir, counting, passage_chars=120)
    assert report.rebuilt is True
    assert report.embedded_passages == passage_count(kb, passage_chars=120) == len(counting.texts)
    assert index.manifest["passage_chars"] == 120


def test_manifest_records_model_dimension_and_file_hashes(kb, index_dir, counting):
    index, _ = build(kb, index_dir, counting)
    manifest = json.loads((current_version_dir(index_dir) / "manifest.json").read_text())
    assert manifest == index.manifest
    assert manifest["model"] == MODEL_ID
    assert manifest["dimension"] == counting.dimension == index.vectors.shape[1]
    assert manifest["articles"] == len(TINY_KB)
    assert manifest["passages"] == index.vectors.shape[0]
    assert manifest["version"] == index.version
    expected = {rel: hashlib.sha256((kb / rel).read_bytes()).hexdigest() for rel in TINY_KB}
    assert manifest["files"] == expected


def test_load_index_round_trips(kb, index_dir, counting):
    index, _ = build(kb, index_dir, counting)
    loaded = load_index(index_dir)
    assert loaded.version == index.version
    assert loaded.articles == index.articles
    assert loaded.passages == index.passages
    assert loaded.bodies == index.bodies
    assert np.array_equal(loaded.vectors, index.vectors)


def test_load_index_without_an_index_is_none(tmp_path):
    assert load_index(tmp_path / "empty") is None
    assert current_version_dir(tmp_path / "empty") is None


def test_calibration_is_stored_in_the_manifest(kb, index_dir, counting):
    index, _ = build(kb, index_dir, counting, calibrate=lambda idx: {"bias": 1.0, "w_score": 2.0, "w_margin": 3.0})
    assert load_index(index_dir).manifest["calibration"] == {"bias": 1.0, "w_score": 2.0, "w_margin": 3.0}


# --- atomic save ---------------------------------------------------------------------


def test_current_points_to_a_complete_version_folder(kb, index_dir, counting):
    build(kb, index_dir, counting)
    pointer = (index_dir / "CURRENT").read_text().strip()
    folder = index_dir / pointer
    assert folder.is_dir() and folder == current_version_dir(index_dir)
    assert {p.name for p in folder.iterdir()} >= {"manifest.json", "passages.json", "vectors.npy"}
    assert not list(index_dir.glob(".tmp-*"))
    assert not list(index_dir.glob(".CURRENT.*"))


def test_old_versions_are_pruned(kb, index_dir, counting):
    path = kb / "integrations" / "slack.md"
    for i in range(4):
        path.write_text(path.read_text() + f"\nEdit number {i}.\n")
        build(kb, index_dir, counting)
    versions = [p.name for p in index_dir.glob("v-*")]
    assert len(versions) == 2  # KEEP_VERSIONS: the current one and the one before it
    assert current_version_dir(index_dir).name in versions


def test_a_leftover_tmp_folder_is_ignored(kb, index_dir, counting):
    first, _ = build(kb, index_dir, counting)
    leftover = index_dir / ".tmp-crashed"
    leftover.mkdir()
    (leftover / "vectors.npy").write_bytes(b"half written")
    (leftover / "manifest.json").write_text('{"format": 1, "version": "broken"')
    assert load_index(index_dir).version == first.version
    path = kb / "integrations" / "slack.md"
    path.write_text(path.read_text() + "\nMore text.\n")
    second, report = build(kb, index_dir, counting)
    assert report.changed == ["integrations/slack.md"]
    assert load_index(index_dir).version == second.version


def _edit(kb: Path) -> None:
    path = kb / "billing" / "refunds.md"
    path.write_text(path.read_text() + "\nAn edit that needs a new version.\n")


@pytest.mark.parametrize(
    "target, when",
    [
        ("numpy.save", "writing vectors"),
        ("os.rename", "renaming the version folder"),
        ("pathlib.Path.write_text", "writing the manifest"),
        ("os.replace", "switching CURRENT"),
    ],
)
def test_a_crash_mid_save_leaves_the_previous_version_loadable(kb, index_dir, counting, monkeypatch, target, when):
    first, _ = build(kb, index_dir, counting)
    before = snapshot(index_dir)
    _edit(kb)

    def crash(*args, **kwargs):
        raise OSError(f"simulated crash while {when}")

    if target == "numpy.save":
        monkeypatch.setattr(np, "save", crash)
    elif target == "os.rename":
        monkeypatch.setattr(os, "rename", crash)
    elif target == "os.replace":
        monkeypatch.setattr(os, "replace", crash)
    else:
        real = Path.write_text

        def write_text(self, data, *args, **kwargs):
            if self.name == "manifest.json":
                raise OSError(f"simulated crash while {when}")
            return real(self, data, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(OSError, match="simulated crash"):
        build(kb, index_dir, counting)
    monkeypatch.undo()

    loaded = load_index(index_dir)
    assert loaded is not None and loaded.version == first.version
    assert np.array_equal(loaded.vectors, first.vectors)
    assert snapshot(index_dir) == before
    assert not list(index_dir.glob(".tmp-*")), "a failed save must clean its temp folder"

    # The next build recovers and sees the edit as a change.
    index, report = build(kb, index_dir, counting)
    assert report.changed == ["billing/refunds.md"]
    assert load_index(index_dir).version == index.version != first.version


@pytest.mark.parametrize("damaged", ["vectors.npy", "passages.json", "manifest.json"])
def test_a_damaged_live_version_is_rebuilt_and_named_once(kb, index_dir, counting, caplog, damaged):
    """`deflect index` and `deflect serve` stopped on a truncated vectors.npy with a bare ValueError."""
    import deflect.index_folder

    first, _ = build(kb, index_dir, counting)
    folder = current_version_dir(index_dir)
    with open(folder / damaged, "r+b") as fh:
        fh.truncate(1000 if damaged == "vectors.npy" else 10)  # cut short, as a full disk or a bad copy leaves it
    deflect.index_folder._LIVE.clear()  # a new process: `deflect index`, or a server starting
    with caplog.at_level(logging.WARNING, logger="deflect.index_folder"):
        assert load_index(index_dir) is None and load_index(index_dir) is None
        index, report = build(kb, index_dir, counting)
    said = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(said) == 1 and str(folder) in said[0] and "a new one is built in its place" in said[0]
    assert report.rebuilt and index.version != first.version and load_index(index_dir).version == index.version
    assert len(index.passages) == index.vectors.shape[0] == len(first.passages)


def test_save_index_never_touches_the_live_version(kb, index_dir, counting):
    first, _ = build(kb, index_dir, counting)
    live = current_version_dir(index_dir)
    live_files = {p.name: p.read_bytes() for p in live.iterdir()}
    first.manifest = dict(first.manifest, version="20990101T000000-abcdef")
    new_folder = save_index(first, index_dir)
    assert new_folder != live and new_folder.name == "v-20990101T000000-abcdef"
    assert {p.name: p.read_bytes() for p in live.iterdir()} == live_files
    assert current_version_dir(index_dir) == new_folder


def test_default_locale_change_reaches_the_index(kb, index_dir, counting):
    """Articles without a locale take settings.default_locale; changing it must not leave stale metadata."""
    build(kb, index_dir, counting, default_locale="en")
    counting.texts.clear()
    index, report = build(kb, index_dir, counting, default_locale="de")
    assert counting.texts == []  # the text did not change, so nothing needs embedding...
    assert {a["locale"] for a in index.articles} == {"de"}  # ...but the metadata did
    assert {a["locale"] for a in load_index(index_dir).articles} == {"de"}


# --- skipping unchanged files, reusing the live version -----------------------------------


def _age(kb: Path, monkeypatch, seconds: float = 3600) -> None:
    """Date every file back, as for a KB that was not edited just now.

    The ctime cannot be set back, so the "racy" window (a file changed within RACY_NS of a
    scan is always hashed) is closed for the test instead of sleeping past it.
    """
    import deflect.articles

    past = os.stat(kb).st_mtime - seconds
    for path in kb.rglob("*.md"):
        os.utime(path, (past, past))
    monkeypatch.setattr(deflect.kb_folder, "RACY_NS", 0)


@pytest.fixture
def reads(monkeypatch):
    """The relative paths of the KB files read (kb_folder.read_article_bytes) while the test runs."""
    import deflect.kb_folder

    seen: list[str] = []
    real = deflect.kb_folder.read_article_bytes

    def read_bytes(path, max_bytes):
        if path.suffix == ".md":
            seen.append(path.name)
        return real(path, max_bytes)

    monkeypatch.setattr(deflect.kb_folder, "read_article_bytes", read_bytes)
    return seen


def test_files_whose_size_and_mtime_did_not_change_are_not_read(kb, index_dir, counting, reads, monkeypatch):
    _age(kb, monkeypatch)
    first, _ = build(kb, index_dir, counting)
    assert len(reads) == len(TINY_KB)
    reads.clear()
    counting.texts.clear()
    second, report = build(kb, index_dir, counting)
    assert reads == [] and counting.texts == []
    assert report.unchanged == len(TINY_KB) and not report.changed_anything
    assert second.version == first.version
    stats = first.manifest["file_stats"]
    stat = (kb / "billing/refunds.md").stat()
    assert stats["billing/refunds.md"] == [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def test_a_touched_file_is_read_but_not_embedded_again(kb, index_dir, counting, reads, monkeypatch):
    _age(kb, monkeypatch)
    first, _ = build(kb, index_dir, counting)
    (kb / "integrations/slack.md").touch()
    reads.clear()
    counting.texts.clear()
    second, report = build(kb, index_dir, counting)
    assert reads == ["slack.md"]  # its stat changed, so it is hashed...
    assert counting.texts == [] and not report.changed_anything  # ...and found unchanged
    assert second.version == first.version


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(kb, index_dir, counting, monkeypatch):
    """Restoring the mtime does not hide an edit: the file's ctime changed."""
    _age(kb, monkeypatch)
    build(kb, index_dir, counting)
    path = kb / "billing/refunds.md"
    before = path.stat()
    text = path.read_text()
    path.write_text(text.replace("30 days", "31 days"))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    index, report = build(kb, index_dir, counting)
    assert report.changed == ["billing/refunds.md"]
    assert any("31 days" in p["text"] for p in index.passages)


def test_a_re_index_starts_from_the_version_in_memory(kb, index_dir, counting, monkeypatch):
    import deflect.index_folder as index_module

    first, _ = build(kb, index_dir, counting)
    loads = []
    real_load = index_module.load_index
    monkeypatch.setattr(index_module, "load_index", lambda d: loads.append(d) or real_load(d))
    _edit(kb)
    second, report = build(kb, index_dir, counting)
    assert loads == [] and report.changed == ["billing/refunds.md"]
    assert second.passages[0] is first.passages[0]  # unchanged rows are shared, not copied
    # Another writer switching CURRENT to a version of its own makes the next build read it from disk.
    other = index_module.KBIndex(dict(second.manifest, version="20990101T000000-other"), second.articles,
                                 second.passages, second.vectors, second.bodies)  # fmt: skip
    save_index(other, index_dir)
    _, report = build(kb, index_dir, counting)
    assert len(loads) == 1 and not report.changed_anything
    assert load_index(index_dir).version == "20990101T000000-other"


def test_incremental_and_full_builds_give_the_same_index(kb, index_dir, counting, tmp_path):
    build(kb, index_dir, counting)
    _edit(kb)
    write_kb(kb, {"data/export.md": "# Export your data\n\nDownload every task as CSV.\n\n- export to csv please\n"})
    (kb / "integrations" / "slack.md").unlink()
    incremental, _ = build(kb, index_dir, counting)
    full, report = build(kb, tmp_path / "fresh-index", counting)
    assert report.rebuilt
    assert incremental.articles == full.articles and incremental.passages == full.passages
    assert incremental.bodies == full.bodies and incremental.manifest["files"] == full.manifest["files"]
    assert np.allclose(incremental.vectors, full.vectors, atol=1e-5)


def test_a_file_changed_just_before_a_scan_is_hashed_despite_an_equal_signature(kb, index_dir, counting, monkeypatch):
    """Git's "racy clean" rule, for file systems whose timestamps are too coarse to show a quick second edit."""
    import deflect.articles

    coarse = lambda stat: (stat.st_size, stat.st_mtime_ns)  # noqa: E731 - what a coarse file system would tell apart
    monkeypatch.setattr(deflect.kb_folder, "file_signature", coarse)
    build(kb, index_dir, counting)  # the files were written just now: within RACY_NS of this scan
    path = kb / "billing/refunds.md"
    before = path.stat()
    path.write_text(path.read_text().replace("30 days", "31 days"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime: same coarse signature
    index, report = build(kb, index_dir, counting)
    assert report.changed == ["billing/refunds.md"]
    assert any("31 days" in p["text"] for p in index.passages)


def test_each_embedding_backend_has_its_own_model_id(tmp_path):
    """So that switching embed_backend (or the default changing) rebuilds instead of mixing vectors."""
    from deflect.refresh import model_id_for
    from deflect.settings import load_settings

    ids = {b: model_id_for(load_settings(config_file="none", env={}, embed_backend=b, index_dir=str(tmp_path)))
           for b in ("onnx", "onnx-int8", "torch")}
    assert ids["onnx"] == ids["torch"]  # float32 ONNX vectors equal torch's
    assert ids["onnx-int8"] != ids["onnx"] and ids["onnx-int8"].endswith("+int8-b64")


def test_a_model_onnx_cannot_run_is_recorded_as_the_torch_it_falls_back_to(tmp_path, monkeypatch):
    """Its vectors are torch's: labelled int8, they would be mixed with int8 ones once an export works."""
    from deflect import embedder as embedder_module
    from deflect import refresh
    from deflect.onnx_export import UnsupportedForOnnx
    from deflect.refresh import make_embedder, model_id_for
    from deflect.settings import load_settings

    def unsupported(*args, **kwargs):
        raise UnsupportedForOnnx("pipeline ['Transformer', 'Dense'] is not Transformer + Pooling")

    monkeypatch.setattr(embedder_module.OnnxRunner, "open", unsupported)
    monkeypatch.setattr(refresh, "_EMBEDDERS", {})  # leave no torch-backed embedder to later tests
    # An unusual batch size: a new embedder, not the session's shared one.
    settings = load_settings(config_file="none", env={}, embed_backend="onnx-int8", encode_batch_size=7, index_dir=str(tmp_path))
    assert make_embedder(settings).active_backend == "torch"
    torch_id = model_id_for(load_settings(config_file="none", env={}, embed_backend="torch", index_dir=str(tmp_path)))
    assert model_id_for(settings) == torch_id


# --- duplicate ids, long paragraphs, warnings across builds ---------------------------------

DUPLICATE = "---\nid: billing/refunds\ntitle: A newcomer claiming the refunds id\n---\nSome other text.\n"


def test_a_new_file_cannot_take_an_id_from_an_indexed_article(kb, index_dir, counting):
    build(kb, index_dir, counting)
    write_kb(kb, {"account/aaa-dup.md": DUPLICATE})  # sorts before billing/refunds.md
    index, report = build(kb, index_dir, counting)
    rows = {a["id"]: a for a in index.articles}
    assert rows["billing/refunds"]["path"] == "billing/refunds.md"
    assert rows["billing/refunds"]["title"] == "How refunds work"
    assert report.warnings == [
        "account/aaa-dup.md: skipped: id 'billing/refunds' already used by billing/refunds.md"
    ]
    assert report.added == [] and report.changed == [] and report.removed == []
    # The next build (and a restart: the holder comes from the saved index) keeps it so.
    import deflect.index_folder as index_module

    index_module._LIVE.clear()
    again, _ = build(kb, index_dir, counting)
    assert {a["id"]: a["path"] for a in again.articles}["billing/refunds"] == "billing/refunds.md"


def test_a_holder_that_cannot_be_read_for_a_while_keeps_its_id(kb, index_dir, counting):
    """A half-saved edit of the published article (the watcher reindexes on save) must not hand its
    id and URL to another file for good: a malformed holder stays published at its last good version
    (tests/test_kb_maintenance.py), and while it cannot be opened at all nobody takes the id."""
    import deflect.index_folder as index_module

    refunds = kb / "billing" / "refunds.md"
    good = refunds.read_text()
    build(kb, index_dir, counting)
    write_kb(kb, {"account/aaa-dup.md": DUPLICATE})
    build(kb, index_dir, counting)
    write_kb(kb, {"billing/refunds.md": '---\ntitle: "How refunds work\n---\nText.\n'})  # unclosed quote
    index, report = build(kb, index_dir, counting)
    assert {a["id"]: a["path"] for a in index.articles}["billing/refunds"] == "billing/refunds.md"  # its last good version
    assert "account/aaa-dup.md: skipped: id 'billing/refunds' already used by billing/refunds.md" in report.warnings
    refunds.unlink()
    refunds.symlink_to("refunds-being-checked-out.md")  # a dangling link: cannot be opened at all
    index, report = build(kb, index_dir, counting)
    assert "billing/refunds" not in {a["id"] for a in index.articles}
    assert "account/aaa-dup.md: skipped: id 'billing/refunds' already used by billing/refunds.md" \
        " (skipped itself until it is fixed)" in report.warnings
    index_module._LIVE.clear()  # a restart meanwhile: the claim comes from the saved index
    index, _ = build(kb, index_dir, counting)
    assert "billing/refunds" not in {a["id"] for a in index.articles}
    refunds.unlink()
    write_kb(kb, {"billing/refunds.md": good})
    index, report = build(kb, index_dir, counting)
    assert {a["id"]: a["path"] for a in index.articles}["billing/refunds"] == "billing/refunds.md"
    assert report.warnings == ["account/aaa-dup.md: skipped: id 'billing/refunds' already used by billing/refunds.md"]
    (kb / "billing" / "refunds.md").unlink()  # deleted on purpose: the id is free
    index, _ = build(kb, index_dir, counting)
    assert {a["id"]: a["path"] for a in index.articles}["billing/refunds"] == "account/aaa-dup.md"


def test_a_fresh_build_gives_a_duplicate_id_to_the_first_file_in_path_order(kb, index_dir, counting):
    write_kb(kb, {"account/aaa-dup.md": DUPLICATE})
    index, report = build(kb, index_dir, counting)
    assert {a["id"]: a["path"] for a in index.articles}["billing/refunds"] == "account/aaa-dup.md"
    assert report.warnings == [
        "billing/refunds.md: skipped: id 'billing/refunds' already used by account/aaa-dup.md"
    ]


_TOPICS = ["the quarterly planning meeting", "the shared team calendar", "the expense report form",
           "the design review checklist", "the onboarding buddy programme", "the weekly status email",
           "the release notes template", "the holiday rota", "the meeting room booking sheet"]  # fmt: skip
PRINTING = "To print a task, open it and press Ctrl+P: the printer-friendly layout leaves out the sidebar."


def _handbook(chars: int) -> str:
    """One paragraph of `chars` characters about who owns what, ending with the only sentence about printing."""
    sentences: list[str] = []
    while sum(len(s) + 1 for s in sentences) < chars:
        topic = _TOPICS[len(sentences) % len(_TOPICS)]
        sentences.append(f"Part {len(sentences)} explains who owns {topic} and when it is reviewed, so nobody asks twice.")
    return "# Team handbook\n\n## Everyday matters\n\n" + " ".join(sentences) + " " + PRINTING + "\n"


def test_the_end_of_a_huge_paragraph_is_found(kb, index_dir, embedder):
    """A 22 kB paragraph is cut at passage_chars, so its last sentence is embedded (the model reads ~256 tokens)."""
    from deflect.suggest import Engine

    write_kb(kb, {"guides/handbook.md": _handbook(22_000)})
    index, _ = build(kb, index_dir, embedder)
    rows = [p for p in index.passages if index.articles[p["article"]]["id"] == "guides/handbook"]
    sections = [p for p in rows if p["kind"] == "section"]
    assert len(sections) >= 22_000 // 700
    prefix = "Team handbook. Everyday matters: "  # title and heading: the context every section passage gets
    assert all(p["text"] == prefix + p["snippet"] and len(p["snippet"]) <= 700 for p in sections)
    assert all(len(p["text"]) <= 700 + len(prefix) for p in index.passages)
    assert any(PRINTING in p["snippet"] for p in sections)
    engine = Engine(embedder, index)
    for query in ("how do I print a task", "can I get a printout of my task"):
        assert engine.suggest(query, k=3, types=("article",)).results[0].id == "guides/handbook", query


def test_an_index_built_by_an_older_parser_is_rebuilt(kb, index_dir, counting):
    first, _ = build(kb, index_dir, counting)
    assert first.manifest["parser"] == PARSER_VERSION
    old = dict(first.manifest, version="20000101T000000-older")
    old.pop("parser")  # as written before long paragraphs were cut and ids checked
    save_index(KBIndex(old, first.articles, first.passages, first.vectors, first.bodies), index_dir)
    counting.texts.clear()
    _, report = build(kb, index_dir, counting)
    assert report.rebuilt and report.embedded_passages == passage_count(kb) == len(counting.texts)


def test_a_broken_file_is_logged_once_not_on_every_build(kb, index_dir, counting, caplog):
    write_kb(kb, {"broken.md": "---\ntitle: [unclosed\n---\nBody.\n"})
    with caplog.at_level(logging.WARNING, logger="deflect.articles"):
        build(kb, index_dir, counting)
        _edit(kb)
        build(kb, index_dir, counting)  # a new version
        _, report = build(kb, index_dir, counting)  # the same version
    assert caplog.text.count("broken.md: skipped") == 1
    assert len(report.warnings) == 1 and report.warnings[0].startswith("broken.md: skipped")  # still reported
    (kb / "broken.md").write_text("---\ndraft: maybe\n---\nBody.\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deflect.articles"):
        build(kb, index_dir, counting)
    assert caplog.text.count("broken.md: skipped: draft must be true or false") == 1  # a new reason is logged


def test_the_model_id_of_a_cached_onnx_export_needs_no_model_load(tmp_path):
    """`deflect index` on an unchanged KB, or `deflect outbox list`, must not load the model
    (or export it) just to name it."""
    from deflect.embedder import Embedder
    from deflect.onnx_export import _export_key

    embedder = Embedder("/models/some-model", backend="onnx-int8", cache_dir=tmp_path)
    (tmp_path / _export_key("/models/some-model")).mkdir()
    (tmp_path / _export_key("/models/some-model") / "deflect-onnx.json").write_text("{}")
    assert embedder.encoding_backend == "onnx-int8"
    assert embedder._runner is None
    # No export yet: what encodes is only known by loading (here the folder does not exist).
    from deflect.errors import DeflectError

    with pytest.raises(DeflectError, match="does not exist"):
        _ = Embedder("/models/other-model", backend="onnx-int8", cache_dir=tmp_path).encoding_backend


def test_a_front_matter_key_given_twice_is_reported_by_every_build_until_fixed(kb, index_dir, counting):
    """Unchanged files are not parsed again, also by another process or after a restart: the
    index keeps their warnings; the file is indexed meanwhile (with the last value)."""
    import deflect.index_folder as index_module

    write_kb(kb, {"billing/twice.md": "---\ntitle: Old\ntitle: New fees\n---\nFees.\n"})
    expected = ["billing/twice.md: front matter key 'title' given 2 times (lines 2, 3); the last one is used"]
    index, report = build(kb, index_dir, counting)
    assert report.warnings == expected and "New fees" in {a["title"] for a in index.articles}
    assert report.summary().endswith("(full rebuild), 1 warning")  # not a skipped file
    _edit(kb)
    index_module._LIVE.clear()  # a restart: the unchanged file's warning comes from the saved index
    _, report = build(kb, index_dir, counting)
    assert report.warnings == expected and "billing/twice.md" not in report.changed
    write_kb(kb, {"billing/twice.md": "---\ntitle: New fees\n---\nFees.\n"})
    assert build(kb, index_dir, counting)[1].warnings == []
