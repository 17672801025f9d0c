"""Long files must not eat memory (issue 12): msst-inference and our chunked inference.

msst 0.1.0 held about ten full-length copies of a track (a 60-minute file peaked at
12.2 GB). The streamed demix gives msst's numbers bit for bit, and peak memory grows by
a few copies of the audio per second of audio, not ten. The memory tests run the real
code in a fresh process with the model replaced by a cheap stand-in (the model only ever
sees one batch of chunks, so its memory does not grow with the file).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

msst = pytest.importorskip("msst")
pytest.importorskip("librosa")

from bsmamba2_plugin.inference.chunked import separate
from bsmamba2_plugin.msst_integration import bridge, streaming

pytestmark = pytest.mark.msst
REPO = Path(__file__).resolve().parents[1]
FLOAT32_STEREO_BYTES_PER_SECOND = 44100 * 2 * 4


class _Toy(torch.nn.Module):
    """(b, c, t) -> (b, stems, c, t), nonlinear so that windows and order matter."""

    def __init__(self, n_stems: int) -> None:
        super().__init__()
        self.n_stems = n_stems
        self.w = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x * self.w * (k + 1) + 0.01 * x ** 2 for k in range(self.n_stems)], 1)


def _config(chunk: int, overlap: int, batch: int, target: str | None):
    from ml_collections import ConfigDict

    return ConfigDict({"audio": {"chunk_size": chunk, "num_channels": 2},
                       "inference": {"num_overlap": overlap, "batch_size": batch},
                       "training": {"instruments": ["vocals", "other"],
                                    "target_instrument": target, "use_amp": False}})


def _msst_demix():
    from msst.utils import model_utils

    bridge.install()
    return getattr(model_utils.demix, "__bsmamba2_original__", model_utils.demix)


@pytest.mark.parametrize("length,overlap,batch,channels,target", [
    *itertools.product([1, 99, 250, 1001], [2, 4], [1, 3], [1, 2], [None]),
    (2500, 2, 2, 2, "vocals"), (777, 4, 1, 1, "vocals")])
def test_streamed_overlap_add_gives_msst_numbers_bit_for_bit(length, overlap, batch, channels,
                                                             target) -> None:
    """num_overlap > 1: msst's overlap-add, bit for bit, except the track's first chunk
    never fades in: without border padding (length <= 2 borders) msst kept that fade-in
    when the first batch held several chunks, so its first sample came out 0/0 -> 0."""
    mix = np.random.default_rng(length).standard_normal((channels, length)).astype(np.float32)
    config, model = _config(100, overlap, batch, target), _Toy(2)
    expected = _msst_demix()(config, model, mix.copy(), "cpu", "bsmamba2")
    got = streaming.demix_streaming(config, model, mix, "cpu", "bsmamba2")
    assert list(got) == list(expected)
    border, fade = 100 - 100 // overlap, 100 // 10
    exact_from = 0 if length > 2 * border else fade
    for name in expected:
        assert got[name].shape == expected[name].shape
        np.testing.assert_array_equal(got[name][:, exact_from:], expected[name][:, exact_from:])
        head, theirs = got[name][:, :exact_from], expected[name][:, :exact_from]
        assert (head != 0).all()  # the random mixture has no 0, nor does the toy's output
        zeroed = theirs == 0
        np.testing.assert_allclose(head[~zeroed], theirs[~zeroed], rtol=1e-6)


@pytest.mark.parametrize("length,batch,channels,target", [
    *itertools.product([1, 99, 100, 250, 1001], [1, 3], [1, 2], [None]),
    (2500, 2, 2, "vocals"), (777, 1, 1, "vocals")])
def test_streamed_num_overlap_1_is_the_paper_protocol(length, batch, channels, target) -> None:
    """num_overlap 1: the chunked separation of `bsmamba2 separate` / `evaluate` (nothing
    windowed, zero-padded last chunk), so no sample is zeroed at a chunk edge; msst's own
    demix zeroed one or two samples at every boundary."""
    mix = np.random.default_rng(length).standard_normal((channels, length)).astype(np.float32)
    config, model = _config(100, 1, batch, target), _Toy(2)
    got = streaming.demix_streaming(config, model, mix, "cpu", "bsmamba2")
    stereo = torch.from_numpy(mix).expand(2, -1) if channels == 1 else torch.from_numpy(mix)
    paper = separate(model, stereo.contiguous(), 100, overlap=1, batch_size=batch)
    names = ["vocals"] if target else ["vocals", "other"]
    assert list(got) == names
    for k, name in enumerate(names):
        np.testing.assert_array_equal(got[name], paper[k, :channels].numpy())
    if length > 100:
        theirs = _msst_demix()(config, model, mix.copy(), "cpu", "bsmamba2")
        assert (theirs["vocals"][:, 99:101] == 0).any()  # msst zeroed the first edge
        assert (got["vocals"] != 0).all()


def test_streamed_demix_reads_each_chunk_without_touching_the_whole_track() -> None:
    """Each chunk is gathered from its own span of the track: an index_select over the whole
    (transposed) track copied all of it per chunk, quadratic in the length (a 5-minute file
    spent 39 of 46 s there with a free stand-in model)."""
    from torch.overrides import TorchFunctionMode

    class Gathers(TorchFunctionMode):
        widths: list[int] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.Tensor.index_select, torch.index_select):
                self.widths.append(args[0].shape[-1])
            return func(*args, **(kwargs or {}))

    samples = np.random.default_rng(0).standard_normal((5000, 2)).astype(np.float32)
    mix = samples.T  # (channels, samples) view of a (samples, channels) buffer, like msst's
    config, model = _config(100, 2, 2, None), _Toy(2)
    expected = _msst_demix()(config, model, mix.copy(), "cpu", "bsmamba2")
    with Gathers() as mode:
        got = streaming.demix_streaming(config, model, mix, "cpu", "bsmamba2")
    assert mode.widths and max(mode.widths) <= 100, max(mode.widths)
    np.testing.assert_array_equal(got["vocals"], expected["vocals"])


def test_msst_demix_is_patched_for_plugin_types_only() -> None:
    import msst._inference
    import msst._validation
    from msst.utils import model_utils

    bridge.install()
    for module, name in ((model_utils, "demix"), (msst._validation, "demix"),
                         (model_utils, "bigshifts_wrapper"), (msst._inference,
                                                               "bigshifts_wrapper"),
                         (msst._inference, "separate_audio")):
        assert getattr(getattr(module, name), "__bsmamba2_original__", None) is not None, name
    mix = np.random.default_rng(0).standard_normal((2, 300)).astype(np.float32)
    config, model = _config(100, 2, 2, None), _Toy(2)
    ours = model_utils.demix(config, model, mix, "cpu", "bsmamba2")
    theirs = model_utils.demix(config, model, mix, "cpu", "mel_band_roformer")
    # ours: a (samples, channels) buffer, which soundfile writes without copying
    assert ours["vocals"].T.flags.c_contiguous
    assert not theirs["vocals"].T.flags.c_contiguous  # msst's own (channels, samples) array


def test_streamed_demix_refuses_nan_input_and_nan_output() -> None:
    config = _config(100, 2, 2, None)
    mix = np.zeros((2, 500), dtype=np.float32)
    mix[1, 321] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite sample at sample 321"):
        streaming.demix_streaming(config, _Toy(2), mix, "cpu", "bsmamba2")

    class Broken(_Toy):
        def forward(self, x):
            return super().forward(x) * float("nan")

    with pytest.raises(RuntimeError, match="returned NaN or infinite values"):
        streaming.demix_streaming(config, Broken(2), np.ones((2, 500), np.float32), "cpu",
                                  "bsmamba2")


@pytest.mark.parametrize("overlap", [1, 2, 4])
def test_separate_matches_the_whole_track_reference(overlap: int) -> None:
    """The streamed `separate` equals the padded, unfolded whole-track computation."""
    import math

    from torch.nn import functional as F

    model, chunk = _Toy(2), 64
    for samples in (1, 63, 64, 65, 500):
        mixture = torch.randn(2, samples)
        hop, lead = chunk // overlap, chunk - chunk // overlap
        n = math.ceil((samples + lead) / hop)
        total = (n - 1) * hop + chunk
        chunks = F.pad(mixture, (lead, total - lead - samples)).unfold(-1, chunk, hop)
        window = torch.hann_window(chunk, periodic=True) if overlap > 1 else torch.ones(chunk)
        out, weight = torch.zeros(2, 2, total), torch.zeros(total)
        for k in range(n):
            out[..., k * hop:k * hop + chunk] += model(chunks[:, k][None])[0] * window
            weight[k * hop:k * hop + chunk] += window
        if overlap > 1:
            out = out / weight.clamp_min(1e-8)
        got = separate(model, mixture, chunk, overlap=overlap, batch_size=3)
        torch.testing.assert_close(got, out[..., lead:lead + samples], rtol=0, atol=1e-6)


# ------------------------------------------------------------------ memory
_MSST_RUN = """
import json, resource, sys
import numpy as np, soundfile as sf, torch
from bsmamba2_plugin.network.model import BSMamba2
BSMamba2.forward = lambda self, x: 0.5 * x.unsqueeze(1)  # stand-in: memory is the host's
seconds, folder, config, checkpoint = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rng = np.random.default_rng(0)
with sf.SoundFile(f"{folder}/in/song.wav", "w", 44100, 2, "PCM_16") as handle:
    for _ in range(int(seconds)):  # block by block: the test's own data is not the peak
        handle.write((rng.standard_normal((44100, 2)) * 3000).astype(np.int16))
import msst._inference
msst._inference.proc_folder({"model_type": "bsmamba2", "config_path": config,
    "start_check_point": checkpoint, "input_folder": f"{folder}/in",
    "store_dir": f"{folder}/out", "force_cpu": True, "extract_instrumental": True,
    "disable_detailed_pbar": True})
print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

_SEPARATE_RUN = """
import json, resource, sys
import torch
from bsmamba2_plugin.inference.chunked import separate
class StandIn(torch.nn.Module):
    def forward(self, x):
        return 0.5 * x.unsqueeze(1)
mixture = torch.randn(2, int(float(sys.argv[1]) * 44100))
stems = separate(StandIn(), mixture, 44100, overlap=int(sys.argv[2]), batch_size=2)
assert stems.shape == (1, *mixture.shape)
print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _peak_bytes(script: str, *argv: str) -> int:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *argv],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_kb"] * 1024


def _copies_per_second(script: str, short: float, long: float, *argv: str) -> float:
    """Peak RSS growth per second of audio, in float32 stereo copies of the audio."""
    grow = _peak_bytes(script, str(long), *argv) - _peak_bytes(script, str(short), *argv)
    return grow / ((long - short) * FLOAT32_STEREO_BYTES_PER_SECOND)


def test_msst_inference_peak_memory_grows_by_few_copies_of_the_audio(tmp_path) -> None:
    """msst 0.1.0 alone: ~10 float32 copies (input, stems, instrumental, buffers)."""
    from bsmamba2_plugin.msst_integration.registry import build_model

    config = REPO / "configs" / "config_tiny_bsmamba2.yaml"
    import yaml

    model = build_model(yaml.safe_load(config.read_text())["model"])
    torch.save(model.state_dict(), tmp_path / "tiny.ckpt")
    copies = []
    for seconds in (20.0, 140.0):
        folder = tmp_path / f"run{int(seconds)}"
        (folder / "in").mkdir(parents=True)
        copies.append(_peak_bytes(_MSST_RUN, str(seconds), str(folder), str(config),
                                  str(tmp_path / "tiny.ckpt")))
    per_copy = 120.0 * FLOAT32_STEREO_BYTES_PER_SECOND
    growth = (copies[1] - copies[0]) / per_copy
    # librosa's input, the vocals, the instrumental: 3 copies (+ allocator slack)
    assert growth < 4.5, f"peak RSS grew by {growth:.1f} float32 copies of the audio"


@pytest.mark.parametrize("overlap", [1, 2])
def test_chunked_separation_peak_memory_is_input_plus_output(overlap: int) -> None:
    growth = _copies_per_second(_SEPARATE_RUN, 20.0, 140.0, str(overlap))
    # the input and one stem: 2 copies (the old code padded and copied: 4-5)
    assert growth < 2.8, f"peak RSS grew by {growth:.1f} float32 copies of the audio"
