"""How often a bf16 Conv3d weight gradient is inf/NaN, or finite but wrong, for finite inputs.

For each r3d_tiny (width 8) layer shape at the demo's 48 px, 4-frame clips and 2x64 clips a
batch, runs N backward passes under CPU bf16 autocast on fresh random inputs and prints the
share of bf16 weight gradients that are inf/NaN, the share finite but wrong against the fp32
gradient of the same input, and the median error of the rest, in both memory layouts. On an
AMD EPYC with AVX512-bf16 and no AMX (torch 2.14.1, oneDNN 3.12) the 16→16 conv on
(128, 16, 2, 12, 12) was wrong in every call of one run (the inf/NaN share moved between runs,
0-100 %); this is why ``--precision auto`` runs bf16 on a CPU only with AMX, and why every
training step is guarded (``echoclr.step_guard``). On the same CPU with oneDNN capped to
AVX512_CORE the fault stayed (30 of 30 calls wrong); capped to AVX2 every shape was sound (median
relative error 0.014, 12x slower training). fp32 against float64 (16->16, 8->8, 32->32; 20
calls each): relative error < 5e-7.

    python benchmarks/bench_bf16_faults.py --calls 50
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_bf16_faults.py --calls 30
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from echoclr.runs import machine_description

WRONG = 0.05  # bf16's own rounding gives ~0.5 % relative error
# (in channels, out channels, input (T, H, W), stride) of r3d_tiny width 8 at 4x48x48
SHAPES = [(3, 8, (4, 48, 48), (1, 2, 2)), (8, 8, (4, 24, 24), 1), (8, 16, (4, 24, 24), 2),
          (16, 16, (2, 12, 12), 1), (16, 32, (2, 12, 12), 2), (32, 32, (1, 6, 6), 1),
          (32, 64, (1, 6, 6), 2), (64, 64, (1, 3, 3), 1)]


def fault_shares(cin: int, cout: int, thw: tuple, stride, *, batch: int, calls: int,
                 layout: torch.memory_format) -> tuple[float, float, float]:
    """(share non-finite, share finite but wrong, median relative error of the rest) of the
    bf16 weight gradient against fp32 on the same input and output gradient."""
    kernel = (3, 7, 7) if cin == 3 else 3
    padding = (1, 3, 3) if cin == 3 else 1
    conv = torch.nn.Conv3d(cin, cout, kernel, stride, padding, bias=False)
    conv = conv.to(memory_format=layout)
    non_finite = wrong = 0
    errors = []
    for _ in range(calls):
        x = torch.randn(batch, cin, *thw).to(memory_format=layout)
        grads = []
        for bf16 in (True, False):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = conv(x)
            if bf16:
                g = torch.randn(y.shape).to(memory_format=layout)
            y.backward(g)
            grads.append(conv.weight.grad.float())
            conv.weight.grad = None
        if not bool(torch.isfinite(grads[0]).all()):
            non_finite += 1
            continue
        error = ((grads[0] - grads[1]).norm() / grads[1].norm()).item()
        if error > WRONG:
            wrong += 1
        else:
            errors.append(error)
    return non_finite / calls, wrong / calls, statistics.median(errors) if errors else math.nan


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    torch.manual_seed(0)
    print(machine_description(), f"threads {torch.get_num_threads()}")
    layouts = {"channels_last_3d": torch.channels_last_3d, "NCDHW": torch.contiguous_format}
    print(f"bf16 weight gradient of each conv against fp32, {args.calls} calls each: share "
          f"non-finite / share finite but wrong (relative error > {WRONG}) / median relative "
          "error of the rest")
    print(f"{'conv':>32}  " + "  ".join(f"{n:>26}" for n in layouts))
    for cin, cout, thw, stride in SHAPES:
        cells = []
        for layout in layouts.values():
            bad, wrong, err = fault_shares(cin, cout, thw, stride, batch=args.batch,
                                           calls=args.calls, layout=layout)
            cells.append(f"{bad:.0%} / {wrong:.0%} / {err:.4f}")
        name = f"{cin}->{cout} on {args.batch}x{cin}x{'x'.join(map(str, thw))}"
        print(f"{name:>32}  " + "  ".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()
