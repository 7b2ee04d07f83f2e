"""The client-facing errors of an accepted job that did not end well (the agent's error or a transport signal)."""

from __future__ import annotations

from agent.protocol import Error
from api.proxy.channels import BAD_VERSION, FLOODED, MALFORMED, Signal
from api.proxy.errors import OpenAIError, agent_timeout, invalid_request, no_agent, rate_limited


def agent_error(error: Error) -> OpenAIError:
    """The client-facing error for an agent's :class:`Error` (its message never holds content)."""
    if error.code == "busy":
        retry = str(max(1, round(error.retry_after_s or 1)))
        return rate_limited("The model is at capacity for your organization; retry shortly.", retry, code="agent_busy")
    if error.code == "bad_request":
        code = "context_length_exceeded" if error.reason == "context_length_exceeded" else None
        return invalid_request(f"The agent cannot serve this request: {error.message}", code=code)
    if error.code in ("model_not_loaded", "unsupported_version", "stopping"):
        return no_agent(f"No agent can serve this request now ({error.code}).")
    return OpenAIError(502, "server_error", "The agent failed while generating.", code="agent_error")


def connection_lost() -> OpenAIError:
    """The bus to the agents dropped mid-request."""
    return no_agent("The connection to the agents was lost; retry shortly.")


def agent_gone() -> OpenAIError:
    """The agent running the job stopped sending heartbeats."""
    return OpenAIError(502, "server_error", "The agent serving this request went away.", code="agent_gone")


def generation_timed_out() -> OpenAIError:
    """No word from the agent for too long."""
    return agent_timeout("The agent stopped responding.")


def agent_broke_rules(signal: Signal) -> OpenAIError:
    """The client-facing error for a job ended because its agent broke the protocol's bounds."""
    if signal is BAD_VERSION:
        return no_agent("No agent can serve this request now (unsupported_version).")
    if signal is MALFORMED:
        return OpenAIError(502, "server_error", "The agent sent a malformed reply.", code="agent_error")
    if signal is FLOODED:
        message, code = "The agent sent replies faster than they could be relayed.", "agent_flood"
    else:
        message, code = "The agent sent more than max_tokens allows; the response was cut short.", "agent_overrun"
    return OpenAIError(502, "server_error", message, code=code)
