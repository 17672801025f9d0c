"""The STFT / network / iSTFT split, the traceable network, ONNX export and onnxruntime."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from bsmamba2_plugin.network.model import BSMamba2
from bsmamba2_plugin.network.portable import PortableNetwork, ssd_portable
from bsmamba2_plugin.network.ssd import ssd_reference

HAS_ONNX = all(importlib.util.find_spec(name) is not None
               for name in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="needs the onnx extra "
                                "(onnx, onnxscript, onnxruntime)")


def _ssd_inputs(length: int, ngroups: int, dtype: torch.dtype) -> tuple:
    batch, nheads, headdim, dstate = 2, 4, 3, 5
    x = torch.randn(batch, length, nheads, headdim, dtype=dtype)
    dt = torch.randn(batch, length, nheads, dtype=dtype)
    A = -torch.rand(nheads, dtype=dtype) * 3 - 0.1
    B = torch.randn(batch, length, ngroups, dstate, dtype=dtype)
    C = torch.randn(batch, length, ngroups, dstate, dtype=dtype)
    D = torch.randn(nheads, dtype=dtype)
    dt_bias = torch.randn(nheads, dtype=dtype)
    return x, dt, A, B, C, D, dt_bias


@pytest.mark.parametrize("length", [1, 7, 16, 17, 62, 150])
@pytest.mark.parametrize("ngroups", [1, 2])
def test_ssd_portable_equals_ssd_reference_in_float64(length: int, ngroups: int) -> None:
    x, dt, A, B, C, D, dt_bias = _ssd_inputs(length, ngroups, torch.float64)
    expected = ssd_reference(x, dt, A, B, C, D, chunk_size=16, dt_bias=dt_bias)
    for chunk in (None, 16, 5):  # several chunkings, one answer
        got = ssd_portable(x, dt, A, B, C, D, chunk_size=chunk, dt_bias=dt_bias)
        assert got.shape == expected.shape and got.dtype == torch.float64
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_ssd_portable_float32_within_float32_rounding_of_reference() -> None:
    x, dt, A, B, C, D, dt_bias = _ssd_inputs(300, 1, torch.float64)
    exact = ssd_reference(x, dt, A, B, C, D, dt_bias=dt_bias)
    got = ssd_portable(*(t.float() for t in (x, dt, A, B, C, D)), dt_bias=dt_bias.float())
    assert got.dtype == torch.float32
    assert (got.double() - exact).abs().max() <= 1e-5 * exact.abs().max()


def test_forward_is_analyse_network_synthesise(tiny_config) -> None:
    model = BSMamba2(tiny_config).eval()
    mixture = torch.randn(2, 2, 1000)
    with torch.no_grad():
        spec, features = model.analyse(mixture)
        staged = model.synthesise(spec, model.network(features), mixture.shape[-1])
        assert not features.is_complex()
        torch.testing.assert_close(staged, model(mixture), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 2), (2, 9), (3, 70)])
def test_portable_network_matches_model_network(tiny_config, shape) -> None:
    model = BSMamba2(tiny_config).eval()
    features = torch.randn(*shape, sum(tiny_config.band_widths))
    with torch.no_grad():
        expected = model.network(features)
        got = PortableNetwork(model)(features)
    assert got.shape == expected.shape == (shape[0], 1, shape[1], features.shape[-1])
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_missing_onnx_names_the_extra(tiny_config, tmp_path, monkeypatch) -> None:
    from bsmamba2_plugin.inference import onnx_runtime

    real_import = importlib.import_module

    def fake_import(name: str, *args, **kwargs):
        if name in ("onnx", "onnxruntime", "onnxscript"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(onnx_runtime.importlib, "import_module", fake_import)
    with pytest.raises(ModuleNotFoundError, match=r"bsmamba2-plugin\[onnx\]"):
        onnx_runtime.export_onnx(BSMamba2(tiny_config), tmp_path / "m.onnx")
    with pytest.raises(ModuleNotFoundError, match=r"bsmamba2-plugin\[onnx\]"):
        onnx_runtime.OnnxSeparator.from_file(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.fixture
def exported(tiny_config, tmp_path):
    from bsmamba2_plugin.inference.onnx_runtime import OnnxSeparator, export_onnx

    model = BSMamba2(tiny_config).eval()
    path = export_onnx(model, tmp_path / "tiny.onnx", stems=["vocals"], sample_rate=8000)
    return model, path, OnnxSeparator.from_file(path, threads=1)


@needs_onnx
@pytest.mark.parametrize("shape", [(1, 2), (2, 33), (3, 150)])
def test_onnxruntime_network_within_1e_4_of_peak(exported, shape) -> None:
    """Dynamic batch and frames: shapes other than the traced (2, 101) one."""
    model, _, separator = exported
    features = torch.randn(*shape, sum(model.config.band_widths)) * 3
    with torch.no_grad():
        expected = model.network(features).numpy()
    got = separator.session.run(["masks"], {"features": features.numpy()})[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


@needs_onnx
def test_onnx_sessions_run_without_buffer_reuse(exported) -> None:
    """onnxruntime's buffer-reuse plan kept nearly every intermediate of the paper model
    alive (15.5 vs 3.5 GB at depth 2 on 4 s: benchmarks/onnx_memory_probe.py
    --no-mem-reuse); every session the plugin opens has it off, the thread count kept."""
    _, _, separator = exported
    options = separator.session.get_session_options()
    assert options.enable_mem_reuse is False
    assert options.intra_op_num_threads == 1


@needs_onnx
def test_onnx_separator_matches_pytorch_waveforms(exported) -> None:
    model, path, separator = exported
    from bsmamba2_plugin.inference.onnx_runtime import read_onnx_metadata

    config, stems, rate = read_onnx_metadata(path)
    assert config == model.config and stems == ["vocals"] and rate == 8000
    mixture = torch.randn(2, 2, 3001)
    with torch.no_grad():
        expected = model(mixture)
    got = separator(mixture)
    assert got.shape == expected.shape == (2, 1, 2, 3001)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


@needs_onnx
def test_cli_export_and_separate_with_onnx_and_checkpoint(tiny_config, tmp_path,
                                                          monkeypatch) -> None:
    import soundfile
    import yaml

    from bsmamba2_plugin.cli import main
    from bsmamba2_plugin.inference import cpu_variants

    # (the allocator setting is process-wide: not in the test process; tested on its own)
    monkeypatch.setattr(cpu_variants, "keep_freed_memory", lambda: True)

    model = BSMamba2(tiny_config).eval()
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump({
        "audio": {"sample_rate": 8000},
        "model": {**model.config.to_dict(), "freqs_per_bands": list(tiny_config.freqs_per_bands)},
        "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
    }))
    checkpoint = tmp_path / "tiny.ckpt"
    torch.save(model.state_dict(), checkpoint)
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export-onnx", str(config_path), str(checkpoint), str(onnx_path)]) == 0
    mixture = np.random.default_rng(0).standard_normal((5000, 2)).astype(np.float32) * 0.1
    wav = tmp_path / "mix.wav"
    soundfile.write(wav, mixture, 8000, subtype="FLOAT")
    common = [str(wav), "--chunk-seconds", "0.25", "--threads", "1"]
    assert main(["separate", "--onnx", str(onnx_path), *common[:1], str(tmp_path / "onnx"),
                 *common[1:]]) == 0
    assert main(["separate", "--checkpoint", str(checkpoint), "--config", str(config_path),
                 common[0], str(tmp_path / "torch"), *common[1:]]) == 0
    from_onnx, rate = soundfile.read(tmp_path / "onnx" / "vocals.wav")
    from_torch, _ = soundfile.read(tmp_path / "torch" / "vocals.wav")
    assert rate == 8000 and from_onnx.shape == from_torch.shape == mixture.shape
    assert np.abs(from_onnx - from_torch).max() <= 1e-4 * np.abs(from_torch).max()
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["instrumental.wav",
                                                                     "vocals.wav"]
    assert main(["separate", "--checkpoint", str(checkpoint), "--config", str(config_path),
                 common[0], str(tmp_path / "int8"), *common[1:], "--variant", "int8"]) == 0
    from_int8, _ = soundfile.read(tmp_path / "int8" / "vocals.wav")
    assert from_int8.shape == mixture.shape and not np.array_equal(from_int8, from_torch)
    assert main(["separate", "--onnx", str(onnx_path), common[0], str(tmp_path / "x"),
                 "--variant", "int8"]) == 2
