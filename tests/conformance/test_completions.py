"""The official OpenAI SDK's legacy completions API (`client.completions`, what code
autocompletion plugins call on vLLM, llama.cpp or Ollama) against the gateway: passed through to
upstreams that serve it, JSON and streamed with usage, counted like chat; refused with a 400
naming `model` where the provider has no such API."""

import openai
import pytest
import requests

from conftest import example_key


@pytest.fixture()
def client(translating_gateway):
    return openai.OpenAI(base_url=f"{translating_gateway.url}/v1", api_key=example_key(), max_retries=0)


def test_a_completion_passes_through_byte_for_byte(client, mock_upstream):
    completion = client.completions.create(model="gpt-mock", prompt="def hello", suffix="\n", max_tokens=8)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "olleh"
    assert completion.usage.prompt_tokens == 5
    sent = mock_upstream.requests()[-1]
    assert sent["path"] == "/v1/completions"
    assert sent["body"] == {"model": "smart-gpt", "prompt": "def hello", "suffix": "\n", "max_tokens": 8}


def test_a_streamed_completion_arrives_in_pieces_with_usage(client):
    chunks = list(
        client.completions.create(
            model="gpt-mock", prompt="print world", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "dlrow"
    assert chunks[-1].usage.completion_tokens == 3


@pytest.mark.parametrize("model", ["claude-mock", "gemini-mock", "azure-native"])
def test_providers_without_the_api_refuse_naming_the_model(client, model):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=model, prompt="x")
    assert caught.value.param == "model"
    assert "legacy completions" in caught.value.message


def test_completions_are_counted_under_their_protocol(client, translating_gateway):
    client.completions.create(model="gpt-mock", prompt="a b")
    text = requests.get(f"{translating_gateway.admin_url}/metrics", timeout=10).text
    assert any(
        line.startswith("llm_requests_total{") and 'protocol="completions"' in line and 'model="gpt-mock"' in line
        for line in text.splitlines()
    )
