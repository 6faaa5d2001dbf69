"""Training across processes and machines with JAX's own distributed runtime.

`join` starts `jax.distributed` for this process: from the coordinator's address, the
process count and this process's index, or from SLURM's or Open MPI's environment when
they are not given. It waits for the others up to a deadline (`--join-timeout`), open
to signals, and then checks that every process was given the same count. Every process then runs the same training; the batch axis of the
mesh spans the devices of all of them (`global_mesh`), each process feeds its own
shard of frames (`shard_of`) as its rows of every global batch (`to_global`), and XLA
sums the gradients across processes (gloo on the CPU, NCCL on GPUs).

A process that dies closes its connections: the others' next collective fails at once,
and `peers_watched` turns that into `PeerLostError` (exit 75: resumable from the last
checkpoint). A process that hangs stops sending heartbeats, and the runtime ends the
others after `HEARTBEAT_S` seconds.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from vaetraj._interrupt import check_stop
from vaetraj.configs import JOIN_TIMEOUT_S
from vaetraj.errors import InterruptedRunError, UsageError, VaetrajError

HEARTBEAT_S = 30  # a process silent this long is taken for dead
# how long process 0 waits, on an error, for the others to report theirs (see leaving_last)
EXIT_GRACE_S = 5
_RUNTIME_GRACE_S = 60  # the runtime's own deadline is later: ours ends the wait cleanly


class PeerLostError(InterruptedRunError):
    """Another process of the run stopped (a crash, a kill, a lost node)."""


@dataclass(frozen=True)
class Processes:
    """The processes of a run: how many, and which one this is (0 writes)."""

    count: int = 1
    index: int = 0

    @property
    def primary(self) -> bool:
        return self.index == 0


def current() -> Processes:
    """This run's processes (one unless `join` started more)."""
    return Processes(jax.process_count(), jax.process_index())


def _cluster_size() -> int:
    """The tasks Open MPI (mpirun) or SLURM (srun: SLURM_PROCID set) started; 1 when
    neither started several."""
    sizes = [os.environ.get("OMPI_COMM_WORLD_SIZE")]
    if "SLURM_PROCID" in os.environ:
        sizes.append(os.environ.get("SLURM_NTASKS"))
    counts = [int(size) for size in sizes if size is not None and size.isdigit()]
    return max([1, *counts])


def expected_count(num_processes: int | None) -> int:
    """How many processes the run will have, known before joining: --num-processes, or
    the cluster's task count (SLURM, Open MPI)."""
    return num_processes if num_processes is not None else _cluster_size()


def check_coordinator(coordinator: str) -> None:
    """HOST:PORT with a port the network can use (1 to 65535), refused before joining."""
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(
            f"--coordinator must be HOST:PORT with a port from 1 to 65535, got {coordinator!r}"
        )


def join(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = JOIN_TIMEOUT_S,
) -> Processes:
    """Start `jax.distributed` for this process, before anything else uses JAX.

    Args:
        coordinator: HOST:PORT of process 0's coordination service.
        num_processes: the processes of the run.
        process_id: this process's index, 0 to num_processes - 1.
        With none of them, a run under SLURM (srun) or Open MPI (mpirun) with more than
        one task is detected from the environment; else there is one process.
        timeout: seconds to wait for the other processes; then a UsageError. A signal
            (Ctrl-C, SIGTERM) ends the wait at once (KeyboardInterrupt).

    Returns:
        The run's processes.
    """
    if not will_join(coordinator, num_processes, process_id, timeout=timeout):
        return Processes()
    if coordinator is None:
        return _initialize(timeout=timeout)  # the cluster's environment says who is who
    assert num_processes is not None and process_id is not None
    joined = _initialize(coordinator, num_processes, process_id, timeout=timeout)
    _agree(joined, num_processes)
    return joined


def will_join(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    *,
    timeout: float = JOIN_TIMEOUT_S,
) -> bool:
    """Check `join`'s arguments (UsageError) without joining; whether it will join
    other processes."""
    if not timeout > 0:
        raise UsageError(f"--join-timeout must be positive, got {timeout}")
    given = [coordinator, num_processes, process_id]
    if all(value is None for value in given):
        return _cluster_size() > 1
    if any(value is None for value in given):
        raise UsageError("--coordinator, --num-processes and --process-id go together")
    assert num_processes is not None and process_id is not None and coordinator is not None
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise UsageError(
            f"--process-id must be 0 to {num_processes - 1} for --num-processes "
            f"{num_processes}, got {process_id}"
        )
    check_coordinator(coordinator)
    return num_processes > 1


def _initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float,
) -> Processes:
    """jax.distributed.initialize, waited for with a deadline and open to signals: the
    runtime blocks in C++ (no Python signal handler runs there, and at its own deadline
    it aborted with a C++ stack trace), so it runs in a thread while this one waits."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    outcome: dict[str, BaseException | None] = {}

    def connect() -> None:
        try:
            jax.distributed.initialize(
                coordinator,
                num_processes,
                process_id,
                initialization_timeout=int(timeout) + _RUNTIME_GRACE_S,
                heartbeat_timeout_seconds=HEARTBEAT_S,
            )
            outcome["error"] = None
        except BaseException as error:  # handed to the waiting thread
            outcome["error"] = error

    thread = threading.Thread(target=connect, name="vaetraj-join", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while thread.is_alive():
        thread.join(0.2)
        check_stop()  # a signal ends the wait (the runtime's thread dies with the process)
        if thread.is_alive() and time.monotonic() > deadline:
            raise UsageError(
                f"the other processes did not join within {timeout:g} s (is every process "
                "started, with the same --coordinator and --num-processes? --join-timeout "
                "waits longer)"
            )
    error = outcome.get("error")
    if isinstance(error, (RuntimeError, ValueError)):  # JaxRuntimeError is a RuntimeError
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"the processes could not join: {first}") from None
    if error is not None:
        raise error
    return current()


def _agree(joined: Processes, num_processes: int) -> None:
    """Every process must have been given the same --num-processes (the coordinator's
    is the one the runtime keeps): compared once they are joined."""
    counts = np.asarray(
        multihost_utils.process_allgather(np.array([num_processes], np.int32), tiled=False)
    ).ravel()
    if len(set(counts.tolist())) > 1 or joined.count != num_processes:
        raise UsageError(
            f"the processes were given different --num-processes ({sorted(set(counts.tolist()))}); "
            "give every process the same count"
        )


def global_mesh() -> Mesh | None:
    """A mesh with one axis, "batch", over every device of every process (None for a
    single device)."""
    devices = jax.devices()
    return Mesh(np.array(devices), ("batch",)) if len(devices) > 1 else None


def replicated(tree, sharding: jax.sharding.Sharding):
    """A tree of host or local arrays put whole on every device of `sharding` (over
    several processes, each gives its own copy, the same in all of them)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(value):
        host = np.asarray(value)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree)


def shard_of(index: np.ndarray, processes: Processes) -> np.ndarray:
    """This process's part of `index`: contiguous, sizes differing by at most one."""
    return np.array_split(np.asarray(index), processes.count)[processes.index]


def to_global(local: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """One array across the processes from each one's part (its rows of axis 1)."""
    return jax.make_array_from_process_local_data(sharding, local)


def local_copy(tree):
    """A tree of arrays replicated over every process's devices as arrays on this
    process's first device (for work that is this process's alone)."""

    def one(value):
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            return value.addressable_data(0)
        return value

    return jax.tree.map(one, tree)


def summed(values: np.ndarray, processes: Processes) -> np.ndarray:
    """`values` summed over the processes (every process gets the same sum; each
    process's part travels as float32)."""
    if processes.count == 1:
        return values
    gathered = multihost_utils.process_allgather(np.asarray(values, np.float32), tiled=False)
    return np.asarray(gathered, np.float64).sum(axis=0)


def least(value: int, processes: Processes) -> int:
    """The smallest of the processes' `value`s (a setting they must share; 0 to 2**62)."""
    if processes.count == 1:
        return value
    words = np.array([value >> 31, value & (2**31 - 1)], np.int32)  # JAX's ints are 32-bit
    gathered = np.asarray(multihost_utils.process_allgather(words, tiled=False), np.int64)
    return int(np.min(gathered[:, 0] * 2**31 + gathered[:, 1]))


@contextlib.contextmanager
def peers_watched(processes: Processes, checkpoint: str | None) -> Iterator[None]:
    """Turn a collective that failed because a peer stopped into `PeerLostError` (XLA
    raises a RuntimeError inside a compiled step, but a ValueError from the host-side
    gather of `summed`, as when a peer is killed between epochs)."""
    try:
        yield
    except (RuntimeError, ValueError) as error:
        text = str(error)
        if processes.count == 1 or not any(
            sign in text for sign in ("Gloo", "Connection closed", "NCCL", "heartbeat")
        ):
            raise
        where = f"; the last checkpoint is {checkpoint}" if checkpoint else ""
        raise PeerLostError(
            f"another of the {processes.count} processes stopped{where}; run the same "
            "command with --resume on every process to continue"
        ) from None


@contextlib.contextmanager
def leaving_last(processes: Processes) -> Iterator[None]:
    """On an error, process 0 leaves EXIT_GRACE_S after the others. It hosts the
    runtime's coordination service, and the runtime aborts a process whose service is
    gone: an error every process meets (a usage error, a model that does not work)
    would otherwise end the others with the runtime's crash report, not their line."""
    try:
        yield
    except VaetrajError as error:
        if processes.count > 1 and processes.primary and not isinstance(error, PeerLostError):
            time.sleep(EXIT_GRACE_S)
        raise
