"""The defaults every session starts from: which endpoints are LLM calls, which headers take part in
keys, what is secret, and which hosts replay never reaches. Plain data, so both the settings and the
command-line tool read the same tables."""

from __future__ import annotations

DEFAULT_ENDPOINTS: tuple[str, ...] = (
    "/chat/completions",
    "/completions",
    "/responses",
    "/embeddings",
    "/messages",
    ":generateContent",
    ":streamGenerateContent",
    ":embedContent",
    ":batchEmbedContents",
    # Token counting and moderation: free calls (``estimate.is_free``), but they need a key and the
    # network like any other, and a test that calls them needs them replayed like the rest.
    ":countTokens",
    "/messages/count_tokens",
    "/responses/input_tokens",
    "/moderations",
    # Cohere's v2 API.
    "/v2/chat",
    "/v2/embed",
    # Ollama's native API (its OpenAI-compatible one is /v1/chat/completions, above).
    "/api/chat",
    "/api/generate",
    "/api/embed",
    # Anthropic on Vertex AI: the model in the path, ``:rawPredict`` being Vertex's verb for any model.
    "/publishers/anthropic/models/*:rawPredict",
    "/publishers/anthropic/models/*:streamRawPredict",
    # Bedrock Runtime: the model id sits in the middle of the path.
    "/model/*/converse",
    "/model/*/converse-stream",
    "/model/*/invoke",
    "/model/*/invoke-with-response-stream",
)

# Hosts replay never connects to, whatever client tries (the socket guard). Patterns: ``*`` matches
# within and across labels. Test servers and private hosts are guarded through the recordings instead.
DEFAULT_GUARDED_HOSTS: tuple[str, ...] = (
    "api.openai.com",
    "*.openai.azure.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "*aiplatform.googleapis.com",
    "bedrock-runtime.*.amazonaws.com",
    "bedrock-runtime-fips.*.amazonaws.com",
    "api.mistral.ai",
    "api.groq.com",
    "api.together.xyz",
    "api.cohere.com",
    "api.cohere.ai",
    "openrouter.ai",
    "api.deepseek.com",
    "api.x.ai",
    "api.perplexity.ai",
    "api.fireworks.ai",
    "api.voyageai.com",
    "api.cerebras.ai",
    "inference.cerebras.ai",
    "api.sambanova.ai",
    "api.deepinfra.com",
    "api.replicate.com",
    "api-inference.huggingface.co",
    "router.huggingface.co",
)

# Headers that change what the provider answers, so they take part in the key. Everything else the
# clients send (auth, telemetry, retry counters, cookies) must not, or keys would differ per machine.
DEFAULT_KEY_HEADERS: tuple[str, ...] = ("anthropic-version", "anthropic-beta", "openai-beta")

DEFAULT_SECRET_HEADERS: tuple[str, ...] = (
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "set-cookie",
    "openai-organization",
    "openai-project",
    "anthropic-organization-id",
    "x-goog-user-project",
    # Azure API Management's key, and an AWS temporary credential's session token.
    "ocp-apim-subscription-key",
    "x-amz-security-token",
)

DEFAULT_SECRET_PARAMS: tuple[str, ...] = (
    "key",
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "token",
    "client_secret",
    "secret",
    "sig",
    "signature",
    # Azure API Management; AWS SigV4 presigned URLs.
    "subscription-key",
    "x-amz-credential",
    "x-amz-signature",
    "x-amz-security-token",
)

# AWS access key ids: AKIA (long-term) or ASIA (temporary) and 16 capitals or digits, a word of its own.
# No digit is required (some real ids have none): prose has no 20-capital words starting so.
AWS_ACCESS_KEY_ID_PATTERN = r"(?:AKIA|ASIA)(?<![A-Za-z0-9_][A-Z]{4})[A-Z0-9]{16}(?![A-Za-z0-9_])"
# "Bearer" in any mix of cases, a word of its own, then a token with a digit in it.
BEARER_PATTERN = r"[Bb](?<=\b[Bb])(?i:earer\s+(?=[A-Za-z0-9._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{16,})"
# Key shapes that are never legitimate content of a recording, with the name ``promptcache verify``
# gives a match: one table, so a new pattern cannot go without its name.
# Word-start anchored and, where prose could match ("risk-assessment-for-..."), a digit required: real
# keys are random and always have one; a false match would change keys and hide prompt text. Each starts
# with its literal (the word-start check follows, as a lookbehind over it), so the regex engine skips to
# candidates with a fast search: a 10 MB streamed answer is scrubbed in milliseconds, not the ~0.3 s a
# pattern that starts with a lookbehind takes (it is tried at every position).
SECRET_PATTERN_NAMES: dict[str, str] = {
    r"sk-ant-(?<![A-Za-z0-9_\-]sk-ant-)[A-Za-z0-9_\-]{16,}": "an Anthropic key (sk-ant-...)",
    r"sk-(?<![A-Za-z0-9_\-]sk-)(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{20,}": (
        "an OpenAI key (sk-...)"
    ),
    r"AIza(?<![A-Za-z0-9_\-]AIza)[0-9A-Za-z_\-]{35}": "a Google API key (AIza...)",
    BEARER_PATTERN: "a bearer token",
    AWS_ACCESS_KEY_ID_PATTERN: "an AWS access key id (AKIA... / ASIA...)",
}
DEFAULT_SECRET_PATTERNS: tuple[str, ...] = tuple(SECRET_PATTERN_NAMES)
# The literals a default pattern's match must start with: a text holding none of them is left alone
# without a regex search. Scrubbing runs on every string of every request a test sends, and a substring
# test costs a tenth of a search.
SECRET_PATTERN_LITERALS: dict[str, tuple[str, ...]] = {
    r"sk-ant-(?<![A-Za-z0-9_\-]sk-ant-)[A-Za-z0-9_\-]{16,}": ("sk-ant-",),
    r"sk-(?<![A-Za-z0-9_\-]sk-)(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{20,}": ("sk-",),
    r"AIza(?<![A-Za-z0-9_\-]AIza)[0-9A-Za-z_\-]{35}": ("AIza",),
    AWS_ACCESS_KEY_ID_PATTERN: ("AKIA", "ASIA"),
}
# A word a default pattern's match holds in some mix of cases: a text whose lower-case copy lacks it is
# left alone. (Python's case-insensitive matching folds no other character to e, a or r.)
SECRET_PATTERN_CASELESS_LITERALS: dict[str, str] = {BEARER_PATTERN: "bearer"}
