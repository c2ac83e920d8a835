// One scenario per run, named by the first argument; prints one JSON line the Python test
// asserts on. GATEWAY_URL and GATEWAY_KEY say where and as whom; MODEL names the route.
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { generateText, streamText, tool, stepCountIs } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { z } from "zod";

const url = process.env.GATEWAY_URL;
const key = process.env.GATEWAY_KEY;
const model = process.env.MODEL;

const weather = tool({
  description: "Current weather in a city",
  inputSchema: z.object({ location: z.string(), unit: z.string() }),
  execute: async ({ location, unit }) => `22 degrees ${unit} in ${location}`,
});

const scenarios = {
  // The official OpenAI Node SDK: Responses JSON, and a stream's events.
  async "openai-responses"() {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0 });
    const response = await client.responses.create({ model, input: "Hello" });
    const stream = await client.responses.create({ model, input: "Hello", stream: true });
    const types = [];
    let streamed = "";
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") streamed += event.delta;
    }
    return { text: response.output_text, streamed, first: types[0], last: types.at(-1) };
  },
  // The official Anthropic Node SDK: messages and token counting.
  async "anthropic-messages"() {
    const client = new Anthropic({ baseURL: url, apiKey: key, maxRetries: 0 });
    const message = await client.messages.create({
      model, max_tokens: 100, messages: [{ role: "user", content: "Hello" }],
    });
    const counted = await client.messages.countTokens({ model, messages: [{ role: "user", content: "Hello" }] });
    return { text: message.content[0].text, tokens: counted.input_tokens };
  },
  // The Vercel AI SDK's default OpenAI provider (the Responses API): a tool round trip, then
  // a streamed answer.
  async "ai-sdk"() {
    const openai = createOpenAI({ baseURL: `${url}/v1`, apiKey: key });
    const generated = await generateText({
      model: openai(model), prompt: "Weather in Paris?", tools: { get_weather: weather }, stopWhen: stepCountIs(3),
    });
    const streamed = streamText({
      model: openai(model), prompt: "Weather in Paris?", tools: { get_weather: weather }, stopWhen: stepCountIs(3),
    });
    let text = "";
    for await (const piece of streamed.textStream) text += piece;
    return { text: generated.text, streamed: text, steps: generated.steps.length };
  },
};

const result = await scenarios[process.argv[2]]();
console.log(JSON.stringify(result));
