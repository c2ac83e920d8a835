"""The model endpoints as both official SDKs call them: `GET /v1/models` and
`GET /v1/models/{id}` in OpenAI's shape, and in Anthropic's when the request carries
`anthropic-version`; unknown models and unknown paths refused in the caller's own error shape."""

import anthropic
import openai
import pytest
import requests

from conftest import example_key


@pytest.fixture()
def openai_client(translating_gateway):
    return openai.OpenAI(base_url=f"{translating_gateway.url}/v1", api_key=example_key(), max_retries=0)


@pytest.fixture()
def anthropic_client(translating_gateway):
    return anthropic.Anthropic(base_url=translating_gateway.url, api_key=example_key(), max_retries=0)


def test_openai_sdk_retrieves_a_routed_model(openai_client):
    model = openai_client.models.retrieve("claude-mock")
    assert (model.id, model.object, model.owned_by) == ("claude-mock", "model", "llm-gateway")
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


def test_anthropic_sdk_lists_and_retrieves_models_in_its_shape(anthropic_client):
    listed = [model.id for model in anthropic_client.models.list()]
    assert "claude-mock" in listed and listed == sorted(listed)
    model = anthropic_client.models.retrieve("gpt-mock")
    assert (model.id, model.type, model.display_name) == ("gpt-mock", "model", "gpt-mock")
    assert model.created_at.year >= 2024
    with pytest.raises(anthropic.NotFoundError) as caught:
        anthropic_client.models.retrieve("no-such-model")
    assert caught.value.body["type"] == "error"


@pytest.mark.parametrize(
    ("path", "headers", "shape"),
    [
        ("/v1/messages/no-such-thing", {}, "anthropic"),
        ("/v1/no-such-thing", {"anthropic-version": "2023-06-01"}, "anthropic"),
        ("/v1/no-such-thing", {}, "openai"),
    ],
)
def test_unknown_paths_answer_in_the_callers_error_shape(translating_gateway, path, headers, shape):
    reply = requests.post(f"{translating_gateway.url}{path}", json={}, headers=headers, timeout=10)
    assert reply.status_code == 404
    body = reply.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error", body
    else:
        assert body["error"]["type"] == "invalid_request_error", body
