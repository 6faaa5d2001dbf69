"""The geometry check and the refinement: kernels against NumPy and mdtraj, windows and
stereocentres on hand-made data, refinement on structures with known defects."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import mdtraj as md
import numpy as np
import pytest

from vaetraj.io.topology import polymer_topology
from vaetraj.metrics import (
    TermStats,
    check_frame,
    compute_angles,
    compute_pair_distances,
    compute_signed_volumes,
    geometry_terms,
    stereocentre_handedness,
    term_windows,
)
from vaetraj.pipeline.structure import check_structures, compute_data_stats, refine_structures

# a branched molecule: 0-1-2-3-4 with 5 and 6 on atom 2 (atom 2 has four neighbours)
BONDS = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [2, 5], [6, 2]])


def _graph_distances(atoms: int, bonds: np.ndarray) -> np.ndarray:
    """All-pairs shortest path lengths by Floyd-Warshall, the reference for pairs."""
    d = np.full((atoms, atoms), np.inf)
    np.fill_diagonal(d, 0)
    for i, j in bonds:
        d[i, j] = d[j, i] = 1
    for k, i, j in itertools.product(range(atoms), repeat=3):
        d[i, j] = min(d[i, j], d[i, k] + d[k, j])
    return d


def test_terms_follow_the_bond_graph():
    terms = geometry_terms(7, BONDS, dims=3)
    graph = _graph_distances(7, BONDS)
    assert sorted(map(tuple, terms.bonds.tolist())) == sorted(
        tuple(sorted(b)) for b in BONDS.tolist()
    )
    # angles: every pair of bonds that share an atom, the shared atom in the middle
    expected = {
        (min(a, c), b, max(a, c))
        for a, b, c in itertools.permutations(range(7), 3)
        if graph[a, b] == 1 and graph[b, c] == 1
    }
    assert {tuple(a) for a in terms.angles.tolist()} == expected
    # non-bonded: graph distance 3 or more, each pair once
    expected_pairs = {(i, j) for i in range(7) for j in range(i + 1, 7) if graph[i, j] >= 3}
    assert {tuple(p) for p in terms.pairs.tolist()} == expected_pairs
    # one candidate centre (atom 2), none in 2D
    assert terms.centres.tolist() == [[2, 1, 3, 5]]
    assert geometry_terms(7, BONDS, dims=2).centres.shape == (0, 4)


def test_distances_angles_and_volumes_against_mdtraj_and_numpy():
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(7, 3)).astype(np.float32)
    terms = geometry_terms(7, BONDS)
    trajectory = md.Trajectory(xyz[None], polymer_topology(7))
    np.testing.assert_allclose(
        compute_pair_distances(jnp.asarray(xyz), jnp.asarray(terms.pairs)),
        md.compute_distances(trajectory, terms.pairs)[0],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        compute_angles(jnp.asarray(xyz), jnp.asarray(terms.angles)),
        md.compute_angles(trajectory, terms.angles)[0],
        rtol=1e-4,
    )
    c, a, b, d = terms.centres[0]
    volume = np.dot(xyz[a] - xyz[c], np.cross(xyz[b] - xyz[c], xyz[d] - xyz[c]))
    assert float(compute_signed_volumes(jnp.asarray(xyz), jnp.asarray(terms.centres))[0]) == (
        pytest.approx(volume, rel=1e-5)
    )
    # 2D angles agree with the arccos of the normalized dot product
    flat = xyz[:, :2]
    u, v = (
        flat[terms.angles[:, 0]] - flat[terms.angles[:, 1]],
        (flat[terms.angles[:, 2]] - flat[terms.angles[:, 1]]),
    )
    cosine = np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(
        compute_angles(jnp.asarray(flat), jnp.asarray(terms.angles)),
        np.arccos(cosine),
        atol=1e-4,
    )


def test_windows_hold_the_range_and_five_sigma():
    stats = TermStats(
        min=np.array([0.9, 0.5]),
        max=np.array([1.1, 1.5]),
        mean=np.array([1.0, 1.0]),
        std=np.array([0.01, 0.05]),
    )
    lo, hi = term_windows(stats, 0.0)
    # first term: 5 std (0.05) is inside its range, so the range wins; second: range again
    np.testing.assert_allclose(lo, [0.9, 0.5])
    np.testing.assert_allclose(hi, [1.1, 1.5])
    narrow = stats._replace(min=np.array([0.99, 0.99]), max=np.array([1.01, 1.01]))
    lo, hi = term_windows(narrow, np.array([0.0, 0.2]), lower=0.0)
    np.testing.assert_allclose(lo, [0.95, 0.0])  # 1 - 5 * 0.01; 1 - 5 * 0.2 clipped at 0
    np.testing.assert_allclose(hi, [1.05, 2.0])


def test_stereocentres_are_the_data_consistent_ones():
    volume = TermStats(
        min=np.array([0.5, -0.3, -0.9, 0.001]),
        max=np.array([0.9, 0.4, -0.5, 0.002]),
        mean=np.array([0.7, 0.05, -0.7, 0.0015]),
        std=np.array([0.1, 0.2, 0.1, 0.001]),
    )
    # kept: one sign everywhere and clear of zero; dropped: mixed sign, or too near zero
    np.testing.assert_array_equal(stereocentre_handedness(volume), [1.0, 0.0, -1.0, 0.0])


def _chains(frames: int, beads: int, dims: int, seed: int) -> np.ndarray:
    """Self-avoiding-ish random walks with bonds 1 +- 0.05 and bends limited to 60 deg."""
    rng = np.random.default_rng(seed)
    xyz = np.zeros((frames, beads, dims))
    direction = np.zeros((frames, dims))
    direction[:, 0] = 1
    for bead in range(1, beads):
        turn = rng.normal(scale=0.4, size=(frames, dims))
        direction = direction + turn
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        length = 1 + 0.05 * rng.standard_normal((frames, 1))
        xyz[:, bead] = xyz[:, bead - 1] + length * direction
    return xyz.astype(np.float32)


@pytest.mark.slow
def test_check_frame_windows_and_held_out_pass_rate():
    xyz = _chains(600, 10, 3, seed=1)
    stats = compute_data_stats(
        xyz, None, None, index=np.arange(500), held_out_index=np.arange(500, 600)
    )
    assert stats.frames == 500
    assert stats.bond_source == "chain" and stats.data_pass_on == "validation"
    # held-out frames from the same process pass (the check is not fitted to them)
    assert stats.data_pass_fraction >= 0.95
    lengths = np.linalg.norm(xyz[:500, 1:] - xyz[:500, :-1], axis=-1)
    np.testing.assert_allclose(stats.bond_mean, lengths.mean(0), rtol=1e-4)
    # a frame with one stretched bond, one with beads on top of each other, one squashed
    good = xyz[500]
    stretched = good.copy()
    stretched[5:] += (good[5] - good[4]) * 0.5
    squashed = good * 0.3
    overlap = good.copy()
    overlap[9] = good[0] + 1e-3
    check = check_structures(np.stack([good, stretched, squashed, overlap]), stats, None)
    assert check.plausible.tolist() == [True, False, False, False]
    assert not bool(check.frame.bonds_ok[1]) and not bool(check.frame.contacts_ok[3])
    limits = stats.limits(10)
    verdict = check_frame(jnp.asarray(good), limits, jnp.full(10, 0.1))
    assert bool(verdict.plausible)


@pytest.mark.slow
def test_refinement_restores_bonds_contacts_and_handedness():
    xyz = _chains(400, 10, 3, seed=2)
    data_mean_bond = float(np.linalg.norm(xyz[:, 1:] - xyz[:, :-1], axis=-1).mean())
    # an averaged decoder: the mean of a few frames, bonds far too short
    blobs = np.stack([xyz[i : i + 40].mean(0) for i in range(0, 400, 40)])
    stats = compute_data_stats(xyz, None, None, tether_std=np.full(10, 0.3))
    before = check_structures(blobs, stats, None)
    refined = refine_structures(blobs, stats)
    after = check_structures(refined.xyz, stats, None)
    assert before.plausible.mean() < 0.5
    assert after.plausible.all()
    assert after.mean_bond.mean() == pytest.approx(data_mean_bond, rel=0.05)
    assert (refined.energy < refined.energy_start).all()
    moved = np.sqrt(np.mean(np.sum((refined.xyz - blobs) ** 2, -1), -1))
    np.testing.assert_allclose(refined.moved, moved, rtol=1e-4)
    # a structure that already passes barely moves
    still = refine_structures(xyz[:4], stats)
    assert np.max(still.moved) < 0.1
    # a tighter tether (optimize's: the decoder's error itself) moves the blobs less and
    # restores less of their bonds
    tight = refine_structures(blobs, stats, tether_width=1.0)
    assert np.median(tight.moved) < np.median(refined.moved)
    tight_bond = check_structures(tight.xyz, stats, None).mean_bond.mean()
    assert before.mean_bond.mean() < tight_bond < after.mean_bond.mean()


@pytest.mark.slow
def test_refinement_keeps_a_stereocentre_and_the_check_sees_a_flip():
    rng = np.random.default_rng(3)
    # atom 0 bonded to 1, 2, 3 (a tetrahedral centre) and 3 bonded to 4
    base = np.array([[0, 0, 0], [1, 0, -0.35], [-0.5, 0.87, -0.35], [-0.5, -0.87, -0.35]])
    base = np.concatenate([base, [[-1.0, -1.7, 0.3]]])
    frames = base[None] + rng.normal(scale=0.03, size=(300, 5, 3))
    topology = md.Topology()
    residue = topology.add_residue("MOL", topology.add_chain())
    atoms = [topology.add_atom(f"C{i}", md.element.carbon, residue) for i in range(5)]
    for i, j in [(0, 1), (0, 2), (0, 3), (3, 4)]:
        topology.add_bond(atoms[i], atoms[j])
    from vaetraj.io.topology import topology_to_json

    stats = compute_data_stats(
        frames.astype(np.float32), topology_to_json(topology), None, tether_std=np.full(5, 0.5)
    )
    # the handedness recorded is the sign of the centre's volume, computed in NumPy
    a, b, c = (base[k] - base[0] for k in (1, 2, 3))
    assert stats.handedness == [np.sign(np.dot(a, np.cross(b, c)))]
    mirrored = frames[:5] * np.array([1, 1, -1])  # the mirror image: handedness flips
    check = check_structures(mirrored.astype(np.float32), stats, None)
    assert not check.frame.chirality_ok.any() and check.frame.bonds_ok.all()
    refined = refine_structures(mirrored.astype(np.float32), stats)
    assert check_structures(refined.xyz, stats, None).frame.chirality_ok.all()


@pytest.mark.parametrize("frames", [100, 400])
def test_held_out_md_frames_pass_even_from_small_data(polymer_2d, frames):
    """The check fitted on 90% of a built-in polymer run passes >= 95% of the other 10%
    (contiguous blocks, as training splits them), from 100 frames as from 400."""
    from vaetraj import align
    from vaetraj.training._split import split_blocks

    xyz = align(polymer_2d[:frames]).xyz
    train, held_out = split_blocks([frames], 0.1, blocks=5, seed=0)
    stats = compute_data_stats(xyz, None, None, index=train, held_out_index=held_out)
    assert stats.data_pass_frames == len(held_out) and stats.data_pass_fraction >= 0.95


def test_no_structures_give_empty_verdicts():
    stats = compute_data_stats(_chains(50, 10, 3, seed=4), None, None)
    empty = np.zeros((0, 10, 3), np.float32)
    assert check_structures(empty, stats, None).plausible.shape == (0,)
    assert refine_structures(empty, stats).xyz.shape == (0, 10, 3)
