"""The official OpenAI SDK's Responses API (`client.responses`) against the gateway: passed
through to an OpenAI upstream, translated through the hub for Anthropic, Gemini and
OpenAI-compatible upstreams (tests/mock-upstream) and for the fake provider: text, streams with their complete event sequence, a function tool round
trip with `function_call_output`, structured output, and what a chat upstream cannot honour
refused naming the field."""

import json


import openai
import pydantic
import pytest
import requests

from conftest import example_key

MODELS = ["gpt-native", "vllm-native", "azure-native", "claude-mock", "gemini-mock", "gpt-mock"]
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture()
def client(translating_gateway):
    return openai.OpenAI(base_url=f"{translating_gateway.url}/v1", api_key=example_key(), max_retries=0)


@pytest.fixture()
def fake_client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=example_key(), max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_text(client, model):
    response = client.responses.create(model=model, instructions="Be brief.", input="Hello", max_output_tokens=100)
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Hello from the mock model."
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def _events(stream) -> list:
    events = list(stream)
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(events))), "sequence numbers count up from 0"
    return events


@pytest.mark.parametrize("model", MODELS)
def test_streamed_text_has_the_complete_event_sequence(client, model):
    with client.responses.stream(model=model, input="Hello") as stream:
        events = _events(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert "response.output_text.delta" in kinds
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == "Hello from the mock model."
    assert final.status == "completed"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_function_tool_round_trip(client, model, stream):
    ask = {"model": model, "input": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER_TOOL]}
    if stream:
        with client.responses.stream(**ask) as events:
            kinds = [event.type for event in _events(events)]
            first = events.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
    else:
        first = client.responses.create(**ask)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"location": "Paris", "unit": "celsius"}

    second = client.responses.create(
        model=model,
        input=[
            *ask["input"],
            calls[0].model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "22 degrees and sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.output_text == "The tool said: 22 degrees and sunny"


class Weather(pydantic.BaseModel):
    location: str
    unit: str


def test_structured_output_reaches_the_upstream_as_a_json_schema(client, mock_upstream):
    client.responses.create(
        model="gpt-mock",
        input="Weather?",
        text={"format": {"type": "json_schema", "name": "weather", "schema": Weather.model_json_schema(), "strict": True}},
    )
    sent = [r for r in mock_upstream.requests() if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "weather"
    assert sent["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_responses_parse_gives_the_typed_object_on_every_provider(client, model, stream):
    ask = {"model": model, "input": "Weather in Paris?", "text_format": Weather}
    if stream:
        with client.responses.stream(**ask) as events:
            _events(events)
            parsed = events.get_final_response()
    else:
        parsed = client.responses.parse(**ask)
    assert parsed.output_parsed == Weather(location="Paris", unit="celsius")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"previous_response_id": "resp_never_served"}, "previous_response_id"),
        ({"input": [{"type": "item_reference", "id": "fc_never_served"}]}, "input[0].id"),
    ],
)
def test_what_a_chat_upstream_cannot_honour_is_a_400_naming_the_field(client, extra, param):
    ask = {"input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude-mock", **ask)
    assert caught.value.param == param


def test_the_fake_provider_answers_responses_json_and_streams(fake_client):
    response = fake_client.responses.create(model="fake-gpt", input="Say hello")
    assert "fake provider" in response.output_text
    raw = fake_client.responses.with_raw_response.create(model="fake-gpt", input="hi")
    assert raw.headers["x-llm-gateway-provider"] == "fake"
    with fake_client.responses.stream(model="fake-gpt", input="Say hello") as stream:
        _events(stream)
        final = stream.get_final_response()
    assert final.output_text == response.output_text
    assert final.usage.output_tokens > 0


def test_an_openai_upstream_gets_the_body_byte_for_byte_and_its_stream_back_unchanged(
    translating_gateway, mock_upstream
):
    # A request shaped like Codex CLI's: stream, store false, encrypted reasoning, cache key.
    body = (
        '{"model":"gpt-native","instructions":"You are a coding agent.","input":[{"type":"message","role":"user",'
        '"content":[{"type":"input_text","text":"list files"}]}],"tools":[{"type":"function","name":"shell",'
        '"parameters":{"type":"object","properties":{"cmd":{"type":"string"}}},"strict":false}],'
        '"tool_choice":"auto","parallel_tool_calls":false,"reasoning":{"effort":"medium","summary":"auto"},'
        '"store":false,"stream":true,"include":["reasoning.encrypted_content"],"prompt_cache_key":"conv-1"}'
    )
    headers = {"Authorization": f"Bearer {example_key()}", "Content-Type": "application/json"}
    with requests.post(
        f"{translating_gateway.url}/v1/responses", data=body, headers=headers, stream=True, timeout=30
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["x-llm-gateway-provider"] == "openai-native"
        relayed = b"".join(reply.iter_content(chunk_size=None))
    sent = [r for r in mock_upstream.requests() if r["path"] == "/v1/responses"][-1]
    assert sent["raw"] == body.replace('"gpt-native"', '"smart-gpt-native"')
    assert sent["headers"]["authorization"] == "Bearer mock-provider-secret"
    assert relayed.startswith(b"event: response.created\ndata: ")
    assert b"event: response.function_call_arguments.delta" in relayed
    assert relayed.endswith(b"\n\n") and b'"type":"response.completed"' in relayed


def test_usage_of_a_passed_through_response_is_counted(translating_gateway):
    client = openai.OpenAI(base_url=f"{translating_gateway.url}/v1", api_key=example_key(), max_retries=0)
    before = _tokens(translating_gateway)
    client.responses.create(model="gpt-native", input="Hello")
    with client.responses.stream(model="gpt-native", input="Hello") as stream:
        _events(stream)
    after = _tokens(translating_gateway)
    assert after["input"] - before["input"] == 2 * 17
    assert after["output"] - before["output"] == 2 * 9


def _tokens(gateway) -> dict[str, float]:
    text = requests.get(f"{gateway.admin_url}/metrics", timeout=10).text
    counts = {"input": 0.0, "output": 0.0}
    for line in text.splitlines():
        if line.startswith("llm_tokens_total{") and 'provider="openai-native"' in line:
            direction = "input" if 'direction="input"' in line else "output"
            counts[direction] += float(line.rsplit(" ", 1)[1])
    return counts


def test_requests_are_counted_under_their_protocol(fake_client, gateway):
    fake_client.responses.create(model="fake-gpt", input="hi")
    fake_client.chat.completions.create(model="fake-gpt", messages=[{"role": "user", "content": "hi"}])
    text = requests.get(f"{gateway.admin_url}/metrics", timeout=10).text
    counted = [line for line in text.splitlines() if line.startswith("llm_requests_total{")]
    for protocol in ("responses", "chat"):
        assert any(f'protocol="{protocol}"' in line and 'model="fake-gpt"' in line for line in counted), counted


@pytest.mark.parametrize(
    ("model", "path", "credential"),
    [
        ("vllm-native", "/v1/responses", None),
        ("azure-native", "/openai/v1/responses", ("api-key", "mock-provider-secret")),
        ("gpt-mock", "/v1/chat/completions", ("authorization", "Bearer mock-provider-secret")),
    ],
)
def test_spec_protocols_decides_pass_through(client, mock_upstream, model, path, credential):
    client.responses.create(model=model, input="Hello")
    sent = mock_upstream.requests()[-1]
    assert sent["path"] == path
    if credential:
        assert sent["headers"][credential[0]] == credential[1]
    if path.endswith("/responses"):
        assert sent["body"]["input"] == "Hello"


def _first_turn(client, model, stream, **extra):
    ask = {"model": model, "input": "Weather in Paris?", "tools": [WEATHER_TOOL], **extra}
    if not stream:
        return client.responses.create(**ask)
    with client.responses.stream(**ask) as events:
        _events(events)
        return events.get_final_response()


def _tool_answer(call) -> list:
    return [{"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees and sunny"}]


@pytest.mark.parametrize("model", ["claude-mock", "gemini-mock", "gpt-mock"])
@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_continues_a_translated_conversation(client, model, stream):
    first = _first_turn(client, model, stream)
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model=model, previous_response_id=first.id, input=_tool_answer(call), tools=[WEATHER_TOOL]
    )
    assert second.output_text == "The tool said: 22 degrees and sunny"
    referred = client.responses.create(
        model=model, input=[{"type": "item_reference", "id": call.id}, *_tool_answer(call)], tools=[WEATHER_TOOL]
    )
    assert referred.output_text == "The tool said: 22 degrees and sunny"


def test_store_false_keeps_nothing(client):
    first = _first_turn(client, "claude-mock", False, store=False)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude-mock", previous_response_id=first.id, input="and?")
    assert caught.value.param == "previous_response_id"


@pytest.fixture(scope="module")
def two_callers(mock_upstream, tmp_path_factory):
    """The translating configuration with a second ApiKey."""
    from conftest import translating_gateway_with_key

    directory = tmp_path_factory.mktemp("two-callers")
    gateway, key = translating_gateway_with_key(mock_upstream, directory, "second", "owner: other-team, models: ['*']")
    yield gateway, key
    gateway.stop()


def test_one_caller_never_continues_anothers_response(two_callers):
    gateway, other_key = two_callers
    owner = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=example_key(), max_retries=0)
    other = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=other_key, max_retries=0)
    first = _first_turn(owner, "claude-mock", False)
    call = next(item for item in first.output if item.type == "function_call")
    for ask in ({"previous_response_id": first.id, "input": "and?"}, {"input": [{"type": "item_reference", "id": call.id}]}):
        with pytest.raises(openai.BadRequestError):
            other.responses.create(model="claude-mock", **ask)
    assert owner.responses.create(model="claude-mock", previous_response_id=first.id, input=_tool_answer(call)).output_text


def test_kept_responses_can_be_retrieved_listed_and_deleted_by_their_caller_only(two_callers):
    gateway, other_key = two_callers
    owner = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=example_key(), max_retries=0)
    other = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=other_key, max_retries=0)
    first = owner.responses.create(model="claude-mock", instructions="Be brief.", input="Hello")
    again = owner.responses.retrieve(first.id)
    assert (again.id, again.output_text) == (first.id, "Hello from the mock model.")
    items = list(owner.responses.input_items.list(first.id))
    assert [item.role for item in items] == ["user"] and items[0].id
    for attempt in (lambda: other.responses.retrieve(first.id), lambda: other.responses.delete(first.id)):
        with pytest.raises(openai.NotFoundError) as caught:
            attempt()
        assert caught.value.code == "response_not_found"
    owner.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as gone:
        owner.responses.retrieve(first.id)
    assert gone.value.code == "response_not_found"


def test_developer_instructions_reach_a_compatible_server_as_system(client, mock_upstream):
    client.responses.create(model="gpt-mock", input=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    sent = [r for r in mock_upstream.requests() if r["path"] == "/v1/chat/completions"][-1]["body"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


def test_input_items_page_newest_first_like_openai(two_callers):
    gateway, _ = two_callers
    owner = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=example_key(), max_retries=0)
    turns = [{"role": "user", "content": f"turn {n}"} for n in range(3)]
    first = owner.responses.create(model="claude-mock", input=turns)
    page = owner.responses.input_items.list(first.id, limit=2)
    assert [item.content[0].text for item in page.data] == ["turn 2", "turn 1"]
    assert page.has_more is True
    rest = owner.responses.input_items.list(first.id, limit=2, after=page.data[-1].id)
    assert [item.content[0].text for item in rest.data] == ["turn 0"] and rest.has_more is False
    oldest = owner.responses.input_items.list(first.id, order="asc", limit=1)
    assert oldest.data[0].content[0].text == "turn 0"


REASONING = {"effort": "low", "summary": "auto"}


def _sent_to(mock_upstream, path: str) -> dict:
    return [r for r in mock_upstream.requests() if r["path"] == path][-1]["body"]


@pytest.mark.parametrize("stream", [False, True])
def test_claude_thinking_reaches_a_responses_client_and_continues_its_tool_turn(client, mock_upstream, stream):
    ask = {"model": "claude-mock", "input": "Weather in Paris?", "tools": [WEATHER_TOOL], "reasoning": REASONING}
    if stream:
        with client.responses.stream(**ask) as events:
            kinds = [event.type for event in _events(events)]
            first = events.get_final_response()
        assert kinds.index("response.reasoning_summary_text.delta") < kinds.index("response.function_call_arguments.delta")
        assert "response.reasoning_summary_part.done" in kinds
    else:
        first = client.responses.create(**ask)
    assert _sent_to(mock_upstream, "/v1/messages")["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    reasoning = first.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "Let me think about this."
    assert reasoning.encrypted_content, "the signature, to continue the turn"
    call = next(item for item in first.output if item.type == "function_call")

    # Anthropic refuses a tool turn with thinking unless its signed thinking comes back first.
    kept = client.responses.create(
        model="claude-mock", previous_response_id=first.id, input=_tool_answer(call), tools=[WEATHER_TOOL], reasoning=REASONING
    )
    assert kept.output_text == "The tool said: 22 degrees and sunny"
    turn = [m for m in _sent_to(mock_upstream, "/v1/messages")["messages"] if m["role"] == "assistant"][-1]
    assert turn["content"][0] == {"type": "thinking", "thinking": "Let me think about this.", "signature": "sig-mock-0123"}
    history = [{"role": "user", "content": "Weather in Paris?"}, *(item.model_dump(exclude_none=True) for item in first.output)]
    sent_back = client.responses.create(
        model="claude-mock", input=[*history, *_tool_answer(call)], tools=[WEATHER_TOOL], reasoning=REASONING, store=False
    )
    assert sent_back.output_text == "The tool said: 22 degrees and sunny"


def test_gemini_thoughts_become_a_reasoning_summary(client, mock_upstream):
    response = client.responses.create(model="gemini-mock", input="Hello", reasoning=REASONING)
    assert _sent_to(mock_upstream, "/v1beta/models/gemini-2.5-flash:generateContent")["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True
    }
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].summary[0].text == "Let me think about this."
    assert response.output_text == "Hello from the mock model."


def test_no_reasoning_is_asked_for_unless_the_client_wants_to_see_it(client, mock_upstream):
    response = client.responses.create(model="claude-mock", input="Hello", reasoning={"effort": "low"})
    assert "thinking" not in _sent_to(mock_upstream, "/v1/messages")
    assert [item.type for item in response.output] == ["message"]


@pytest.mark.parametrize("model", ["claude-mock", "gemini-mock", "gpt-mock"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_translated_response_repeats_its_request_as_openais_does(client, model, stream):
    ask = {
        "model": model,
        "input": "Weather in Paris?",
        "instructions": "Be brief.",
        "metadata": {"ticket": "T-1"},
        "temperature": 0.2,
        "max_output_tokens": 300,
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
    }
    if stream:
        with client.responses.stream(**ask) as events:
            created = next(event for event in events if event.type == "response.created").response
            response = events.get_final_response()
        assert created.metadata == {"ticket": "T-1"} and created.instructions == "Be brief."
    else:
        response = client.responses.create(**ask)
    assert response.instructions == "Be brief."
    assert response.metadata == {"ticket": "T-1"}
    assert (response.temperature, response.max_output_tokens) == (0.2, 300)
    assert [tool.name for tool in response.tools] == ["get_weather"]
    assert response.store is True, "kept, so it says so"
    call = next(item for item in response.output if item.type == "function_call")
    second = client.responses.create(
        model=model, previous_response_id=response.id, input=_tool_answer(call), store=False
    )
    assert second.previous_response_id == response.id
    assert second.store is False
