"""Memory-lean msst inference for plugin model types (issue 12, long files), without
clicks at chunk boundaries (issue 23).

msst 0.1.0 keeps many full-length copies of a track while it separates it: for one
stereo file through `msst-inference --extract_instrumental`, librosa's array, a
contiguous copy (`_prepare_audio`), `original_mix = prepared.copy()`, the shifted copy
and the unshifted result of `bigshifts_wrapper` (even for `--bigshifts 1`), the stacked
list and the mean in `np.mean(results)`, `torch.tensor(mix)`, `result`, `counter` and
`result / counter` in `demix`, the instrumental, and soundfile's contiguous copy of each
transposed stem. A 60-minute file (635 MB as 16-bit PCM, 1.27 GB as float32) peaked at
12.2 GB.

msst's generic `demix` also writes exact zeros at chunk boundaries. Its linear fade
window is 0 at both ends of a chunk, and it lifts the fade only per batch of chunks (the
first batch's fade-in when that batch holds a single chunk, the last batch's fade-out).
With `num_overlap: 1` nothing overlaps those ends, so 0/0 -> 0 there: the vocals are 0
for one or two samples at every chunk boundary, an audible click (22 zero runs in 21.5 s
with `config_tiny_bsmamba2.yaml`). With `num_overlap > 1` a track too short for msst's
border padding starts with a 0 when its first batch holds several chunks.

For plugin model types the bridge replaces three functions with the versions here:

- `demix`: msst's generic mode without full-length copies: chunks are read from the
  input without copying it (the border padding is virtual), each chunk's contribution is
  divided out as soon as no later chunk reaches it (no full-length `counter`), and the
  stems are written into one (stems, samples, channels) array whose transposed views are
  what soundfile writes without copying. A non-finite input sample or model output is an
  error, not a silent 0. What it computes:
  - `num_overlap: 1` is the paper's protocol (the same as `bsmamba2 separate` and
    `bsmamba2 evaluate`): non-overlapping chunks, nothing windowed, the last chunk
    zero-padded; every output sample is the model's output for its chunk, unchanged.
    The bridge sends msst's own model types here too for `num_overlap: 1` (except
    htdemucs, which msst runs in its own mode), so that no shipped config clicks.
  - `num_overlap > 1` is msst's overlap-add (linear fade, reflect border padding, reflect
    or zero padding of the last chunk, the window chosen per batch) with msst's numbers,
    except that the track's first chunk never fades in: without border padding (a track
    shorter than two borders) msst's first sample came out 0.
- `bigshifts_wrapper`: with `--bigshifts 1` (the default) it calls `demix` directly.
- `separate_audio` (`msst-inference`): without `--use_tta` and `inference.normalize`, it
  checks the input without copying it and writes the instrumental into a (samples,
  channels) array. Other settings run msst's own function (which still uses this demix).

What remains at 60 minutes: librosa's input array, the stems and the instrumental.
"""

from __future__ import annotations

import functools
import inspect
from numbers import Integral
from typing import Any

from ..errors import UserRuntimeError, UserValueError
from .common import cfg_get, is_plugin_type

__all__ = ["demix_streaming", "make_bigshifts_wrapper", "make_demix", "make_separate_audio",
           "paper_protocol_applies"]


def _positive_int(value: Any, path: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise UserValueError(f"{path}: expected a positive integer, got {value!r}. Fix: {fix}")
    return int(value)


def _as_tensor(mix: Any):
    """(channels, samples) float32 torch view of `mix`; a copy only when it is not float32."""
    import numpy as np
    import torch

    if isinstance(mix, torch.Tensor):
        tensor = mix.detach().to("cpu", torch.float32)
    else:
        array = np.asarray(mix)
        if array.dtype != np.float32 or any(s < 0 for s in array.strides):
            array = np.array(array, dtype=np.float32)
        tensor = torch.from_numpy(array)
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 2:
        raise ValueError(f"demix: expected audio of shape (channels, samples), got "
                         f"{tuple(tensor.shape)}.")
    if tensor.shape[-1] < 1:
        raise ValueError("demix: the audio has 0 samples; need at least 1.")
    return tensor


def demix_streaming(config: Any, model: Any, mix: Any, device: Any, model_type: str,
                    pbar: bool = False, *, mono_output: bool | None = None) -> dict[str, Any]:
    """msst's generic `demix`, streamed and without zeroed chunk edges (module docstring).

    Args:
        config: msst config (`inference.chunk_size` or `audio.chunk_size`,
            `inference.num_overlap`, `inference.batch_size`, `training.*`).
        model: maps (b, 2, chunk) to (b, stems, 2, chunk).
        mix: (channels, samples) or (samples,) float audio, numpy or torch; not copied
            when it is float32.
        device: where the model runs.
        model_type: for the error messages.
        pbar: show a progress bar over samples.
        mono_output: for one-channel input, return one channel (msst's behaviour,
            the default) or both channels the model produced (False).

    Returns:
        instrument -> (channels, samples) float32 numpy views of one (stems, samples,
        channels) array.

    Raises:
        ValueError: bad settings, or a NaN/Inf input sample.
        RuntimeError: the model returned NaN/Inf.
    """
    import numpy as np
    import torch
    from msst.utils.model_utils import _getWindowingArray, prefer_target_instrument
    from torch.nn import functional as F

    source = _as_tensor(mix)
    was_mono = source.shape[0] == 1
    if was_mono:
        source = source.expand(2, -1)  # msst feeds mono as two equal channels
    out_channels = 1 if was_mono and mono_output is not False else source.shape[0]
    length = source.shape[-1]

    inference = config.inference
    chunk = cfg_get(inference, "chunk_size", None) or config.audio.chunk_size
    chunk = _positive_int(chunk, "inference.chunk_size (or audio.chunk_size)",
                          "set it to the model's chunk length in samples.")
    overlap = _positive_int(inference.num_overlap, "inference.num_overlap",
                            "1 for non-overlapping chunks, 2-4 for overlap-add.")
    if overlap > chunk:
        raise UserValueError(f"inference.num_overlap: {overlap} is larger than the chunk "
                             f"({chunk} samples), so the step would be 0. Fix: use at most 4.")
    batch_size = _positive_int(inference.batch_size, "inference.batch_size",
                               "chunks per model call, e.g. 2.")
    instruments = list(prefer_target_instrument(config))
    target = cfg_get(config.training, "target_instrument", None)
    target_index = active_stem_ids = None
    if target:
        configured = list(config.training.instruments)
        if target not in configured:
            raise UserValueError(f"training.target_instrument: {target!r} is not in "
                                 f"training.instruments {configured}. Fix: add it there.")
        target_index = configured.index(target)
        core = model.module if hasattr(model, "module") else model
        try:
            parameters = inspect.signature(core.forward).parameters
        except (TypeError, ValueError):
            parameters = {}
        heads = getattr(core, "mask_estimators", None)
        if "active_stem_ids" in parameters and heads is not None and len(heads) == len(configured):
            active_stem_ids = [target_index]

    step = chunk // overlap
    paper = overlap == 1  # the paper's protocol: nothing windowed, zero-padded last chunk
    fade = 0 if paper else chunk // 10
    border = chunk - step
    pad = border if (length > 2 * border and border > 0) else 0  # virtual reflect padding
    padded_length = length + 2 * pad
    base_window = torch.ones(chunk) if paper else _getWindowingArray(chunk, fade)

    out = np.zeros((len(instruments), length, out_channels), dtype=np.float32)
    out_view = torch.from_numpy(out).permute(0, 2, 1)  # (stems, channels, samples)
    weight = torch.zeros(chunk + step * batch_size)  # window sums from padded position `base`
    base = 0

    def read(start: int) -> Any:
        stop = min(start + chunk, padded_length)
        index = torch.arange(start - pad, stop - pad)
        index = torch.where(index < 0, -index, index)
        index = torch.where(index >= length, 2 * (length - 1) - index, index)
        # gather from the chunk's own span: index_select on the whole (often transposed,
        # non-contiguous) track copied all of it for every chunk (O(length) per chunk)
        low, high = int(index.min()), int(index.max()) + 1
        part = source[:, low:high].index_select(1, index - low)
        if not torch.isfinite(part).all():
            bad = int(index[~torch.isfinite(part).all(0)][0])
            raise UserValueError(f"demix: the input has a NaN or infinite sample at sample {bad} "
                                 f"({model_type}); nothing was written. Fix: repair or skip "
                                 f"the file (msst-inference --skip_errors skips it).")
        mode = "reflect" if not paper and part.shape[-1] > chunk // 2 else "constant"
        return F.pad(part, (0, chunk - part.shape[-1]), mode=mode, value=0), stop - start

    def finalize(end: int) -> None:
        nonlocal base, weight
        a, b = max(base, pad), min(end, pad + length)
        if a < b:
            w = weight[a - base:b - base]
            region = out_view[..., a - pad:b - pad]
            region.div_(w)
            region[..., w == 0] = 0.0  # msst: 0/0 -> nan -> 0 (np.nan_to_num)
        shift = end - base
        weight = torch.cat([weight[shift:], torch.zeros(shift)])
        base = end

    progress = None
    if pbar:
        from tqdm.auto import tqdm

        progress = tqdm(total=padded_length, desc="Processing audio chunks", leave=False)
    use_amp = cfg_get(config.training, "use_amp", True)
    device_type = torch.device(device).type
    starts = list(range(0, padded_length, step))
    with torch.autocast(device_type=device_type, enabled=bool(use_amp and device_type == "cuda")):
        with torch.inference_mode():
            for first in range(0, len(starts), batch_size):
                batch_starts = starts[first:first + batch_size]
                parts, lengths = zip(*(read(s) for s in batch_starts))
                arr = torch.stack(parts).to(device)
                x = model(arr) if active_stem_ids is None else model(
                    arr, active_stem_ids=active_stem_ids)
                if target_index is not None and x.ndim >= 4 and \
                        x.shape[1] == len(config.training.instruments):
                    x = x[:, target_index:target_index + 1]
                x = x.float().cpu()
                if not torch.isfinite(x).all():
                    raise UserRuntimeError(
                        f"demix: the {model_type} model returned NaN or infinite values for "
                        f"the chunk at sample {max(batch_starts[0] - pad, 0)} of a finite "
                        f"input; nothing was written. Fix: check the checkpoint (was it saved "
                        f"after a NaN loss?) and `inference.*` settings.")
                after = batch_starts[-1] + step  # msst's i after the batch
                window = base_window.clone()
                if fade and after - step == 0:  # msst's rule, per batch
                    window[:fade] = 1
                elif fade and after >= padded_length:
                    window[-fade:] = 1
                for j, (start, seg) in enumerate(zip(batch_starts, lengths)):
                    chunk_window = window
                    if start == 0 and fade:  # the track's first chunk: no fade-in
                        chunk_window = window.clone()
                        chunk_window[:fade] = 1
                    weight[start - base:start - base + seg] += chunk_window[:seg]
                    a, b = max(start, pad), min(start + seg, pad + length)
                    if a < b:
                        contribution = x[j, :, :out_channels, a - start:b - start]
                        out_view[..., a - pad:b - pad] += \
                            contribution * chunk_window[a - start:b - start]
                finalize(min(after, padded_length))
                if progress is not None:
                    progress.update(step * len(batch_starts))
    if progress is not None:
        progress.close()
    return {name: out[k].T for k, name in enumerate(instruments)}


# ------------------------------------------------------------------ patches
def paper_protocol_applies(config: Any, model_type: str) -> bool:
    """True for msst's generic mode with `inference.num_overlap: 1`, where msst's own
    demix zeroes the chunk edges (any model type but htdemucs)."""
    inference = cfg_get(config, "inference", None)
    overlap = cfg_get(inference, "num_overlap", None) if inference is not None else None
    return model_type != "htdemucs" and not isinstance(overlap, bool) and overlap == 1


def make_demix(original, run):
    @functools.wraps(original)
    def demix(config, model, mix, device, model_type, pbar=False):
        if not (is_plugin_type(model_type) or paper_protocol_applies(config, model_type)):
            return original(config, model, mix, device, model_type, pbar)
        return demix_streaming(config, model, mix, device, model_type, pbar)

    return demix


def make_bigshifts_wrapper(original, run):
    @functools.wraps(original)
    def bigshifts_wrapper(config, model, mix, device, model_type, pbar=False, bigshifts=1):
        if not is_plugin_type(model_type) or bigshifts > 1:
            return original(config, model, mix, device, model_type, pbar, bigshifts)
        return demix_streaming(config, model, mix, device, model_type, pbar)

    return bigshifts_wrapper


def _prepare_lean(mix: Any, config: Any):
    """msst's `_prepare_audio` checks, without copying float32 input.

    Returns: ((channels, samples) float32 array, whether mono input becomes stereo output).
    """
    import numpy as np

    audio = np.asarray(mix)
    if audio.dtype.kind not in "fiu":
        raise ValueError(f"Audio must have a real numeric dtype; received {audio.dtype}")
    if audio.dtype.kind in "iu":
        limits = np.iinfo(audio.dtype)
        audio = audio.astype(np.float32) / float(max(abs(limits.min), limits.max))
    elif audio.dtype != np.float32:
        audio = audio.astype(np.float32)
    if audio.ndim == 1:
        audio = audio[np.newaxis, :]
    if audio.ndim != 2:
        raise ValueError(f"Audio must have shape (samples,) or (channels, samples); "
                         f"received {audio.shape}")
    if audio.shape[-1] == 0:
        raise ValueError("Audio must contain at least one sample")
    block = 1 << 20
    for start in range(0, audio.shape[-1], block):  # no full-length boolean temporary
        if not np.isfinite(audio[:, start:start + block]).all():
            raise ValueError("Audio contains NaN or infinite values")
    expected = getattr(config.audio, "num_channels", None)
    if expected == 1 and audio.shape[0] > 1:
        audio = np.mean(audio, axis=0, keepdims=True, dtype=np.float32)
    elif expected is not None and audio.shape[0] != expected and not (
            audio.shape[0] == 1 and expected == 2):
        raise ValueError(f"Model expects {expected} audio channel(s), but received "
                         f"{audio.shape[0]}")
    return audio, audio.shape[0] == 1 and expected == 2


def make_separate_audio(original, run):
    @functools.wraps(original)
    def separate_audio(model, args, config, device, mix, *, detailed_progress=None):
        import numpy as np

        normalize = bool(cfg_get(getattr(config, "inference", {}) or {}, "normalize",
                                      False))
        if (not is_plugin_type(args.model_type) or args.use_tta or normalize
                or getattr(args, "bigshifts", 1) > 1):
            return original(model, args, config, device, mix,
                            detailed_progress=detailed_progress)
        audio, to_stereo = _prepare_lean(mix, config)
        if detailed_progress is None:
            detailed_progress = not args.disable_detailed_pbar
        stems = demix_streaming(config, model, audio, device, args.model_type,
                                detailed_progress,
                                mono_output=False if to_stereo else None)
        if args.extract_instrumental:
            names = list(stems)
            source = stems["vocals" if "vocals" in names else names[0]]
            channels, samples = source.shape
            instrumental = np.empty((samples, channels), dtype=np.float32).T
            np.subtract(audio, source, out=instrumental)  # mono input broadcasts
            stems["instrumental"] = instrumental
        return stems

    return separate_audio

