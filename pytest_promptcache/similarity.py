"""How alike two requests are, and a compact signature that ranks many recordings without reading them.

Similarity is measured on what a person wrote (system prompt, messages, input, instructions, tools), not
the JSON framing every request of an endpoint shares, which would make any two requests look alike; on
word and punctuation tokens, so one changed word costs one token. It is the share of tokens in a longest
common subsequence, 2·LCS / (|a| + |b|) (difflib's ratio, rapidfuzz's Indel similarity), computed
exactly by rapidfuzz in C whenever the part between the first and the last difference is small enough
(``EXACT_CELLS``), else bounded below from the runs of text the two share (see ``_shared_runs``): a
miss or a similar match never spends seconds on one pair of huge prompts.

The signature is a 64-bit SimHash of a request's tokens and token pairs: two texts that share most of
their tokens and pairs get signatures a few bits apart. It only orders candidates; the handful read in
that order are scored exactly.
"""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from .models import CanonicalRequest

# Fields whose strings are what a person wrote.
TEXT_FIELDS = frozenset(
    {"messages", "system", "input", "prompt", "contents", "instructions", "systemInstruction", "tools"}
)
# Inputs are bounded: past this much text content (a few hundred thousand words), requests are compared
# on its beginning.
MAX_TEXT_CHARS = 2_000_000
MAX_TOKENS = 300_000
# The most LCS cells (tokens of one side times the other, between their first and last difference)
# computed exactly for one pair: about 0.1 s of rapidfuzz on a slow core.
EXACT_CELLS = 60_000_000

_TOKEN = re.compile(r"\w+|[^\w\s]")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, depth first; iterative, so no nesting can exhaust the stack. Key
    order differs between a live body and a stored (sorted) one; the text must not."""
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack:
        for item in stack[-1]:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                stack.append(iter([v for _, v in sorted(item.items())]))
                break
            elif isinstance(item, list):
                stack.append(iter(item))
                break
        else:
            stack.pop()


def body_text_content(body: Any, body_text: str | None) -> str:
    """The text a similarity is measured on, from a request's body (parsed JSON) or non-JSON text."""
    if isinstance(body, dict):
        parts = [s for k, v in sorted(body.items()) if k in TEXT_FIELDS for s in _strings(v)]
        if parts:
            return "\n".join(parts)
    if body_text is not None:
        return body_text
    return "\n".join(_strings(body)) if body is not None else ""


def text_content(request: CanonicalRequest) -> str:
    return body_text_content(request.body, request.body_text)


def text_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text, 0, MAX_TEXT_CHARS)[:MAX_TOKENS]


def tokens(request: CanonicalRequest) -> list[str]:
    return text_tokens(text_content(request))


# -- the signature ---------------------------------------------------------------------------------------

# SimHash over the tokens, each weighted by its count: bit j is set when most tokens' hashes have bit j
# set. Counting is done in one big integer: a token's "spread" holds bit j of its hash at bit 32·j, so
# adding up the spreads of a text's tokens (C-level sum of cached values) counts all 64 bits at once,
# and one addition and a few byte operations read off which counts pass half. ~10 µs for a sentence,
# milliseconds for 100,000 tokens, where 64 Python additions per token would take 100 times longer.
_FIELD = 32
_SPREAD_BYTE = [sum(((value >> k) & 1) << (_FIELD * k) for k in range(8)) for value in range(256)]
_ONES = sum(1 << (_FIELD * j) for j in range(64))
_HALF_BIT = _FIELD - 1
_ASCII_BITS = bytes.maketrans(b"\x00\x01", b"01")
# Stable across processes (unlike hash()), since signatures are stored; bounded, because the recordings
# of one suite share most of their vocabulary.
_SPREADS: dict[str, int] = {}
_SPREADS_MAX = 50_000
_SPREADS_LOCK = threading.Lock()


def _spread(token: str) -> int:
    digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return sum(_SPREAD_BYTE[byte] << (8 * _FIELD * position) for position, byte in enumerate(digest))


def signature(toks: Sequence[str]) -> int:
    toks = toks[:MAX_TOKENS]  # the fields count up to 2^31
    if not toks:
        return 0
    distinct = set(toks)
    with _SPREADS_LOCK:  # threads of a test may miss at once; one may clear the cache
        if len(_SPREADS) + len(distinct) > _SPREADS_MAX:
            _SPREADS.clear()
        for token in distinct.difference(_SPREADS):
            _SPREADS[token] = _spread(token)
        spreads = {token: _SPREADS[token] for token in distinct}
    if len(toks) < 2048:
        counts = sum(map(spreads.__getitem__, toks))
    else:  # long texts repeat their words: one multiplication per distinct word
        counts = sum(spreads[token] * count for token, count in Counter(toks).items())
    # Each field becomes count + (2^31 - 1 - n // 2): its top bit is set when count > n / 2.
    over = ((counts + _ONES * ((1 << _HALF_BIT) - 1 - len(toks) // 2)) >> _HALF_BIT) & _ONES
    bits = over.to_bytes(_FIELD * 8, "little")[:: _FIELD // 8].translate(_ASCII_BITS)
    return int(bits[::-1], 2)


# -- the score -------------------------------------------------------------------------------------------


def common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    """Compared a block at a time (a C-level list comparison), then token by token in the block."""
    n = min(len(a), len(b))
    i = 0
    step = 256
    while i < n:
        j = min(n, i + step)
        if a[i:j] == b[i:j]:
            i = j
            continue
        while a[i] == b[i]:
            i += 1
        return i
    return n


def common_suffix(a: Sequence[str], b: Sequence[str]) -> int:
    n = min(len(a), len(b))
    la, lb = len(a), len(b)
    i = 0
    step = 256
    while i < n:
        j = min(n, i + step)
        if a[la - j : la - i] == b[lb - j : lb - i]:
            i = j
            continue
        while a[la - 1 - i] == b[lb - 1 - i]:
            i += 1
        return i
    return n


# Below this many cells, the LCS is computed here rather than by rapidfuzz: importing rapidfuzz (a
# multi-megabyte extension) costs 10-30 ms, more than a whole miss against ordinary prompts.
SMALL_CELLS = 200_000


def _small_lcs(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Bit-parallel LCS (Hyyrö): one pass over ``b``, each step a few operations on one integer with
    a bit per element of ``a``; the same result as rapidfuzz's LCSseq."""
    if len(b) > len(a):
        a, b = b, a  # one step per element of the shorter; the longer is the integer's bits
    positions: dict[Any, int] = {}
    for i, item in enumerate(a):
        positions[item] = positions.get(item, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for item in b:
        u = v & positions.get(item, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _exact_lcs(a: Sequence[Any], b: Sequence[Any]) -> int:
    # Capped in length too: building the bit masks costs the square of the longer side's length.
    if len(a) * len(b) <= SMALL_CELLS and max(len(a), len(b)) <= 4096:
        return _small_lcs(a, b)
    from rapidfuzz.distance import LCSseq  # imported by the first large comparison, not at start-up

    return int(LCSseq.similarity(a, b))


def _token_crcs(toks: Sequence[str]) -> dict[str, int]:
    """Stable per-token hashes for chunk boundaries (the same text must cut the same way every run)."""
    return {token: zlib.crc32(token.encode("utf-8", "surrogatepass")) for token in set(toks)}


def _chunks(toks: Sequence[str], crcs: dict[str, int], width: int) -> list[tuple[str, ...]]:
    """Content-defined chunks: a chunk ends after a token whose hash is 0 modulo ``width``, so two
    texts that share a passage cut it at the same places wherever it sits, and an edit disturbs only
    the chunks around it. Chunks are ``width // 4`` to ``4 * width`` tokens long: a one-token chunk
    would match by chance all over two unrelated texts."""
    ends = {token for token, crc in crcs.items() if crc % width == 0}
    shortest, longest = max(1, width // 4), 4 * width
    out: list[tuple[str, ...]] = []
    start = 0
    for end in [i for i, token in enumerate(toks, 1) if token in ends]:
        while end - start > longest:
            out.append(tuple(toks[start : start + longest]))
            start += longest
        if end - start >= shortest:
            out.append(tuple(toks[start:end]))
            start = end
    while start < len(toks):
        out.append(tuple(toks[start : start + longest]))
        start += longest
    return out


def _shared_runs(a: Sequence[str], b: Sequence[str]) -> int:
    """A lower bound of the LCS of two long sequences, in bounded time.

    Both are cut into content-defined chunks, the chunks aligned exactly (an LCS over chunks), and the
    gaps between aligned chunks compared token by token while the budget lasts. Matched chunks and gaps
    form one common subsequence, so the result never exceeds the true LCS; for texts that share long
    passages (the only ones for which a high similarity matters) it is within a few tokens of it.
    """
    from rapidfuzz.distance import LCSseq

    crcs_a, crcs_b = _token_crcs(a), _token_crcs(b)
    width = 16
    while True:
        ca, cb = _chunks(a, crcs_a, width), _chunks(b, crcs_b, width)
        if len(ca) * len(cb) <= EXACT_CELLS:
            break
        width *= 4
    matched = 0
    budget = EXACT_CELLS
    ia = ib = 0  # token offsets of the current chunk on each side
    ga = gb = 0  # where the gap before the next aligned chunk starts
    pos_a = [0]
    for chunk in ca:
        pos_a.append(pos_a[-1] + len(chunk))
    pos_b = [0]
    for chunk in cb:
        pos_b.append(pos_b[-1] + len(chunk))
    for block in LCSseq.opcodes(ca, cb):
        if block.tag != "equal":
            continue
        ia, ib = pos_a[block.src_start], pos_b[block.dest_start]
        cells = (ia - ga) * (ib - gb)
        if cells and cells <= budget:
            matched += _exact_lcs(a[ga:ia], b[gb:ib])
            budget -= cells
        ga, gb = pos_a[block.src_end], pos_b[block.dest_end]
        matched += ga - ia
    cells = (len(a) - ga) * (len(b) - gb)
    if cells and cells <= budget:
        matched += _exact_lcs(a[ga:], b[gb:])
    return matched


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """The LCS of two token sequences: exact when affordable, else a close lower bound."""
    prefix = common_prefix(a, b)
    a, b = a[prefix:], b[prefix:]
    suffix = common_suffix(a, b)
    a, b = a[: len(a) - suffix], b[: len(b) - suffix]
    if not a or not b:
        return prefix + suffix
    if len(a) * len(b) <= EXACT_CELLS:
        return prefix + suffix + _exact_lcs(a, b)
    return prefix + suffix + _shared_runs(a, b)


def upper_bound(len_a: int, len_b: int) -> float:
    """The best score two sequences of these lengths can reach (one inside the other)."""
    total = len_a + len_b
    return 1.0 if total == 0 else 2 * min(len_a, len_b) / total


def score(a: Sequence[str], b: Sequence[str]) -> float:
    """2·LCS / (|a| + |b|), in [0, 1]; 1.0 for two empty texts."""
    total = len(a) + len(b)
    if total == 0:
        return 1.0
    return 2 * lcs_length(a, b) / total


def similarity(a: CanonicalRequest, b: CanonicalRequest) -> float:
    return score(tokens(a), tokens(b))
