"""``exllamav2``: CUDA backend with ExLlamaV2DynamicGenerator (FP16 safetensors or EXL2 folders).

Paged attention (batching many jobs) needs flash-attn >= 2.5.7. Without it the generator runs with
``paged=False``, one job at a time, and ``config.no_sdpa = True``: exllamav2 0.3.2's SDPA path attends
without the causal mask and gives fluent nonsense (top-1 match with transformers: 46% with SDPA, 100% with ``no_sdpa``).
"""

from __future__ import annotations

from typing import Any

from agent.backends.base import BackendError, GenerationRequest
from agent.backends.exllama_common import ExLlamaBase, flash_attn_version
from agent.models import ModelSource

PAGED_MIN_FLASH = (2, 5, 7)


def paged_mode(flash: tuple[int, ...] | None) -> bool:
    """Whether the dynamic generator may page (and batch): flash-attn >= 2.5.7 imports."""
    return flash is not None and flash >= PAGED_MIN_FLASH


class ExLlamaV2Backend(ExLlamaBase):
    """exllamav2's dynamic generator; capacity 1 unless flash-attn allows paging."""

    name = "exllamav2"

    def __init__(self, sources: list[ModelSource], capacity: int | None = None, max_seq_len: int = 4096) -> None:
        super().__init__(sources, capacity, max_seq_len)
        self.paged = paged_mode(flash_attn_version())
        if not self.paged:
            self.capacity = 1

    def load(self) -> None:
        """Check the folder, load weights, cache, tokenizer and the dynamic generator."""
        self.check_model()
        try:
            from exllamav2 import ExLlamaV2, ExLlamaV2Cache, ExLlamaV2Config, ExLlamaV2Tokenizer
            from exllamav2.generator import ExLlamaV2DynamicGenerator
        except Exception as exc:
            raise BackendError(f"exllamav2 does not import: {type(exc).__name__}: {exc}") from exc
        config = ExLlamaV2Config(self.source.path)
        if not self.paged:
            config.no_sdpa = True  # the SDPA path lacks the causal mask in 0.3.2
        config.max_seq_len = min(config.max_seq_len, self.max_seq_len)
        self.max_seq_len = config.max_seq_len
        model = ExLlamaV2(config)
        cache = ExLlamaV2Cache(model, max_seq_len=self.max_seq_len * (self.capacity if self.paged else 1), lazy=True)
        model.load_autosplit(cache)
        tokenizer = ExLlamaV2Tokenizer(config)
        self.generator = ExLlamaV2DynamicGenerator(
            model=model,
            cache=cache,
            tokenizer=tokenizer,
            paged=self.paged,
            max_batch_size=self.capacity,
        )
        self.load_tokenizer()
        self.eos_ids = sorted(_eos_ids(self.hf_tokenizer, tokenizer))
        self.start_engine_thread()

    def make_job(self, request: GenerationRequest, prompt_ids: list[int], max_new_tokens: int) -> Any:
        """An ExLlamaV2DynamicJob with the request's sampling and stop conditions."""
        from exllamav2.generator import ExLlamaV2DynamicJob, ExLlamaV2Sampler

        sampling = request.sampling
        settings = ExLlamaV2Sampler.Settings()
        if sampling.temperature <= 0:
            settings = ExLlamaV2Sampler.Settings.greedy()
        else:
            settings.temperature = sampling.temperature
            settings.top_p = sampling.top_p
            settings.top_k = 0
        return ExLlamaV2DynamicJob(gen_settings=settings, **self.job_arguments(request, prompt_ids, max_new_tokens))


def _eos_ids(hf_tokenizer: Any, engine_tokenizer: Any) -> set[int]:
    """End-of-generation token ids known to either tokenizer."""
    ids = {
        i
        for i in (getattr(hf_tokenizer, "eos_token_id", None), getattr(engine_tokenizer, "eos_token_id", None))
        if isinstance(i, int)
    }
    if not ids:
        raise BackendError("the model has no end-of-sequence token id")
    return ids
