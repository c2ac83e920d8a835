"""`openai-agents` (the OpenAI Agents SDK) running an agent with a function tool on its own
default model, which it calls through the Responses API: the route for that model name passes
through to an OpenAI upstream, or is translated for an Anthropic one (tests/mock-upstream). The
mock calls the tool first, then answers quoting its result."""

import asyncio
import pathlib
import shutil
import tempfile

import openai
import pytest
from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from agents.models import get_default_model

from conftest import EXAMPLE_CONFIG, Gateway, example_key

CONFIG = """
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: upstream}}
spec: {spec}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {{name: agents}}
spec:
  routes:
  - {{model: "{model}", targets: [{{provider: upstream, model: {upstream_model}}}]}}
"""

UPSTREAMS = {
    "openai-pass-through": ('{{type: openai, baseUrl: "{url}/v1", allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}}}', "smart-gpt"),
    "anthropic-translated": ('{{type: anthropic, baseUrl: "{url}", allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}}}', "claude-sonnet-4-5"),
}


@pytest.fixture(params=list(UPSTREAMS), scope="module")
def agents_gateway(request, mock_upstream):
    spec, upstream_model = UPSTREAMS[request.param]
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "config"
        config.mkdir()
        shutil.copy(EXAMPLE_CONFIG / "api-keys.yaml", config / "api-keys.yaml")
        text = CONFIG.format(spec=spec.format(url=mock_upstream.url), model=get_default_model(), upstream_model=upstream_model)
        (config / "agents.yaml").write_text(text)
        gateway = Gateway(config, env={"MOCK_PROVIDER_KEY": "mock-provider-secret"})
        yield gateway
        gateway.stop()


@function_tool
def get_weather(location: str, unit: str) -> str:
    """Current weather in a city."""
    return f"22 degrees {unit} in {location}"


def test_an_agent_with_a_function_tool_runs_on_the_default_model(agents_gateway, mock_upstream):
    set_tracing_disabled(True)
    set_default_openai_client(
        openai.AsyncOpenAI(base_url=f"{agents_gateway.url}/v1", api_key=example_key(), max_retries=0),
        use_for_tracing=False,
    )
    agent = Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather])
    result = asyncio.run(Runner.run(agent, "Weather in Paris?"))
    assert result.final_output == "The tool said: 22 degrees celsius in Paris"
    calls = [item for item in result.new_items if item.type == "tool_call_item"]
    assert len(calls) == 1
