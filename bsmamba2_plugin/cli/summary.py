"""`bsmamba2 summary`: a model's config, parameter table and execution plan, and a timed
separation of a generated test signal (untrained weights)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import UserValueError

__all__ = ["generated_mixture", "register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser("summary", help="print a model summary and separate a "
                                                 "generated test signal")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=("paper", "tiny"), default="paper",
                        help="named model (default: paper, 48,098,188 parameters)")
    source.add_argument("--config", type=Path, metavar="YAML",
                        help="an msst YAML; its model: section is used")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="length of the generated test signal (default: 1.0; 0 skips it)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--backend", choices=("auto", "reference", "kernel"),
                        help="override model.backend")
    parser.set_defaults(func=run, interrupted=("Nothing is lost: summary writes nothing. Run it "
                                               "again."))


def generated_mixture(seconds: float, channels: int, sample_rate: int = 44100) -> Any:
    """A deterministic mixture: a vibrato tone that stops and starts, a bass line, noise.

    Returns: (1, channels, samples) float32 tensor.
    """
    import torch

    n = max(1, int(round(seconds * sample_rate)))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    pitch = 220.0 * (1 + 0.01 * torch.sin(2 * torch.pi * 5.5 * t))
    phase = 2 * torch.pi * torch.cumsum(pitch, 0) / sample_rate
    voice = sum(torch.sin(k * phase) / k for k in range(1, 6)) * (torch.sin(torch.pi * t) > 0)
    voice = voice * ((t % 1.0) < 0.6)  # sings 0.6 s of every second
    bass = 0.5 * torch.sin(2 * torch.pi * 55.0 * t)
    noise = 0.05 * torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mono = 0.3 * (voice + bass + noise)
    return mono.repeat(channels, 1).unsqueeze(0).float()


def _check_plugin_sections(raw: dict, path: Path) -> None:
    """Check the sections as msst-train does for bsmamba2 (a misspelt section name) and
    parse the plugin's training sections, so that `summary --config` finds their errors now
    rather than at msst-train's start or first step."""
    from ..msst_integration.config_checks import unknown_section
    from ..training.augment import AugmentConfig
    from ..training.losses import PaperLossConfig

    problem = unknown_section(raw, "bsmamba2", str(path))
    if problem:
        raise UserValueError(problem)
    for section, parse in (("loss_bsmamba2", PaperLossConfig.from_mapping),
                           ("augmentations_bsmamba2", AugmentConfig.from_mapping)):
        if section in raw:
            parse(raw[section], path=f"{path}: {section}")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..msst_integration.config_checks import load_msst_yaml
    from ..network.config import BSMamba2Config
    from ..network.model import BSMamba2
    from ..network.plan import describe_plan

    if args.config is not None:
        raw = load_msst_yaml(args.config)
        config = BSMamba2Config.from_mapping(raw["model"], path=f"{args.config}: model")
        _check_plugin_sections(raw, args.config)
        source = str(args.config)
    else:
        config = getattr(BSMamba2Config, args.preset)()
        source = f"preset {args.preset}"
    if args.backend:
        config = config.replace(backend=args.backend)
    device = torch.device(args.device)
    model = BSMamba2(config).to(device).eval()

    print(f"BSMamba2 ({source})")
    for key, value in config.to_dict().items():
        if key == "freqs_per_bands":
            value = f"{len(value)} bands, {sum(value)} bins"
        print(f"  {key:<22} {value}")
    parts = [("band_split", model.band_split)]
    parts += [(f"layers.{i} (time, band)", layer) for i, layer in enumerate(model.layers)]
    parts += [("final_norm", model.final_norm), ("mask_estimators", model.mask_estimators)]
    total = sum(p.numel() for p in model.parameters())
    print(f"\n  {'module':<24} {'parameters':>12}")
    for name, module in parts:
        print(f"  {name:<24} {sum(p.numel() for p in module.parameters()):>12,}")
    print(f"  {'total':<24} {total:>12,}   ({total * 4 / 1e6:.1f} MB in float32)")
    print(f"\n  Execution plan on {device} (network/plan.py):")
    for line in describe_plan(config, device):
        print(f"    {line}")

    if args.seconds > 0:
        mixture = generated_mixture(args.seconds, config.n_channels).to(device)
        with torch.inference_mode():
            start = time.perf_counter()
            stems = model(mixture)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - start
        print(f"  separated a {args.seconds:g} s generated test signal "
              f"{tuple(mixture.shape)} -> {tuple(stems.shape)} in {elapsed:.2f} s "
              f"(real-time factor {elapsed / args.seconds:.2f}); finite: "
              f"{bool(torch.isfinite(stems).all())}. Weights are untrained: the stems are not "
              f"meaningful yet.")
    return 0
