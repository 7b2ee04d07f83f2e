"""The model licence catalogue: which licence governs a model id, and whether an agent's claim agrees."""

from __future__ import annotations

import pytest

from legal import catalogue
from legal.catalogue import InvalidCatalogue


@pytest.mark.parametrize(
    ("model_id", "licence"),
    [
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "Apache License 2.0"),
        ("smollm2-135m-instruct", "Apache License 2.0"),
        ("meta-llama/Llama-3.1-8B-Instruct", "Llama 3 Community License (3, 3.1, 3.2 and 3.3 versions)"),
        ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "Llama 4 Community License"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "Apache License 2.0"),
        ("mistralai/Codestral-22B-v0.1", "Mistral AI Non-Production License"),
        ("mistralai/Mistral-Large-Instruct-2411", "Mistral AI Research License"),
        ("Qwen/Qwen2.5-72B-Instruct", "Qwen License Agreement"),
        ("Qwen/Qwen2.5-3B-Instruct", "Qwen Research License Agreement"),
        ("Qwen/Qwen2.5-7B-Instruct", "Apache License 2.0"),
        ("Qwen/Qwen3-8B", "Apache License 2.0"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "MIT License"),
        ("deepseek-ai/DeepSeek-V2-Lite-Chat", "DeepSeek License Agreement"),
    ],
)
def test_each_family_the_terms_name_is_governed_by_its_own_licence(model_id: str, licence: str):
    entry = catalogue.bundled().lookup(model_id)
    assert entry is not None and entry.licence == licence


def test_a_specific_entry_wins_over_its_family():
    """Qwen2.5-72B is not Apache-2.0 even though the Qwen2.5 family mostly is: order matters."""
    c = catalogue.bundled()
    assert c.lookup("Qwen2.5-72B-Instruct").commercial_mau_limit == 100_000_000  # type: ignore[union-attr]
    assert c.lookup("Qwen2.5-14B-Instruct").commercial_mau_limit is None  # type: ignore[union-attr]


def test_a_model_no_entry_knows_is_reported_for_acknowledgement():
    c = catalogue.bundled()
    assert c.lookup("echo") is None
    assert catalogue.unknown(c, ["echo", "SmolLM2-135M-Instruct", "my-own-finetune"]) == ["echo", "my-own-finetune"]


def test_an_agents_announced_licence_is_checked_against_the_entry():
    llama = catalogue.bundled().lookup("Llama-3.3-70B-Instruct")
    assert llama is not None
    assert llama.announced_agrees("llama3.3") and llama.announced_agrees(None)
    assert not llama.announced_agrees("apache-2.0")  # an agent cannot relabel Llama as Apache


def test_every_bundled_entry_is_complete_and_keys_are_unique():
    entries = catalogue.bundled().entries
    assert len({e.key for e in entries}) == len(entries)
    for e in entries:
        assert e.url.startswith("https://") and e.publisher and e.commercial_use and e.prohibited_uses
        assert catalogue.bundled().by_key(e.key) is e


@pytest.mark.parametrize(
    "text",
    [
        "[[model]]\npatterns = []\n",
        "[[model]]\npatterns = ['a']\n",
        "not toml [",
        "[[model]]\nid='Not An Id'\npatterns=['a']\n",
        "[[model]]\nid='a'\npatterns=['a']\n"
        "publisher='p'\nlicence='l'\nlicence_ids=['x']\nurl='u'\ncommercial_use='c'\nprohibited_uses='p'\n"
        "commercial_mau_limit=-1\n",
    ],
)
def test_a_malformed_catalogue_is_refused(text: str):
    with pytest.raises(InvalidCatalogue):
        catalogue.parse(text)
