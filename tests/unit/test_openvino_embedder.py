"""OpenVINO (bf16 where the CPU has it, f32) against ONNX Runtime fp32 on the bundled all-MiniLM-L6-v2:
same export, so the vectors must agree to bf16 rounding; own fingerprint; encoder processes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from indexops.embed.cpu import cpu_has_bf16
from indexops.embed.factory import make_embedder
from indexops.embed.pool import PooledEmbedder, shutdown_pools

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "all-MiniLM-L6-v2"
TEXTS = [f"Sample sentence {i} about {topic} in clinical trials." * (1 + i % 9)
         for i, topic in enumerate(["insulin", "microglia", "BRCA1", "antibiotics", "statins", "p53"] * 8)] + ["x", "The the " * 200]


@pytest.fixture(scope="module")
def cache(model_cache):
    return model_cache


@pytest.fixture(scope="module")
def fp32_vecs(cache):
    return make_embedder(MODEL, backend="onnx").embed(TEXTS)


@pytest.mark.parametrize("backend,floor", [("openvino", 0.99999), ("openvino-bf16", 0.9995)])
def test_vectors_match_the_fp32_export(cache, fp32_vecs, backend, floor):
    e = make_embedder(MODEL, backend=backend)
    v = e.embed(TEXTS)
    assert v.dtype == np.float32 and v.shape == fp32_vecs.shape
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    cos = (v * fp32_vecs).sum(axis=1)
    assert cos.min() > floor, (backend, cos.min())
    # the same texts in another order and batch give the same vectors (no per-batch scales, unlike int8)
    again = e.embed(TEXTS[::-1])[::-1]
    assert ((again * v).sum(axis=1)).min() > 0.9999
    assert e.embed([]).shape == (0, e.dim)


def test_bf16_really_runs_in_bf16_where_the_cpu_has_it(cache, fp32_vecs):
    v = make_embedder(MODEL, backend="openvino-bf16").embed(TEXTS)
    if cpu_has_bf16():
        assert np.abs(v - fp32_vecs).max() > 1e-5  # bf16 rounding shows; f32 would agree to ~1e-7
    else:  # no native bf16 (AMX / AVX512-BF16): OpenVINO runs f32, so the plain openvino vectors
        np.testing.assert_allclose(v, make_embedder(MODEL, backend="openvino").embed(TEXTS), atol=1e-6)


def test_fingerprints_name_runtime_and_precision_and_are_stable_across_processes(cache):
    fps = {b: make_embedder(MODEL, backend=b).fingerprint() for b in ("onnx", "onnx-int8", "openvino", "openvino-bf16")}
    assert len(set(fps.values())) == 4
    code = f"from indexops.embed.factory import make_embedder\nprint(make_embedder({MODEL!r}, backend='openvino-bf16').fingerprint())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ))
    assert out.stdout.strip() == fps["openvino-bf16"]


def test_encoder_processes_give_the_in_process_vectors(cache):
    local = make_embedder(MODEL, backend="openvino-bf16")
    spec = {"model": MODEL, "dim": 384, "batch_size": None, "device": "cpu", "normalize": True, "backend": "openvino-bf16"}
    pool = PooledEmbedder(local, spec, workers=2, min_texts=8, slice_size=16, cores=2)
    try:
        got = pool.embed(TEXTS)
    finally:
        shutdown_pools()
    assert ((got * local.embed(TEXTS)).sum(axis=1)).min() > 0.9999


def test_unknown_precision_is_refused():
    from indexops.embed.openvino import OpenVinoEmbedder

    with pytest.raises(ValueError, match="bf16 or f32"):
        OpenVinoEmbedder(MODEL, precision="int4")


@pytest.mark.parametrize("backend", ["onnx", "openvino-bf16"])
def test_token_ids_give_the_vectors_of_the_texts_in_process_and_in_encoder_processes(cache, backend):
    """`embed_token_ids` (a text's ids without special tokens, as the chunker hands them on) frames
    and truncates them as the tokenizer does: the same vectors as `embed`, bit for bit, including a
    text longer than the model window. Encoder processes use the ids when given: handed another
    text's ids, a slot gets that text's vector."""
    local = make_embedder(MODEL, backend=backend)
    tok = local.tokenizer()
    ids = [tok.spans_ids(t)[1].tobytes() for t in TEXTS]
    assert np.array_equal(local.embed_token_ids(ids), local.embed(TEXTS))
    spec = {"model": MODEL, "dim": 384, "batch_size": None, "device": "cpu", "normalize": True, "backend": backend}
    pool = PooledEmbedder(local, spec, workers=2, min_texts=8, slice_size=16, cores=2)
    try:
        swapped = pool.embed(TEXTS, ids=ids[::-1])
        plain = pool.embed(TEXTS)
    finally:
        shutdown_pools()
    want = local.embed(TEXTS[::-1])
    assert ((swapped * want).sum(axis=1)).min() > 0.9999
    assert ((plain * local.embed(TEXTS)).sum(axis=1)).min() > 0.9999
