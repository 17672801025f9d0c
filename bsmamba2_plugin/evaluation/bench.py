"""`bsmamba2 bench`: BSMamba2 next to msst's BS-RoFormer, in one process, one table.

For every model variant: a training step (forward, the paper loss, backward, AdamW step)
at `--train-batch` chunks of `--seconds`, its peak memory, and inference at
`--infer-batch` chunks, timed with CUDA events (medians of `--repeats` after warm-up;
the first call, which includes compilation or autotuning, is reported on its own).
Inputs are random and non-zero. Counted forward FLOPs per second of audio
(`forward_flop_counts`: matrix products and convolutions only; the SSD counted through
the reference backend, whose work is the kernel's) give achieved TFLOP/s for training
(3x forward) and inference, so that models with different arithmetic compare fairly. On a
machine without CUDA the same runs happen on the CPU with batch 1.

Each variant runs in a child process of its own (`python -m bsmamba2_plugin.evaluation.bench
NAME ...`): a CUDA error poisons its process's context, so one variant that crashes (an
illegal memory access in a compiled model, say) is reported in its row and the others
still run. A variant whose measured training peak does not fit the card at this batch
(`MEASURED_PEAK_GIB`) is not run; its row says how much it needs.

Default variants (`DEFAULT_MODELS`): the plans a user would run, the shipped plan first
(`bsmamba2-selective`, as in the paper configs), then `bsmamba2` (`gradient_checkpointing:
false`, where it fits), msst's BS-RoFormer 256x6 and 256x11 and msst's `bs_mamba2`.

Variants (`--models`): `bsmamba2` (the kernel backend's fused path on CUDA, else the
reference backend), `bsmamba2-unfused` (kernel backend, one direction after the other:
`fused_block: false`), `bsmamba2-ckpt` (gradient checkpointing of whole blocks),
`bsmamba2-selective` (`gradient_checkpointing: selective`), `bsmamba2-chunked-scan` and
`bsmamba2-selective-chunked-scan` (the band axis through mamba_ssm's chunked scan instead
of `short_scan`: `short_scan: false`), `bsmamba2-mamba-norm` and
`bsmamba2-selective-mamba-norm` (mamba_ssm's gated-norm kernels instead of ours:
`gated_norm: mamba_ssm`), `bsmamba2-mamba-time-scan` and
`bsmamba2-selective-mamba-time-scan` (the time axis's forward pass through mamba_ssm's
chunked scan instead of our `long_scan`: `long_scan: false`), `-copied-gate` (the gate
copied out of the projection: `packed_gate: false`), `-long-scan` / `-packed-gate` (those
keys true, the defaults), `-own-time-backward` (the time axis's backward pass through our
`long_scan_backward` too: `long_scan_backward: bsmamba2`), `-chunk64` / `-chunk256`
(`chunk_size`, mamba_ssm's chunk on the time axis, 128 by default); these option suffixes
combine
(`bsmamba2-selective-mamba-time-scan-copied-gate`),
`bsmamba2-reference` (`-ckpt`: with checkpointing), `bs_roformer_256x6`,
`bs_roformer_256x11` (msst, as `msst-train` runs it: fp16 autocast with a GradScaler;
`-noflash` after the name sets `flash_attn: false`),
`bs_mamba2` (msst's own port, when mamba_ssm imports); `+compile` after a name runs it
through `torch.compile`; `+graph` (CUDA) times inference as the replay of one CUDA graph
captured at the fixed batch and length (training as without it), the warm-up and capture
reported as "first infer s". Our models run under bf16 autocast, the paper's precision.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserValueError

__all__ = ["DEFAULT_MODELS", "EXTRA_MODELS", "MEASURED_PEAK_GIB", "OPTION_SUFFIXES", "Result",
           "format_row", "forward_flop_counts", "memory_note", "run_bench", "variant_options"]

DEFAULT_MODELS = ("bsmamba2-selective", "bsmamba2", "bs_roformer_256x6", "bs_roformer_256x11",
                  "bs_mamba2")
#: further variants: the two directions one after the other, whole-block recomputation,
#: the reference backend, mamba_ssm's chunked scan on the band axis, mamba_ssm's gated norm,
#: mamba_ssm's chunked scan on the time axis, the gate copied out of the projection (more:
#: any combination of `OPTION_SUFFIXES`)
EXTRA_MODELS = ("bsmamba2-unfused", "bsmamba2-ckpt", "bsmamba2-reference",
                "bsmamba2-reference-ckpt", "bsmamba2-chunked-scan",
                "bsmamba2-selective-chunked-scan", "bsmamba2-mamba-norm",
                "bsmamba2-selective-mamba-norm", "bsmamba2-mamba-time-scan",
                "bsmamba2-selective-mamba-time-scan", "bsmamba2-copied-gate",
                "bsmamba2-selective-copied-gate")
#: variant -> (training peak GiB, at train batch, of 8 s chunks): measured, where a
#: variant does not fit every card. `bsmamba2` (gradient_checkpointing false): 86.5 GiB at
#: batch 5 on an H200 (benchmarks/results/gpu_h200_2026-11-30/short_scan_default/).
MEASURED_PEAK_GIB = {"bsmamba2": (86.5, 5)}
#: default for `run_bench(variant_timeout_s=...)`: a child process that runs longer is
#: stopped and its row says so
CHILD_TIMEOUT_S = 1800
#: option suffixes of `bsmamba2` and `bsmamba2-selective`, in any combination (e.g.
#: `bsmamba2-selective-mamba-time-scan-copied-gate`): config key and value each one sets
OPTION_SUFFIXES = {"-chunked-scan": ("short_scan", False),
                   "-mamba-norm": ("gated_norm", "mamba_ssm"),
                   "-long-scan": ("long_scan", True),
                   "-packed-gate": ("packed_gate", True),
                   "-mamba-time-scan": ("long_scan", False),
                   "-copied-gate": ("packed_gate", False),
                   "-own-time-backward": ("long_scan_backward", "bsmamba2"),
                   "-chunk64": ("chunk_size", 64),
                   "-chunk256": ("chunk_size", 256)}
SAMPLE_RATE = 44100


@dataclasses.dataclass
class Result:
    model: str
    params: int = 0
    precision: str = ""
    train_ms: float | None = None
    train_peak_gib: float | None = None
    train_first_s: float | None = None
    infer_ms: float | None = None
    infer_peak_gib: float | None = None
    infer_first_s: float | None = None
    fwd_gflop_per_audio_s: float | None = None
    train_audio_s_per_s: float | None = None
    train_tflops: float | None = None
    infer_x_realtime: float | None = None
    infer_tflops: float | None = None
    note: str = ""


# ------------------------------------------------------------------ models
def _config_path(name: str) -> Path:
    from ..data.resources import find_resource

    return find_resource("configs", name)


def variant_options(name: str) -> tuple[str, dict[str, Any]]:
    """(`bsmamba2` or `bsmamba2-selective`, the config options its `OPTION_SUFFIXES` set)
    for such a name; (name, {}) for any other."""
    options: dict[str, Any] = {}
    base = name
    while True:
        for suffix, (key, value) in OPTION_SUFFIXES.items():
            if base.endswith(suffix) and key not in options:
                base, options[key] = base.removesuffix(suffix), value
                break
        else:
            break
    return (base, options) if options and base in ("bsmamba2", "bsmamba2-selective") \
        else (name, {})


def build_variant(name: str, device) -> tuple[Any, str]:
    """(model, autocast dtype name) for a variant name without its '+' suffixes."""
    from ..msst_integration import baselines
    from ..network.config import BSMamba2Config
    from ..network.model import BSMamba2

    name, options = variant_options(name)
    if name in ("bsmamba2", "bsmamba2-unfused", "bsmamba2-ckpt", "bsmamba2-selective",
                "bsmamba2-reference", "bsmamba2-reference-ckpt"):
        backend = "reference" if name.startswith("bsmamba2-reference") else "auto"
        recompute = {"bsmamba2-ckpt": True, "bsmamba2-reference-ckpt": True,
                     "bsmamba2-selective": "selective"}.get(name, False)
        config = BSMamba2Config.paper(backend=backend, gradient_checkpointing=recompute,
                                      fused_block=name != "bsmamba2-unfused", **options)
        return BSMamba2(config).to(device), "bfloat16"
    if name.startswith(("bs_roformer_256x6", "bs_roformer_256x11")):
        depth = name.split("-")[0].rsplit("x", 1)[1]
        model = baselines.bs_roformer(
            _config_path(f"config_musdb18_bs_roformer_256x{depth}.yaml"),
            flash_attn=not name.endswith("-noflash"))
        return model.to(device), "float16"
    if name == "bs_mamba2":
        model = baselines.msst_bs_mamba2(_config_path("config_musdb18_bsmamba2.yaml"))
        return model.to(device), "bfloat16"
    raise UserValueError(f"bench: unknown model {name!r}; expected one of "
                         f"{', '.join(DEFAULT_MODELS + EXTRA_MODELS)}"
                         f" (optionally with '+compile' and/or '+graph').")


# ------------------------------------------------------------------ timing
def _timed(fn: Callable[[], Any], repeats: int, device) -> tuple[float, float]:
    """(first call in s, median of the following `repeats` calls in ms)."""
    import torch

    cuda = device.type == "cuda"
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    first = time.perf_counter() - start
    fn()  # a second warm-up: allocator and autotuning settle
    times = []
    for _ in range(repeats):
        if cuda:
            begin = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(begin.elapsed_time(end))
        else:
            tick = time.perf_counter()
            fn()
            times.append((time.perf_counter() - tick) * 1e3)
    return first, statistics.median(times)


def _peak_gib(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def forward_flop_counts(name: str, seconds: float, device) -> dict[str, int]:
    """Counted forward FLOPs of one `seconds` stereo chunk, per aten op (SSD via the reference).

    `torch.utils.flop_counter` counts matrix products (mm, addmm, bmm, baddbmm: every
    Linear, the SSD's and attention's products), convolutions and fused attention, at 2
    FLOPs per multiply-add; element-wise work, normalisations, softmax, the STFT/iSTFT
    and the loss are not counted. The one counting behind every FLOP figure we report.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    base = name.split("+")[0]
    if base.startswith("bsmamba2") or base == "bs_mamba2":
        base = "bsmamba2-reference"
    elif base.startswith("bs_roformer") and not base.endswith("-noflash"):
        base += "-noflash"  # the same arithmetic; flash attention has no float32 kernel
    model, _ = build_variant(base, device)
    mixture = torch.randn(1, 2, int(seconds * SAMPLE_RATE), device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(mixture)
    del model
    return {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}


def _forward_flops(name: str, seconds: float, device) -> float:
    return float(sum(forward_flop_counts(name, seconds, device).values()))


def _paper_loss():
    from ..training.losses import PaperLossConfig, build_loss

    return build_loss(PaperLossConfig())


def _graphed_inference(model, run, mixture, dtype, device) -> Callable[[], Any]:
    """One inference pass on `mixture` (fixed shape) with its network captured as a CUDA
    graph after three warm-up passes on a side stream (kernel autotuning and the allocator
    settle there); returns a function that runs the pass by replaying the graph.

    Our model: the STFT (`analyse`) and the iSTFT (`synthesise`) run outside the graph,
    the band split, the BiMamba2 blocks and the mask estimator (`network`) inside: the
    iSTFT checks its window's overlap on the host (a wait for the device, which a capture
    forbids: the first capture of the whole pass failed with "operation failed due to a
    previous error during capture" on an H100), as does `forward`'s finiteness check of
    the input. Other models (msst's) are captured whole, which fails for the same reason
    where they end in an iSTFT: their row then says so."""
    import torch

    if device.type != "cuda":
        raise RuntimeError("+graph needs a CUDA device")
    ours = hasattr(model, "network") and hasattr(model, "analyse") and run is model

    def head():
        return model.analyse(mixture) if ours else (None, mixture)

    def body(features):
        return model.network(features) if ours else run(features)

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), _inference(dtype, device):
        for _ in range(3):
            body(head()[1])
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    with _inference(dtype, device):
        static_in = head()[1].clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), _inference(dtype, device):
        static_out = body(static_in)

    def replay():
        with _inference(dtype, device):
            spec, features = head()
            static_in.copy_(features)
            graph.replay()
            if ours:
                return model.synthesise(spec, static_out, mixture.shape[-1])
            return static_out

    torch.cuda.synchronize(device)
    return replay


@contextlib.contextmanager
def _inference(dtype, device):
    """inference mode and autocast to `dtype` on `device`"""
    import torch

    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
        yield


def bench_one(name: str, *, device, seconds: float, train_batch: int, infer_batch: int,
              repeats: int, flops: dict[str, float]) -> Result:
    """Time one variant; an out-of-memory or a failed import becomes a note."""
    import torch

    base, suffixes = name.split("+")[0], name.split("+")[1:]
    compiled, graphed = "compile" in suffixes, "graph" in suffixes
    result = Result(model=name)
    samples = int(seconds * SAMPLE_RATE)
    try:
        model, dtype_name = build_variant(base, device)
    except (ImportError, ModuleNotFoundError, RuntimeError) as error:
        result.note = f"not run: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        return result
    dtype = getattr(torch, dtype_name)
    autocast = device.type == "cuda"
    result.params = sum(p.numel() for p in model.parameters())
    result.precision = f"{dtype_name} autocast" if autocast else "float32"
    run = torch.compile(model) if compiled else model
    loss_fn = _paper_loss()
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, device=device, generator=gen)

    try:
        model.train()
        mixture = 0.1 * randn(train_batch, 2, samples)
        target = 0.05 * randn(train_batch, 1, 2, samples)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=autocast and dtype == torch.float16)

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=autocast):
                estimate = run(mixture)
            loss = loss_fn(estimate.float().view_as(target), target)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            scaler.step(optimizer)
            scaler.update()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result.train_first_s, result.train_ms = _timed(train_step, repeats, device)
        result.train_peak_gib = _peak_gib(device)
        del optimizer, mixture, target
    except torch.OutOfMemoryError:
        result.note = f"train: out of memory at batch {train_batch}"
    except RuntimeError as error:  # e.g. no attention kernel for these dtypes
        result.note = f"train failed: {str(error).splitlines()[0][:100]}"
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        model.eval()
        mixture = 0.1 * randn(infer_batch, 2, samples)

        def infer():
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                        enabled=autocast):
                run(mixture)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if graphed:
            start = time.perf_counter()
            infer = _graphed_inference(model, run, mixture, dtype, device)
            result.infer_first_s = time.perf_counter() - start
            _, result.infer_ms = _timed(infer, repeats, device)
        else:
            result.infer_first_s, result.infer_ms = _timed(infer, repeats, device)
        result.infer_peak_gib = _peak_gib(device)
    except torch.OutOfMemoryError:
        result.note += f"; inference: out of memory at batch {infer_batch}"
    except RuntimeError as error:
        result.note += f"; inference failed: {str(error).splitlines()[0][:100]}"
    del model, run
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    key = "bsmamba2" if base.startswith("bsmamba2") else base.removesuffix("-noflash")
    if key not in flops:
        try:
            flops[key] = _forward_flops(base, seconds, device)
        except (RuntimeError, torch.OutOfMemoryError) as error:
            result.note += f"; FLOPs not counted: {str(error).splitlines()[0][:80]}"
            return result
    per_chunk = flops[key]
    result.fwd_gflop_per_audio_s = per_chunk / seconds / 1e9
    if result.train_ms:
        result.train_audio_s_per_s = train_batch * seconds / (result.train_ms / 1e3)
        result.train_tflops = 3 * per_chunk * train_batch / (result.train_ms / 1e3) / 1e12
    if result.infer_ms:
        result.infer_x_realtime = infer_batch * seconds / (result.infer_ms / 1e3)
        result.infer_tflops = per_chunk * infer_batch / (result.infer_ms / 1e3) / 1e12
    return result


def format_row(r: Result) -> str:
    """One variant's row of `format_table`."""
    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    return (f"| {r.model} | {r.params / 1e6:.1f}M | {r.precision} | {num(r.train_ms, '.0f')} | "
            f"{num(r.train_peak_gib, '.1f')} | {num(r.train_audio_s_per_s, '.3g')} | "
            f"{num(r.train_tflops, '.3g')} | {num(r.train_first_s, '.1f')} | "
            f"{num(r.infer_ms, '.0f')} | {num(r.infer_x_realtime, '.3g')} | "
            f"{num(r.infer_tflops, '.3g')} | {num(r.infer_first_s, '.1f')} | {r.note} |")


def format_table(results: list[Result], train_batch: int, infer_batch: int) -> str:
    head = (f"| model | params | precision | train step b{train_batch} ms | peak GiB | "
            f"s-audio/s | train TFLOP/s | first step s | infer b{infer_batch} ms | x real time "
            f"| infer TFLOP/s | first infer s | note |")
    return "\n".join([head, "|" + "---|" * 13, *map(format_row, results)])


def memory_note(name: str, train_batch: int, seconds: float, card_gib: float | None
                ) -> str | None:
    """Why `name` is not run on a card of `card_gib` GiB (None: it fits, or nothing is
    known): its measured training peak (`MEASURED_PEAK_GIB`), scaled to this batch and chunk
    length, with 5 % to spare."""
    measured = MEASURED_PEAK_GIB.get(name.split("+")[0])
    if card_gib is None or measured is None:
        return None
    peak, batch = measured
    need = peak * train_batch * seconds / (batch * 8.0)
    if need * 1.05 <= card_gib:
        return None
    return (f"not run: needs ~{need:.1f} GiB to train at batch {train_batch} x {seconds:g} s "
            f"(measured {peak} GiB at batch {batch} x 8 s); this card has {card_gib:.0f} GiB")


def _child_command(name: str, *, seconds: float, train_batch: int, infer_batch: int,
                   repeats: int, flops: dict[str, float]) -> list[str]:
    return [sys.executable, "-m", "bsmamba2_plugin.evaluation.bench", name,
            "--seconds", str(seconds), "--train-batch", str(train_batch), "--infer-batch",
            str(infer_batch), "--repeats", str(repeats), "--flops", json.dumps(flops)]


_MARK = "BENCH-RESULT "


def _run_child(name: str, command: Sequence[str], flops: dict[str, float],
               echo: Callable[[str], None], timeout_s: float = CHILD_TIMEOUT_S) -> Result:
    """Run one variant's child process; its result, or a row that says how it ended."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Result(model=name, note=f"not finished within {timeout_s:g} s (stopped; "
                                       f"--variant-timeout)")
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            payload = json.loads(line[len(_MARK):])
            flops.update(payload["flops"])
            return Result(**payload["result"])
    lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error" in ln] or lines or ["no output"]
    echo(f"bench: {name} crashed (exit code {done.returncode}); the end of its output:\n"
         + "\n".join(lines[-15:]))
    return Result(model=name, note=f"crashed (exit code {done.returncode}): "
                                   f"{errors[-1].strip()[:160]}")


def _check_names(models: Sequence[str]) -> None:
    """Refuse an unknown variant before any process starts (`build_variant` would only
    fail in its child)."""
    known = [*DEFAULT_MODELS, *EXTRA_MODELS, "bs_roformer_256x6-noflash",
             "bs_roformer_256x11-noflash"]
    for name in models:
        base, *suffixes = name.split("+")
        if (base not in known and not variant_options(base)[1]) \
                or any(s not in ("compile", "graph") for s in suffixes):
            raise UserValueError(f"bench: unknown model {name!r}; expected one of "
                                 f"{', '.join(known)} (optionally with '+compile' and/or "
                                 f"'+graph').")


def _card_gib(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).total_memory / 2**30


def run_bench(models: list[str], *, seconds: float = 8.0, train_batch: int = 5,
              infer_batch: int = 8, repeats: int = 5, json_path: Path | None = None,
              variant_timeout_s: float = CHILD_TIMEOUT_S,
              echo: Callable[[str], None] = print) -> list[Result]:
    """Run each variant in a child process of its own, in order. Each variant's row is
    printed when it ends and the JSON file (if asked) is rewritten atomically after each,
    with `"complete": false` until the last, so a run stopped from outside keeps what it
    measured; the whole table is printed at the end."""
    import platform

    import torch

    from ..data.outputs import write_text_atomic

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        train_batch, infer_batch = 1, 1
    _check_names(models)
    card_gib = _card_gib(device)
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"CPU ({platform.processor() or platform.machine()}, "
                    f"{torch.get_num_threads()} threads)")
    flops: dict[str, float] = {}
    results: list[Result] = []

    def write_json(complete: bool) -> None:
        if json_path is None:
            return
        payload = {"machine": machine, "torch": torch.__version__, "seconds": seconds,
                   "train_batch": train_batch, "infer_batch": infer_batch, "repeats": repeats,
                   "date": time.strftime("%Y-%m-%d"), "complete": complete,
                   "results": [dataclasses.asdict(r) for r in results]}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json_path, json.dumps(payload, indent=2))

    for name in models:
        note = memory_note(name, train_batch, seconds, card_gib)
        if note:
            results.append(Result(model=name, note=note))
        else:
            echo(f"bench: {name} ...")
            command = _child_command(name, seconds=seconds, train_batch=train_batch,
                                     infer_batch=infer_batch, repeats=repeats, flops=flops)
            results.append(_run_child(name, command, flops, echo, variant_timeout_s))
        echo(f"bench: {format_row(results[-1])}")
        write_json(complete=False)
    echo(f"\n{machine}, torch {torch.__version__}, {seconds:g} s stereo chunks, medians of "
         f"{repeats}\n")
    echo(format_table(results, train_batch, infer_batch))
    write_json(complete=True)
    return results


def _child_main(argv: Sequence[str] | None = None) -> int:
    """One variant in this process (what `run_bench` starts): prints its result as JSON."""
    import torch

    parser = argparse.ArgumentParser(description="one bench variant (run by run_bench)")
    parser.add_argument("name")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--train-batch", type=int, required=True)
    parser.add_argument("--infer-batch", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--flops", default="{}", help="FLOP counts already known (JSON)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flops = json.loads(args.flops)
    result = bench_one(args.name, device=device, seconds=args.seconds,
                       train_batch=args.train_batch, infer_batch=args.infer_batch,
                       repeats=args.repeats, flops=flops)
    print(_MARK + json.dumps({"result": dataclasses.asdict(result), "flops": flops}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
