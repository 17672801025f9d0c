"""The execution plan (`network/plan.py`): which code runs, from config keys and device."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from bsmamba2_plugin import BSMamba2Config
from bsmamba2_plugin.network import plan as plan_module
from bsmamba2_plugin.network.plan import CPU_TOKENS_PER_GROUP, resolve_plan


def test_on_a_cpu_the_reference_backend_runs_grouped_and_selective_is_whole_blocks() -> None:
    plan = resolve_plan(BSMamba2Config.paper(), "cpu")
    assert (plan.backend, plan.fused_block, plan.short_scan, plan.recompute,
            plan.cpu_tokens_per_group) == ("reference", False, False, "none",
                                           CPU_TOKENS_PER_GROUP)
    selective = resolve_plan(BSMamba2Config.paper(gradient_checkpointing="selective"), "cpu")
    assert selective.recompute == "block"
    assert resolve_plan(BSMamba2Config.paper(gradient_checkpointing=True),
                        torch.device("cpu")).recompute == "block"


@pytest.mark.parametrize("changes, fused, short, recompute", [
    ({"gradient_checkpointing": "selective"}, True, True, "selective"),
    ({"gradient_checkpointing": "selective", "short_scan": False}, True, False, "selective"),
    ({"gradient_checkpointing": "selective", "fused_block": False}, False, False, "block"),
    ({}, True, True, "none"),
])
def test_on_the_kernel_backend_the_config_keys_choose_the_path(monkeypatch, changes, fused,
                                                               short, recompute) -> None:
    monkeypatch.setattr(plan_module, "resolve_backend", lambda requested, device: "kernel")
    plan = resolve_plan(BSMamba2Config.paper(**changes), "cuda")
    assert (plan.backend, plan.fused_block, plan.short_scan, plan.recompute,
            plan.cpu_tokens_per_group) == ("kernel", fused, short, recompute, None)


def test_describe_gives_one_line_per_decision(monkeypatch) -> None:
    monkeypatch.setattr(plan_module, "resolve_backend", lambda requested, device: "kernel")
    plan = resolve_plan(BSMamba2Config.paper(gradient_checkpointing="selective"), "cuda")
    assert plan.describe("mamba_ssm 2.3.2") == [
        "backend: kernel (mamba_ssm 2.3.2)",
        "BiMamba2 block: both directions in one pass (fused)",
        "band axis (<= 64 steps): short_scan",
        "time axis (> 64 steps): long_scan forward, mamba_ssm backward",
        "gated norm: ours (gated_norm.py); the gate read from the projection (inference, "
        "selective)",
        "while training: block input and scan output kept, the rest recomputed"]
    long = resolve_plan(BSMamba2Config.paper(long_scan=True), "cuda")
    assert long.long_scan and ("time axis (> 64 steps): long_scan forward, mamba_ssm backward"
                               in long.describe())
    assert not resolve_plan(BSMamba2Config.paper(long_scan=True, fused_block=False),
                            "cuda").long_scan  # the fused kernel path only
    theirs = resolve_plan(BSMamba2Config.paper(gated_norm="mamba_ssm"), "cuda")
    assert theirs.gated_norm == "mamba_ssm" and \
        "gated norm: mamba_ssm's rmsnorm_fn" in theirs.describe()
    assert dataclasses.replace(plan, fused_block=False).describe()[1:] == [
        "BiMamba2 block: one direction after the other",
        "while training: block input and scan output kept, the rest recomputed"]


def test_an_explicit_kernel_backend_off_cuda_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="model.backend is 'kernel'.*Fix: move the model"):
        resolve_plan(BSMamba2Config.paper(backend="kernel"), "cpu")


def test_the_packed_gate_needs_our_norm_on_the_fused_kernel_path(monkeypatch) -> None:
    monkeypatch.setattr(plan_module, "resolve_backend", lambda requested, device: "kernel")
    packed = resolve_plan(BSMamba2Config.paper(packed_gate=True), "cuda")
    assert packed.packed_gate and (
        "gated norm: ours (gated_norm.py); the gate read from the projection (inference, "
        "selective)" in packed.describe())
    assert resolve_plan(BSMamba2Config.paper(), "cuda").packed_gate  # on by default
    assert not resolve_plan(BSMamba2Config.paper(packed_gate=False), "cuda").packed_gate
    for other in ({"gated_norm": "mamba_ssm"}, {"fused_block": False}):
        assert not resolve_plan(BSMamba2Config.paper(packed_gate=True, **other),
                                "cuda").packed_gate


@pytest.mark.parametrize("key, bad", [("short_scan", "no"), ("long_scan", "yes"),
                                      ("packed_gate", 1)])
def test_the_kernel_path_switches_are_config_keys_on_by_default(key, bad) -> None:
    assert getattr(BSMamba2Config.paper(), key) is True  # on by default
    assert getattr(BSMamba2Config.paper(**{key: False}), key) is False
    with pytest.raises(TypeError, match=rf"model.{key}: expected true or false, got {bad!r}"):
        BSMamba2Config.paper(**{key: bad})


def test_the_block_passes_the_plan_to_the_fused_path(monkeypatch) -> None:
    """`BiMamba2.forward` on the fused kernel path hands every plan field the fused call
    takes to `bimamba2_fused` (a stand-in records them)."""
    from bsmamba2_plugin.network import bimamba2_fused as fused_module
    from bsmamba2_plugin.network.mamba2 import BiMamba2

    seen = {}

    def record(block, x, **kwargs):
        seen.update(kwargs)
        return x

    monkeypatch.setattr(plan_module, "resolve_backend", lambda requested, device: "kernel")
    monkeypatch.setattr(fused_module, "bimamba2_fused", record)
    config = BSMamba2Config(dim=32, depth=1, headdim=16, d_state=16, stft_n_fft=64,
                            stft_win_length=64, stft_hop_length=16, freqs_per_bands=(33,),
                            packed_gate=False, long_scan=False, short_scan=False)
    block = BiMamba2(config)
    plan = resolve_plan(config, "cuda")
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    block.forward(torch.zeros(1, 5, 32), plan=plan)
    assert seen == {"recompute": False, "short_scan": False, "long_scan": False,
                    "long_scan_backward": None, "gated_norm": "bsmamba2",
                    "packed_gate": False}
    config = config.replace(long_scan=True, long_scan_backward="bsmamba2")
    BiMamba2(config).forward(torch.zeros(1, 5, 32), plan=resolve_plan(config, "cuda"))
    assert (seen["long_scan"], seen["long_scan_backward"]) == (True, "bsmamba2")


def test_the_time_axis_backward_is_mamba_ssms_unless_asked_and_only_with_long_scan(
        monkeypatch) -> None:
    monkeypatch.setattr(plan_module, "resolve_backend", lambda requested, device: "kernel")
    assert resolve_plan(BSMamba2Config.paper(), "cuda").long_scan_backward == "mamba_ssm"
    ours = resolve_plan(BSMamba2Config.paper(long_scan_backward="bsmamba2"), "cuda")
    assert ours.long_scan_backward == "bsmamba2"
    assert "time axis (> 64 steps): long_scan forward, long_scan backward" in ours.describe()
    for other in ({"long_scan": False}, {"fused_block": False}):
        assert resolve_plan(BSMamba2Config.paper(long_scan_backward="bsmamba2", **other),
                            "cuda").long_scan_backward is None
    monkeypatch.undo()  # the reference backend
    assert resolve_plan(BSMamba2Config.paper(long_scan_backward="bsmamba2"),
                        "cpu").long_scan_backward is None
    with pytest.raises(ValueError, match="model.long_scan_backward: expected one of "
                                         "mamba_ssm, bsmamba2, got 'ours'"):
        BSMamba2Config.paper(long_scan_backward="ours")
