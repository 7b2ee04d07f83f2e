"""``exllamav3``: CUDA backend with exllamav3's Generator, which pages and batches on its own kernels.

It is the default GPU engine when both ExLlama versions import. It refuses models whose hidden size is
not a multiple of 128 (e.g. SmolLM2-135M's 576); the load-time check says so before the engine fails.
"""

from __future__ import annotations

from typing import Any

from agent.backends.base import BackendError, GenerationRequest
from agent.backends.exllama_common import ExLlamaBase


class ExLlamaV3Backend(ExLlamaBase):
    """exllamav3's batching generator (default capacity 16 concurrent jobs)."""

    name = "exllamav3"

    def load(self) -> None:
        """Check the folder, then load config, model, cache, tokenizer and generator."""
        self.check_model()
        try:
            from exllamav3 import Cache, Config, Generator, Model, Tokenizer
        except Exception as exc:
            raise BackendError(f"exllamav3 does not import: {type(exc).__name__}: {exc}") from exc
        config = Config.from_directory(self.source.path)
        model = Model.from_config(config)
        cache = Cache(model, max_num_tokens=_round_up(self.max_seq_len * self.capacity, 256))
        model.load()
        tokenizer = Tokenizer.from_config(config)
        self.generator = Generator(model=model, cache=cache, tokenizer=tokenizer, max_batch_size=self.capacity)
        self.load_tokenizer()
        ids = {
            i for i in (self.hf_tokenizer.eos_token_id, getattr(tokenizer, "eos_token_id", None)) if isinstance(i, int)
        }
        if not ids:
            raise BackendError("the model has no end-of-sequence token id")
        self.eos_ids = sorted(ids)
        self.start_engine_thread()

    def make_job(self, request: GenerationRequest, prompt_ids: list[int], max_new_tokens: int) -> Any:
        """An exllamav3 Job with the request's sampler, seed and stop conditions."""
        from exllamav3 import Job
        from exllamav3.generator.sampler import ComboSampler, GreedySampler

        sampling = request.sampling
        sampler = (
            GreedySampler()
            if sampling.temperature <= 0
            else ComboSampler(temperature=sampling.temperature, top_p=sampling.top_p)
        )
        return Job(sampler=sampler, **self.job_arguments(request, prompt_ids, max_new_tokens))


def _round_up(n: int, step: int) -> int:
    """n rounded up to a multiple of step (cache sizes are in pages of 256 tokens)."""
    return -(-n // step) * step
