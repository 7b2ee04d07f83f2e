"""GPU test helpers: model folders written by ../shared/gpu/device/gpu.sh under $OWNLLM_GPU_MODELS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def skip_module_without_cuda() -> None:
    """Skip the calling test module, saying so, when torch sees no CUDA device."""
    try:
        import torch

        has_cuda = bool(torch.cuda.is_available())
    except Exception:
        has_cuda = False
    if not has_cuda:
        pytest.skip("no CUDA device", allow_module_level=True)


def models_root() -> Path:
    """Where gpu.sh wrote the model folders."""
    return Path(os.environ.get("OWNLLM_GPU_MODELS", "/tmp/ownllm-gpu"))


def has_model(name: str) -> bool:
    """Whether a model folder was prepared (the real SmolLM2 needs ``prepare.sh --real-model``)."""
    return (models_root() / name / "config.json").is_file()


needs_smollm2 = pytest.mark.skipif(
    not has_model("smollm2-135m-fp16"), reason="smollm2-135m-fp16 not prepared (prepare.sh --real-model)"
)


def gpu_model(name: str) -> Path:
    """A model folder under $OWNLLM_GPU_MODELS (llama-tiny-fp16, smollm2-135m-fp16, llama-8b-shape-fp16)."""
    folder = models_root() / name
    if not (folder / "config.json").is_file():
        pytest.fail(f"{folder} is missing: run `bash .device/bin/gpu.sh models` and `. /tmp/ownllm-gpu/env`")
    return folder
