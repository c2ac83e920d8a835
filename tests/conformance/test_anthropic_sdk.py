"""The official Anthropic Python SDK against the gateway's `/v1/messages`: passed through to an
Anthropic upstream, and translated to OpenAI-compatible and Gemini upstreams (mocks)."""

import base64

import anthropic
import pytest

from conftest import example_key

# gpt-mock: translated to OpenAI; claude-mock: pass-through; gemini-mock: translated twice.
MODELS = ["gpt-mock", "claude-mock", "gemini-mock"]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}, "required": ["location"]},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nmock").decode()


@pytest.fixture()
def client(translating_gateway):
    return anthropic.Anthropic(base_url=translating_gateway.url, api_key=example_key(), max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_text_with_system(client, model):
    message = client.messages.create(
        model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text == "Hello from the mock model."
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_streaming_text(client, model):
    with client.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": "Hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the mock model."
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_round_trip(client, model):
    question = {"role": "user", "content": "Weather in Paris?"}
    first = client.messages.create(model=model, max_tokens=200, tools=[WEATHER_TOOL], messages=[question])
    assert first.stop_reason == "tool_use"
    tool_use = next(block for block in first.content if block.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == {"location": "Paris", "unit": "celsius"}

    second = client.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "22 degrees"}]},
        ],
    )
    assert second.content[0].text == "The tool said: 22 degrees"


@pytest.mark.parametrize("model", MODELS)
def test_streaming_tool_use(client, model):
    with client.messages.stream(
        model=model, max_tokens=200, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather?"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tool_use = next(block for block in final.content if block.type == "tool_use")
    assert tool_use.input == {"location": "Paris", "unit": "celsius"}


@pytest.mark.parametrize("model", MODELS)
def test_image_input(client, model):
    message = client.messages.create(
        model=model,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert message.content[0].text == "I see an image (image/png)."


def test_errors_are_anthropic_typed(translating_gateway, client):
    bad = anthropic.Anthropic(base_url=translating_gateway.url, api_key="sk-lgw-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="gpt-mock", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="gpt-mock", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
