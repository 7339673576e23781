"""Chunkers that count in the embedding model's own tokens, with deterministic chunk ids."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexops.embed.protocol import BatchTokenizer, TokenIdTokenizer, Tokenizer
from indexops.ids import chunk_hash, chunk_id, normalize_text, sha256_hex
from indexops.models import Chunk
from indexops.settings import ChunkingSettings

CHUNKER_CODE_VERSION = "1"
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)")
MIN_BUDGET = 16


@dataclass
class ChunkResult:
    chunks: list[Chunk]
    duplicates_dropped: int


class Chunker:
    """Splits documents into chunks whose embed text fits the model window.

    Args:
        settings: strategy, size and overlap in tokens, whether the title prefixes each chunk.
        tokenizer: the embedding model's tokenizer (or the hashing embedder's word tokenizer).
        tokenizer_id: names the tokenizer in the chunker version, so a new tokenizer means new ids.
    """

    def __init__(self, settings: ChunkingSettings, tokenizer: Tokenizer, tokenizer_id: str) -> None:
        self.settings = settings
        self.tok = tokenizer
        self.max_tokens = min(settings.max_tokens, tokenizer.max_tokens)
        self.version = sha256_hex(
            CHUNKER_CODE_VERSION,
            settings.strategy,
            str(self.max_tokens),
            str(settings.overlap_tokens),
            str(settings.include_title),
            tokenizer_id,
        )[:16]
        self._ahead: dict[str, tuple[str, str, dict[str, Any], ChunkResult]] = {}
        # which vocabulary ids continue a word, where the tokenizer also hands out ids (the model's
        # WordPiece): chunks then carry their embed text's token ids and the encoder skips tokenizing
        ids_tok = tokenizer if isinstance(tokenizer, TokenIdTokenizer) else None
        self._continues: np.ndarray | None = ids_tok.continues if ids_tok else None
        self._ids_tok = ids_tok if self._continues is not None else None
        self._no_ids = np.zeros(0, dtype=ids_tok.id_dtype if ids_tok else "<u4")

    def chunk_ahead(self, docs: list[tuple[str, str, str, dict[str, Any]]]) -> list[ChunkResult]:
        """Chunk documents a later batch will probably ask for, and keep the results until then
        (replacing what the previous call kept): the next batch is chunked while this one encodes."""
        self._ahead = {}
        for (did, title, text, meta), res in zip(docs, self.chunk_many(docs)):
            self._ahead[did] = (title, text, meta, res)
        return [r[3] for r in self._ahead.values()]

    def chunk_many(self, docs: Sequence[tuple[str, str, str, dict[str, Any]]]) -> Iterator[ChunkResult]:
        """`chunk` each document in order, tokenizing the next 256 (those not chunked ahead) in one
        batched call first."""
        for k in range(0, len(docs), 256):
            part = docs[k : k + 256]
            self.warm([t for did, title, text, _ in part if not self.is_ahead(did) for t in (title or "", text or "")])
            for did, title, text, meta in part:
                yield self.chunk(did, title, text, meta)

    def is_ahead(self, doc_id: str) -> bool:
        return doc_id in self._ahead

    def config(self) -> dict[str, Any]:
        return {**self.settings.model_dump(), "effective_max_tokens": self.max_tokens, "version": self.version}

    def warm(self, texts: list[str]) -> None:
        """Let a tokenizer that can batch (the model's) tokenize the next documents in one call."""
        if isinstance(self.tok, BatchTokenizer) and self.settings.strategy != "document":  # whole documents need no token spans
            self.tok.warm(texts)

    def chunk(self, doc_id: str, title: str, text: str, metadata: dict[str, Any]) -> ChunkResult:
        ahead = self._ahead.pop(doc_id, None)
        if ahead is not None and ahead[:3] == (title, text, metadata):
            return ahead[3]
        title = title or ""
        sections = section_ranges(text, metadata)
        if self.settings.strategy == "document":
            return self._whole(doc_id, title, text, {k: v for k, v in metadata.items() if k != SECTION_STARTS})
        if sections is None:
            return self._pieces(doc_id, title, text, metadata, 0)[0]
        out = ChunkResult([], 0)
        position = 0
        for a, b, meta in sections:  # a chunk never crosses a section; each carries its section path
            res, position = self._pieces(doc_id, title, text[a:b], meta, position)
            out.chunks += res.chunks
            out.duplicates_dropped += res.duplicates_dropped
        return out

    def _pieces(self, doc_id: str, title: str, text: str, metadata: dict[str, Any], first: int) -> tuple[ChunkResult, int]:
        """Chunk one text into model-sized pieces numbered from position `first`; also the first
        position after them (a range dropped as empty or repeated still uses its position)."""
        prefix = ""
        budget = self.max_tokens
        title_tokens = 0
        title_ids: np.ndarray | None = self._no_ids  # no title: nothing before the text's ids
        room = self.max_tokens - MIN_BUDGET - 1  # the title may use what the text does not need
        ids_tok = self._ids_tok
        if self.settings.include_title and title.strip() and room > 0:
            tspans, tids = ids_tok.spans_ids(title) if ids_tok else (self.tok.spans(title), None)
            shown = title if len(tspans) <= room else title[: tspans[room - 1][1]]
            prefix = f"{shown}\n"
            title_tokens = min(len(tspans), room)
            budget = self.max_tokens - title_tokens - 1
            title_ids = self._word_aligned(tids, 0, title_tokens)
        overlap = min(self.settings.overlap_tokens, budget // 2)
        spans, ids = ids_tok.spans_ids(text) if ids_tok else (self.tok.spans(text), None)
        starts = [s for s, _ in spans]  # token start offsets: sentence sizes and each chunk's count
        if self.settings.strategy == "token_window":
            ranges = _token_windows(spans, budget, overlap)
        else:
            ranges = _recursive(text, spans, starts, budget, overlap)
        if not ranges:
            ranges = [(0, len(text))]
        chunks: list[Chunk] = []
        seen: set[str] = set()
        dropped = 0
        for position, (a, b) in enumerate(ranges, start=first):
            piece = text[a:b].strip()
            if not piece:
                continue
            if len(ranges) > 1:
                norm = normalize_text(piece)
                if norm in seen:  # the same passage twice in one document is indexed once
                    dropped += 1
                    continue
                seen.add(norm)
            th = sha256_hex(piece)
            i, j = bisect.bisect_left(starts, a), bisect.bisect_left(starts, b)
            whole = (i == 0 or spans[i - 1][1] <= a) and (j == i or spans[j - 1][1] <= b)  # no token cut at either end
            piece_ids = self._word_aligned(ids, i, j) if whole else None
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(doc_id, position, th, self.version),
                    doc_id=doc_id,
                    position=position,
                    text=piece,
                    embed_text=prefix + piece,
                    chunk_hash=chunk_hash(piece, title, metadata),
                    title=title,
                    metadata=metadata,
                    tokens=title_tokens + j - i,
                    token_ids=None if title_ids is None or piece_ids is None else title_ids.tobytes() + piece_ids.tobytes(),
                )
            )
        return ChunkResult(chunks, dropped), first + len(ranges)

    def _word_aligned(self, ids: np.ndarray | None, i: int, j: int) -> np.ndarray | None:
        """ids[i:j] when that run starts and ends at word boundaries (then it is exactly the
        tokenizer's output for the same slice of the text), else None."""
        if ids is None or self._continues is None:
            return None
        cont = self._continues
        if i < j and (ids[i] >= len(cont) or cont[ids[i]]) or j < len(ids) and (ids[j] >= len(cont) or cont[ids[j]]):
            return None
        return ids[i:j]


    def _whole(self, doc_id: str, title: str, text: str, metadata: dict[str, Any]) -> ChunkResult:
        """One chunk per document, as LangChain's and LlamaIndex's defaults without a splitter: the
        model reads its first window (it truncates), BM25 and the payload keep the whole text."""
        piece = text.strip()
        if not piece:
            return ChunkResult([], 0)
        prefix = f"{title}\n" if self.settings.include_title and title.strip() else ""
        th = sha256_hex(piece)
        return ChunkResult([Chunk(chunk_id=chunk_id(doc_id, 0, th, self.version), doc_id=doc_id, position=0, text=piece,
                                  embed_text=prefix + piece, chunk_hash=chunk_hash(piece, title, metadata), title=title,
                                  metadata=metadata)], 0)


SECTION_STARTS = "section_starts"  # metadata a document source sets: [[char offset, [heading, ...]], ...]


def section_ranges(text: str, metadata: dict[str, Any]) -> list[tuple[int, int, dict[str, Any]]] | None:
    """A sectioned document's (start, end, chunk metadata) per section, in order: the metadata
    without the offsets and with `section` (the heading path, " > "-joined) where it has one.
    None for a document without `section_starts` (or with offsets that do not fit its text)."""
    starts = metadata.get(SECTION_STARTS) if isinstance(metadata, dict) else None
    if not isinstance(starts, list) or not starts:
        return None
    base = {k: v for k, v in metadata.items() if k != SECTION_STARTS}
    try:
        bounds = [(int(off), [str(h) for h in path]) for off, path in starts]
    except (TypeError, ValueError):
        return None
    if bounds[0][0] != 0 or any(b[0] <= a[0] for a, b in zip(bounds, bounds[1:])) or bounds[-1][0] > len(text):
        return None
    out = []
    for i, (a, path) in enumerate(bounds):
        b = bounds[i + 1][0] if i + 1 < len(bounds) else len(text)
        out.append((a, b, {**base, "section": " > ".join(path)} if path else base))
    return out


def _token_windows(spans: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    if not spans:
        return []
    step = max(1, size - overlap)
    out = []
    i = 0
    while True:
        j = min(i + size, len(spans))
        out.append((spans[i][0], spans[j - 1][1]))
        if j >= len(spans):
            break
        i += step
    return out


def _sentences(text: str) -> list[tuple[int, int]]:
    """Sentence char ranges, paragraphs first so a sentence never crosses a paragraph."""
    out = []
    pos = 0
    for para in _PARAGRAPH.split(text):
        start = text.find(para, pos)
        pos = start + len(para)
        s = 0
        for m in _SENTENCE_END.finditer(para):
            out.append((start + s, start + m.start()))
            s = m.end()
        out.append((start + s, start + len(para)))
    return [(a, b) for a, b in out if text[a:b].strip()]


def _recursive(text: str, spans: list[tuple[int, int]], starts: list[int], size: int, overlap: int) -> list[tuple[int, int]]:
    """Pack whole sentences up to `size` tokens; a sentence longer than that falls back to windows.
    `starts`: the spans' start offsets."""
    if not spans:
        return []

    def ntok(a: int, b: int) -> int:
        return bisect.bisect_left(starts, b) - bisect.bisect_left(starts, a)

    units: list[tuple[int, int, int]] = []  # (char_start, char_end, tokens)
    for a, b in _sentences(text):
        n = ntok(a, b)
        if n <= size:
            units.append((a, b, n))
        else:
            lo, hi = bisect.bisect_left(starts, a), bisect.bisect_left(starts, b)
            for wa, wb in _token_windows(spans[lo:hi], size, overlap):
                units.append((wa, wb, ntok(wa, wb)))
    out: list[tuple[int, int]] = []
    cur: list[tuple[int, int, int]] = []
    total = 0
    for u in units:
        if cur and total + u[2] > size:
            out.append((cur[0][0], cur[-1][1]))
            # carry trailing sentences up to `overlap` tokens into the next chunk
            carry: list[tuple[int, int, int]] = []
            t = 0
            for prev in reversed(cur):
                if t + prev[2] > overlap or prev[2] + u[2] + t > size:
                    break
                carry.insert(0, prev)
                t += prev[2]
            cur, total = carry, t
        cur.append(u)
        total += u[2]
    if cur:
        out.append((cur[0][0], cur[-1][1]))
    return out
