"""Backend selection: which embedder a config names (`make_embedder`), what `auto` resolves to on
this machine, and each backend's measured batch size. The only module that imports the backends."""

from __future__ import annotations

from indexops.embed.cpu import cpu_cores
from indexops.embed.hashing import HashingEmbedder
from indexops.embed.protocol import Embedder
from indexops.embed.torch import SentenceTransformerEmbedder

__all__ = ["cpu_cores", "default_batch_size", "make_embedder", "resolve_backend"]


def resolve_backend(backend: str, device: str = "cpu") -> str:
    """`auto` -> on CPU, openvino-bf16 when the CPU does bf16 natively (AMX / AVX512-BF16: ~1.5x int8
    on 2 cores here, vectors within cosine 0.99998 of float32), else onnx-int8 (~2.3x torch float32, nDCG@10
    within 0.002); torch on a GPU. Both CPU choices start in well under a second (no torch import).
    README "Encoder backends" has the measurements."""
    if backend != "auto":
        return backend
    if device != "cpu":
        return "torch"
    from indexops.embed.cpu import cpu_has_bf16

    return "openvino-bf16" if cpu_has_bf16() else "onnx-int8"


def default_batch_size(backend: str) -> int:
    """Texts per forward pass, measured per backend on SciFact (bf16 on AMX is fastest at 16)."""
    return {"onnx-int8": 16, "onnx": 32, "openvino-bf16": 16, "openvino": 32}.get(backend, 64)


def make_embedder(
    model: str, *, dim: int = 384, batch_size: int | None = None, device: str = "cpu", normalize: bool = True,
    backend: str = "torch", threads: int | None = None,
) -> Embedder:
    """Build the embedder a config names: 'hashing' or any sentence-transformers model.

    Args:
        backend: `torch` (sentence-transformers, float32), `onnx` or
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
    if backend == "torch":
        return SentenceTransformerEmbedder(model, batch_size=batch_size, device=device, normalize=normalize)
    if backend in ("onnx", "onnx-int8", "openvino", "openvino-bf16") and device != "cpu":
        raise ValueError(f"embedding.backend {backend!r} runs on cpu only (device {device!r}); use backend torch")
    if backend in ("onnx", "onnx-int8"):
        from indexops.embed.onnx import OnnxEmbedder

        return OnnxEmbedder(model, backend=backend, batch_size=batch_size, normalize=normalize, threads=threads)  # type: ignore[arg-type]
    if backend in ("openvino", "openvino-bf16"):
        from indexops.embed.openvino import OpenVinoEmbedder

        return OpenVinoEmbedder(model, precision="bf16" if backend == "openvino-bf16" else "f32", batch_size=batch_size,
                                normalize=normalize, threads=threads)
    raise ValueError(f"unknown embedding backend {backend!r}: auto, torch, onnx, onnx-int8, openvino or openvino-bf16")
