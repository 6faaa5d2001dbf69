"""Alignment kernels against independent NumPy and mdtraj references."""

from __future__ import annotations

import jax
import mdtraj as md
import numpy as np
import pytest
from conftest import random_rotation, shared
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vaetraj import AlignConfig, align
from vaetraj.geometry import (
    compute_index_weights,
    make_block_aligner,
    make_kabsch_target,
    superpose_frame,
)


def numpy_principal(frame: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Reference: eigh of the gyration tensor, largest first, index-moment signs,
    last axis completing a proper rotation. float64 throughout."""
    centred = frame - weights @ frame
    gyration = (centred * weights[:, None]).T @ centred
    values, vectors = np.linalg.eigh(gyration)
    axes = vectors[:, ::-1].T.copy()
    index = np.arange(frame.shape[0]) - weights @ np.arange(frame.shape[0])
    for k in range(frame.shape[1] - 1):
        if (weights * index) @ (centred @ axes[k]) < 0:
            axes[k] = -axes[k]
    if frame.shape[1] == 2:
        axes[1] = [-axes[0, 1], axes[0, 0]]
    else:
        axes[2] = np.cross(axes[0], axes[1])
    return centred @ axes.T


def numpy_kabsch(frame: np.ndarray, reference: np.ndarray, weights: np.ndarray):
    """Reference: weighted Kabsch by SVD in float64; returns (superposed, rmsd)."""
    x = frame - weights @ frame
    y = reference - weights @ reference
    h = (x * weights[:, None]).T @ y
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    correction = np.eye(frame.shape[1])
    correction[-1, -1] = d
    rotation = vt.T @ correction @ u.T
    moved = x @ rotation.T
    return moved, np.sqrt(weights @ np.sum((moved - y) ** 2, axis=1))


@pytest.mark.parametrize("dims", [2, 3])
def test_principal_matches_numpy_reference(dims, polymer_2d, polymer_3d):
    data = (polymer_2d if dims == 2 else polymer_3d).astype(np.float64)
    result = align(data)
    weights = np.full(data.shape[1], 1.0 / data.shape[1])
    expected = np.stack([numpy_principal(frame, weights) for frame in data])
    ok = ~result.ambiguous
    assert ok.sum() > 0.9 * len(data)
    np.testing.assert_allclose(result.xyz[ok], expected[ok], atol=2e-5)
    # and the principal axes really are the coordinate axes: gyration tensor diagonal,
    # variances in decreasing order
    centred = result.xyz.astype(np.float64)
    gyration = np.einsum("fai,faj->fij", centred, centred) / data.shape[1]
    off = gyration - np.einsum("fii->fi", gyration)[:, :, None] * np.eye(dims)
    assert np.abs(off).max() < 1e-4
    diag = np.einsum("fii->fi", gyration)
    assert np.all(np.diff(diag[ok], axis=1) <= 1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_principal_is_invariant_to_rigid_motion(dims, polymer_2d, polymer_3d):
    data = (polymer_2d if dims == 2 else polymer_3d).astype(np.float64)
    rng = np.random.default_rng(7)
    rotations = np.stack([random_rotation(rng, dims) for _ in data])
    shifts = rng.normal(scale=50.0, size=(len(data), 1, dims))
    moved = np.einsum("fij,faj->fai", rotations, data) + shifts
    a, b = align(data), align(moved)
    ok = ~a.ambiguous
    error = np.linalg.norm(a.xyz - b.xyz, axis=(1, 2)) / np.linalg.norm(a.xyz, axis=(1, 2))
    assert error[ok].max() < 1e-5
    # only frames right at the tolerance may change their ambiguous flag under motion
    assert np.sum(a.ambiguous != b.ambiguous) <= 2


@settings(max_examples=60, deadline=None)
@given(
    frame=arrays(np.float64, (9, 3), elements=st.floats(-3, 3)),
    angles=st.tuples(*[st.floats(0, 2 * np.pi)] * 3),
    shift=arrays(np.float64, (3,), elements=st.floats(-100, 100)),
)
def test_principal_invariance_hypothesis(frame, angles, shift):
    weights = np.full(9, 1 / 9)
    centred = frame - frame.mean(0)
    assume(np.sqrt(np.mean(np.sum(centred**2, 1))) > 0.1)
    a, b, c = angles
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    moved = frame @ (rz @ ry @ rx).T + shift
    first, second = align(frame[None]), align(moved[None])
    assume(not first.ambiguous[0])
    scale = np.linalg.norm(first.xyz[0])
    # alignment works in float32: the moved frame's coordinates (up to ~100) carry
    # rounding of eps32 * |x| each, which no alignment can undo
    rounding = 8 * np.finfo(np.float32).eps * np.abs(moved).max() * np.sqrt(moved.size)
    assert np.linalg.norm(first.xyz[0] - second.xyz[0]) < 1e-5 * scale + rounding
    np.testing.assert_allclose(
        first.xyz[0], numpy_principal(frame, weights), atol=1e-5 * max(scale, 1)
    )


def test_principal_keeps_chirality(polymer_3d):
    """A mirror image stays a mirror image: the rotation is proper, never a reflection."""
    data = polymer_3d.astype(np.float64)
    mirrored = data * np.array([1.0, 1.0, -1.0])
    a, b = align(data), align(mirrored)
    ok = ~a.ambiguous & ~b.ambiguous
    # aligned mirror images differ by a reflection of the last axis only
    np.testing.assert_allclose(b.xyz[ok] * np.array([1, 1, -1]), a.xyz[ok], atol=1e-4)
    assert np.abs(b.xyz[ok] - a.xyz[ok]).max() > 0.1


def test_ambiguous_frames_are_flagged():
    """A square (degenerate gyration tensor) and a rectangle traversed symmetrically
    (index moment zero) are ambiguous; an open chain is not."""
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    chain = np.array([[0, 0], [1, 0], [2, 0], [3, 0.5]])
    result = align(np.stack([square, square * [2.0, 1.0], chain]))
    assert result.ambiguous.tolist() == [True, True, False]
    assert result.report.ambiguous_frames == 2


@pytest.mark.parametrize("dims", [2, 3])
def test_kabsch_matches_numpy_svd(dims, polymer_2d, polymer_3d):
    data = (polymer_2d if dims == 2 else polymer_3d).astype(np.float64)
    rng = np.random.default_rng(3)
    weights = rng.uniform(0.5, 2.0, size=data.shape[1])
    weights /= weights.sum()
    target = make_kabsch_target(data[0], weights)
    kernel = jax.jit(jax.vmap(superpose_frame, in_axes=(0, None)))
    result = kernel(data.astype(np.float32), target)
    expected = [numpy_kabsch(frame, data[0], weights) for frame in data]
    np.testing.assert_allclose(result.xyz, np.stack([e[0] for e in expected]), atol=5e-5)
    np.testing.assert_allclose(result.rmsd, [e[1] for e in expected], atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(np.asarray(result.rotation)), 1.0, atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_kabsch_undoes_rigid_motion(dims, polymer_2d, polymer_3d):
    frame = (polymer_2d if dims == 2 else polymer_3d)[5].astype(np.float64)
    rng = np.random.default_rng(11)
    copies = np.stack(
        [frame @ random_rotation(rng, dims).T + rng.normal(scale=5, size=dims) for _ in range(20)]
    )
    result = align(copies, AlignConfig(method="kabsch"))
    assert result.rmsd.max() < 1e-5
    np.testing.assert_allclose(
        result.xyz, np.broadcast_to(result.reference, result.xyz.shape), atol=2e-5
    )


def test_kabsch_equals_mdtraj_on_polymer(polymer_files):
    trajectory = md.load(str(polymer_files / "polymer.dcd"), top=str(polymer_files / "polymer.pdb"))
    expected_rmsd = md.rmsd(trajectory, trajectory, 3)
    superposed = trajectory.superpose(trajectory, 3)
    result = align(
        [polymer_files / "polymer.dcd"],
        AlignConfig(method="kabsch", reference=3, equal_masses=True),
        read_options=__import__("vaetraj").ReadOptions(top=polymer_files / "polymer.pdb"),
    )
    np.testing.assert_allclose(result.rmsd, expected_rmsd, atol=1e-4)
    # both are optimal fits: mdtraj's superposed frames sit as close to the reference as
    # ours (their coordinates may differ where the fit is nearly degenerate)
    reference = superposed.xyz[3] - superposed.xyz[3].mean(axis=0)
    theirs = np.sqrt(
        np.mean(
            np.sum((superposed.xyz - superposed.xyz.mean(1, keepdims=True) - reference) ** 2, -1),
            -1,
        )
    )
    np.testing.assert_allclose(result.rmsd, theirs, atol=1e-4)
    # and our coordinates match a float64 SVD reference
    data = md.load(
        str(polymer_files / "polymer.dcd"), top=str(polymer_files / "polymer.pdb")
    ).xyz.astype(np.float64)
    weights = np.full(data.shape[1], 1 / data.shape[1])
    expected = np.stack([numpy_kabsch(frame, data[3], weights)[0] for frame in data])
    np.testing.assert_allclose(result.xyz, expected, atol=1e-4)


def test_kabsch_equals_mdtraj_on_alanine_dipeptide():
    dcd, pdb = shared("alanine-dipeptide", "ala2.dcd"), shared("alanine-dipeptide", "ala2.pdb")
    from vaetraj import ReadOptions

    trajectory = md.load(str(dcd), top=str(pdb))
    heavy = trajectory.topology.select("not element H")
    expected = md.rmsd(trajectory, trajectory, 0, atom_indices=heavy)
    result = align(
        [dcd],
        AlignConfig(method="kabsch", reference=0, equal_masses=True),
        ReadOptions(top=pdb, select="not element H"),
    )
    assert result.xyz.shape == (8000, heavy.size, 3)
    np.testing.assert_allclose(result.rmsd, expected, atol=1e-4)


def test_kabsch_mean_reference_converges_to_the_mean(polymer_3d):
    result = align(polymer_3d, AlignConfig(method="kabsch", reference="mean"))
    assert result.report.mean_iterations >= 2
    mean = result.xyz.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(mean, result.reference, atol=1e-4)
    # the mean is a better reference than any single frame for the average RMSD
    first = align(polymer_3d, AlignConfig(method="kabsch", reference=0))
    assert result.rmsd.mean() < first.rmsd.mean()


def test_block_kernel_compiles_once(polymer_2d):
    """Blocks are padded to one size, so the second call does not recompile."""
    kernel = make_block_aligner("principal", 1e-2)
    weights = np.full(12, 1 / 12)
    from vaetraj.geometry import AlignTarget

    target = AlignTarget(
        weights=jax.numpy.asarray(weights, dtype=np.float32),
        index_weights=jax.numpy.asarray(compute_index_weights(weights), dtype=np.float32),
        kabsch=make_kabsch_target(polymer_2d[0], weights),
    )
    kernel(polymer_2d[:64], target)
    with jax.log_compiles():
        before = kernel._cache_size()
        kernel(polymer_2d[64:128], target)
        kernel(polymer_2d[128:192] + 1.0, target)
    assert kernel._cache_size() == before


def test_mass_weighted_kabsch_to_a_reference_file(tmp_path, polymer_3d):
    """Masses from the topology weight the centre and the fit; the reference can be a
    structure file holding all atoms while only a selection is aligned."""
    from vaetraj import ReadOptions

    topology = md.Topology()
    residue = topology.add_residue("MIX", topology.add_chain())
    elements = [md.element.carbon, md.element.oxygen, md.element.sulfur]
    for index in range(polymer_3d.shape[1]):
        topology.add_atom(f"A{index}", elements[index % 3], residue)
    trajectory = md.Trajectory(polymer_3d.astype(np.float32), topology)
    trajectory.save_dcd(str(tmp_path / "mix.dcd"))
    trajectory[10].save_pdb(str(tmp_path / "ref.pdb"))

    selected = np.arange(2, 10)
    result = align(
        [tmp_path / "mix.dcd"],
        AlignConfig(method="kabsch", reference=str(tmp_path / "ref.pdb")),
        ReadOptions(top=tmp_path / "ref.pdb", select="index 2 to 9"),
    )
    assert result.report.weights == "mass"
    masses = np.array([elements[i % 3].mass for i in selected])
    weights = masses / masses.sum()
    data = md.load(str(tmp_path / "mix.dcd"), top=str(tmp_path / "ref.pdb")).xyz.astype(np.float64)[
        :, selected
    ]
    reference = md.load(str(tmp_path / "ref.pdb")).xyz[0].astype(np.float64)[selected]
    expected = [numpy_kabsch(frame, reference, weights) for frame in data]
    np.testing.assert_allclose(result.rmsd, [e[1] for e in expected], atol=1e-5)
    np.testing.assert_allclose(result.xyz, np.stack([e[0] for e in expected]), atol=1e-4)
    assert result.rmsd[10] < 1e-3  # the reference frame itself (PDB rounds to 1e-4 nm)
