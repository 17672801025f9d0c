"""Large batches and long chunks on the kernel path: one call against the same work in pieces.

    python benchmarks/gpu_kernel_sizes.py [CASE ...]    (default: every case)

Cases (each in its own child process: a CUDA error poisons its process's context):
- `model-BxS`: the paper model (kernel backend, eval, bf16 autocast, seed 0) on B chunks of
  S seconds of random stereo x 0.1 in one call, against each chunk alone;
  `model-BxS-chunked` the same with `short_scan: false` (band axis through mamba_ssm);
- `block180`: one paper BiMamba2 block on the time axis of one 180 s chunk (62 x 18001 x
  256, input x 0.5) in one call, against two calls of 31 sequences;
- `bmm-BxS`: the fused block's out_proj product alone (cuBLAS batched bf16, (2, rows, 1024)
  x (2, 1024, 256), rows = B x 62 x frames) on fresh tensors, against two half calls: does
  cuBLAS fail at that size on its own, or only after a kernel wrote out of bounds?

Prints one row per case: the largest relative L2 error of an item (or sequence), the peak
memory and the time of the whole call, or the error the call raised.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

CASES = ("model-6x30", "model-7x30", "model-8x30", "model-20x8", "model-24x8", "block180",
         "model-8x30-chunked", "bmm-6x30")
TIMEOUT_S = 240


def _errors(got, want):
    got, want = got.float().flatten(1), want.float().flatten(1)
    return ((got - want).norm(dim=1) / want.norm(dim=1).clamp_min(1e-12)).tolist()


def _frames(seconds: float) -> int:
    return int(seconds * 44100) // 441 + 1


def run_case(case: str) -> dict:
    import torch

    torch.manual_seed(0)
    kind, _, rest = case.partition("-")
    size, _, variant = rest.partition("-")
    batch, seconds = (int(v) for v in size.split("x")) if "x" in size else (1, 180)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    with torch.inference_mode(), autocast:
        if kind == "model":
            from bsmamba2_plugin import BSMamba2, BSMamba2Config

            model = BSMamba2(BSMamba2Config.paper(
                backend="kernel", short_scan=variant != "chunked")).cuda().eval()
            x = 0.1 * torch.randn(batch, 2, seconds * 44100, device="cuda")

            def whole():
                return model(x)

            def pieces():
                return torch.cat([model(x[i:i + 1]) for i in range(batch)])
        elif kind == "block180":
            from bsmamba2_plugin import BSMamba2Config
            from bsmamba2_plugin.network.mamba2 import BiMamba2

            block = BiMamba2(BSMamba2Config.paper(backend="kernel")).cuda().eval()
            x = 0.5 * torch.randn(62, 18001, 256, device="cuda")

            def whole():
                return block(x)

            def pieces():
                return torch.cat([block(x[:31]), block(x[31:])])
        elif kind == "bmm":
            rows = batch * 62 * _frames(seconds)
            g = torch.randn(rows, 2, 1024, device="cuda", dtype=torch.bfloat16)
            w = torch.randn(2, 1024, 256, device="cuda", dtype=torch.bfloat16) / 32

            def whole():
                return torch.bmm(g.transpose(0, 1), w).transpose(0, 1)

            def pieces():
                half = rows // 2
                return torch.cat([torch.bmm(part.transpose(0, 1), w).transpose(0, 1)
                                  for part in (g[:half], g[half:])])
        else:
            raise SystemExit(f"unknown case {case!r}; expected one of {', '.join(CASES)}")
        want = pieces()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        got = whole()
        torch.cuda.synchronize()
        seconds_taken = time.perf_counter() - start
        errors = _errors(got, want)
    return {"case": case, "max_rel_error": max(errors), "items": len(errors),
            "finite": bool(torch.isfinite(got).all()), "time_s": seconds_taken,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print("RESULT " + json.dumps(run_case(argv[1])), flush=True)
        return 0
    print("| case | result | max rel. error per item | items | time of the call | peak |")
    print("|---|---|---|---|---|---|")
    for case in argv or CASES:
        try:
            done = subprocess.run([sys.executable, __file__, "--child", case],
                                  capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"| {case} | timed out after {TIMEOUT_S} s | | | | |", flush=True)
            continue
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode or not lines:
            errors = [ln for ln in done.stderr.splitlines() if "Error" in ln]
            print(f"| {case} | failed (rc {done.returncode}): "
                  f"{(errors or ['?'])[-1].strip()[:160]} | | | | |", flush=True)
            continue
        r = json.loads(lines[-1][len("RESULT "):])
        print(f"| {case} | {'finite' if r['finite'] else 'NOT finite'} | "
              f"{r['max_rel_error']:.2e} | {r['items']} | {r['time_s']:.2f} s | "
              f"{r['peak_gib']:.1f} GiB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
