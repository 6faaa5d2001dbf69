"""Training speed in the textbook setting (12 beads in 2D, 24-256-256-256 MLPs, latent 2,
adam 1e-2, beta 0.01, 2048 frames), as ratios measured in the same run:

1. throughput of our epoch (one jit-compiled lax.scan) against the textbook's style, a
   Python loop over batches calling a jit-compiled gradient and an optax update each batch
   (target >= 12x at batch 32);
2. at batch 256, the FLOP rate of training (forward + backward, counted from the layer
   sizes) against the machine's float32 matmul rate (target >= 0.5);
3. the ceiling at batch 32: the loss's gradient alone, in the same kind of compiled scan
   with no update, no guard and no input noise (what no optimizer step can beat);
4. with PyTorch installed (`pip install torch`), the same network trained the idiomatic
   PyTorch way: `nn.Sequential` MLPs, `torch.optim.Adam`, eager `loss.backward()` and
   `step()` per batch, on as many threads as JAX uses, at batch 32 and 256.

    python tests/benchmarks/bench_train.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _timing import best_time

from vaetraj.model import ModelConfig, compute_loss_terms, init_vae
from vaetraj.training import TrainConfig, make_trainer

FRAMES = 2048
CONFIG = ModelConfig(features=24, latent_dim=2, hidden=256, layers=4)


def ours(data: jax.Array, batch_size: int, repeats: int) -> float:
    config = TrainConfig(batch_size=batch_size, lr=1e-2, beta=0.01, schedule="constant")
    trainer = make_trainer(CONFIG, config, frames=FRAMES)
    box = {"state": trainer.init(key=jax.random.key(0))}
    beta, key = jnp.float32(0.01), jax.random.key(1)

    def epoch():
        box["state"], metrics = trainer.run_epoch(box["state"], data, beta, key=key)
        jax.block_until_ready(box["state"])

    return FRAMES / best_time(epoch, repeats)


def textbook_loop(data: np.ndarray, batch_size: int, repeats: int) -> float:
    """The textbook's loop: a jitted gradient per batch, the update outside it."""

    def loss(params, batch, key):
        noise = jax.random.normal(key, (batch.shape[0], 1, CONFIG.latent_dim))
        terms = jax.vmap(compute_loss_terms, in_axes=(None, 0, 0, None))(
            params, batch, noise, CONFIG
        )
        return jnp.mean(terms.reconstruction + 0.01 * jnp.sum(terms.kl, axis=-1))

    fast_grad = jax.jit(jax.grad(loss))
    optimizer = optax.adam(1e-2)
    params = init_vae(CONFIG, key=jax.random.key(0))
    box = {"params": params, "opt": optimizer.init(params), "key": jax.random.key(1)}

    def epoch():
        params, opt_state, key = box["params"], box["opt"], box["key"]
        for start in range(0, FRAMES, batch_size):
            batch = data[start : start + batch_size]
            key, subkey = jax.random.split(key)
            grads = fast_grad(params, batch, subkey)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        jax.block_until_ready(params)
        box.update(params=params, opt=opt_state, key=key)

    return FRAMES / best_time(epoch, repeats)


def gradient_only(data: jax.Array, batch_size: int, repeats: int) -> float:
    """The loss's gradient per batch summed over an epoch in one scan: no update."""
    params = init_vae(CONFIG, key=jax.random.key(0))
    batches = data.reshape(FRAMES // batch_size, batch_size, -1)

    def loss(params, batch, key):
        noise = jax.random.normal(key, (batch.shape[0], 1, CONFIG.latent_dim))
        terms = jax.vmap(compute_loss_terms, in_axes=(None, 0, 0, None))(
            params, batch, noise, CONFIG
        )
        return jnp.mean(terms.reconstruction + 0.01 * jnp.sum(terms.kl, axis=-1))

    @jax.jit
    def epoch(params, keys):
        def step(total, inputs):
            grads = jax.grad(loss)(params, *inputs)
            return jax.tree.map(jnp.add, total, grads), None

        zero = jax.tree.map(jnp.zeros_like, params)
        return jax.lax.scan(step, zero, (batches, keys))[0]

    keys = jax.random.split(jax.random.key(1), len(batches))
    return FRAMES / best_time(lambda: jax.block_until_ready(epoch(params, keys)), repeats)


def pytorch(host: np.ndarray, batch_size: int, repeats: int) -> float | None:
    """Frames/s of the same VAE trained in PyTorch's idiomatic style; None without it."""
    try:
        import torch
    except ImportError:
        return None
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(_cores())  # XLA uses every core it may

    def mlp(sizes: list[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    hidden = [CONFIG.hidden] * (CONFIG.layers - 1)
    encoder = mlp([CONFIG.features, *hidden, 2 * CONFIG.latent_dim])
    decoder = mlp([CONFIG.latent_dim, *hidden, CONFIG.features])
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-2)
    data = torch.from_numpy(host)

    def epoch() -> None:
        for start in range(0, FRAMES, batch_size):
            x = data[start : start + batch_size]
            out = encoder(x)
            mean, std = (
                out[:, : CONFIG.latent_dim],
                nn.functional.softplus(out[:, CONFIG.latent_dim :]),
            )
            z = mean + std * torch.randn_like(std)
            reconstruction = ((decoder(z) - x) ** 2).sum(dim=1)
            kl = 0.5 * (mean**2 + std**2 - 1).sum(dim=1) - torch.log(std).sum(dim=1)
            loss = (reconstruction + 0.01 * kl).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return FRAMES / best_time(epoch, repeats)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def training_flops_per_frame() -> float:
    """Multiply-adds of the encoder and decoder, x2 for flops, x3 for forward + backward
    (the backward pass costs two matmuls per forward matmul)."""
    hidden = [CONFIG.hidden] * (CONFIG.layers - 1)
    encoder = [CONFIG.features, *hidden, 2 * CONFIG.latent_dim]
    decoder = [CONFIG.latent_dim, *hidden, CONFIG.features]
    macs = sum(
        a * b for sizes in (encoder, decoder) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    )
    return 3 * 2 * macs


def matmul_rate(repeats: int) -> float:
    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    product = jax.jit(lambda a: a @ a)
    return 2 * n**3 / best_time(lambda: product(a).block_until_ready(), repeats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    host = rng.normal(size=(FRAMES, CONFIG.features)).astype(np.float32)
    data = jnp.asarray(host)

    ours_32 = ours(data, 32, args.repeats)
    loop_32 = textbook_loop(host, 32, max(2, args.repeats // 2))
    ours_256 = ours(data, 256, args.repeats)
    peak = matmul_rate(args.repeats)
    achieved = ours_256 * training_flops_per_frame()
    ceiling_32 = gradient_only(data, 32, args.repeats)
    torch_32, torch_256 = (pytorch(host, size, args.repeats) for size in (32, 256))
    probe = None
    if torch_32 is not None and torch_256 is not None:
        import torch

        probe = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "batch32_frames_per_s": round(torch_32),
            "batch256_frames_per_s": round(torch_256),
            "ours_over_torch_batch32": round(ours_32 / torch_32, 2),
            "ours_over_torch_batch256": round(ours_256 / torch_256, 2),
        }
    print(
        json.dumps(
            {
                "device": str(jax.devices()[0]),
                "jax": jax.__version__,
                "batch32_frames_per_s": {"ours": round(ours_32), "textbook_loop": round(loop_32)},
                "throughput_ratio": round(ours_32 / loop_32, 1),
                "gradient_only_batch32_frames_per_s": round(ceiling_32),
                "gradient_only_over_textbook_loop": round(ceiling_32 / loop_32, 1),
                "batch256_frames_per_s": round(ours_256),
                "training_gflops_per_s": round(achieved / 1e9, 1),
                "matmul_gflops_per_s": round(peak / 1e9, 1),
                "flop_rate_fraction": round(achieved / peak, 2),
                "pytorch": probe,
                "targets": {"throughput_ratio": 12, "flop_rate_fraction": 0.5},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
