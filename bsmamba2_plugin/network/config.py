"""The one schema of a BSMamba2 model: every default lives here.

`BSMamba2Config` is a frozen dataclass whose field names are the keys of the
`model:` section of an msst YAML. They are the keyword names of msst's own
`bs_mamba2` model (so an msst `bs_mamba2` config switches to `bsmamba2` by
changing the model type) plus the Mamba2 widths of mamba_ssm (`d_state`,
`expand`, `headdim`, `d_conv`, `chunk_size`) and our switches of the code path
(`backend`, `gradient_checkpointing`, `fused_block`, `short_scan`, `long_scan`,
`long_scan_backward`, `gated_norm`, `packed_gate`; `plan.py` turns them into an execution
plan).

Defaults are the paper's (arXiv 2508.14556, official code EuiYeonKim/BSMamba2):
dim 256, depth 6, stereo, STFT 2048 / hop 441, the 62 BS-RoFormer bands, Mamba2
d_state 128, expand 4, headdim 64. They give 48,098,188 parameters.

Differences from msst's `bs_mamba2` keyword defaults, and why:
- `stft_hop_length` defaults to 441 (the paper), not msst's 512.
- `stereo` defaults to True (the paper), not msst's False.
- msst keys that only matter for its transformer variant or its built-in loss are
  accepted with one warning and ignored (`IGNORED_MSST_KEYS`); our model never
  computes a loss inside `forward`.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Mapping
from typing import Any

from ..errors import UserKeyError, UserTypeError, UserValueError

__all__ = [
    "BACKENDS",
    "GATED_NORMS",
    "LONG_SCAN_BACKWARDS",
    "reject_unknown_keys",
    "DEFAULT_FREQS_PER_BANDS",
    "IGNORED_MSST_KEYS",
    "BSMamba2Config",
    "IgnoredConfigKeysWarning",
]

# BS-RoFormer's default band layout: 62 bands, 1025 bins for n_fft 2048.
DEFAULT_FREQS_PER_BANDS: tuple[int, ...] = (
    (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
)

BACKENDS: tuple[str, ...] = ("auto", "reference", "kernel")
#: `model.gated_norm`: whose kernels compute the gated norm on the fused kernel path
GATED_NORMS: tuple[str, ...] = ("mamba_ssm", "bsmamba2")
#: `model.long_scan_backward`: whose backward pass the time axis's scan takes with long_scan
LONG_SCAN_BACKWARDS: tuple[str, ...] = ("mamba_ssm", "bsmamba2")

# Keys of msst's `bs_mamba2` that have no meaning for the Mamba2 graph. The value is
# the setting we can honour (None: any value is fine), checked in `from_mapping`.
IGNORED_MSST_KEYS: dict[str, Any] = {
    "heads": None,
    "dim_head": None,
    "attn_dropout": None,
    "ff_dropout": None,
    "flash_attn": None,
    "mamba_gmlp": False,
    "time_module_depth": 1,
    "freq_module_depth": 1,
    "module_type": "mamba2",
    "audio_cfg": None,
    # msst computes its loss inside bs_mamba2.forward; ours lives in the plugin loss.
    "multi_stft_resolution_loss_weight": None,
    "multi_stft_resolutions_window_sizes": None,
    "multi_stft_hop_size": None,
    "multi_stft_normalized": None,
}


class IgnoredConfigKeysWarning(UserWarning):
    """msst `bs_mamba2` keys were given that the `bsmamba2` model does not use."""


@dataclasses.dataclass(frozen=True)
class BSMamba2Config:
    """Hyper-parameters of `BSMamba2`; field names are the msst `model:` keys.

    Attributes:
        dim: feature width D of every band token.
        depth: number of dual-path layers (each a time-axis then a band-axis BiMamba2).
        stereo: True for 2 audio channels, False for mono.
        num_stems: number of output stems (one mask estimator each).
        freqs_per_bands: STFT bins per band, low to high; must sum to
            `stft_n_fft // 2 + 1`.
        stft_n_fft: FFT size of the analysis/synthesis STFT.
        stft_hop_length: hop in samples (441 = 10 ms at 44.1 kHz).
        stft_win_length: Hann window length in samples (<= `stft_n_fft`).
        stft_normalized: passed to `torch.stft`/`torch.istft` as `normalized`.
        mask_estimator_depth: number of Linear layers per band in the mask MLP.
        d_state: Mamba2 state size N.
        expand: Mamba2 inner width factor (`d_inner = expand * dim`).
        headdim: Mamba2 head width P (`nheads = d_inner // headdim`).
        d_conv: width of the depthwise causal convolution.
        chunk_size: SSD chunk length; None picks a good one per backend and
            sequence length (kernel: 256; reference: see `ssd.reference_chunk_size`).
        backend: "auto" (kernel on CUDA when mamba_ssm imports, else reference),
            "reference" (pure PyTorch) or "kernel" (mamba_ssm Triton).
        gradient_checkpointing: false stores every activation; true recomputes each
            BiMamba2 block in the backward pass (same gradients, far less memory, about
            one more forward pass of time); "selective" keeps each block's input and its
            scan output and recomputes only the cheap rest (kernel path; elsewhere it acts
            as true). Only acts while gradients are taken.
        fused_block: kernel backend: run both directions of each BiMamba2 block in one
            pass (one projection, one conv kernel, one scan, one gated norm); false runs
            them one after the other through the same kernels (same numbers, slower; for
            comparisons).
        short_scan: fused kernel path: run sequences of at most 64 steps (the band axis)
            through our one-chunk `short_scan` kernels; false uses mamba_ssm's chunked scan
            there too (same numbers, slower, more memory).
        long_scan: fused kernel path: run the forward pass of sequences of more than 64
            steps (the time axis) through our `long_scan` kernel (chunks of 32 steps, the
            state carried in registers) instead of mamba_ssm's chunked scan, the backward
            pass through mamba_ssm's, where `long_scan_fits` the widths (headdim, d_state
            <= 128, headdim x d_state <= 64 x 128). Same numbers to float32 rounding; on
            by default since that pairing ran on an H200 (training step 527 -> 513 ms,
            inference 184 -> 162 ms at the paper's sizes); false keeps mamba_ssm's.
        long_scan_backward: with `long_scan`, whose backward pass those sequences take:
            "mamba_ssm" (the default: its backward half, which recomputes its own chunk
            states) or "bsmamba2" (ours, `long_scan_backward`: three kernels; same numbers
            to float32 rounding; not yet timed on a GPU, hence not the default).
        gated_norm: fused kernel path: which kernels compute the gated RMSNorm,
            "bsmamba2" (ours, `gated_norm.py`, the default: many programs per SM in the
            backward pass) or "mamba_ssm" (its `rmsnorm_fn`); same numbers to float32
            rounding.
        packed_gate: fused kernel path with our gated norm: the norm reads the gate z
            straight from the projection instead of from a copy, without autograd and
            under `gradient_checkpointing: selective` (whose backward also writes z's
            gradient straight into the projection's): the same numbers, one copy of
            (sequences, steps, 2 x d_inner) less in inference, three in training. On by
            default; false keeps the copies.
    """

    dim: int = 256
    depth: int = 6
    stereo: bool = True
    num_stems: int = 1
    freqs_per_bands: tuple[int, ...] = DEFAULT_FREQS_PER_BANDS
    stft_n_fft: int = 2048
    stft_hop_length: int = 441
    stft_win_length: int = 2048
    stft_normalized: bool = False
    mask_estimator_depth: int = 2
    d_state: int = 128
    expand: int = 4
    headdim: int = 64
    d_conv: int = 4
    chunk_size: int | None = None
    backend: str = "auto"
    gradient_checkpointing: bool | str = False
    fused_block: bool = True
    short_scan: bool = True
    long_scan: bool = True
    long_scan_backward: str = "mamba_ssm"
    gated_norm: str = "bsmamba2"
    packed_gate: bool = True

    # ----------------------------------------------------------------- checks
    def __post_init__(self) -> None:
        for name in ("dim", "depth", "num_stems", "stft_n_fft", "stft_hop_length",
                     "stft_win_length", "mask_estimator_depth", "d_state", "expand",
                     "headdim", "d_conv"):
            _check_positive_int(name, getattr(self, name))
        if self.chunk_size is not None:
            _check_positive_int("chunk_size", self.chunk_size)
        recompute = self.gradient_checkpointing
        if not (isinstance(recompute, bool) or recompute == "selective"):
            raise UserTypeError(f"model.gradient_checkpointing: expected true, false or "
                                f"'selective', got {self.gradient_checkpointing!r}. Fix: "
                                f"'selective' on a GPU with the kernel backend saves most of the "
                                f"memory of true at a smaller cost in time.")
        for name in ("stereo", "stft_normalized", "fused_block", "short_scan",
                     "long_scan", "packed_gate"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise UserTypeError(f"model.{name}: expected true or false, got {value!r} "
                                    f"({type(value).__name__}).")
        if not isinstance(self.gated_norm, str) or self.gated_norm not in GATED_NORMS:
            raise UserValueError(f"model.gated_norm: expected one of {', '.join(GATED_NORMS)}, "
                                 f"got {self.gated_norm!r}. Fix: leave it out (bsmamba2).")
        if not isinstance(self.long_scan_backward, str) \
                or self.long_scan_backward not in LONG_SCAN_BACKWARDS:
            raise UserValueError(f"model.long_scan_backward: expected one of "
                                 f"{', '.join(LONG_SCAN_BACKWARDS)}, got "
                                 f"{self.long_scan_backward!r}. Fix: leave it out (mamba_ssm).")
        if not isinstance(self.backend, str) or self.backend not in BACKENDS:
            raise UserValueError(f"model.backend: expected one of {', '.join(BACKENDS)}, got "
                                 f"{self.backend!r}. Fix: use 'auto' unless you need to force one.")
        bands = self.freqs_per_bands
        if not isinstance(bands, tuple) or not bands:
            raise UserTypeError(f"model.freqs_per_bands: expected a non-empty list of positive "
                                f"integers, got {bands!r}.")
        for k, f in enumerate(bands):
            if isinstance(f, bool) or not isinstance(f, int) or f < 1:
                raise UserValueError(f"model.freqs_per_bands[{k}]: expected a positive integer "
                                     f"number of bins, got {f!r}.")
        n_bins = self.stft_n_fft // 2 + 1
        if sum(bands) != n_bins:
            raise UserValueError(
                f"model.freqs_per_bands: the {len(bands)} bands hold {sum(bands)} bins, but "
                f"stft_n_fft={self.stft_n_fft} gives {n_bins} bins (n_fft // 2 + 1). Fix: make "
                f"the bands sum to {n_bins}, or change stft_n_fft."
            )
        if self.stft_win_length > self.stft_n_fft:
            raise UserValueError(f"model.stft_win_length: {self.stft_win_length} is longer than "
                                 f"stft_n_fft={self.stft_n_fft}. Fix: use a window <= n_fft.")
        if (self.dim * self.expand) % self.headdim:
            raise UserValueError(
                f"model.headdim: d_inner = dim * expand = {self.dim} * {self.expand} = "
                f"{self.dim * self.expand} is not a multiple of headdim={self.headdim}. Fix: "
                f"pick headdim dividing {self.dim * self.expand} (the paper uses 64)."
            )

    # ------------------------------------------------------------ derived sizes
    @property
    def n_channels(self) -> int:
        """Audio channels: 2 for stereo, 1 for mono."""
        return 2 if self.stereo else 1

    @property
    def n_bands(self) -> int:
        return len(self.freqs_per_bands)

    @property
    def band_widths(self) -> tuple[int, ...]:
        """Real features per band: bins x channels x (re, im)."""
        return tuple(2 * self.n_channels * f for f in self.freqs_per_bands)

    @property
    def d_inner(self) -> int:
        return self.dim * self.expand

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    # ------------------------------------------------------------- conversions
    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe dict (tuples become lists) that `from_mapping` reads back."""
        out = dataclasses.asdict(self)
        out["freqs_per_bands"] = list(self.freqs_per_bands)
        return out

    def replace(self, **changes: Any) -> BSMamba2Config:
        """A copy with some fields changed (validated like `from_mapping`)."""
        return BSMamba2Config.from_mapping({**self.to_dict(), **changes})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], path: str = "model") -> BSMamba2Config:
        """Parse an msst `model:` section (dict or msst ConfigDict).

        Args:
            mapping: key -> value. YAML lists are accepted where tuples are stored.
            path: where the mapping came from, used in error messages.

        Raises:
            KeyError: a key is unknown (the message lists valid keys and the closest one).
            ValueError / TypeError: a value is out of range or of the wrong type.

        Warns:
            IgnoredConfigKeysWarning: once, listing msst keys that are accepted but unused.
        """
        if not isinstance(mapping, Mapping):
            try:
                mapping = dict(mapping)  # msst's ConfigDict is not a Mapping subclass
            except (TypeError, ValueError) as error:
                raise UserTypeError(f"{path}: expected a mapping of model keys, got "
                                    f"{type(mapping).__name__}.") from error
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        ignored: list[str] = []
        for key, value in mapping.items():
            if key in fields:
                kwargs[key] = _to_tuple(value) if key == "freqs_per_bands" else value
            elif key in IGNORED_MSST_KEYS:
                honoured = IGNORED_MSST_KEYS[key]
                if honoured is not None and value != honoured:
                    raise UserValueError(
                        f"{path}.{key}: bsmamba2 implements only {key}={honoured!r} "
                        f"(the paper's graph), got {value!r}. Fix: set it to {honoured!r} or "
                        f"remove the key."
                    )
                ignored.append(key)
            else:
                reject_unknown_keys([key], fields, path, note=(
                    f" (accepted and ignored for msst compatibility: "
                    f"{', '.join(sorted(IGNORED_MSST_KEYS))})"))
        if ignored:
            warnings.warn(
                f"{path}: ignoring msst bs_mamba2 keys that the bsmamba2 model does not use: "
                f"{', '.join(sorted(ignored))}. The loss is configured in the plugin loss "
                f"section, not in {path}.",
                IgnoredConfigKeysWarning,
                stacklevel=2,
            )
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as error:
            # Messages from __post_init__ say "model.<key>"; re-anchor them at `path`.
            message = str(error).replace("model.", f"{path}.") if path != "model" else str(error)
            raise type(error)(message) from error

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper(cls, **changes: Any) -> BSMamba2Config:
        """The paper's model (48,098,188 parameters), optionally changed."""
        return cls().replace(**changes) if changes else cls()

    @classmethod
    def tiny(cls, **changes: Any) -> BSMamba2Config:
        """A small model for smoke tests and CPU demos (same graph, tiny widths)."""
        base = cls(dim=32, depth=1, freqs_per_bands=(4, 4, 8, 8, 16, 25), stft_n_fft=128,
                   stft_hop_length=32, stft_win_length=128, d_state=16, expand=2, headdim=16)
        return base.replace(**changes) if changes else base


def reject_unknown_keys(keys: Any, valid: Any, path: str, *, note: str = "") -> None:
    """Raise KeyError for the first key not in `valid`, naming `path.key`, the closest
    valid key and all valid keys (`note` is appended to the list)."""
    valid = sorted(valid)
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserKeyError(f"{path}.{key}: unknown key.{hint} Valid keys: "
                               f"{', '.join(valid)}{note}.")


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserTypeError(f"model.{name}: expected a positive integer, got {value!r} "
                            f"({type(value).__name__}). Fix: write a whole number without quotes "
                            f"(the paper's value is {getattr(BSMamba2Config, name, None)!r}).")
    if value < 1:
        raise UserValueError(f"model.{name}: expected a positive integer, got {value}. Fix: "
                             f"use 1 or more (the paper's value is "
                             f"{getattr(BSMamba2Config, name, None)!r}).")


def _to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
