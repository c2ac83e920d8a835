//! Reasoning asked for and sent back across translation: a Responses client's
//! `reasoning.summary` turns Anthropic's thinking on (where Anthropic accepts it), and a
//! reasoning item the gateway made of Anthropic thinking goes back as the signed thinking block
//! Anthropic requires to continue a tool-use turn.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use llm_gateway::translate::{anthropic, responses};
use serde_json::{Value, json};

fn to_anthropic(request: Value, max_tokens: Option<u32>) -> Value {
    let request: responses::ResponsesRequest = serde_json::from_value(request).unwrap();
    let hub = responses::to_openai(request).unwrap();
    serde_json::to_value(anthropic::to_anthropic(hub, max_tokens).unwrap()).unwrap()
}

fn tool_turn(reasoning: Option<Value>) -> Vec<Value> {
    let mut input = vec![json!({"role": "user", "content": "Weather?"})];
    input.extend(reasoning);
    input.push(json!({"type": "function_call", "call_id": "toolu_1", "name": "weather", "arguments": "{}"}));
    input.push(json!({"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"}));
    input
}

#[test]
fn a_summary_asks_for_thinking_with_a_budget_for_the_effort() {
    let ask = |reasoning: Value, max: Option<u32>| {
        to_anthropic(
            json!({"model": "m", "input": "hi", "reasoning": reasoning}),
            max,
        )["thinking"]
            .clone()
    };
    let enabled = |budget: u32| json!({"type": "enabled", "budget_tokens": budget});
    assert_eq!(ask(json!({"summary": "auto"}), Some(32_000)), enabled(4096));
    assert_eq!(
        ask(json!({"summary": "auto", "effort": "low"}), None),
        enabled(1024)
    );
    let half = enabled(4096);
    assert_eq!(
        ask(json!({"summary": "detailed", "effort": "high"}), Some(8192)),
        half
    );
    assert_eq!(
        ask(json!({"effort": "high"}), None),
        Value::Null,
        "not asked to show it"
    );
    assert_eq!(
        ask(json!({"summary": "auto", "effort": "none"}), None),
        Value::Null
    );
    assert_eq!(
        ask(json!({"summary": "auto"}), Some(2047)),
        Value::Null,
        "no room under max_tokens"
    );
}

#[test]
fn signed_reasoning_goes_back_as_the_thinking_block_that_opens_its_turn() {
    let signed = json!({"type": "reasoning", "id": "rs_1", "encrypted_content": "lgw-anthropic-signature:SIG",
        "summary": [{"type": "summary_text", "text": "Call the tool."}]});
    let sent = to_anthropic(
        json!({"model": "m", "input": tool_turn(Some(signed)), "reasoning": {"summary": "auto"}}),
        None,
    );
    let turn = &sent["messages"][1];
    assert_eq!(turn["role"], "assistant");
    assert_eq!(
        turn["content"][0],
        json!({"type": "thinking", "thinking": "Call the tool.", "signature": "SIG"})
    );
    assert_eq!(turn["content"][1]["type"], "tool_use");
    assert_eq!(sent["thinking"]["type"], "enabled");
}

#[test]
fn a_tool_turn_without_its_signed_thinking_continues_without_thinking() {
    // OpenAI's own encrypted reasoning means nothing to Anthropic: dropped, and thinking left
    // off, as Anthropic would refuse the unsigned tool turn.
    let foreign = json!({"type": "reasoning", "id": "rs_2", "encrypted_content": "gAAAA-openai", "summary": []});
    for reasoning in [None, Some(foreign)] {
        let sent = to_anthropic(
            json!({"model": "m", "input": tool_turn(reasoning), "reasoning": {"summary": "auto"}}),
            None,
        );
        assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
        assert!(sent.get("thinking").is_none(), "{sent}");
    }
}
