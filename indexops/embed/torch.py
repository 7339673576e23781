"""The sentence-transformers backend (torch, float32), loaded once per process."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
import numpy as np

from indexops.embed.protocol import HFTokenizer, ProgressFn, Tokenizer, _remembered, _weights_digest, resolve_model_path

_MODELS: dict[tuple[str, str], object] = {}


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded lazily: a run with nothing to embed never loads it."""

    def __init__(self, model: str, batch_size: int = 64, device: str = "cpu", normalize: bool = True) -> None:
        self.model_id = model
        self.path = resolve_model_path(model)
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
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
            key = (self.path, self.device)
            if key not in _MODELS:  # one model load per process, however many runs it serves
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                _MODELS[key] = SentenceTransformer(self.path, device=self.device)
            self._model = _MODELS[key]
        return self._model

    def fingerprint(self) -> str:
        """sha256 over the weight files, so a swapped model changes the recipe."""
        if self._fingerprint is None:
            self._fingerprint = self._weights_fingerprint()
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
            out[idx] = model.encode([texts[i] for i in idx], batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                    convert_to_numpy=True, show_progress_bar=False)
            if progress:
                progress(min(start + step, n), n)
        return out
