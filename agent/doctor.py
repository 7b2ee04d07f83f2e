"""What ``ownllm-agent doctor`` reports: GPU, VRAM, driver, torch, engines, flash-attn (all lazy)."""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import subprocess
from pathlib import Path

from agent.settings import AgentSettings


def _version(dist: str) -> str | None:
    """An installed distribution's version, if installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _imports(module: str) -> str:
    """'yes (version)' or why the module does not import."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        return f"no ({type(exc).__name__}: {str(exc)[:120]})"
    return f"yes ({getattr(mod, '__version__', _version(module) or '?')})"


def _nvidia_smi() -> str:
    """The driver and GPUs as nvidia-smi reports them, or why not."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "nvidia-smi not found (no NVIDIA driver)"
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    return out.stdout.strip() or out.stderr.strip() or "no output"


def report() -> list[tuple[str, str]]:
    """Rows of (what, finding)."""
    rows: list[tuple[str, str]] = [("nvidia-smi", _nvidia_smi())]
    try:
        import torch
    except Exception as exc:
        rows.append(("torch", f"not importable ({type(exc).__name__})"))
    else:
        rows.append(("torch", f"{torch.__version__} (CUDA build {torch.version.cuda or 'none'})"))
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                rows.append((f"GPU {i}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB VRAM"))
        else:
            rows.append(("CUDA", "no CUDA device (GPU engines cannot run; transformers runs on CPU)"))
    flash = _version("flash-attn") or _version("flash_attn")
    rows.append(("flash-attn", flash or "not installed (exllamav2 then serves one job at a time)"))
    for module in ("exllamav3", "exllamav2", "transformers", "gguf", "accelerate"):
        installed = _version(module)
        rows.append((module, _imports(module) if installed else "not installed"))
    return rows


def upstream_report(
    settings: AgentSettings,
    url: str | None = None,
    key_file: Path | None = None,
    models: str | None = None,
    allow_remote: bool = False,
) -> list[tuple[str, str]]:
    """Rows about the ``openai`` backend's upstream server (or why it cannot be checked)."""
    from agent.backends.upstream_config import UpstreamConfigError, from_settings
    from agent.backends.upstream_doctor import upstream_rows

    try:
        config = from_settings(settings, url, key_file, models, allow_remote)
    except UpstreamConfigError as exc:
        return [("upstream", f"not usable: {exc}")]
    return upstream_rows(config)
