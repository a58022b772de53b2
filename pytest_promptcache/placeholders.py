"""Replay needs no key: SDK constructors (``openai.OpenAI()``, ``anthropic.Anthropic()``, boto3's
signer) refuse to start without credentials, although replay never sends them anywhere. For the
session, provider key variables that are unset or empty get a placeholder; the originals come back at
the end. The placeholder is not a secret and looks like none."""

from __future__ import annotations

from collections.abc import MutableMapping

PLACEHOLDER = "promptcache-replay-placeholder"

PROVIDER_KEY_VARIABLES: tuple[str, ...] = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "CO_API_KEY",
    "COHERE_API_KEY",
    "TOGETHER_API_KEY",
    "OPENROUTER_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "FIREWORKS_API_KEY",
    "PERPLEXITY_API_KEY",
    "VOYAGE_API_KEY",
)
# Bedrock signs requests: boto3 needs a key pair, and a region to build a client.
AWS_VARIABLES: tuple[tuple[str, str], ...] = (
    ("AWS_ACCESS_KEY_ID", "AKIAPROMPTCACHEREPLAY"),
    ("AWS_SECRET_ACCESS_KEY", PLACEHOLDER),
)


def apply(env: MutableMapping[str, str]) -> dict[str, str | None]:
    """Set placeholders for missing keys; returns what to restore (the old value, or None: unset)."""
    saved: dict[str, str | None] = {}
    for name in PROVIDER_KEY_VARIABLES:
        if not env.get(name, "").strip():
            saved[name] = env.get(name)
            env[name] = PLACEHOLDER
    if not any(env.get(name, "").strip() for name, _ in AWS_VARIABLES) and not env.get("AWS_PROFILE"):
        for name, value in AWS_VARIABLES:
            saved[name] = env.get(name)
            env[name] = value
    return saved


def restore(env: MutableMapping[str, str], saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if env.get(name) not in (PLACEHOLDER, dict(AWS_VARIABLES).get(name)):
            continue  # changed since by someone else: theirs now
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
