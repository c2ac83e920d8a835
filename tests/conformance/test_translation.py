"""The official OpenAI SDK against the gateway, translated to Anthropic and Gemini upstreams
(tests/mock-upstream), and every request the upstreams received checked against the official
`anthropic` and `google-genai` SDK types."""

import base64
import http.server
import json
import pathlib
import shutil
import tempfile
import threading

import openai
import pydantic
from anthropic import _constants as anthropic_constants
import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from google.genai import types as genai

from conftest import EXAMPLE_CONFIG, ROOT, TRANSLATION_CONFIG, Gateway, example_key

MODELS = ["claude-mock", "gemini-mock"]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location"],
        },
    },
}
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nmock").decode()


@pytest.fixture()
def client(translating_gateway):
    return openai.OpenAI(base_url=f"{translating_gateway.url}/v1", api_key=example_key(), max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_text(client, model):
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        max_tokens=100,
        temperature=0.5,
        stop=["END"],
    )
    assert completion.choices[0].message.content == "Hello from the mock model."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens_details.cached_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_streaming_text_with_usage(client, model):
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the mock model."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def _ask_weather(client, model, **kwargs):
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        **kwargs,
    )


@pytest.mark.parametrize("model", MODELS)
def test_tool_call_round_trip(client, model):
    first = _ask_weather(client, model)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius"}

    second = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "22 degrees and sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].message.content == "The tool said: 22 degrees and sunny"


@pytest.mark.parametrize("model", MODELS)
def test_streaming_tool_calls(client, model):
    calls: dict[int, dict] = {}
    finish = None
    for chunk in _ask_weather(client, model, stream=True):
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            entry["id"] = delta.id or entry["id"]
            if delta.function and delta.function.name:
                entry["name"] = delta.function.name
            if delta.function and delta.function.arguments:
                entry["arguments"] += delta.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris", "unit": "celsius"}


FIXTURES = ROOT / "tests" / "fixtures" / "translation"


@pytest.fixture(scope="module")
def replaying_client():
    """An OpenAI client of a gateway whose claude-mock route goes to an Anthropic upstream that
    replays recorded fixtures: the anthropic_tool_no_args stream (tool_use blocks with input {},
    one with no input_json_delta at all, one with an empty one) to streamed requests, the
    anthropic_text message to the others."""
    stream = (FIXTURES / "anthropic_tool_no_args" / "upstream_stream.sse").read_bytes()
    message = (FIXTURES / "anthropic_text" / "upstream_response.json").read_bytes()

    class Upstream(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            streamed = json.loads(self.rfile.read(int(self.headers["content-length"]))).get("stream")
            body = stream if streamed else message
            self.send_response(200)
            self.send_header("content-type", "text/event-stream" if streamed else "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "config"
        config.mkdir()
        shutil.copy(EXAMPLE_CONFIG / "api-keys.yaml", config / "api-keys.yaml")
        (config / "providers.yaml").write_text(TRANSLATION_CONFIG.format(url=url))
        gw = Gateway(config, env={"MOCK_PROVIDER_KEY": "mock-provider-secret"})
        yield openai.OpenAI(base_url=f"{gw.url}/v1", api_key=example_key(), max_retries=0)
        gw.stop()
    server.shutdown()


class GetTime(pydantic.BaseModel):
    """Current time"""


class GetDate(pydantic.BaseModel):
    """Current date"""


def test_streamed_tool_calls_without_arguments_can_be_sent_back(replaying_client):
    # The stream helper accumulates the deltas and parses the arguments with the pydantic tools,
    # then the message goes back as is (openai-python's and openai-node's runTools loops do so).
    tools = [openai.pydantic_function_tool(GetTime, name="get_time"), openai.pydantic_function_tool(GetDate, name="get_date")]
    messages = [{"role": "user", "content": "What time and date is it?"}]
    with replaying_client.chat.completions.stream(model="claude-mock", messages=messages, tools=tools) as stream:
        message = stream.get_final_completion().choices[0].message
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls] == [("get_time", "{}"), ("get_date", "{}")]
    assert [c.function.parsed_arguments for c in message.tool_calls] == [GetTime(), GetDate()]

    messages.append(message)  # as the runTools loops do: the SDK serializes the parsed message
    messages += [{"role": "tool", "tool_call_id": c.id, "content": "12:00"} for c in message.tool_calls]
    reply = replaying_client.chat.completions.with_raw_response.create(model="claude-mock", messages=messages, tools=tools)
    assert reply.status_code == 200
    assert reply.parse().choices[0].message.content == "Hi. Bye."


@pytest.mark.parametrize("model", MODELS)
def test_image_input(client, model):
    completion = client.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == "I see an image (image/png)."


@pytest.mark.parametrize("model", MODELS)
def test_untranslatable_parameters_are_rejected_naming_them(client, model):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], logprobs=True)
    assert caught.value.param == "logprobs"


def test_cache_breakpoints_reach_anthropic_and_cached_tokens_come_back(client, mock_upstream):
    breakpoint = {"type": "ephemeral"}
    completion = client.chat.completions.create(
        model="claude-mock",
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "Stable instructions.", "cache_control": breakpoint}]},
            {"role": "user", "content": [{"type": "text", "text": "Repository map.", "cache_control": {**breakpoint, "ttl": "1h"}}, {"type": "text", "text": "Fix it."}]},
        ],
        tools=[{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}, "cache_control": breakpoint}],
    )
    sent = [r for r in mock_upstream.requests() if r["path"] == "/v1/messages"][-1]["body"]
    assert sent["system"][0]["cache_control"] == breakpoint
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in sent["messages"][0]["content"][1]
    assert sent["tools"][0]["cache_control"] == breakpoint
    # Cache reads and writes are input tokens; the reads come back as OpenAI's cached tokens.
    assert completion.usage.prompt_tokens == 50 + 9000 + 950
    assert completion.usage.prompt_tokens_details.cached_tokens == 9000


CLIENT_ANTHROPIC_VERSION = anthropic_constants.ANTHROPIC_API_VERSION
ANTHROPIC_PARAMS = pydantic.TypeAdapter(MessageCreateParamsNonStreaming)
ANTHROPIC_KEYS = set(MessageCreateParamsNonStreaming.__required_keys__ | MessageCreateParamsNonStreaming.__optional_keys__) | {"stream"}
GEMINI_FIELDS = {
    "contents": pydantic.TypeAdapter(list[genai.Content]),
    "systemInstruction": pydantic.TypeAdapter(genai.Content),
    "tools": pydantic.TypeAdapter(list[genai.Tool]),
    "toolConfig": pydantic.TypeAdapter(genai.ToolConfig),
    "generationConfig": pydantic.TypeAdapter(genai.GenerationConfig),
}


def test_upstream_requests_match_the_official_sdk_types(client, mock_upstream):
    # Runs after the scenarios above (file order), so the mock has seen every request shape.
    requests = mock_upstream.requests()
    anthropic_requests = [r for r in requests if r["path"] == "/v1/messages"]
    gemini_requests = [r for r in requests if "GenerateContent" in r["path"] or r["path"].endswith(":generateContent")]
    embed_requests = [r for r in requests if r["path"].endswith(":batchEmbedContents")]
    for request in embed_requests:
        for item in request["body"]["requests"]:
            assert set(item) <= {"model", "content", "outputDimensionality", "taskType", "title"}, item
            GEMINI_FIELDS["systemInstruction"].validate_python(item["content"])
    assert anthropic_requests and gemini_requests
    for request in anthropic_requests:
        body = dict(request["body"])
        assert set(body) <= ANTHROPIC_KEYS, set(body) - ANTHROPIC_KEYS
        body.pop("stream", None)
        ANTHROPIC_PARAMS.validate_python(body)
        assert request["headers"]["x-api-key"] == "mock-provider-secret"
        # The provider default (2023-06-01), or the version an Anthropic SDK client sent.
        assert request["headers"]["anthropic-version"] in ("2023-06-01", CLIENT_ANTHROPIC_VERSION)
        assert "authorization" not in request["headers"]
    for request in gemini_requests:
        body = request["body"]
        assert set(body) <= set(GEMINI_FIELDS), set(body) - set(GEMINI_FIELDS)
        for field, adapter in GEMINI_FIELDS.items():
            if field in body:
                adapter.validate_python(body[field])
        assert request["headers"]["x-goog-api-key"] == "mock-provider-secret"
        assert "key=" not in request["path"], "Gemini key must never go in the query string"


def test_translated_openai_requests_match_the_official_sdk_types(client, mock_upstream):
    from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming as Params

    adapter = pydantic.TypeAdapter(Params)
    keys = Params.__required_keys__ | Params.__optional_keys__ | {"stream"}
    translated = [r for r in mock_upstream.requests() if r["path"] == "/v1/chat/completions" and r["body"]["model"] == "smart-gpt"]
    assert translated, "no /v1/messages request was translated to the OpenAI mock"
    for request in translated:
        body = dict(request["body"])
        assert set(body) <= keys, set(body) - keys
        body.pop("stream", None)
        adapter.validate_python(body)
        assert request["headers"]["authorization"] == "Bearer mock-provider-secret"
        assert "x-api-key" not in request["headers"]
