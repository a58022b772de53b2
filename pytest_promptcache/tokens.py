"""Counting tokens where a response carries none: tiktoken's ``o200k_base``, shipped with the package.

tiktoken downloads its encodings on first use, which an offline CI run cannot do, and its wheel holds
none. So the one encoding used here, ``o200k_base.tiktoken`` (OpenAI's file, MIT, ``data/LICENSE-tiktoken``),
lives in ``data/`` and is loaded through tiktoken's own ``load_tiktoken_bpe``, checked against the
SHA-256 tiktoken itself expects. It is exact for OpenAI's current models (gpt-4o, gpt-4.1, gpt-5, the o
series) and the documented approximation for every other model: other tokenizers differ, typically by
10-30% on English text, and every figure counted here is marked estimated.

Loaded once per process (about 0.3 s, more on a busy machine), never on an event loop: the first count
happens where a live response is priced, which async adapters do in a worker thread. A session that may
go live starts loading it in the background (``preload``), so saving the first stream without usage
does not wait for it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

ENCODING = "o200k_base"
_FILE = Path(__file__).parent / "data" / "o200k_base.tiktoken"
# What tiktoken_ext.openai_public expects of the file it would download.
_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# o200k_base's split pattern and special tokens, as tiktoken_ext.openai_public defines them.
_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
# Counting is linear but not free: ~70 MB/s on prose, ~5 MB/s on a long run without a break (BPE
# merges within one regex piece). Past this many characters (~25,000 tokens of prose) the rest of a text
# is counted at the rate of its first part: an estimate either way, and recording a 10 MB event must not
# wait 0.2 s for it.
MAX_EXACT_CHARS = 100_000

_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding] = {}


def encoding() -> tiktoken.Encoding:
    found = _loaded.get(ENCODING)
    if found is None:
        # Threads that price live calls at once load it once; the others wait for it.
        with _lock:
            found = _loaded.get(ENCODING)
            if found is None:
                import tiktoken
                import tiktoken.load

                ranks = tiktoken.load.load_tiktoken_bpe(str(_FILE), expected_hash=_SHA256)
                found = _loaded[ENCODING] = tiktoken.Encoding(
                    ENCODING, pat_str=_PATTERN, mergeable_ranks=ranks, special_tokens=_SPECIAL
                )
    return found


def preload() -> None:
    """Load the encoding in a background thread, unless it is loaded."""
    if ENCODING not in _loaded:
        threading.Thread(target=encoding, name="promptcache-tokenizer", daemon=True).start()


def count(text: str) -> int:
    """Tokens of ``text`` in o200k_base; special-token text counts as ordinary text."""
    if not text:
        return 0
    head = text[:MAX_EXACT_CHARS]
    tokens = len(encoding().encode_ordinary(head))
    if len(text) > len(head):
        tokens += round(tokens * (len(text) - len(head)) / len(head))
    return tokens
