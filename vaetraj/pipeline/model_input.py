"""The reading of new trajectories for a model: its atoms picked in the files, and the
frames aligned exactly as its training frames were (`encode`, `evaluate`, `optimize`
and `plot` read through it)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from vaetraj.errors import BadInputError
from vaetraj.io.trajectory import ReadOptions, Trajectory
from vaetraj.pipeline.model import Model
from vaetraj.pipeline.representation import ALIGN_METHODS


def frame_aligner(model: Model) -> Callable[[np.ndarray], np.ndarray]:
    """Frames as read to what the model encodes: aligned as its training frames were
    (a featurized model's frames as they are: its features ignore rigid motions)."""
    return model.representation.aligner(model)


def _atom_names(topology) -> list[str]:
    return [f"{atom.residue.name}:{atom.name}" for atom in topology.atoms]


def open_for_model(
    model: Model, inputs: Sequence[str | os.PathLike], read_options: ReadOptions = ReadOptions()
) -> tuple[Trajectory, list[str]]:
    """Open trajectory files and pick the model's atoms in them.

    An explicit read_options.select wins. Otherwise a file with as many atoms as the
    model is taken whole; a larger one gets the model's recorded selection (or its atom
    indices when there is no topology to select on). Atom counts must then agree, and
    atom names too when both sides know them. Returns the trajectory and notes."""
    notes: list[str] = []
    representation = model.representation
    if representation.kind == "aligned" and representation.method not in ALIGN_METHODS:
        notes.append(
            f"the model's frames were aligned outside vaetraj "
            f"({representation.method}); frames are used as they are"
        )
    where = ", ".join(str(p) for p in inputs)
    trajectory = Trajectory(list(inputs), dataclasses.replace(read_options))
    if read_options.select is None and trajectory.atoms != model.atoms:
        recorded = (model.alignment.get("read_options") or {}).get("select")
        indices = np.asarray(model.record.atom_indices)
        if recorded and trajectory.topology is not None:
            selection = recorded
        elif indices.size and indices.max() < trajectory.atoms:
            selection = "index " + " ".join(str(int(i)) for i in indices)
        else:
            selection = None
        if selection is not None:
            trajectory = Trajectory(
                list(inputs), dataclasses.replace(read_options, select=selection)
            )
            notes.append(f"selected the model's {model.atoms} atoms ({selection[:60]})")
    if (trajectory.atoms, trajectory.dims) != (model.atoms, model.dims):
        raise BadInputError(
            f"has {trajectory.atoms} atoms in {trajectory.dims}D (after selection) but the "
            f"model was trained on {model.atoms} atoms in {model.dims}D",
            path=where,
        )
    if trajectory.topology is not None and model.topology is not None:
        ours, theirs = _atom_names(model.topology), _atom_names(trajectory.topology)
        mismatched = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
        if mismatched:
            first = mismatched[0]
            raise BadInputError(
                f"atom {first} is {theirs[first]} but the model's atom {first} is "
                f"{ours[first]} ({len(mismatched)} of {model.atoms} names differ)",
                path=where,
            )
    return trajectory, notes


def iter_model_frames(
    model: Model, trajectory: Trajectory, chunk_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Chunks (frames, atoms, dims) float32 of a trajectory opened for the model,
    aligned as its training frames were (`frame_aligner`)."""
    for xyz, _ in iter_model_chunks(model, trajectory, chunk_frames):
        yield xyz


def iter_model_chunks(
    model: Model, trajectory: Trajectory, chunk_frames: int | None = None
) -> Iterator[tuple[np.ndarray, int]]:
    """As `iter_model_frames`, with the number of the input file each chunk is from (a
    chunk never spans two)."""
    aligner = frame_aligner(model)
    for chunk in trajectory.iter_chunks(chunk_frames):
        yield aligner(chunk.xyz), chunk.source
