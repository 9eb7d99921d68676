"""Turning a sentence-transformers model into files onnxruntime runs: export, int8 weights, cache key.

sentence-transformers' own ``backend="onnx"`` needs optimum-onnx, which pins transformers < 4.58
(this project runs transformers 5), hence this small exporter: torch's exporter, offline, from
the local model. Only Transformer + mean/CLS pooling (+ Normalize) pipelines are exported; for
the rest export_onnx raises UnsupportedForOnnx and the embedder falls back to torch with a
warning. The embedder exports in a child process (export_in_child): torch then never loads into
a server that only needs onnxruntime (a first start would otherwise keep ~1 GB more resident).
The export (and its int8 version, made on first use) is cached on disk under a key that changes
with the model's files and the export format; deflect.embedder's OnnxRunner loads it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path

from .filemodes import open_up

# Bump when the exported files change shape, so stale caches are not reused.
ONNX_EXPORT_FORMAT = 1
# int8 export: weights quantised in blocks of this many input channels (64: 26% less CPU per
# batched query than float32 at cosine >= 0.998; 128 and more made vectors depend on batch-mates).
INT8_BLOCK = 64
INT8_MODEL_FILE = f"model-int8-b{INT8_BLOCK}.onnx"


# Exit statuses of `python -m deflect.onnx_export MODEL FOLDER` (export_in_child).
EXIT_UNSUPPORTED = 3
EXIT_UNREADABLE_MODEL = 4
ERROR_PREFIX = "deflect-onnx-export: "


class UnsupportedForOnnx(Exception):
    """The model cannot be run by OnnxRunner (unknown pooling, export failure...)."""


def export_in_child(model_name: str, folder: Path) -> None:
    """export_onnx in a child Python process, with the same outcomes as calling it here.

    The export needs torch and the model's torch weights; done in the serving process they
    would stay resident for its whole life (1.27 GB vs ~250 MB on the sample KB) although
    only onnxruntime encodes afterwards. An unreadable model raises OSError (the caller's
    "model unavailable" message), an unsupported one UnsupportedForOnnx.
    """
    _in_child("export", model_name, str(folder))


def quantize_in_child(source: Path, target: Path) -> None:
    """quantize in a child process: loading and rewriting the model takes ~450 MB that a
    server would otherwise keep (Python rarely returns freed memory to the system)."""
    _in_child("quantize", str(source), str(target))


def _in_child(action: str, *args: str) -> None:
    if not sys.executable:  # an embedded interpreter with no program to start: work here
        _ACTIONS[action](*args)
        return
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[1])
    installed = {str(Path(sysconfig.get_paths()[key]).resolve()) for key in ("purelib", "platlib")}
    if package_parent not in installed:  # a checkout: the child must import this very deflect
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    done = subprocess.run(
        [sys.executable, "-m", "deflect.onnx_export", action, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
    )
    if done.returncode == 0:
        return
    lines = done.stderr.strip().splitlines()
    reported = [line[len(ERROR_PREFIX) :] for line in lines if line.startswith(ERROR_PREFIX)]
    message = reported[-1] if reported else (lines[-1] if lines else f"exit status {done.returncode}")
    if done.returncode == EXIT_UNREADABLE_MODEL:
        raise OSError(message)
    if done.returncode == EXIT_UNSUPPORTED:
        raise UnsupportedForOnnx(message)
    raise UnsupportedForOnnx(f"the {action} process failed: {message}")


def quantize(source: Path, target: Path) -> None:
    """int8 weights in blocks of INT8_BLOCK along K for every MatMul with constant weights.

    onnxruntime's MatMulNBits (accuracy level 4) quantises the activations per token row and
    block, so a text's vector never depends on the texts that share its run, unlike dynamic
    quantisation (one activation scale per run), which would have to run every text alone.
    Written atomically.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    # A unique scratch file: two embedders of one process, or two hosts sharing index_dir,
    # may quantise at the same time; each renames its own complete file into place.
    handle, scratch_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    scratch = Path(scratch_name)
    quiet = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # it logs one INFO line per node it skips
    try:
        config = DefaultWeightOnlyQuantConfig(block_size=INT8_BLOCK, is_symmetric=True, accuracy_level=4, bits=8)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(scratch), use_external_data_format=False)
        open_up(scratch)  # not mkstemp's 0600: servers running as another user load it too
        os.replace(scratch, target)
    finally:
        quiet.setLevel(level)
        scratch.unlink(missing_ok=True)


def _export_key(model_name: str) -> str:
    """Folder name of a model's export: changes when the model's files or the export format change."""
    parts = [f"format={ONNX_EXPORT_FORMAT}", f"model={model_name}"]
    folder = Path(model_name)
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            parts.append(f"{path.relative_to(folder)}:{stat.st_size}:{int(stat.st_mtime)}")
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return f"{Path(model_name).name or 'model'}-{digest}"


def export_onnx(model_name: str, folder: Path) -> None:
    """Export a sentence-transformers model's transformer to folder (model.onnx, tokenizer, config).

    Runs offline from the local model with torch's exporter; pooling and normalisation are
    re-done in numpy by OnnxRunner, so only Transformer + Pooling(mean|cls) [+ Normalize]
    pipelines are accepted.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_name, device="cpu")
    modules = list(model)
    names = [type(m).__name__ for m in modules]
    if not names or names[0] != "Transformer" or len(names) < 2 or names[1] != "Pooling":
        raise UnsupportedForOnnx(f"pipeline {names} is not Transformer + Pooling")
    if any(n not in ("Normalize",) for n in names[2:]):
        raise UnsupportedForOnnx(f"pipeline {names} has modules after pooling other than Normalize")
    pooling = modules[1]
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None:  # older sentence-transformers: flags instead of a mode string
        mode = "mean" if getattr(pooling, "pooling_mode_mean_tokens", False) else (
            "cls" if getattr(pooling, "pooling_mode_cls_token", False) else "other"
        )
    if mode not in ("mean", "cls"):
        raise UnsupportedForOnnx(f"pooling mode {mode!r}")
    transformer = modules[0].auto_model.eval()
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedForOnnx("the tokenizer has no fast (Rust) version")
    max_length = int(model.max_seq_length or tokenizer.model_max_length)
    sample = tokenizer(["a short example", "a slightly longer example sentence for export"], padding=True, return_tensors="pt")
    accepted = set(inspect.signature(transformer.forward).parameters)
    inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample and k in accepted]
    if inputs[:2] != ["input_ids", "attention_mask"]:
        raise UnsupportedForOnnx(f"the transformer takes {inputs}, not input_ids + attention_mask")

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    axes = {name: {0: "batch", 1: "tokens"} for name in inputs} | {"last_hidden_state": {0: "batch", 1: "tokens"}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
            torch.onnx.export(
                LastHidden(transformer),
                tuple(sample[k] for k in inputs),
                str(folder / "model.onnx"),
                input_names=inputs,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
    except Exception as exc:  # exporter limitations vary by architecture
        raise UnsupportedForOnnx(f"export failed: {exc}") from exc
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(max_length)
    backend.enable_padding(pad_id=tokenizer.pad_token_id or 0, pad_token=tokenizer.pad_token or "[PAD]")
    backend.save(str(folder / "tokenizer.json"))
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    config = {
        "pooling": mode,
        "dimension": int(getter()),
        "inputs": inputs,
        "max_seq_length": max_length,
        "pad_id": int(tokenizer.pad_token_id or 0),
        "model": model_name,
    }
    (folder / "deflect-onnx.json").write_text(json.dumps(config, indent=2))


_ACTIONS = {
    "export": lambda model_name, folder: export_onnx(model_name, Path(folder)),
    "quantize": lambda source, target: quantize(Path(source), Path(target)),
}


def _main(argv: list[str]) -> int:
    """Entry point of the *_in_child functions: do one action, report an expected failure in one line."""
    action, *args = argv
    try:
        _ACTIONS[action](*args)
    except UnsupportedForOnnx as exc:
        print(ERROR_PREFIX + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_UNSUPPORTED
    except (OSError, ValueError) as exc:  # no such model, or not one sentence-transformers reads
        print(ERROR_PREFIX + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_UNREADABLE_MODEL
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
