"""The TorchInductor-compiled BiMamba2 (network/cpu_compiled.py) against the block it replaces."""

from __future__ import annotations

import pytest
import torch

from bsmamba2_plugin.inference.cpu_variants import cpu_features
from bsmamba2_plugin.network.cpu_compiled import CompiledBiMamba2, scan_chunk
from bsmamba2_plugin.network.model import BSMamba2

needs_compiler = pytest.mark.skipif(
    not cpu_features()["cxx"], reason="TorchInductor needs a C++ compiler and Python.h")


def test_scan_chunk_avoids_padding_where_a_divisor_exists() -> None:
    assert scan_chunk(1) == 1 and scan_chunk(62) == 62 and scan_chunk(96) == 96
    assert scan_chunk(801) == 89  # the paper's 8 s chunk: 9 chunks, no padded copy
    assert scan_chunk(1000) == 50  # divisors 50, 100, 125: the closest to 64
    assert scan_chunk(97) == 97  # its own divisor: one chunk
    assert scan_chunk(131) == 64  # a prime past 128: padded to 3 x 64


def test_rejects_other_scan_dtypes(tiny_config) -> None:
    with pytest.raises(ValueError, match="bfloat16"):
        CompiledBiMamba2(BSMamba2(tiny_config).layers[0][0], torch.float16)


def _trained_like_block(tiny_config) -> torch.nn.Module:
    """A BiMamba2 with weights moved off their initial values (D = 1, norms = 1 would
    hide a wrong skip or a wrong norm weight)."""
    block = BSMamba2(tiny_config).layers[0][0].eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return block


@needs_compiler
@pytest.mark.parametrize("length", [7, 131, 801])  # one chunk; padded tail; 9 x 89
def test_float32_scan_matches_the_reference_block(tiny_config, length) -> None:
    block = _trained_like_block(tiny_config)
    x = torch.randn(3, length, tiny_config.dim)
    with torch.inference_mode():
        expected = block(x)
        got = CompiledBiMamba2(block, torch.float32)(x)
    change = (expected - x).abs().max()
    assert (got - expected).abs().max() <= 1e-5 * change


@needs_compiler
def test_bfloat16_scan_products_stay_close_and_groups_are_joined(tiny_config) -> None:
    block = _trained_like_block(tiny_config)
    compiled = CompiledBiMamba2(block, torch.bfloat16)
    compiled.tokens_per_group = 2 * 62  # 5 sequences of 62 -> groups of 2, 2, 1
    x = torch.randn(5, 62, tiny_config.dim)
    with torch.inference_mode():
        expected = block(x)
        got = compiled(x)
    error = (got - expected).abs().max() / (expected - x).abs().max()
    assert 0 < error <= 1e-2  # bfloat16 products: not exact, but close


@needs_compiler
def test_runs_without_autograd_history(tiny_config) -> None:
    block = _trained_like_block(tiny_config)
    out = CompiledBiMamba2(block)(torch.randn(2, 7, tiny_config.dim, requires_grad=True))
    assert not out.requires_grad


def test_rejects_other_projection_dtypes(tiny_config) -> None:
    with pytest.raises(ValueError, match="proj_dtype"):
        CompiledBiMamba2(BSMamba2(tiny_config).layers[0][0], torch.float32, torch.float16)


@needs_compiler
def test_bfloat16_projections_stay_close_and_leave_the_block_alone(tiny_config) -> None:
    block = _trained_like_block(tiny_config)
    before = {name: value.clone() for name, value in block.state_dict().items()}
    compiled = CompiledBiMamba2(block, torch.bfloat16, torch.bfloat16)
    assert compiled.in_projs[0].weight.dtype == torch.bfloat16
    assert compiled.linear.weight.dtype == torch.bfloat16
    assert all(value.dtype == torch.float32 and torch.equal(value, before[name])
               for name, value in block.state_dict().items())
    x = torch.randn(3, 131, tiny_config.dim)
    with torch.inference_mode():
        expected = block(x)
        got = compiled(x.bfloat16())  # a bfloat16 input is taken as float32
    assert got.dtype == torch.float32
    error = (got - expected).abs().max() / (expected - x).abs().max()
    assert 0 < error <= 2e-2  # every projection rounded to bfloat16: close, not exact


@needs_compiler
def test_kernels_are_built_for_the_thread_count_they_run_with(tiny_config, tmp_path,
                                                              monkeypatch) -> None:
    # torch 2.11's on-disk cache served kernels built for another thread count (see
    # cpu_compiled._compiled); here a fresh cache sees one count, then another
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    block = _trained_like_block(tiny_config)
    compiled = CompiledBiMamba2(block)
    x = torch.randn(2, 29, tiny_config.dim)  # a length no other test compiles
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            for count in (1, 2):
                torch.set_num_threads(count)
                expected, got = block(x), compiled(x)
                assert (got - expected).abs().max() <= 1e-5 * (expected - x).abs().max()
    finally:
        torch.set_num_threads(threads)
    code = "".join(path.read_text() for path in tmp_path.rglob("*.py"))
    assert "num_threads(2)" in code  # the 2-thread call did not reuse the serial kernels
