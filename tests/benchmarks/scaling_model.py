"""Data-parallel training on paper: the step time of N devices from a step's compute and
one ring all-reduce of the gradient, for the textbook network (24-256-256-256 MLPs,
latent 2: 277,532 parameters, 1.11 MB of float32 gradient).

    step(N, B) = max(compute(B / N), 0) + allreduce(N)
    compute(b) = fixed + b * per_frame                   (one device's share of the batch)
    allreduce(N) = 2 (N - 1) * latency + 2 (N - 1) / N * bytes / bandwidth   (NCCL's ring)

vaetraj makes the one all-reduce after the whole backward pass, so the two add up; with
an all-reduce that overlapped the backward pass (per-layer collectives, as NCCL and
XLA's async collectives allow) the step could approach max(compute, allreduce): the
`speedup_if_hidden` bound. Communication is at most half the step once a device's share
of the batch takes as long as the all-reduce: b* = (allreduce(N) - fixed) / per_frame.

The CPU figures are this machine's, from `bench_processes.py` and its all-reduce probe;
the GPU figures are assumptions, stated in `GPU` below (no GPU was measured): replace
them with your cluster's (`nccl-tests`' all_reduce_perf gives latency and bus
bandwidth; one step of `vaetraj train` on one GPU gives fixed and per_frame).

    python tests/benchmarks/scaling_model.py [--cpu-fixed-ms 1.205 --cpu-frame-us 61.35]
"""

from __future__ import annotations

import argparse
import json

PARAMETERS = (
    (24 * 256 + 256)
    + 2 * (256 * 256 + 256)
    + (256 * 4 + 4)
    + ((2 * 256 + 256) + 2 * (256 * 256 + 256) + (256 * 24 + 24))
)
GRADIENT_BYTES = 4 * PARAMETERS

# Assumptions for GPUs (not measured here). One H100 runs this network's step in about
# `fixed` (kernel launches: the network is small) plus `per_frame` per frame; NVLink 4
# within a node, InfiniBand NDR (400 Gb/s, one adapter per GPU) between nodes.
GPU = {
    "fixed_ms": 0.25,
    "per_frame_us": 0.05,
    "nvlink": {"latency_us": 3.0, "bandwidth_gb_s": 350.0},
    "infiniband": {"latency_us": 8.0, "bandwidth_gb_s": 45.0},
}


def allreduce_s(devices: int, latency_s: float, bandwidth: float) -> float:
    if devices == 1:
        return 0.0
    steps = 2 * (devices - 1)
    return steps * latency_s + steps / devices * GRADIENT_BYTES / bandwidth


def project(devices: int, batch: int, fixed_s: float, frame_s: float, link: dict) -> dict:
    """One global batch's step over `devices`: vaetraj's (the all-reduce after the whole
    backward pass) and the bound if the all-reduce hid entirely behind compute."""
    reduce = allreduce_s(devices, link["latency_us"] * 1e-6, link["bandwidth_gb_s"] * 1e9)
    compute = fixed_s + batch / devices * frame_s
    single = fixed_s + batch * frame_s
    return {
        "devices": devices,
        "batch": batch,
        "allreduce_us": round(reduce * 1e6, 1),
        "step_us": round((compute + reduce) * 1e6, 1),
        "speedup": round(single / (compute + reduce), 2),
        "speedup_if_hidden": round(single / max(compute, reduce), 2),
        # a device's share of the batch whose compute takes as long as the all-reduce:
        # beyond it, communication is less than half of vaetraj's step
        "frames_per_device_for_even": round(max(0.0, (reduce - fixed_s) / frame_s)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    # measured here (bench_processes.py's one_core_step): 1.2 ms a step + 61 us a frame
    parser.add_argument("--cpu-fixed-ms", type=float, default=1.205)
    parser.add_argument("--cpu-frame-us", type=float, default=61.35)
    # the gloo all-reduce between two processes on this machine: ~3.9 ms for any
    # message up to 64 KB, 7.8 ms for 4 MB (fitted: latency 1.95 ms a ring step, 1 GB/s)
    parser.add_argument("--gloo-latency-ms", type=float, default=1.95)
    parser.add_argument("--gloo-gb-s", type=float, default=1.0)
    args = parser.parse_args()
    gloo = {"latency_us": args.gloo_latency_ms * 1e3, "bandwidth_gb_s": args.gloo_gb_s}
    cpu_fixed, cpu_frame = args.cpu_fixed_ms * 1e-3, args.cpu_frame_us * 1e-6
    gpu_fixed, gpu_frame = GPU["fixed_ms"] * 1e-3, GPU["per_frame_us"] * 1e-6
    report = {
        "parameters": PARAMETERS,
        "gradient_bytes": GRADIENT_BYTES,
        "cpu_two_processes_gloo": [
            project(2, batch, cpu_fixed, cpu_frame, gloo) for batch in (32, 256, 2048)
        ],
        "gpu_one_node_nvlink": [
            project(devices, batch, gpu_fixed, gpu_frame, GPU["nvlink"])
            for devices in (8,)
            for batch in (256, 1024, 8192)
        ],  # fmt: skip
        "gpu_four_nodes_of_four": [
            project(16, batch, gpu_fixed, gpu_frame, GPU["infiniband"])
            for batch in (256, 1024, 8192, 65536)
        ],
        "gpu_assumptions": GPU,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
