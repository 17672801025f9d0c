"""`bsmamba2` command line: environment report and model summary.

    bsmamba2 doctor                   versions, devices, which Mamba2 backend runs and why
    bsmamba2 summary [--preset paper|tiny | --config YAML] [--seconds S] [--device D]
                                      parameter table, backend, and a timed separation of a
                                      generated test signal (untrained weights)
    bsmamba2 convert-checkpoint IN OUT [--config YAML] [--weights raw|ema]
                                      official Lightning or msst bs_mamba2 checkpoint ->
                                      msst checkpoint for --model_type bsmamba2
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bsmamba2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"bsmamba2-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("doctor", help="print versions, devices and the Mamba2 backend that would run")

    summary = sub.add_parser("summary", help="print a model summary and separate a generated "
                                             "test signal")
    source = summary.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=("paper", "tiny"), default="paper",
                        help="named model (default: paper, 48,098,188 parameters)")
    source.add_argument("--config", type=Path, metavar="YAML",
                        help="an msst YAML; its model: section is used")
    summary.add_argument("--seconds", type=float, default=1.0,
                         help="length of the generated test signal (default: 1.0; 0 skips it)")
    summary.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    summary.add_argument("--backend", choices=("auto", "reference", "kernel"),
                         help="override model.backend")

    convert = sub.add_parser(
        "convert-checkpoint", help="official BSMamba2 (Lightning) or msst bs_mamba2 checkpoint "
                                   "-> msst checkpoint for --model_type bsmamba2")
    convert.add_argument("source", type=Path, metavar="IN")
    convert.add_argument("target", type=Path, metavar="OUT")
    convert.add_argument("--config", type=Path, metavar="YAML",
                         help="msst YAML the weights belong to (model:, training.instruments); "
                              "default: the paper's model")
    convert.add_argument("--weights", choices=("raw", "ema"), default="raw",
                         help="which weights of a Lightning checkpoint to keep (default: raw)")
    convert.add_argument("--trust-pickle", action="store_true",
                         help="load with torch.load(weights_only=False); only for trusted files")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "doctor":
            return _doctor()
        if args.command == "convert-checkpoint":
            return _convert(args)
        return _summary(args)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, TypeError,
            ModuleNotFoundError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"bsmamba2 {args.command}: error: {message}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------- doctor
def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _doctor() -> int:
    import torch

    from .ssd import describe_backend

    rows = [
        ("bsmamba2-plugin", __version__),
        ("python", f"{platform.python_version()} ({sys.platform}, {platform.machine()})"),
        ("torch", f"{torch.__version__} (CPU threads: {torch.get_num_threads()})"),
        ("msst", _dist_version("msst")),
        ("mamba_ssm", _dist_version("mamba_ssm")),
        ("triton", _dist_version("triton")),
    ]
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            rows.append((f"cuda:{i}", torch.cuda.get_device_name(i)))
            devices.append(torch.device("cuda", i))
    else:
        rows.append(("CUDA", "not available"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        rows.append(("mps", "available"))
        devices.append(torch.device("mps"))
    for device in devices:
        name, reason = describe_backend("auto", device)
        rows.append((f"backend on {device}", f"{name}: {reason}"))
    rows.extend(_msst_rows())
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _msst_rows() -> list[tuple[str, str]]:
    """msst integration: plugin types, the startup hook, and each patch's state."""
    import importlib
    import importlib.util
    import sys

    from . import msst_bridge, plugins

    found = ", ".join(f"{n} ({p.distribution})" for n, p in sorted(plugins.available().items()))
    rows = [("msst plugin types", found or "none")]
    for name in sorted(plugins.available()):
        try:
            plugins.get_factory(name)
        except ImportError as error:
            rows.append((f"plugin {name}", f"BROKEN: {error}"))
    hooked = any(type(f).__name__ == "MsstPatchFinder" for f in sys.meta_path)
    rows.append(("msst startup hook", "active" if hooked else
                 "NOT active (bsmamba2_plugin_msst.pth not loaded; reinstall the package)"))
    if importlib.util.find_spec("msst") is None:
        return rows
    for name in sorted(msst_bridge.TARGET_MODULES):
        try:
            importlib.import_module(name)
        except ImportError as error:  # e.g. msst._train_accelerate without accelerate
            rows.append((name, f"not importable here ({error.name or error}); not patched"))
    msst_bridge.install()
    rows.extend((f"patch {key}", state) for key, state in msst_bridge.patch_report().items())
    return rows


# ------------------------------------------------------------------ convert
def _convert(args: argparse.Namespace) -> int:
    from .checkpoints import convert_checkpoint

    model = instruments = target_instrument = None
    if args.config is not None:
        config = _load_yaml(args.config)
        model = config["model"]
        training = config.get("training") or {}
        instruments = training.get("instruments")
        target_instrument = training.get("target_instrument")
    meta = convert_checkpoint(args.source, args.target, model=model, weights=args.weights,
                              instruments=instruments, target_instrument=target_instrument,
                              trust=args.trust_pickle, overwrite=args.overwrite)
    print(f"wrote {args.target}: {meta['converted_from']}, weights {meta['weights']}, "
          f"meta.model_type {meta['model_type']}")
    return 0


# ------------------------------------------------------------------ summary
def _load_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file: {path}")
    with path.open() as handle:
        # msst reads configs with FullLoader (its YAMLs may hold !!python/tuple).
        config = yaml.load(handle, Loader=yaml.FullLoader)
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError(f"{path}: expected an msst config with a 'model:' mapping. Fix: "
                         f"point --config at a YAML such as configs/config_tiny_bsmamba2.yaml.")
    return config


def _load_model_section(path: Path) -> Any:
    return _load_yaml(path)["model"]


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


def _summary(args: argparse.Namespace) -> int:
    import torch

    from .config import BSMamba2Config
    from .model import BSMamba2
    from .ssd import describe_backend

    if args.config is not None:
        config = BSMamba2Config.from_mapping(_load_model_section(args.config),
                                             path=f"{args.config}: model")
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
    name, reason = describe_backend(config.backend, device)
    print(f"\n  Mamba2 backend on {device}: {name} ({reason})")

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
