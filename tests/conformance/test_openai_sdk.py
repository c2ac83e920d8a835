"""The official OpenAI Python SDK as a client of the running gateway (example config)."""

import openai
import pytest

from conftest import example_key


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=example_key(), max_retries=0)


def test_models_lists_the_example_routes(client):
    ids = sorted(model.id for model in client.models.list())
    assert ids == ["claude-sonnet", "fake-flaky", "fake-gpt", "gemini-flash", "gpt-4o-mini", "text-embedding"]


def test_non_streaming_completion(client):
    completion = client.chat.completions.create(
        model="fake-gpt", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert "fake provider" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0


def test_raw_response_carries_provenance_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model="fake-gpt", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-llm-gateway-route"] == "fake-gpt"
    assert raw.headers["x-llm-gateway-provider"] == "fake"
    assert int(raw.headers["x-llm-gateway-generation"]) >= 1
    assert raw.headers["x-request-id"]


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model="fake-gpt",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! This answer comes from the llm-gateway fake provider."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_streaming_without_usage_has_no_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model="fake-gpt", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_bad_key_is_an_authentication_error(gateway):
    bad = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-lgw-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="fake-gpt", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_unavailable_provider_is_a_503_naming_the_reason(client):
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 503
    assert "OPENAI_API_KEY is not set" in caught.value.message


def test_invalid_parameter_is_a_bad_request_naming_it(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="fake-gpt", messages=[{"role": "user", "content": "hi"}], temperature=7
        )
    assert caught.value.param == "temperature"


def test_oversized_body_is_413(client):
    huge = "x" * 100_000  # the fixture sets MAX_REQUEST_BODY_BYTES=65536
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="fake-gpt", messages=[{"role": "user", "content": huge}])
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"


def test_resilience_demo_breaker_opens_and_closes_with_no_failed_request(client, gateway):
    """The README's demo: `fake-flaky` spreads requests over a provider failing every second
    call and a healthy one; retries hide every failure and the flaky target's breaker opens
    (3 failures in 10 s) and, after 5 s, closes again through a successful probe."""
    import json
    import time
    import urllib.request

    def breaker():
        with urllib.request.urlopen(f"{gateway.admin_url}/health/circuit-breakers") as response:
            entries = json.load(response)["breakers"]
        return next(e for e in entries if e["provider"] == "default/flaky")

    for _ in range(12):
        completion = client.chat.completions.create(model="fake-flaky", messages=[{"role": "user", "content": "hi"}])
        assert completion.choices[0].message.content
    opened = breaker()
    assert opened["state"] == "open" and opened["opened_total"] >= 1, opened
    deadline = time.monotonic() + 20
    while breaker()["state"] != "closed":
        assert time.monotonic() < deadline, breaker()
        client.chat.completions.create(model="fake-flaky", messages=[{"role": "user", "content": "hi"}])
        time.sleep(0.5)
