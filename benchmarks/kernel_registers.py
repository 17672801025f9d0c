"""Registers, spills and shared memory of our Triton kernels, compiled for sm_90 offline.

    python benchmarks/kernel_registers.py [--no-hints] [--only conv_bwd_pre ...]
        [--warps 4 8 16] [--stages 1 2 3] [--long-scan-chunk 64]

Needs no GPU: each kernel is compiled with `triton.compile` for an sm_90 target at the
launch parameters the package uses for the paper widths (d_inner 1024, d_state 128, 16
heads a direction, conv taps 4; bf16 activations, float32 weights; the time axis of a batch
of 5 chunks of 8 s: 310 sequences of 801 frames; the band axis: 4005 sequences of 62
bands), and the PTX is assembled by the ptxas that ships with Triton (`-v`), whose report
gives the registers a thread uses and the bytes it spills (stores / loads to local memory).
Shared memory is what Triton's compiled kernel asks for. Prints one markdown table.

The integer and pointer arguments are specialised as Triton's launcher does it for real
tensors (pointers 16-byte aligned, integers divisible by 16 marked as such, an integer
equal to 1 compiled in as a constant), so the numbers are those of the kernels that run;
`--no-hints` drops the divisibility marks (what a kernel sees with misaligned tensors:
scalar instead of vector memory accesses, many more registers).

`--warps` / `--stages` compile each selected kernel at every combination of these warps
and software-pipelining stages instead of its shipped launch, and add the programs an SM
can hold by registers and by shared memory (sm_90: 64 K registers, 228 KB, 64 warps).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
import triton
from triton.backends.compiler import BaseBackend, GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.runtime.jit import MockTensor, native_specialize_impl

from bsmamba2_plugin.network import split_conv as fused
from bsmamba2_plugin.network import gated_norm, long_scan, short_scan
from bsmamba2_plugin.network import gated_norm_triton as gn_k
from bsmamba2_plugin.network import long_scan_triton as ls_k
from bsmamba2_plugin.network import short_scan_triton as ss_k
from bsmamba2_plugin.network import split_conv_triton as sc_k

CAPABILITY = 90
DI, NS, H, TAPS = 1024, 128, 16, 4
AXES = {"time": (310, 801), "bands": (4005, 62)}  # sequences, length
BF16, F32 = torch.bfloat16, torch.float32


class Spec(NamedTuple):
    kernel: object  # a triton.jit function
    label: str  # what the table's second column says about this launch
    args: dict  # runtime arguments: a torch dtype for a pointer, else the value
    constexprs: dict
    num_warps: int
    num_stages: int = 3  # Triton's default on CUDA


def _split_conv_specs() -> list[Spec]:
    lay = fused._Layout(DI, NS, H)
    e = lay.width
    common = dict(E=e, XOFF=lay.xbc_offset, CH=lay.conv)
    specs = []
    for axis, (n, length) in AXES.items():
        # fused._SplitConv: the forward at (_BL, _BC), the backward's two kernels at
        # (_BL_BWD, _BC_BWD); P (n, l, 2 e) and the outputs contiguous
        blocks = -(-length // fused._BL)
        specs.append(Spec(sc_k.conv_fwd, f"{axis}: BL {fused._BL}, BC {fused._BC}", dict(
            P=BF16, W=F32, Bias=F32, Ox=BF16, Ob=BF16, Oc=BF16, length=length,
            n_l_blocks=blocks, stride_pn=length * 2 * e, stride_pl=2 * e), dict(
            common, DI=DI, NS=NS, TAPS=TAPS, BL=fused._BL, BC=fused._BC), 4))
        blocks = -(-length // fused._BL_BWD)
        tiles = f"{axis}: BL {fused._BL_BWD}, BC {fused._BC_BWD}"
        specs.append(Spec(sc_k.conv_bwd_pre, f"{tiles}, SB {fused._SB_PRE}", dict(
            P=BF16, W=F32, Bias=F32, Gx=BF16, Gb=BF16, Gc=BF16, Dpre=F32, Partial=F32,
            length=length, n_l_blocks=blocks, stride_pn=length * 2 * e, stride_pl=2 * e),
            dict(common, DI=DI, NS=NS, TAPS=TAPS, BL=fused._BL_BWD, BC=fused._BC_BWD,
                 SB=fused._SB_PRE), 4))
        specs.append(Spec(sc_k.conv_bwd_x, tiles, dict(
            W=F32, Dpre=F32, DP=BF16, length=length, n_l_blocks=blocks,
            stride_dn=length * 2 * e, stride_dl=2 * e),
            dict(common, TAPS=TAPS, BL=fused._BL_BWD, BC=fused._BC_BWD), 4))
    n, length = AXES["time"]
    blocks = -(-length // fused._BL)
    for what, cols, src_off, dst_width in (("z", DI, e, 2 * DI),
                                           ("dt", H, e + lay.dt_offset, 2 * H)):
        # fused._copy_cols, forward: the backward direction's columns of P, flipped
        specs.append(Spec(sc_k.copy_cols, f"{what}: COLS {cols}, FLIP, BL {fused._BL}, BC 64",
                          dict(Src=BF16, Dst=BF16, length=length, n_l_blocks=blocks,
                               stride_sn=length * 2 * e, stride_sl=2 * e,
                               stride_dn=length * dst_width, stride_dl=dst_width,
                               src_off=src_off, dst_off=dst_width // 2),
                          dict(FLIP=True, COLS=cols, BL=fused._BL, BC=64), 4))
    return specs


def _short_scan_specs() -> list[Spec]:
    # short_scan.py at the band axis: both directions' 2 x 16 heads of 64 channels, 2 groups
    length = AXES["bands"][1]
    x = torch.empty(1, length, 2 * H, 2 * DI // (2 * H), device="meta")
    B = torch.empty(1, length, 2, NS, device="meta")
    launch = short_scan._launch_args(x, B, length, 2 * H, 2, True)
    inputs = dict(X=BF16, DT=BF16, A=F32, Bm=BF16, Cm=BF16, D=F32, DTB=F32)
    return [
        Spec(ss_k.short_scan_fwd, _constants(launch), dict(inputs, Y=BF16, length=length),
             launch, 4),
        Spec(ss_k.short_scan_bwd, _constants(launch), dict(
            inputs, DY=BF16, DX=BF16, DDT=BF16, DB=BF16, DC=BF16, Part=F32, length=length),
            launch, short_scan._BWD_WARPS, short_scan._BWD_STAGES),
    ]


def _long_scan_specs(backward_chunk: int | None = None) -> list[Spec]:
    # long_scan.py at the time axis (model.long_scan: true): 2 x 16 heads of 64 channels,
    # 2 groups, bf16 and float32 inputs, each pass at its default chunk (default_chunk) or
    # the backward at `backward_chunk`
    length = AXES["time"][1]
    x = torch.empty(1, length, 2 * H, 2 * DI // (2 * H), device="meta")
    B = torch.empty(1, length, 2, NS, device="meta")
    specs = []
    for dtype in (BF16, F32):
        inputs = dict(X=dtype, DT=dtype, A=F32, Bm=dtype, Cm=dtype, D=F32, DTB=F32)
        name = str(dtype).removeprefix("torch.")
        launch = long_scan._launch_args(x, B, length, 2 * H, 2, True,
                                        long_scan.default_chunk(dtype, backward=False))
        specs.append(Spec(ls_k.long_scan_fwd, f"{name}: {_constants(launch)}",
                          dict(inputs, Y=dtype, length=length), launch,
                          long_scan._FWD_WARPS if dtype == BF16 else long_scan._FWD_WARPS_FLOAT32,
                          long_scan._FWD_STAGES))
        launch = long_scan._launch_args(
            x, B, length, 2 * H, 2, True,
            backward_chunk or long_scan.default_chunk(dtype, backward=True))
        label = f"{name}: {_constants(launch)}"
        state = (long_scan._STATE_WARPS, long_scan._STATE_STAGES)
        specs += [
            Spec(ls_k.long_scan_bwd_states, label, dict(
                X=dtype, DT=dtype, A=F32, Bm=dtype, DTB=F32, States=dtype, length=length),
                launch, *state),
            Spec(ls_k.long_scan_bwd_dstates, label, dict(
                DT=dtype, A=F32, Cm=dtype, DTB=F32, DY=dtype, States=dtype, DStates=dtype,
                Decay=F32, length=length),
                launch, *state),
            Spec(ls_k.long_scan_bwd_chunks, label, dict(
                inputs, DY=dtype, States=dtype, DStates=dtype, Decay=F32, DX=dtype, DDT=dtype, DB=dtype,
                DC=dtype, Part=F32, length=length), launch, long_scan._BWD_WARPS,
                long_scan._BWD_STAGES)]
    return specs


def _gated_norm_specs() -> list[Spec]:
    # gated_norm.py in the fused block: both directions' rows (groups of d_inner), bf16
    n, length = AXES["time"]
    rows, width, group = n * length, 2 * DI, DI
    fwd = gated_norm._tiles(group)
    bwd = gated_norm._tiles(group, backward=True)
    # tiles a program, as gated_norm_backward picks them on a card of 132 SMs (H100, H200)
    per_program = -(-rows // bwd["BM"] // (132 * gated_norm.PROGRAMS_PER_SM))
    bwd["TILES"] = 1 << max(0, per_program - 1).bit_length()
    sizes = dict(M=rows, N=width, GS=group, eps=1e-5)
    return [
        Spec(gn_k.gated_norm_fwd, _constants(fwd), dict(
            Y=BF16, Z=BF16, W=F32, OUT=BF16, SY=width, SZ=width, ZG=0, LENGTH=1, **sizes),
            {**fwd, "PACKED": False}, gated_norm._warps(group)),
        # inference reading z from the projection P (2 x 2320 columns a row)
        Spec(gn_k.gated_norm_fwd, _constants({**fwd, "PACKED": True}), dict(
            Y=BF16, Z=BF16, W=F32, OUT=BF16, SY=width, SZ=2 * 2320, ZG=2320, LENGTH=length,
            **sizes), {**fwd, "PACKED": True}, gated_norm._warps(group)),
        Spec(gn_k.gated_norm_bwd, _constants(bwd), dict(
            Y=BF16, Z=BF16, W=F32, DOUT=BF16, DY=BF16, DZ=BF16, DW_PART=F32, SY=width,
            SZ=width, SD=width, SDZ=width, ZG=0, LENGTH=1, **sizes), {**bwd, "PACKED": False},
            gated_norm._warps(group, backward=True)),
        # selective recompute with the packed gate: z read from P, dz written into dP
        Spec(gn_k.gated_norm_bwd, _constants({**bwd, "PACKED": True}), dict(
            Y=BF16, Z=BF16, W=F32, DOUT=BF16, DY=BF16, DZ=BF16, DW_PART=F32, SY=width,
            SZ=2 * 2320, SD=width, SDZ=2 * 2320, ZG=2320, LENGTH=length, **sizes),
            {**bwd, "PACKED": True}, gated_norm._warps(group, backward=True)),
    ]


def _constants(values: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())


def _source(spec: Spec, hints: bool) -> triton.compiler.ASTSource:
    """The kernel specialised as Triton's launcher would for these arguments."""
    signature, constexprs, attrs = {}, {}, {}
    for index, name in enumerate(spec.kernel.arg_names):
        if name in spec.constexprs:
            signature[name], constexprs[name] = "constexpr", spec.constexprs[name]
            continue
        value = spec.args[name]
        if isinstance(value, torch.dtype):
            value = MockTensor(value)  # a pointer with data_ptr 0: aligned
        kind, attr = native_specialize_impl(BaseBackend, value, False, True, True)
        signature[name] = kind
        if kind == "constexpr":  # an integer 1
            constexprs[name] = attr
        elif attr and hints:
            attrs[(index,)] = BaseBackend.parse_attr(attr)
    return triton.compiler.ASTSource(fn=spec.kernel, signature=signature,
                                     constexprs=constexprs, attrs=attrs)


def measure(spec: Spec, hints: bool = True) -> dict:
    """Registers, spill bytes and shared memory of one kernel launch."""
    compiled = triton.compile(_source(spec, hints),
                              target=GPUTarget("cuda", CAPABILITY, 32),
                              options={"num_warps": spec.num_warps,
                                       "num_stages": spec.num_stages})
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / "kernel.ptx"
        ptx.write_text(compiled.asm["ptx"])
        report = subprocess.run(
            [get_ptxas(CAPABILITY).path, "-v", f"--gpu-name=sm_{CAPABILITY}a", str(ptx),
             "-o", str(Path(tmp) / "kernel.cubin")],
            capture_output=True, text=True, check=True).stderr
    regs = re.search(r"Used (\d+) registers", report)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    if not regs or not spills:
        raise RuntimeError(f"unexpected ptxas report for {spec.kernel.__name__}:\n{report}")
    return {"registers": int(regs.group(1)), "spill_stores": int(spills.group(1)),
            "spill_loads": int(spills.group(2)), "shared": compiled.metadata.shared}


def programs_per_sm(spec: Spec, m: dict) -> tuple[int, int]:
    """Programs of this launch one sm_90 SM holds by registers (allocated per warp in units
    of 256, at most 64 warps) and by shared memory (228 KB, 1 KB reserved per program)."""
    per_warp = -(-m["registers"] * 32 // 256) * 256
    by_registers = min(65536 // per_warp, 64) // spec.num_warps
    by_shared = 233472 // (m["shared"] + 1024)
    return by_registers, by_shared


def specs(long_scan_chunk: int | None = None) -> list[Spec]:
    return (_split_conv_specs() + _short_scan_specs() + _long_scan_specs(long_scan_chunk)
            + _gated_norm_specs())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-hints", action="store_true",
                        help="compile without the launcher's divisibility-by-16 marks")
    parser.add_argument("--only", nargs="+", metavar="KERNEL",
                        help="just these kernels (by function name)")
    parser.add_argument("--warps", nargs="+", type=int, metavar="N",
                        help="compile at each of these warps (instead of the shipped ones)")
    parser.add_argument("--stages", nargs="+", type=int, metavar="N",
                        help="compile at each of these pipelining stages (with --warps or "
                             "the shipped warps)")
    parser.add_argument("--long-scan-chunk", type=int, metavar="L",
                        help="long_scan's backward kernels at this chunk instead of its "
                             "default")
    args = parser.parse_args()
    sweep = bool(args.warps or args.stages)
    print(f"Triton {triton.__version__}, sm_{CAPABILITY}a, "
          f"{'no divisibility hints' if args.no_hints else 'as launched'}\n")
    if sweep:
        print("| kernel | launch | warps | stages | registers | spills (stores / loads, "
              "bytes) | shared memory (bytes) | programs / SM (by registers, by shared) |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print("| kernel | launch | warps | registers | spills (stores / loads, bytes) | "
              "shared memory (bytes) |")
        print("|---|---|---|---|---|---|")
    for spec in specs(args.long_scan_chunk):
        name = spec.kernel.__name__
        if args.only and name not in args.only:
            continue
        launches = [spec._replace(num_warps=w, num_stages=s)
                    for w in args.warps or [spec.num_warps]
                    for s in args.stages or [spec.num_stages]] if sweep else [spec]
        for launch in launches:
            m = measure(launch, hints=not args.no_hints)
            cells = [name, spec.label, str(launch.num_warps)]
            if sweep:
                cells.append(str(launch.num_stages))
            cells += [str(m["registers"]), f"{m['spill_stores']} / {m['spill_loads']}",
                      str(m["shared"])]
            if sweep:
                cells.append("{}, {}".format(*programs_per_sm(launch, m)))
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
