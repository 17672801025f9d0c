"""The paper's data recipe (docs/architecture.md) and optional on-device batch augmentation.

Paper recipe, per training example and per stem, independently:
  1. a random *salient* window of that stem from any track (source-activity detection,
     SAD: windows of one chunk, hop 4 s, cut into 10 sub-chunks; a window is salient when
     in every channel more than half of its sub-chunks have an RMS above
     max(0.15-quantile of the window's sub-chunk RMS, 1e-3));
  2. a gain drawn from U(gain_min, gain_max) = U(0.5, 1.5);
  3. with probability silence_p = 0.1 the stem is replaced by silence (the target then is
     silence too);
and the mixture is the sum of the stems.

Everything random here takes an explicit `numpy.random.Generator` (or, for batch
augmentation, torch's generator as torch-audiomentations uses it): with a seed the
draws are reproducible. Configured by the `augmentations_bsmamba2:` section of an msst
YAML (`AugmentConfig`); msst's own `augmentations:` keys keep their meaning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import UserTypeError, UserValueError
from ..network.config import reject_unknown_keys

__all__ = [
    "BATCH_TRANSFORMS",
    "AugmentConfig",
    "StemDraw",
    "apply_draw",
    "build_batch_augment",
    "draw_stem",
    "salient_starts",
]

# torch-audiomentations transforms allowed in `augmentations_bsmamba2.batch` (no pitch or
# time changes: those would need the stems re-aligned).
BATCH_TRANSFORMS = ("PolarityInversion", "Gain", "LowPassFilter", "HighPassFilter",
                    "BandPassFilter", "BandStopFilter")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Keys of the `augmentations_bsmamba2:` section; defaults are the paper's.

    Attributes:
        salient_windows: draw each stem from SAD-salient windows (msst dataset_type 1).
        sad_hop_seconds: hop between candidate windows.
        sad_chunks: sub-chunks per window.
        sad_quantile: quantile of sub-chunk RMS used as the threshold.
        sad_floor: lowest threshold (RMS, full scale 1).
        sad_min_active: fraction of sub-chunks that must exceed the threshold.
        gain_min, gain_max: per-stem gain range.
        silence_p: probability that a stem is replaced by silence.
        batch: torch-audiomentations transforms applied per stem on the device, each a
            mapping with `name` (one of BATCH_TRANSFORMS) and its keyword arguments.
    """

    salient_windows: bool = True
    sad_hop_seconds: float = 4.0
    sad_chunks: int = 10
    sad_quantile: float = 0.15
    sad_floor: float = 1e-3
    sad_min_active: float = 0.5
    gain_min: float = 0.5
    gain_max: float = 1.5
    silence_p: float = 0.1
    batch: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        path = "augmentations_bsmamba2"
        if not isinstance(self.salient_windows, bool):
            raise UserTypeError(f"{path}.salient_windows: expected true or false, got "
                                f"{self.salient_windows!r}.")
        numbers = {"sad_hop_seconds": (0.0, None, False), "sad_quantile": (0.0, 1.0, True),
                   "sad_floor": (0.0, None, True), "sad_min_active": (0.0, 1.0, True),
                   "gain_min": (0.0, None, True), "gain_max": (0.0, None, True),
                   "silence_p": (0.0, 1.0, True)}
        for name, (low, high, low_ok) in numbers.items():
            value = getattr(self, name)
            bad = isinstance(value, bool) or not isinstance(value, (int, float))
            bad = bad or value < low or (value == low and not low_ok)
            bad = bad or (high is not None and value > high)
            if bad:
                bounds = f"{'>=' if low_ok else '>'} {low}" + (f" and <= {high}" if high else "")
                raise UserValueError(f"{path}.{name}: expected a number {bounds}, got {value!r}.")
        if isinstance(self.sad_chunks, bool) or not isinstance(self.sad_chunks, int) \
                or self.sad_chunks < 1:
            raise UserValueError(f"{path}.sad_chunks: expected a positive integer, got "
                                 f"{self.sad_chunks!r}.")
        if self.gain_min > self.gain_max:
            raise UserValueError(f"{path}: gain_min {self.gain_min} is above gain_max "
                                 f"{self.gain_max}.")
        for i, spec in enumerate(self.batch):
            if not isinstance(spec, Mapping) or spec.get("name") not in BATCH_TRANSFORMS:
                raise UserValueError(
                    f"{path}.batch[{i}]: expected a mapping with 'name' one of "
                    f"{', '.join(BATCH_TRANSFORMS)} and its arguments, got {spec!r}.")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None,
                     path: str = "augmentations_bsmamba2") -> AugmentConfig:
        """Parse the section (None or empty: the paper's recipe); unknown keys are errors."""
        mapping = dict(mapping or {})
        reject_unknown_keys(mapping, {f.name for f in dataclasses.fields(cls)}, path)
        if "batch" in mapping:
            mapping["batch"] = tuple(dict(spec) if isinstance(spec, Mapping) or hasattr(
                spec, "items") else spec for spec in (mapping["batch"] or ()))
        try:
            return cls(**mapping)
        except (TypeError, ValueError) as error:
            raise type(error)(str(error).replace("augmentations_bsmamba2", path)) from error

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["batch"] = [dict(spec) for spec in self.batch]
        return out


# --------------------------------------------------------------------------- SAD
def salient_starts(audio: np.ndarray, window: int, hop: int, *, n_chunks: int = 10,
                   quantile: float = 0.15, floor: float = 1e-3,
                   min_active: float = 0.5) -> np.ndarray:
    """Start samples of the salient windows of one stem.

    Args:
        audio: (channels, samples) float waveform.
        window: window length in samples (the training chunk).
        hop: hop between candidate windows in samples.
        n_chunks, quantile, floor, min_active: see the module docstring.

    Returns:
        int64 array of window starts, ascending (empty when none is salient or the
        audio is shorter than one window).
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 2:
        raise ValueError(f"salient_starts: expected (channels, samples), got {audio.shape}.")
    n = audio.shape[1]
    if n < window:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, n - window + 1, hop, dtype=np.int64)
    sub = window // n_chunks
    # RMS of every sub-chunk of every window: (windows, channels, n_chunks)
    offsets = starts[:, None] + np.arange(n_chunks)[None, :] * sub
    power = np.cumsum(np.pad(audio ** 2, ((0, 0), (1, 0))), axis=1)
    energy = power[:, offsets + sub] - power[:, offsets]  # (channels, windows, n_chunks)
    rms = np.sqrt(np.maximum(energy, 0.0) / sub).transpose(1, 0, 2)
    threshold = np.maximum(np.quantile(rms, quantile, axis=-1, keepdims=True), floor)
    active = (rms > threshold).mean(axis=-1) > min_active  # (windows, channels)
    return starts[active.all(axis=1)]


# ------------------------------------------------------------------- stem draws
class StemDraw(NamedTuple):
    """One stem of one training example."""

    window: int  # index into the stem's list of salient windows
    gain: float
    silent: bool


def draw_stem(rng: np.random.Generator, n_windows: int, config: AugmentConfig) -> StemDraw:
    """Pick a salient window, a gain and whether the stem is silenced.

    Raises:
        ValueError: the stem has no salient window.
    """
    if n_windows < 1:
        raise ValueError("draw_stem: the stem has no salient window to draw from.")
    window = int(rng.integers(n_windows))
    gain = float(rng.uniform(config.gain_min, config.gain_max))
    silent = bool(rng.random() < config.silence_p)
    return StemDraw(window, gain, silent)


def apply_draw(chunk: np.ndarray, draw: StemDraw) -> np.ndarray:
    """The stem as it enters the example: exact zeros if silenced, else chunk * gain.

    Args: chunk (channels, samples). Returns: float32 array of the same shape.
    """
    if draw.silent:
        return np.zeros_like(chunk, dtype=np.float32)
    return (np.asarray(chunk, dtype=np.float32) * np.float32(draw.gain)).astype(np.float32)


# ----------------------------------------------------------- batch augmentation
def build_batch_augment(specs: Sequence[Mapping[str, Any]], sample_rate: int
                        ) -> Callable[[Any], Any] | None:
    """torch-audiomentations transforms applied independently to every stem.

    Args:
        specs: `AugmentConfig.batch`.
        sample_rate: Hz.

    Returns:
        None for no transforms, else a function stems (b, s, c, t) -> (b, s, c, t);
        callers rebuild the mixture as the sum of the returned stems.

    Raises:
        ModuleNotFoundError: torch-audiomentations is not installed.
    """
    if not specs:
        return None
    try:
        import torch_audiomentations as ta
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "augmentations_bsmamba2.batch needs torch-audiomentations: pip install "
            "torch-audiomentations (or remove the batch list).", name=error.name) from error
    # output_type="dict" is the form torch-audiomentations asks for from 0.12 on.
    transforms = []
    for spec in specs:
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        transforms.append(getattr(ta, spec["name"])(output_type="dict", **kwargs))
    compose = ta.Compose(transforms, output_type="dict")

    def augment(stems):
        b, s, c, t = stems.shape
        out = compose(stems.reshape(b * s, c, t), sample_rate=sample_rate).samples
        return out.reshape(b, s, c, t)

    return augment
