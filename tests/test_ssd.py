"""`ssd_reference` against a float64 step-by-step recurrence; backend selection."""

from __future__ import annotations

import logging
import math
import sys
import textwrap

import pytest
import torch
from torch.nn import functional as F

from bsmamba2_plugin.network import ssd
from bsmamba2_plugin.network.ssd import (
    describe_backend,
    gated_rmsnorm_reference,
    load_mamba_triton,
    resolve_backend,
    ssd_reference,
)

LENGTHS = [1, 2, 61, 62, 63, 255, 256, 257, 801]


def recurrence(x, dt, A, B, C, D, dt_bias):
    """S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T ; y_t = S_t C_t + D x_t, one step at a time."""
    batch, length, heads, headdim = x.shape
    groups, dstate = B.shape[2:]
    dt = F.softplus(dt + dt_bias)
    B = B.repeat_interleave(heads // groups, dim=2)
    C = C.repeat_interleave(heads // groups, dim=2)
    state = x.new_zeros(batch, heads, headdim, dstate)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + (dt[:, t, :, None, None] * x[:, t, :, :, None]
                                 * B[:, t, :, None, :])
        ys.append((state * C[:, t, :, None, :]).sum(-1) + D[:, None] * x[:, t])
    return torch.stack(ys, dim=1)


def random_inputs(length: int, groups: int = 1, dt_shift: float = -1.0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    batch, heads, headdim, dstate = 2, 4, 8, 16
    return dict(
        x=torch.randn(batch, length, heads, headdim, generator=gen),
        dt=torch.randn(batch, length, heads, generator=gen) + dt_shift,
        A=-torch.exp(torch.rand(heads, generator=gen) * math.log(16)),
        B=torch.randn(batch, length, groups, dstate, generator=gen),
        C=torch.randn(batch, length, groups, dstate, generator=gen),
        D=torch.randn(heads, generator=gen),
        dt_bias=0.5 * torch.randn(heads, generator=gen),
    )


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def run_with_grads(fn, inputs: dict, upstream: torch.Tensor):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    y = fn(leaves["x"], leaves["dt"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
           leaves["dt_bias"])
    (y * upstream.to(y.dtype)).sum().backward()
    return y.detach(), {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("length", LENGTHS)
def test_reference_matches_float64_recurrence_forward_and_all_gradients(length: int) -> None:
    inputs = random_inputs(length, seed=length)
    upstream = torch.randn(2, length, 4, 8, generator=torch.Generator().manual_seed(1))
    y, grads = run_with_grads(
        lambda x, dt, A, B, C, D, dt_bias: ssd_reference(x, dt, A, B, C, D, dt_bias=dt_bias),
        inputs, upstream)
    y64, grads64 = run_with_grads(recurrence, {k: v.double() for k, v in inputs.items()},
                                  upstream.double())
    assert y.dtype == torch.float32
    assert rel_err(y, y64) <= 1e-5
    for name, grad64 in grads64.items():
        if name == "A" and length == 1:  # the state starts at zero: A has no effect yet
            assert grads[name].abs().max() == 0 and grad64.abs().max() == 0
            continue
        assert rel_err(grads[name], grad64) <= 1e-5, name


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 300])
@pytest.mark.parametrize("groups", [1, 2])
def test_any_chunk_size_and_grouping_give_the_same_scan(chunk_size: int, groups: int) -> None:
    inputs = random_inputs(257, groups=groups, dt_shift=1.0)  # large steps: strong decay
    y = ssd_reference(**{k: v for k, v in inputs.items() if k != "dt_bias"},
                      dt_bias=inputs["dt_bias"], chunk_size=chunk_size)
    y64 = recurrence(*(inputs[k].double() for k in ("x", "dt", "A", "B", "C", "D", "dt_bias")))
    assert rel_err(y, y64) <= 1e-5


def test_inference_path_equals_autograd_path() -> None:
    inputs = random_inputs(300)
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C", "D")]
    with torch.inference_mode():
        fast = ssd_reference(*args, dt_bias=inputs["dt_bias"])
    slow = ssd_reference(*[a.clone().requires_grad_() for a in args], dt_bias=inputs["dt_bias"])
    assert rel_err(fast, slow.detach()) <= 1e-6


def test_float64_inputs_stay_float64_and_half_inputs_return_half() -> None:
    inputs = random_inputs(70)
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C", "D")]
    y64 = ssd_reference(*[a.double() for a in args], dt_bias=inputs["dt_bias"].double())
    assert y64.dtype == torch.float64
    assert rel_err(y64, recurrence(*[a.double() for a in args],
                                   inputs["dt_bias"].double())) < 1e-12
    half = ssd_reference(inputs["x"].bfloat16(), *args[1:], dt_bias=inputs["dt_bias"])
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()


def test_bad_shapes_are_reported_before_any_reshape() -> None:
    inputs = random_inputs(10)
    with pytest.raises(ValueError, match="dt must be"):
        ssd_reference(inputs["x"], inputs["dt"][:, :5], inputs["A"], inputs["B"], inputs["C"])


def test_gated_rmsnorm_in_place_equals_out_of_place() -> None:
    y, z, w = torch.randn(3, 5, 32), torch.randn(3, 5, 32), torch.randn(32)
    expected = gated_rmsnorm_reference(y, z, w)
    g = y * F.silu(z)
    direct = g * torch.rsqrt(g.square().mean(-1, keepdim=True) + 1e-5) * w
    assert torch.allclose(expected, direct, atol=1e-6)
    with torch.inference_mode():
        inplace = gated_rmsnorm_reference(y.clone(), z.clone(), w, inplace=True)
    assert torch.allclose(inplace, expected, atol=1e-6)


# ----------------------------------------------------------------- backend choice
def test_auto_picks_reference_on_cpu_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    ssd._decided.cache_clear()
    with caplog.at_level(logging.INFO, logger="bsmamba2_plugin"):
        assert resolve_backend("auto", "cpu") == "reference"
        assert resolve_backend("auto", torch.device("cpu")) == "reference"
    messages = [r.getMessage() for r in caplog.records if "backend" in r.getMessage()]
    assert len(messages) == 1 and "reference" in messages[0] and "CUDA" in messages[0]


def test_explicit_kernel_on_cpu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="need CUDA"):
        describe_backend("kernel", "cpu")


def test_unknown_backend_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="auto, reference, kernel"):
        describe_backend("triton", "cpu")


@pytest.fixture
def fake_mamba(tmp_path, monkeypatch):
    """A fake mamba_ssm + triton on sys.path; `broken_top` makes its __init__ fail the way
    a build without the CUDA extension does."""

    def install(broken_top: bool, halves: bool = False) -> None:
        pkg = tmp_path / "mamba_ssm"
        (pkg / "ops" / "triton").mkdir(parents=True, exist_ok=True)
        top = "import selective_scan_cuda\n" if broken_top else ""
        (pkg / "__init__.py").write_text(top + "__version__ = '2.2.4'\n")
        (pkg / "ops" / "__init__.py").write_text("")
        (pkg / "ops" / "triton" / "__init__.py").write_text("")
        (pkg / "ops" / "triton" / "ssd_combined.py").write_text(textwrap.dedent("""
            def mamba_chunk_scan_combined(*args, **kwargs):
                return "scan"
        """) + (textwrap.dedent("""
            def _mamba_chunk_scan_combined_fwd(*args, **kwargs):
                return ("y", "out_x", "dt", "dA_cumsum", "states", "final_states")

            def _mamba_chunk_scan_combined_bwd(*args, **kwargs):
                return ("dx", "ddt", "dA", "dB", "dC", "dD", "dz", "ddt_bias", "dinit")
        """) if halves else ""))
        (pkg / "ops" / "triton" / "layernorm_gated.py").write_text(textwrap.dedent("""
            def rmsnorm_fn(*args, **kwargs):
                return "norm"
        """))
        (tmp_path / "triton").mkdir(exist_ok=True)
        (tmp_path / "triton" / "__init__.py").write_text("")
        dist = tmp_path / "mamba_ssm-2.2.4.dist-info"
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mamba_ssm\nVersion: 2.2.4\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        names = [m for m in sys.modules if m.split(".")[0] in ("mamba_ssm", "triton")]
        # where each module came from, read before any is removed (a namespace package's
        # __path__ would be recomputed from its removed parent)
        origins = {name: str(getattr(sys.modules[name].__spec__, "origin", None)
                             or getattr(sys.modules[name], "__file__", None) or "")
                   for name in names}
        for name in names:
            if origins[name].startswith(str(tmp_path)):
                del sys.modules[name]  # an earlier install's fake: never to be restored
            else:
                monkeypatch.delitem(sys.modules, name)  # the real one comes back afterwards
        load_mamba_triton.cache_clear()

    yield install
    load_mamba_triton.cache_clear()
    for name in [m for m in sys.modules if m.split(".")[0] in ("mamba_ssm", "triton")]:
        del sys.modules[name]


def test_kernels_load_from_a_normal_mamba_ssm(fake_mamba) -> None:
    fake_mamba(broken_top=False)
    ops = load_mamba_triton()
    assert ops.mamba_chunk_scan_combined() == "scan" and ops.rmsnorm_fn() == "norm"
    assert ops.version == "2.2.4" and ops.how == "mamba_ssm package"


def test_scan_halves_come_from_mamba_ssm_when_it_has_them(fake_mamba) -> None:
    """gradient_checkpointing "selective" calls mamba_ssm's private forward and backward
    halves of the scan; a mamba_ssm without them still loads (the block then recomputes
    the scan under autograd)."""
    fake_mamba(broken_top=False)
    assert not hasattr(load_mamba_triton(), "scan_halves")
    fake_mamba(broken_top=False, halves=True)  # the same fake, now with the halves
    scan_fwd, scan_bwd = load_mamba_triton().scan_halves
    kwargs = {"D": None, "dt_bias": None, "dt_softplus": True}
    assert scan_fwd(*range(6), **kwargs) == "y"
    assert scan_bwd(*range(8), **kwargs) == ("dx", "ddt", "dA", "dB", "dC", "dD", "ddt_bias")


def test_kernels_load_from_a_mamba_ssm_built_without_cuda(fake_mamba) -> None:
    fake_mamba(broken_top=True)
    ops = load_mamba_triton()
    assert ops.mamba_chunk_scan_combined() == "scan"
    assert "Triton sub-modules only" in ops.how and "selective_scan_cuda" in ops.how


def test_missing_mamba_ssm_gives_the_install_hint(monkeypatch) -> None:
    monkeypatch.setattr(ssd.importlib.util, "find_spec", lambda name: None)
    load_mamba_triton.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match="MAMBA_SKIP_CUDA_BUILD"):
            describe_backend("kernel", "cuda")
        assert describe_backend("auto", "cuda")[0] == "reference"
    finally:
        load_mamba_triton.cache_clear()


def test_autotune_cache_is_turned_on_unless_the_user_chose(monkeypatch) -> None:
    """mamba_ssm's kernels are autotuned once per machine, not once per run; an explicit
    TRITON_CACHE_AUTOTUNING (either value) is left to Triton."""
    import sys
    import types

    from bsmamba2_plugin.network import ssd

    fake = types.ModuleType("triton")
    fake.knobs = types.SimpleNamespace(autotuning=types.SimpleNamespace(cache=False))
    monkeypatch.setitem(sys.modules, "triton", fake)
    monkeypatch.delenv("TRITON_CACHE_AUTOTUNING", raising=False)
    ssd._cache_autotuning()
    assert fake.knobs.autotuning.cache is True
    fake.knobs.autotuning.cache = False
    monkeypatch.setenv("TRITON_CACHE_AUTOTUNING", "0")
    ssd._cache_autotuning()
    assert fake.knobs.autotuning.cache is False
