"""The official OpenAI SDK's embeddings client against the gateway: OpenAI-compatible
(pass-through), Gemini (batchEmbedContents) and the fake provider of the example config."""

import openai
import pytest

from conftest import example_key


@pytest.fixture()
def client(translating_gateway):
    return openai.OpenAI(base_url=f"{translating_gateway.url}/v1", api_key=example_key(), max_retries=0)


def test_openai_compatible_pass_through(client, mock_upstream):
    # The SDK asks for base64 by default and decodes it itself.
    result = client.embeddings.create(model="embed-openai", input=["a", "bbb"])
    assert [d.embedding for d in result.data] == [[0.0, 1.0, 0.5], [1.0, 3.0, 0.5]]
    assert result.usage.prompt_tokens == 2
    sent = [r for r in mock_upstream.requests() if r["path"] == "/v1/embeddings"][-1]
    assert sent["body"]["model"] == "text-embedding-3-small"
    assert sent["headers"]["authorization"] == "Bearer mock-provider-secret"


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_gemini_batch_embed(client, mock_upstream, encoding):
    result = client.embeddings.create(model="embed-gemini", input=["hello", "hi"], dimensions=3, encoding_format=encoding)
    if encoding == "float":
        assert [d.embedding for d in result.data] == [[5.0, 0.25, 0.0], [2.0, 0.25, 0.0]]
    else:
        assert isinstance(result.data[0].embedding, str) and len(result.data) == 2
    assert [d.index for d in result.data] == [0, 1]
    assert result.usage.prompt_tokens > 0
    sent = [r for r in mock_upstream.requests() if r["path"].endswith(":batchEmbedContents")][-1]
    assert sent["body"]["requests"][0] == {
        "model": "models/text-embedding-004",
        "content": {"parts": [{"text": "hello"}]},
        "outputDimensionality": 3,
    }
    assert sent["headers"]["x-goog-api-key"] == "mock-provider-secret"


def test_token_input_to_gemini_is_rejected(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="embed-gemini", input=[[1, 2, 3]])
    assert caught.value.param == "input"


def test_anthropic_has_no_embeddings(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="embed-claude", input="x")
    assert caught.value.param == "model"


def test_fake_provider_embeddings_are_deterministic(gateway):
    fake = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=example_key(), max_retries=0)
    first = fake.embeddings.create(model="fake-gpt", input=["same", "other"])
    second = fake.embeddings.create(model="fake-gpt", input="same")
    assert len(first.data[0].embedding) == 8
    assert first.data[0].embedding == second.data[0].embedding != first.data[1].embedding
    assert abs(sum(v * v for v in first.data[0].embedding) - 1.0) < 1e-5
