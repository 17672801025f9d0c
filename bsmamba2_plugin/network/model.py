"""BSMamba2: band-split dual-path bidirectional Mamba2 for music source separation.

Paper: E. Kim, Y.-H. Choi, "Mamba2 Meets Silence: Robust Vocal Source Separation
for Sparse Regions", arXiv 2508.14556 (2025); official code EuiYeonKim/BSMamba2.
The graph (docs/architecture.md):

    waveform (b, c, s)
      -> STFT (n_fft 2048, hop 441, Hann, center)            (b, c, f, t) complex
      -> band features, order (bin, channel, re/im)           (b, t, sum d_k)
      -> BandSplit: per band RMSNorm + Linear                 (b, t, k, d)
      -> depth x [BiMamba2 along t for each band,
                  BiMamba2 along k for each frame]            (b, t, k, d)
      -> final RMSNorm, per stem MaskEstimator                (b, s, t, sum d_k)
      -> complex mask * mixture STFT -> iSTFT                 (b, s, c, samples)

`forward` is `analyse` (STFT -> real band features), `network` (features -> real
masks) and `synthesise` (masks * STFT -> iSTFT); `network` holds no complex op, so it
can be exported alone (`portable.PortableNetwork`, issue 13).

Axes: b batch, s stems, c audio channels, f frequency bins, k bands, t frames,
d features, h heads, p head dim, n state.

Deliberate differences from msst's `bs_mamba2` (same graph, same state dict):
- no loss inside `forward` (losses live in the plugin loss module);
- the analysis window has `stft_win_length` samples (msst always uses 2048);
- inputs shorter than n_fft // 2 + 1 samples, which reflect padding cannot take,
  are zero-padded at the end and the output is cut back to the input length;
- the Mamba2 scan runs on the reference (pure PyTorch) or kernel (mamba_ssm Triton)
  backend, chosen by `backend`; msst's version needs mamba_ssm and CUDA.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .bandsplit import BandSplit, MaskEstimator, ScaledL2Norm
from .config import BSMamba2Config
from .kernel_limits import KernelSizeError
from .mamba2 import BiMamba2
from .plan import ExecutionPlan, resolve_plan

__all__ = ["BSMamba2"]


class BSMamba2(nn.Module):
    """The BSMamba2 separator (waveform in, stems out).

    Build it from msst `model:` keys, `BSMamba2(dim=256, depth=6, ...)`, or from a
    parsed config, `BSMamba2(BSMamba2Config.paper())`. With no arguments it is the
    paper's model (48,098,188 parameters).

    Args:
        config: a `BSMamba2Config`; leave None to build one from `model_keys`.
        **model_keys: msst `model:` keys (see `BSMamba2Config`).

    Raises:
        KeyError, ValueError, TypeError: bad keys or values (see
            `BSMamba2Config.from_mapping`).
    """

    def __init__(self, config: BSMamba2Config | None = None, **model_keys: object) -> None:
        super().__init__()
        if config is None:
            config = BSMamba2Config.from_mapping(model_keys)
        elif model_keys:
            raise TypeError("BSMamba2: pass either a BSMamba2Config or model keys, not both "
                            f"(got a config and {sorted(model_keys)}).")
        elif not isinstance(config, BSMamba2Config):
            raise TypeError(f"BSMamba2: config must be a BSMamba2Config, got "
                            f"{type(config).__name__}. Fix: BSMamba2(**model_keys) takes a "
                            f"plain mapping.")
        self.config = config
        self.band_split = BandSplit(config.dim, config.band_widths)
        self.layers = nn.ModuleList(
            nn.ModuleList([BiMamba2(config), BiMamba2(config)]) for _ in range(config.depth)
        )
        self.final_norm = ScaledL2Norm(config.dim)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(config.dim, config.band_widths, config.mask_estimator_depth)
            for _ in range(config.num_stems)
        )

    # ------------------------------------------------------------------ STFT
    def _stft_args(self, dtype: torch.dtype, device: torch.device) -> dict:
        cfg = self.config
        # Made per call in the working dtype: a float32 window cast to float64 would
        # carry float32 rounding. Not a buffer, so the state dict matches the official one.
        window = torch.hann_window(cfg.stft_win_length, dtype=dtype, device=device)
        return dict(n_fft=cfg.stft_n_fft, hop_length=cfg.stft_hop_length,
                    win_length=cfg.stft_win_length, window=window, center=True,
                    normalized=cfg.stft_normalized, onesided=True)

    def _check_input(self, mixture: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not torch.is_tensor(mixture) or not mixture.is_floating_point():
            raise TypeError(f"BSMamba2.forward: expected a floating-point tensor (batch, "
                            f"channels, samples), got {type(mixture).__name__}"
                            f"{'' if not torch.is_tensor(mixture) else ' of ' + str(mixture.dtype)}.")
        if mixture.dim() == 2 and cfg.n_channels == 1:
            mixture = mixture.unsqueeze(1)  # (b, s) is accepted for mono, as in msst
        if mixture.dim() != 3:
            raise ValueError(f"BSMamba2.forward: expected (batch, channels, samples), got shape "
                             f"{tuple(mixture.shape)}.")
        if mixture.shape[1] != cfg.n_channels:
            raise ValueError(
                f"BSMamba2.forward: the model has model.stereo={cfg.stereo} and takes "
                f"{cfg.n_channels} channel(s), got {mixture.shape[1]} (input shape "
                f"{tuple(mixture.shape)}). Fix: pass (batch, {cfg.n_channels}, samples), or "
                f"set model.stereo to {not cfg.stereo}."
            )
        if mixture.shape[-1] < 1:
            raise ValueError("BSMamba2.forward: the input has 0 samples; need at least 1.")
        # Checked in eval mode only: on a GPU the check waits for the device, which a
        # training step should not; a NaN batch there shows up as a NaN loss instead.
        if not self.training and not bool(torch.isfinite(mixture).all()):
            bad = torch.nonzero(~torch.isfinite(mixture))[0].tolist()
            raise ValueError(
                f"BSMamba2.forward: the input holds NaN or infinite samples (first at "
                f"[batch, channel, sample] = {bad}, shape {tuple(mixture.shape)}); the output "
                f"would be NaN. Fix: repair or skip that audio (e.g. torch.nan_to_num).")
        return mixture

    # --------------------------------------------------------------- forward
    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """Separate stems from a mixture.

        Args:
            mixture: (b, c, samples) waveform, c = 2 if stereo else 1 (mono also takes
                (b, samples)), any length >= 1 sample; finite (checked in eval mode).

        Returns:
            (b, num_stems, c, samples) estimates, float32 (float64 for float64 input).
        """
        mixture = self._check_input(mixture)
        n_samples = mixture.shape[-1]
        spec, features = self.analyse(mixture)
        masks = self.network(features)
        return self.synthesise(spec, masks, n_samples)

    # The three stages of `forward`, separable so that the network between the STFT and
    # the iSTFT (real in, real out) can be exported or run elsewhere (issue 13).
    def analyse(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """STFT and band features of a checked mixture.

        Args:
            mixture: (b, c, samples) waveform, any length >= 1 sample.

        Returns:
            spec: (b, c, f, t) complex STFT (complex128 for float64 input); input shorter
                than n_fft // 2 + 1 samples is zero-padded at the end first.
            features: (b, t, f * c * 2) real, innermost order (bin, channel, re/im).
        """
        cfg = self.config
        batch, channels, n_samples = mixture.shape
        real = torch.float64 if mixture.dtype == torch.float64 else torch.float32
        audio = mixture.to(real)
        min_samples = cfg.stft_n_fft // 2 + 1  # reflect padding needs more than n_fft // 2
        padded = max(n_samples, min_samples)
        if padded > n_samples:
            audio = F.pad(audio, (0, padded - n_samples))
        spec = torch.stft(audio.reshape(batch * channels, padded), return_complex=True,
                          pad_mode="reflect", **self._stft_args(real, audio.device))
        n_bins, n_frames = spec.shape[-2:]
        spec = spec.view(batch, channels, n_bins, n_frames)
        # (b, c, f, t) complex -> (b, t, f * c * 2) real, innermost (bin, channel, re/im)
        features = torch.view_as_real(spec).permute(0, 3, 2, 1, 4).reshape(
            batch, n_frames, n_bins * channels * 2)
        return spec, features

    def network(self, features: torch.Tensor) -> torch.Tensor:
        """Band features to real masks: band split, dual path, final norm, mask estimators.

        Args:
            features: (b, t, f * c * 2) real, as `analyse` returns them.

        Returns:
            (b, s, t, f * c * 2) real masks, same feature order.
        """
        x = self.band_split(features)  # (b, t, k, d)
        x = self._dual_path(x)
        x = self.final_norm(x)
        return torch.stack([estimator(x) for estimator in self.mask_estimators], dim=1)

    def synthesise(self, spec: torch.Tensor, masks: torch.Tensor, n_samples: int
                   ) -> torch.Tensor:
        """Complex masks times the mixture STFT, then the iSTFT.

        Args:
            spec: (b, c, f, t) complex, from `analyse`.
            masks: (b, s, t, f * c * 2) real, from `network`.
            n_samples: the mixture's length in samples.

        Returns:
            (b, s, c, n_samples) estimates in the real dtype of `spec`.
        """
        batch, channels, n_bins, n_frames = spec.shape
        real = spec.real.dtype
        padded = max(n_samples, self.config.stft_n_fft // 2 + 1)
        n_stems = masks.shape[1]
        # (b, s, t, f * c * 2) -> (b, s, c, f, t) complex, same feature order as above
        masks = masks.to(real).view(batch, n_stems, n_frames, n_bins, channels, 2)
        masks = torch.view_as_complex(masks.permute(0, 1, 4, 3, 2, 5).contiguous())
        estimates = spec.unsqueeze(1) * masks
        out = torch.istft(estimates.reshape(batch * n_stems * channels, n_bins, n_frames),
                          length=padded, **self._stft_args(real, spec.device))
        return out.view(batch, n_stems, channels, padded)[..., :n_samples]

    def _check_kernel_lengths(self, n_frames: int, n_bands: int, plan: ExecutionPlan,
                              device: torch.device) -> None:
        """Refuse, before anything runs, a chunk whose sequences are too long for one call
        of mamba_ssm's kernels (32-bit offsets; a batch of any size is split instead)."""
        time_layer, band_layer = self.layers[0]
        for block, length, axis in ((time_layer, n_frames, "time"), (band_layer, n_bands,
                                                                       "band")):
            if block.kernel_sequences_per_call(length, plan, device) != 0:
                continue
            low, high = 1, length  # the longest sequence that fits, by bisection
            while high - low > 1:
                middle = (low + high) // 2
                low, high = ((middle, high)
                             if block.kernel_sequences_per_call(middle, plan, device)
                             else (low, middle))
            hop = self.config.stft_hop_length
            fits = (f"at most {low} frames fit (about {low * hop / 44100:.0f} s)"
                    if axis == "time" else f"at most {low} bands fit")
            raise KernelSizeError(
                f"BSMamba2.forward: a chunk of {n_frames} STFT frames (about "
                f"{n_frames * hop / 44100:.0f} s at 44.1 kHz) gives {axis}-axis sequences of "
                f"{length} steps, more than mamba_ssm's Triton kernels compute exactly in "
                f"one call (their offsets are 32-bit integers, state-spaces/mamba issue "
                f"1015); {fits}. Fix: shorter chunks (`bsmamba2 separate --chunk-seconds`, "
                f"msst's inference.chunk_size), or model.backend: reference.")

    def plan(self, device: torch.device | str) -> ExecutionPlan:
        """The `ExecutionPlan` this model runs on `device` (`plan.resolve_plan`)."""
        return resolve_plan(self.config, device)

    def _dual_path(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (b, t, k, d). Returns: (b, t, k, d)."""
        batch, n_frames, n_bands, dim = x.shape
        plan = self.plan(x.device)
        if plan.backend == "kernel":
            self._check_kernel_lengths(n_frames, n_bands, plan, x.device)
        for time_layer, band_layer in self.layers:
            # along time, one sequence per (batch, band)
            x = time_layer(x.transpose(1, 2).reshape(batch * n_bands, n_frames, dim), plan)
            # along bands, one sequence per (batch, frame)
            x = x.view(batch, n_bands, n_frames, dim).transpose(1, 2)
            x = band_layer(x.reshape(batch * n_frames, n_bands, dim), plan)
            x = x.view(batch, n_frames, n_bands, dim)
        return x
