"""The paper-config BSMamba2 exported to ONNX, timed next to PyTorch on a CPU (issue 13).

    python benchmarks/cpu_onnx_vs_torch.py [--threads 2] [--seconds 8] [--repeats 3]
        [--config YAML --checkpoint CKPT] [--keep FILE.onnx]

Exports `PortableNetwork` (features -> masks, the network between STFT and iSTFT) of the
paper model (random weights unless --config/--checkpoint), then times, on one stereo
chunk (8 s: 801 frames), alternating and taking medians:
- the network alone: PyTorch `BSMamba2.network` (reference SSD), PyTorch
  `PortableNetwork` (the exported graph run eagerly), onnxruntime;
- the whole separation (STFT + network + iSTFT): PyTorch `BSMamba2`, `OnnxSeparator`.
It prints the export time, the file size and the error of onnxruntime against PyTorch
(max |onnx - torch| / max |torch|; the acceptance bound is 1e-4). Time only on a quiet
machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bsmamba2_plugin.inference.onnx_runtime import OnnxSeparator, export_onnx
from bsmamba2_plugin.inference.song_files import load_bsmamba2
from bsmamba2_plugin.network.config import BSMamba2Config
from bsmamba2_plugin.network.model import BSMamba2
from bsmamba2_plugin.network.portable import PortableNetwork


def timed(fn, *args) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        start = time.perf_counter()
        out = fn(*args)
        return time.perf_counter() - start, torch.as_tensor(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--keep", type=Path, help="write the .onnx here (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.config is not None:
        model, stems, rate = load_bsmamba2(args.config, args.checkpoint)
    else:
        model, stems, rate = BSMamba2(BSMamba2Config.paper(backend="reference")).eval(), None, 44100
    path = args.keep or Path(tempfile.mkdtemp(prefix="bsm2_onnx_")) / "bsmamba2.onnx"
    start = time.perf_counter()
    export_onnx(model, path, stems=stems, sample_rate=rate)
    export_s = time.perf_counter() - start
    separator = OnnxSeparator.from_file(path, threads=args.threads)

    mixture = torch.randn(1, 2, int(args.seconds * rate),
                          generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.inference_mode():
        _, features = model.analyse(mixture)
    portable = PortableNetwork(model).eval()
    ort_network = (lambda f: separator.session.run(["masks"], {"features": f.numpy()})[0])
    runs = {
        "network: PyTorch BSMamba2.network": (model.network, features),
        "network: PyTorch PortableNetwork": (portable, features),
        "network: onnxruntime": (ort_network, features),
        "separation: PyTorch BSMamba2": (model, mixture),
        "separation: onnxruntime + torch STFT": (separator, mixture),
    }
    outputs = {name: timed(fn, x)[1] for name, (fn, x) in runs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (fn, x) in runs.items():
            times[name].append(timed(fn, x)[0])

    def error(a: str, b: str) -> str:
        ref = outputs[b].double()
        return f"{((outputs[a].double() - ref).abs().max() / ref.abs().max()).item():.1e}"

    n_frames = features.shape[1]
    print(f"\npaper-config export: {export_s:.1f} s, {path.stat().st_size / 2**20:.1f} MiB; "
          f"input 1 x 2 x {mixture.shape[-1]} ({args.seconds:g} s, {n_frames} frames); "
          f"{args.threads} threads, {args.repeats} alternating runs, torch "
          f"{torch.__version__}")
    print("| run | median s | min s | max err / peak vs PyTorch |")
    print("|---|---|---|---|")
    against = {"network: PyTorch PortableNetwork": "network: PyTorch BSMamba2.network",
               "network: onnxruntime": "network: PyTorch BSMamba2.network",
               "separation: onnxruntime + torch STFT": "separation: PyTorch BSMamba2"}
    for name in runs:
        err = error(name, against[name]) if name in against else "-"
        print(f"| {name} | {statistics.median(times[name]):.2f} | {min(times[name]):.2f} | "
              f"{err} |")


if __name__ == "__main__":
    main()
