"""Token counting as the official SDKs call it: the Anthropic SDK's `messages.count_tokens`
(Claude Code's `POST /v1/messages/count_tokens`) and the OpenAI SDK's
`responses.input_tokens.count`. Upstreams with the endpoint count (passed through, model
spliced); elsewhere the gateway counts with OpenAI's tokenizer, and a header says which."""

import anthropic
import openai
import pytest

from conftest import example_key

MESSAGES = [{"role": "user", "content": "Hello world"}]


@pytest.fixture()
def anthropic_client(translating_gateway):
    return anthropic.Anthropic(base_url=translating_gateway.url, api_key=example_key(), max_retries=0)


@pytest.fixture()
def openai_client(translating_gateway):
    return openai.OpenAI(base_url=f"{translating_gateway.url}/v1", api_key=example_key(), max_retries=0)


def test_anthropic_counts_its_own_tokens(anthropic_client, mock_upstream):
    raw = anthropic_client.messages.with_raw_response.count_tokens(
        model="claude-mock", system="Be brief.", messages=MESSAGES
    )
    assert raw.parse().input_tokens == 42
    assert raw.headers["x-llm-gateway-token-count"] == "exact"
    sent = mock_upstream.requests()[-1]
    assert sent["path"] == "/v1/messages/count_tokens"
    assert sent["body"]["model"] == "claude-sonnet-4-5"
    assert sent["headers"]["x-api-key"] == "mock-provider-secret"


@pytest.mark.parametrize(("model", "how"), [("gpt-mock", "tokenizer"), ("gemini-mock", "estimate")])
def test_other_providers_are_counted_by_the_gateway(anthropic_client, model, how):
    raw = anthropic_client.messages.with_raw_response.count_tokens(
        model=model, system="Be brief.", messages=MESSAGES
    )
    # "Be brief." is 3 tokens and "Hello world" 2 in o200k_base, plus 3 of framing per turn.
    assert raw.parse().input_tokens == 3 + 2 + 3
    assert raw.headers["x-llm-gateway-token-count"] == how


def test_responses_input_tokens_pass_through_or_are_counted(openai_client, mock_upstream):
    raw = openai_client.responses.input_tokens.with_raw_response.count(model="gpt-native", input="Hello world")
    assert raw.parse().input_tokens == 21
    assert raw.headers["x-llm-gateway-token-count"] == "exact"
    assert mock_upstream.requests()[-1]["path"] == "/v1/responses/input_tokens"
    counted = openai_client.responses.input_tokens.with_raw_response.count(
        model="claude-mock", input="Hello world", instructions="Be brief."
    )
    assert counted.parse().input_tokens == 2 + 3
    assert counted.headers["x-llm-gateway-token-count"] == "estimate"


def test_counting_needs_a_key_and_an_allowed_model(translating_gateway, anthropic_client):
    stranger = anthropic.Anthropic(base_url=translating_gateway.url, api_key="sk-lgw-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        stranger.messages.count_tokens(model="claude-mock", messages=MESSAGES)
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.messages.count_tokens(model="no-such-model", messages=MESSAGES)


@pytest.fixture(scope="module")
def limited(mock_upstream, tmp_path_factory):
    """The translating configuration with a key allowed two requests a minute."""
    from conftest import translating_gateway_with_key

    directory = tmp_path_factory.mktemp("limited")
    spec = "owner: team-l, models: ['*'], limits: {requestsPerMinute: 2}"
    gateway, key = translating_gateway_with_key(mock_upstream, directory, "limited", spec)
    yield gateway, key
    gateway.stop()


def test_counting_is_held_to_request_limits_and_counts_no_usage(limited):
    import requests

    gateway, key = limited
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    outcomes = []
    # Counted upstream, by the gateway, then one over the two a minute.
    for model in ["claude-mock", "gpt-mock", "claude-mock"]:
        try:
            raw = client.messages.with_raw_response.count_tokens(model=model, messages=MESSAGES)
            outcomes.append(raw.headers["x-ratelimit-remaining-requests"])
        except anthropic.RateLimitError as refused:
            assert refused.body["type"] == "error", "Anthropic's error shape"
            assert int(refused.response.headers["retry-after"]) >= 1
            outcomes.append("refused")
    assert outcomes == ["1", "0", "refused"]
    usage = requests.get(f"{gateway.url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    assert (usage["requests"], usage["input_tokens"]) == (0, 0)


def test_a_continuation_counts_its_kept_history(openai_client):
    first = openai_client.responses.create(model="claude-mock", input="Hello world", instructions="Be brief.")
    alone = openai_client.responses.input_tokens.count(model="claude-mock", input="And then?")
    continued = openai_client.responses.input_tokens.count(
        model="claude-mock", input="And then?", previous_response_id=first.id
    )
    # The kept turn: "Hello world" and the mock's reply, each a turn of its own.
    assert continued.input_tokens > alone.input_tokens + 2 + 3
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.input_tokens.count(model="claude-mock", input="x", previous_response_id="resp_unknown")
    assert caught.value.param == "previous_response_id"
