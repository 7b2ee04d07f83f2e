"""GPU test helpers: model folders written by ../shared/gpu/device/gpu.sh under $OWNLLM_GPU_MODELS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def gpu_model(name: str) -> Path:
    """A model folder under $OWNLLM_GPU_MODELS (llama-tiny-fp16, smollm2-135m-fp16, llama-8b-shape-fp16)."""
    root = Path(os.environ.get("OWNLLM_GPU_MODELS", "/tmp/ownllm-gpu"))
    folder = root / name
    if not (folder / "config.json").is_file():
        pytest.fail(f"{folder} is missing: run `bash .device/bin/gpu.sh models` and `. /tmp/ownllm-gpu/env`")
    return folder
