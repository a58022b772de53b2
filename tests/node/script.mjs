// A client of the official openai package, as a Node service under test would call it: the base URL and
// the key come from the environment (OPENAI_BASE_URL, OPENAI_API_KEY). Prints one JSON line: what it got.
//   node script.mjs chat "a prompt"      one chat completion
//   node script.mjs stream "a prompt"    the same, streamed with usage
import OpenAI from "openai";

const [kind, prompt] = process.argv.slice(2);
// No retries: a miss (404) is final anyway, and a failure should show at once.
const client = new OpenAI({ maxRetries: 0, timeout: 30_000 });
const request = { model: "gpt-4.1-mini", messages: [{ role: "user", content: prompt }] };

try {
  if (kind === "stream") {
    const stream = await client.chat.completions.create({
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let chunks = 0;
    let usage = null;
    for await (const chunk of stream) {
      chunks += 1;
      text += chunk.choices[0]?.delta?.content ?? "";
      usage = chunk.usage ?? usage;
    }
    console.log(JSON.stringify({ text, chunks, usage }));
  } else {
    const reply = await client.chat.completions.create(request);
    console.log(JSON.stringify({ text: reply.choices[0].message.content, id: reply.id, usage: reply.usage }));
  }
} catch (error) {
  if (error instanceof OpenAI.APIError) {
    // A connection error's own cause (refused, reset, ...) says what went wrong.
    const cause = error.cause ? String(error.cause.cause ?? error.cause) : undefined;
    console.log(JSON.stringify({ status: error.status, message: error.message, cause }));
    process.exit(3);
  }
  throw error;
}
