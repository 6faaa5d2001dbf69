"""Speed of using a model, textbook-size (12 beads in 2D, 24-256-256-256 MLPs, latent 2),
as ratios against baselines measured in the same run:

1. encode and decode throughput (frames/s through `Model.encode` / `Model.decode`, with
   normalization, on 1M frames) against the textbook's per-frame style (a jit-compiled
   encoder called frame by frame) and against the machine's float32 matmul rate
   (the FLOP fraction). Target: >= 1M frames/s on a CPU.
2. optimize: 64 restarts x 500 Adam steps in one compiled loop (our kernel, with the
   density trust region) against the textbook's loop (a jitted gradient and a Python
   update per step, one restart at a time). Target: < 2 s after compilation.

    python tests/benchmarks/bench_use.py [--frames 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from _timing import best_time

from vaetraj.io.model_file import ModelRecord
from vaetraj.model import ModelConfig, encode_frame, init_vae
from vaetraj.pipeline.model import Model
from vaetraj.pipeline.optimize import OptimizeConfig, optimize

CONFIG = ModelConfig(features=24, latent_dim=2, hidden=256, layers=4)


def make_model() -> Model:
    """An untrained textbook-size model with a 4-component latent density: speed does
    not depend on the weights' values."""
    params = jax.tree.map(np.asarray, init_vae(CONFIG, key=jax.random.key(0)))
    rng = np.random.default_rng(0)
    density = {
        "weights": np.full(4, 0.25, np.float32),
        "means": rng.normal(size=(4, 2)).astype(np.float32),
        "scale_trils": np.tile(0.5 * np.eye(2, dtype=np.float32), (4, 1, 1)),
    }
    return Model(
        ModelRecord(
            model_config=CONFIG,
            params=params,
            normalization_mean=np.zeros(24, np.float32),
            normalization_std=np.ones(24, np.float32),
            alignment={"method": "principal"},
            atom_indices=np.arange(12),
            atoms=12,
            dims=2,
            units="reduced",
            density=density,
        )
    )


def forward_flops_per_frame(sizes) -> float:
    return 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def matmul_rate(repeats: int) -> float:
    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    product = jax.jit(lambda a: a @ a)
    return 2 * n**3 / best_time(lambda: product(a).block_until_ready(), repeats)


def per_frame_encoder(model: Model, xyz: np.ndarray, frames: int) -> float:
    """The textbook's style: one jitted encoder call per frame."""
    params = jax.tree.map(jnp.asarray, model.params)
    encoder = jax.jit(lambda x: encode_frame(params, x, CONFIG).mean)
    flat = xyz.reshape(len(xyz), -1)
    encoder(flat[0]).block_until_ready()
    started = time.perf_counter()
    for frame in flat[:frames]:
        encoder(frame).block_until_ready()
    return frames / (time.perf_counter() - started)


def textbook_optimize(model: Model, restarts: int, steps: int) -> float:
    """Seconds for the textbook's plain descent loop, restart after restart."""
    params = jax.tree.map(jnp.asarray, model.params)
    from vaetraj.model import decode_frame

    def rg(z):
        x = decode_frame(params, z, CONFIG)[0].reshape(-1, 2)
        return jnp.sqrt(jnp.mean(jnp.sum((x - x.mean(0)) ** 2, -1)))

    grad = jax.jit(jax.grad(rg))
    grad(jnp.zeros(2)).block_until_ready()
    started = time.perf_counter()
    for restart in range(restarts):
        z = jax.random.normal(jax.random.key(restart), (2,))
        for _ in range(steps):
            z = z - 1e-2 * grad(z)
        z.block_until_ready()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = make_model()
    xyz = np.random.default_rng(1).normal(size=(args.frames, 12, 2)).astype(np.float32)
    encode_rate = args.frames / best_time(lambda: model.encode(xyz), args.repeats)
    mean, _ = model.encode(xyz)
    decode_rate = args.frames / best_time(lambda: model.decode(mean), args.repeats)
    baseline_rate = per_frame_encoder(model, xyz, 2000)
    peak = matmul_rate(args.repeats)
    hidden = [CONFIG.hidden] * (CONFIG.layers - 1)
    encode_flops = forward_flops_per_frame([24, *hidden, 4]) * encode_rate
    decode_flops = forward_flops_per_frame([2, *hidden, 24]) * decode_rate

    config = OptimizeConfig(restarts=64, steps=500)
    times = [optimize(model, config).report.optimize_time_s for _ in range(args.repeats)]
    textbook_restarts = 4
    textbook = textbook_optimize(model, textbook_restarts, 500) * 64 / textbook_restarts
    print(
        json.dumps(
            {
                "device": str(jax.devices()[0]),
                "jax": jax.__version__,
                "frames": args.frames,
                "encode_frames_per_s": round(encode_rate),
                "decode_frames_per_s": round(decode_rate),
                "per_frame_encoder_frames_per_s": round(baseline_rate),
                "encode_ratio_vs_per_frame": round(encode_rate / baseline_rate, 1),
                "encode_gflops_per_s": round(encode_flops / 1e9, 1),
                "decode_gflops_per_s": round(decode_flops / 1e9, 1),
                "matmul_gflops_per_s": round(peak / 1e9, 1),
                "encode_flop_fraction": round(encode_flops / peak, 2),
                "decode_flop_fraction": round(decode_flops / peak, 2),
                "optimize_64x500_s": round(min(times), 3),
                "textbook_loop_64x500_s (from 4 restarts)": round(textbook, 1),
                "optimize_ratio_vs_textbook": round(textbook / min(times), 1),
                "targets": {"frames_per_s": 1_000_000, "optimize_s": 2.0},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
