"""The official Node clients against the running gateway (tests/conformance/node, installed by
the README's test command with `npm ci`): the `openai` SDK's Responses API (JSON and stream),
the `@anthropic-ai/sdk` messages and token counting, and the Vercel AI SDK's default OpenAI
provider (`generateText` and `streamText` with a tool, over the Responses API)."""

import json
import os
import pathlib
import subprocess

import pytest

from conftest import example_key

SCRIPT = pathlib.Path(__file__).parent / "node" / "clients.mjs"


def run(gateway, scenario: str, model: str) -> dict:
    env = dict(os.environ, GATEWAY_URL=gateway.url, GATEWAY_KEY=example_key(), MODEL=model)
    done = subprocess.run(["node", str(SCRIPT), scenario], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model", ["gpt-native", "claude-mock", "gemini-mock"])
def test_openai_node_sdk_responses(translating_gateway, model):
    result = run(translating_gateway, "openai-responses", model)
    assert result["text"] == result["streamed"] == "Hello from the mock model."
    assert (result["first"], result["last"]) == ("response.created", "response.completed")


@pytest.mark.parametrize("model", ["claude-mock", "gpt-mock"])
def test_anthropic_node_sdk_messages_and_count(translating_gateway, model):
    result = run(translating_gateway, "anthropic-messages", model)
    assert result["text"] == "Hello from the mock model."
    assert result["tokens"] > 0


@pytest.mark.parametrize("model", ["gpt-native", "claude-mock", "gemini-mock"])
def test_vercel_ai_sdk_default_provider_runs_a_tool(translating_gateway, model):
    result = run(translating_gateway, "ai-sdk", model)
    assert result["text"] == result["streamed"] == "The tool said: 22 degrees celsius in Paris"
    assert result["steps"] == 2
