"""PGPE bookkeeping cost (ask + tell, no loss) at CNN3 size, against drawing the same noise in one block.

Every step regenerates the population's directions twice (ask, then tell), so the shared-seed scheme
costs about two noise draws per step. This measures that overhead and the effect of ``noise_block``.
Writes bench/results/pgpe_overhead.{json,md}.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from glsverify.io_utils import atomic_write_json, atomic_write_text
from glsverify.train.optimizers import ClipUpConfig
from glsverify.train.pgpe import PGPEConfig, ask, pgpe_init, tell

N_PARAMS = 24_000  # about CNN3
POPSIZE = 256
REPEATS = 10


def _best_of(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    baseline_generator = torch.Generator().manual_seed(0)
    baseline = _best_of(lambda: torch.randn(POPSIZE // 2, N_PARAMS, generator=baseline_generator))
    rows = []
    for block in (1, 8, 64):
        config = PGPEConfig(optimizer=ClipUpConfig(step_size=0.01), noise_block=block)
        state = pgpe_init(torch.zeros(N_PARAMS), 0.01, config, seed=0)
        losses = torch.randn(POPSIZE)
        ask_s = _best_of(lambda: ask(state, POPSIZE))
        tell_s = _best_of(lambda: tell(state, losses))
        rows.append({"noise_block": block, "ask_s": ask_s, "tell_s": tell_s,
                     "step_over_one_draw": (ask_s + tell_s) / baseline})
    result = {"n_params": N_PARAMS, "popsize": POPSIZE, "threads": 1, "repeats_best_of": REPEATS,
              "baseline_one_block_draw_s": baseline, "rows": rows,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine()}
    out = Path(__file__).parent / "results"
    atomic_write_json(out / "pgpe_overhead.json", result)
    lines = [f"# PGPE ask+tell overhead (n={N_PARAMS}, P={POPSIZE}, 1 thread, best of {REPEATS})", "",
             f"Baseline: one torch.randn({POPSIZE // 2}, {N_PARAMS}) draw = {baseline * 1e3:.1f} ms", "",
             "| noise_block | ask ms | tell ms | (ask+tell) / baseline |", "|---|---|---|---|"]
    lines += [f"| {r['noise_block']} | {r['ask_s'] * 1e3:.1f} | {r['tell_s'] * 1e3:.1f} | "
              f"{r['step_over_one_draw']:.2f} |" for r in rows]
    atomic_write_text(out / "pgpe_overhead.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
