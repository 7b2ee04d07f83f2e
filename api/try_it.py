"""Ask the running OwnLLM one question with the official OpenAI SDK (used by the `make run` banner)."""

from __future__ import annotations

import sys


def main() -> None:
    """Stream the answer to the question in argv from the first model the proxy lists."""
    import openai

    client = openai.OpenAI()
    question = " ".join(sys.argv[1:]) or "What is the capital of France?"
    model = client.models.list().data[0].id
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], stream=True, max_tokens=64, temperature=0
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()


if __name__ == "__main__":
    main()
