"""Grain against our loader (issue 15): the batches of a streamed epoch of an aligned
file (50 atoms in 3D, `--batch-size 256`, `--memory-budget 64MB`), made by our
`stream_batches` and by three Grain 0.2 pipelines, as ratios to ours in the same run:

- `loader`: each loader alone, in a process of its own, feeding the same consumer the
  trainer has (`windows_of`, the blocks of batches the compiled window takes): frames/s
  over the first `--limit` frames of an epoch, and the process's peak resident memory.
- `training`: `vaetraj train` streamed within 64MB with a Grain pipeline in place of
  `stream_batches` (the rest of the command unchanged; `grain_window` and the fastest):
  the report's frames/s and the command's peak resident memory, against ours.

The Grain pipelines (each in the shuffled order its seed gives; h5py's lock serializes
the reads, so Grain's threads overlap only its own Python work):

- `grain_frames`: Grain's global shuffle, `MapDataset.source(frames).shuffle().batch()`,
  one read per frame.
- `grain_window`: the file's chunks shuffled and read whole (`MapDataset` of chunks),
  split into frames (`FlatMapIterDataset`), shuffled in a window of as many frames as
  our buffer holds (`WindowShuffleIterDataset`), batched: our order, built from Grain.
- `grain_rebatch`: the chunks shuffled, each shuffled within itself (`random_map`) and
  cut into batches (`RebatchIterDataset`): no per-frame Python, but each batch mixes
  frames of one or two chunks only (a weaker shuffle than ours).

    python tests/benchmarks/bench_grain.py [--frames 2000000] [--limit 400000]

Needs `pip install grain` (not a dependency of vaetraj).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 256
BUDGET = 64 << 20
THREADS = 2  # the CI machine's cores
TRAIN = ["--hidden", "64", "--layers", "3", "--batch-size", str(BATCH), "--val-fraction",
         "0.01", "--min-explained", "0", "--json", "--overwrite", "--memory-budget", "64MB"]  # fmt: skip


def _seed(seed: np.random.SeedSequence) -> int:
    """Grain's int seed from the epoch's NumPy seed."""
    return int(seed.generate_state(1)[0])


class _FrameSource:
    """Grain's random-access source: one flat frame of `members` per index."""

    def __init__(self, source: Any, members: np.ndarray):
        self.source, self.members = source, members

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, index: int) -> np.ndarray:
        frame = int(self.members[index])
        return np.asarray(self.source[frame : frame + 1], np.float32).reshape(-1)


class _Rows:
    """A chunk's frames as Grain elements, one per row."""

    max_fan_out = 1 << 16

    def flat_map(self, block: np.ndarray) -> list[np.ndarray]:
        return list(block)


def _read_options():
    import grain

    return grain.ReadOptions(num_threads=THREADS, prefetch_buffer_size=2)


def grain_frames(source, members, *, batch_size, chunk_rows, buffer_frames, seed):
    import grain

    frames = grain.MapDataset.source(_FrameSource(source, np.asarray(members)))
    batches = frames.shuffle(seed=_seed(seed)).batch(batch_size)
    yield from batches.to_iter_dataset(_read_options())


def _chunks(source, members, chunk_rows, seed):
    import grain

    from vaetraj.training._stream import _read, _runs

    runs = _runs(np.asarray(members), chunk_rows)
    return grain.MapDataset.source(runs).shuffle(seed=_seed(seed)).map(
        lambda run: _read(source, run)
    )  # fmt: skip


def grain_window(source, members, *, batch_size, chunk_rows, buffer_frames, seed):
    from grain import experimental

    chunks = _chunks(source, members, chunk_rows, seed).to_iter_dataset(_read_options())
    frames = experimental.FlatMapIterDataset(chunks, _Rows())
    window = experimental.WindowShuffleIterDataset(
        frames, window_size=buffer_frames, seed=_seed(seed) + 1
    )
    yield from window.batch(batch_size)


def grain_rebatch(source, members, *, batch_size, chunk_rows, buffer_frames, seed):
    from grain import experimental

    chunks = _chunks(source, members, chunk_rows, seed).random_map(
        lambda block, rng: block[rng.permutation(len(block))], seed=_seed(seed) + 1
    )
    rebatched = experimental.RebatchIterDataset(chunks.to_iter_dataset(_read_options()),
                                                batch_size=batch_size)  # fmt: skip
    yield from rebatched


def ours(source, members, **options):
    from vaetraj.training import stream_batches

    yield from stream_batches(source, members, **options)


LOADERS = {"ours": ours, "grain_frames": grain_frames, "grain_window": grain_window,
           "grain_rebatch": grain_rebatch}  # fmt: skip


def run_loader(name: str, path: Path, limit: int) -> dict:
    """In this process: `name`'s batches of a training epoch of `path` until `limit`
    frames, through the trainer's `windows_of` (and our reader thread for ours: Grain
    has its own)."""
    from vaetraj.io.aligned import open_aligned
    from vaetraj.training import prefetch, windows_of

    data = open_aligned(path)
    source = data.xyz.reshape(len(data.xyz), -1)
    frame_bytes = source.shape[1] * 4
    options = dict(batch_size=BATCH, chunk_rows=source.chunk_rows,
                   buffer_frames=BUDGET // 4 // frame_bytes, seed=np.random.SeedSequence(0))  # fmt: skip
    steps = max(1, BUDGET // 16 // frame_bytes // BATCH)
    members = np.arange(len(source))
    started = time.perf_counter()
    batches = LOADERS[name](source, members, **options)
    windows = windows_of(batches, rows=BATCH, steps=steps)
    if name == "ours":
        windows = prefetch(windows)
    hashes = []
    frames = 0
    for block, masks in windows:
        rows = block[masks > 0]
        frames += len(rows)
        hashes.append(_hashes(rows))
        if frames >= limit:
            break
    seconds = time.perf_counter() - started
    return {"frames": frames, "frames_per_s": round(frames / seconds),
            "distinct_frames": len(np.unique(np.concatenate(hashes))),
            "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 3)}  # fmt: skip


def _hashes(rows: np.ndarray) -> np.ndarray:
    """A hash of each row's values: the benchmark's frames all differ (make_data adds
    noise), so distinct hashes count distinct frames (a loader must repeat none)."""
    bits = rows.view(np.uint32).astype(np.uint64)
    weights = np.random.default_rng(0).integers(1, 1 << 61, rows.shape[1], dtype=np.uint64)
    return (bits * weights).sum(1)


def patched_train(loader: str, *args: str) -> None:
    """`vaetraj train` with `loader` in place of `stream_batches`."""
    from vaetraj.cli.app import main
    from vaetraj.pipeline.runtime import streaming

    streaming.stream_batches = LOADERS[loader]
    sys.argv = ["vaetraj", *args]
    main()


def measure_training(loader: str, data: Path, folder: Path, epochs: int) -> dict:
    from bench_scale import _PEAK

    model = folder / f"model_grain_{loader}.h5"
    train = ["train", str(data), "-o", str(model), "--epochs", str(epochs), *TRAIN]
    command = [sys.executable, str(Path(__file__)), "--train-with", loader, "--", *train]
    run = subprocess.run(
        [sys.executable, "-c", _PEAK, *command], capture_output=True, text=True, check=True
    )
    report = json.loads(run.stdout)
    return {"streamed": report["streamed"], "frames_per_s": round(report["frames_per_s"]),
            "val_loss": round(report["val_loss"], 3),
            "peak_gb": round(int(run.stderr.strip().splitlines()[-1]) / 1e9, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2_000_000)
    parser.add_argument("--limit", type=int, default=400_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vaetraj-bench-scale"))
    parser.add_argument("--loader", choices=LOADERS, help=argparse.SUPPRESS)
    parser.add_argument("--train-with", choices=LOADERS, help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_with:
        return patched_train(args.train_with, *args.rest)
    try:
        import grain  # noqa: F401
    except ImportError:
        sys.exit("bench_grain.py needs Grain: pip install grain")
    from bench_scale import make_data  # not before --train-with: its peak is the command's

    args.dir.mkdir(parents=True, exist_ok=True)
    data = make_data(args.frames, args.dir)
    if args.loader:
        return print(json.dumps(run_loader(args.loader, data, args.limit)))
    loaders = {}
    for name in LOADERS:
        command = [sys.executable, __file__, "--loader", name, "--frames", str(args.frames),
                   "--limit", str(args.limit), "--dir", str(args.dir)]  # fmt: skip
        loaders[name] = json.loads(subprocess.run(command, capture_output=True, text=True,
                                                  check=True).stdout)  # fmt: skip
    fastest = max((n for n in LOADERS if n != "ours"), key=lambda n: loaders[n]["frames_per_s"])
    trained = dict.fromkeys(["ours", "grain_window", fastest])  # ours, our order, the fastest
    training = {n: measure_training(n, data, args.dir, args.epochs) for n in trained}
    base = loaders["ours"]
    print(json.dumps({
        "loader": loaders,
        "loader_frames_per_s_over_ours": {
            n: round(v["frames_per_s"] / base["frames_per_s"], 3) for n, v in loaders.items()},
        "training": training,
        "training_frames_per_s_over_ours": {
            n: round(v["frames_per_s"] / training["ours"]["frames_per_s"], 3)
            for n, v in training.items()},
        "training_peak_over_ours": {
            n: round(v["peak_gb"] / training["ours"]["peak_gb"], 3) for n, v in training.items()},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
