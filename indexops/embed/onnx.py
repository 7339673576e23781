"""The sentence-transformers model run by ONNX Runtime: same vectors (fp32) or close ones (int8), no torch
on the encode path.

The model is exported once per machine from its source weights (torch is imported only then) and cached
under `${INDEXOPS_CACHE_DIR:-~/.cache/indexops}/onnx/<source fingerprint[:16]>/`; the int8 file is made from
the fp32 one with onnxruntime's dynamic quantisation. Files are written to a temporary name and renamed, so
two processes exporting at once each leave a whole file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from indexops.embed.cpu import cpu_cores
from indexops.embed.protocol import ProgressFn, Tokenizer, resolve_model_path, token_id_dtype
from indexops.embed.torch import SentenceTransformerEmbedder

OnnxBackend = Literal["onnx", "onnx-int8"]

EXPORT_VERSION = 1  # bump when the export graph changes (inputs, outputs, wrapper)
OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Chosen by bench/encoder_backends.py (README "Encoder backends"): quality against fp32, then speed.
# Per-tensor QInt8 moved vectors to cosine ~0.93 of fp32; one scale per output channel keeps ~0.994.
INT8_SETTINGS: dict[str, Any] = {"weight_type": "QInt8", "per_channel": True, "reduce_range": False}

_SESSIONS: dict[tuple[str, int], Any] = {}


def cache_dir() -> Path:
    """Where exported models live: `$INDEXOPS_CACHE_DIR`, else `~/.cache/indexops`."""
    return Path(os.environ.get("INDEXOPS_CACHE_DIR") or Path.home() / ".cache" / "indexops")


def _ort_version() -> str:
    from importlib.metadata import version  # not `import onnxruntime`: a no-op run never loads it

    return ".".join(version("onnxruntime").split(".")[:2])


def _atomic_write(target: Path, build: Callable[[Path], None], meta: dict[str, Any]) -> None:
    """`build(tmp)` writes the file; then it is renamed into place and its meta sidecar after it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=target.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build(tmp)
        os.replace(tmp, target)
        fd, meta_tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f, sort_keys=True)
        os.replace(meta_tmp, target.with_suffix(".json"))
    finally:
        tmp.unlink(missing_ok=True)


def _is_current(target: Path, meta: dict[str, Any]) -> bool:
    side = target.with_suffix(".json")
    if not (target.exists() and side.exists()):
        return False
    try:
        return json.loads(side.read_text()) == json.loads(json.dumps(meta, sort_keys=True))
    except (OSError, ValueError):
        return False


def export_onnx(source_dir: Path, out: Path, opset: int = OPSET) -> None:
    """Export the transformer of a sentence-transformers folder to ONNX (token embeddings out).

    Pooling and normalisation stay in numpy, so one graph serves any pooling config.
    """
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source_dir), attn_implementation="eager").eval()

    class _Hidden(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids = torch.tensor([[101, 2023, 2003, 1037, 102], [101, 2023, 102, 0, 0]])
    mask = (ids != 0).long()
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on Python branches that are constant without a KV cache
        torch.onnx.export(
            _Hidden(model), (ids, mask, torch.zeros_like(ids)), str(out),
            input_names=list(_INPUTS), output_names=["last_hidden_state"],
            dynamic_axes={n: axes for n in (*_INPUTS, "last_hidden_state")},
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )


def quantize_int8(fp32: Path, out: Path, weight_type: str = "QInt8", per_channel: bool = False, reduce_range: bool = False) -> None:
    """Dynamic quantisation: int8 weights, activations quantised per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType[weight_type], per_channel=per_channel, reduce_range=reduce_range)


def _local_source(path: str) -> Path:
    """A folder holding the model: the path itself, or the hub snapshot (cache only when offline)."""
    p = Path(path)
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download

    repo = path if "/" in path else f"sentence-transformers/{path}"
    try:
        return Path(snapshot_download(repo, allow_patterns=["*.json", "*.safetensors", "*.txt", "1_Pooling/*"]))
    except Exception as exc:  # offline and not cached, unknown repo, no network
        raise FileNotFoundError(f"model {path!r} is not a folder and could not be fetched from the hub ({exc})") from exc


class OnnxEmbedder:
    """A sentence-transformers model (BERT-style, mean pooling) on ONNX Runtime.

    Args:
        model: a sentence-transformers name or folder (the bundled all-MiniLM-L6-v2 resolves offline).
        backend: `onnx` (fp32, vectors equal to torch's to ~1e-6) or `onnx-int8` (dynamically quantised).
        batch_size: texts per run; batches are cut from length-sorted texts so they pad little.
        normalize: L2-normalise the pooled vectors.
        threads: ONNX Runtime intra-op threads (default: the cores this process may use).
    """

    def __init__(self, model: str, backend: OnnxBackend = "onnx-int8", batch_size: int = 64, normalize: bool = True,
                 threads: int | None = None) -> None:
        if backend not in ("onnx", "onnx-int8"):
            raise ValueError(f"unknown ONNX backend {backend!r}: onnx or onnx-int8")
        self.model_id = model
        self.backend = backend
        self.batch_size = batch_size
        self.normalize = normalize
        self.threads = threads or cpu_cores()
        self.path = resolve_model_path(model)
        self._dir: Path | None = None
        self._src: SentenceTransformerEmbedder | None = None  # the local source folder: dim, tokenizer, weights
        self._fingerprint: str | None = None
        self._session: Any = None
        self._tok: Any = None
        self._template: tuple[list[int], list[int], int] | None | bool = False  # False: not looked at yet

    def _source_dir(self) -> Path:
        if self._dir is None:
            self._dir = _local_source(self.path)
        return self._dir

    def _source(self) -> SentenceTransformerEmbedder:
        if self._src is None:  # built on the folder, so nothing here loads torch
            self._src = SentenceTransformerEmbedder(str(self._source_dir()), batch_size=self.batch_size, normalize=self.normalize)
        return self._src

    @property
    def dim(self) -> int:
        return self._source().dim

    def tokenizer(self) -> Tokenizer:
        return self._source().tokenizer()

    def source_fingerprint(self) -> str:
        """sha256 over the source weight files (for a local folder, the torch backend's fingerprint)."""
        return self._source().fingerprint()

    def _quant(self) -> dict[str, Any] | None:
        return dict(INT8_SETTINGS) if self.backend == "onnx-int8" else None

    def fingerprint(self) -> str:
        """sha256 over source weights, backend, export and quantisation settings, ONNX Runtime major.minor.

        The vectors depend on all of them, so each gets its own recipe (and collection).
        """
        if self._fingerprint is None:
            self._fingerprint = hashlib.sha256(json.dumps(self._recipe(), sort_keys=True).encode()).hexdigest()
        return self._fingerprint

    def _recipe(self) -> dict[str, Any]:
        """Everything the vectors depend on besides the input (a runtime subclass names its own)."""
        return {"source": self.source_fingerprint(), "backend": self.backend, "export": EXPORT_VERSION, "opset": OPSET,
                "quantization": self._quant(), "onnxruntime": _ort_version()}

    def model_path(self) -> Path:
        """The ONNX file this embedder runs, exported (and quantised) on first use."""
        folder = cache_dir() / "onnx" / self.source_fingerprint()[:16]
        fp32 = folder / "model.onnx"
        fp32_meta = {"export": EXPORT_VERSION, "opset": OPSET}
        if not _is_current(fp32, fp32_meta):
            src = self._source_dir()
            _atomic_write(fp32, lambda tmp: export_onnx(src, tmp), fp32_meta)
        q = self._quant()
        if q is None:
            return fp32
        int8 = folder / "model-int8.onnx"
        int8_meta = {**fp32_meta, **q, "onnxruntime": _ort_version()}
        if not _is_current(int8, int8_meta):
            _atomic_write(int8, lambda tmp: quantize_int8(fp32, tmp, **q), int8_meta)
        return int8

    def _load(self) -> Any:
        if self._session is None:
            path = str(self.model_path())
            key = (path, self.threads)
            if key not in _SESSIONS:  # one session per process and file, however many runs it serves
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.intra_op_num_threads = self.threads
                so.inter_op_num_threads = 1
                so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                so.log_severity_level = 3
                _SESSIONS[key] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            self._session = _SESSIONS[key]
        return self._session

    def _encoder_tokenizer(self) -> Any:
        if self._tok is None:
            from tokenizers import Tokenizer as _Tok

            d = self._source_dir()
            max_len = 256
            cfg = d / "sentence_bert_config.json"
            if cfg.exists():
                max_len = int(json.loads(cfg.read_text()).get("max_seq_length", max_len))
            tok = _Tok.from_file(str(d / "tokenizer.json"))
            tok.enable_truncation(max_length=max_len)  # as sentence-transformers does, special tokens included
            tok.no_padding()  # padded per batch below, to the batch's longest text
            self._tok = tok
        return self._tok

    def _run(self, encs: Sequence[Any]) -> np.ndarray:
        n, width = len(encs), max(len(e.ids) for e in encs)
        ids = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for i, e in enumerate(encs):
            k = len(e.ids)
            ids[i, :k] = e.ids
            mask[i, :k] = 1
            types[i, :k] = e.type_ids
        hidden = self._load().run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        m = mask[:, :, None].astype(np.float32)
        vecs = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        if self.normalize:
            vecs /= np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
        return vecs.astype(np.float32, copy=False)

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        tok = self._encoder_tokenizer()
        return self._embed_blocks(len(texts), lambda a, b: tok.encode_batch(list(texts[a:b])), progress)

    def token_ids_template(self) -> tuple[list[int], list[int], int] | None:
        """The ids the tokenizer puts before and after a single text and how many of the text's own
        ids it keeps: None unless it makes exactly prefix + ids + suffix with type ids 0 and cuts
        the text's ids from the right (then `embed_token_ids` is not offered)."""
        if self._template is False:
            tok = self._encoder_tokenizer()
            probe = "hello world, again"
            full, plain = tok.encode(probe), tok.encode(probe, add_special_tokens=False).ids
            trunc = tok.truncation or {}
            at = next((p for p in range(len(full.ids) - len(plain) + 1) if full.ids[p : p + len(plain)] == plain), None)
            if at is None or any(full.type_ids) or trunc.get("direction", "right") != "right" or "max_length" not in trunc:
                self._template = None
            else:
                head, tail = list(full.ids[:at]), list(full.ids[at + len(plain) :])
                self._template = (head, tail, int(trunc["max_length"]) - len(head) - len(tail))
        return self._template

    def embed_token_ids(self, ids: Sequence[bytes], progress: ProgressFn | None = None) -> np.ndarray:
        """Vectors of texts given as their token ids (as `Chunk.token_ids`: `token_id_dtype` bytes,
        without special tokens): the same vectors `embed` gives for the texts, without tokenizing."""
        template = self.token_ids_template()
        if template is None:
            raise ValueError("this model's tokenizer does not frame a text as prefix + ids + suffix")
        head, tail, keep = template
        dtype = token_id_dtype(self._encoder_tokenizer())

        def encodings(a: int, b: int) -> list[_Ids]:
            return [_Ids(head + np.frombuffer(x, dtype=dtype)[:keep].tolist() + tail) for x in ids[a:b]]

        return self._embed_blocks(len(ids), encodings, progress)

    def _embed_blocks(self, n: int, encodings: Callable[[int, int], Sequence[Any]], progress: ProgressFn | None) -> np.ndarray:
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        self._load()
        block = max(self.batch_size * 16, 1024)  # bounded memory; sorting inside a block pads nearly as little
        for start in range(0, n, block):
            encs = encodings(start, start + block)
            order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                out[[start + i for i in idx]] = self._run([encs[i] for i in idx])
            if progress:
                progress(min(start + block, n), n)
        return out


class _Ids:
    """A tokenized single text as `_run` reads it (ids with special tokens, type ids all 0)."""

    __slots__ = ("ids", "type_ids")

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.type_ids = [0] * len(ids)
