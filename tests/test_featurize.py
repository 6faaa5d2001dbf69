"""Featurizers (vaetraj.featurize) against mdtraj, under rigid motions, and through
their JSON records (issue 32)."""

from __future__ import annotations

import json

import mdtraj as md
import numpy as np
import pytest
from conftest import random_rotation, shared

from vaetraj.featurize import (
    FEATURIZERS,
    Contacts,
    Distances,
    Torsions,
    featurizer_from_record,
)
from vaetraj.io.topology import polymer_topology


@pytest.fixture(scope="module")
def chain(polymer_3d) -> md.Trajectory:
    return md.Trajectory(polymer_3d.astype(np.float32), polymer_topology(polymer_3d.shape[1]))


def test_distances_and_contacts_match_mdtraj(chain):
    """Every bead pair at least 3 bonds apart; distances equal mdtraj's, contacts are
    the rational switch of them; the cutoff keeps only pairs that came that close."""
    beads = chain.n_atoms
    distances = Distances.fit(chain.topology, "all")
    assert len(distances.pairs) == sum(beads - k for k in range(3, beads))
    assert all(j - i >= 3 for i, j in distances.pairs)
    reference = md.compute_distances(chain, np.asarray(distances.pairs))
    np.testing.assert_allclose(distances.transform(chain.xyz), reference, rtol=1e-5, atol=1e-6)
    contacts = Contacts.fit(chain.topology, "all", r0=0.5)
    expected = 1 / (1 + (reference / 0.5) ** 6)
    np.testing.assert_allclose(contacts.transform(chain.xyz), expected, rtol=1e-5, atol=1e-6)
    near = Distances.fit(chain.topology, "all", frames=chain.xyz, cutoff=0.6)
    kept = (reference < 0.6).any(axis=0)
    assert [tuple(p) for p in np.asarray(distances.pairs)[kept]] == list(near.pairs)
    assert distances.labels[0] == "d(BEA1-B1--BEA4-B4)"


def test_torsions_match_mdtraj_and_ignore_rigid_motions(chain):
    """sin and cos of each dihedral, in turn, equal mdtraj's; a rotated and shifted
    trajectory gives the same features for every featurizer (within 1e-5)."""
    quads = np.stack([np.arange(k, k + 4) for k in range(chain.n_atoms - 3)])
    torsions = Torsions.from_fields(chain.n_atoms, quads, [f"t{k}" for k in range(len(quads))])
    angles = md.compute_dihedrals(chain, quads)
    features = torsions.transform(chain.xyz)
    np.testing.assert_allclose(features[:, 0::2], np.sin(angles), atol=2e-5)
    np.testing.assert_allclose(features[:, 1::2], np.cos(angles), atol=2e-5)
    assert torsions.labels[:2] == ["sin(t0)", "cos(t0)"]
    rng = np.random.default_rng(4)
    moved = chain.xyz @ random_rotation(rng, 3).T + rng.normal(0, 3.0, 3)
    for featurizer in (torsions, Distances.fit(chain.topology, "all"),
                       Contacts.fit(chain.topology, "all")):  # fmt: skip
        np.testing.assert_allclose(
            featurizer.transform(moved), featurizer.transform(chain.xyz), atol=1e-5
        )


def test_backbone_torsions_of_alanine_dipeptide_match_mdtraj():
    folder = shared("alanine-dipeptide")
    trajectory = md.load(str(folder / "ala2.dcd"), top=str(folder / "ala2.pdb"))[:300]
    torsions = Torsions.fit(trajectory.topology)  # phi, psi, chi1: alanine has no chi1
    assert torsions.names == ("phi ALA1", "psi ALA1")
    features = torsions.transform(trajectory.xyz)
    for k, kind in enumerate(("phi", "psi")):
        angle = getattr(md, f"compute_{kind}")(trajectory)[1][:, 0]
        np.testing.assert_allclose(features[:, 2 * k], np.sin(angle), atol=2e-5)
        np.testing.assert_allclose(features[:, 2 * k + 1], np.cos(angle), atol=2e-5)
    heavy = Distances.fit(trajectory.topology, "not element H")
    assert heavy.features == 25  # heavy-atom pairs three or more bonds apart


def test_every_featurizer_survives_its_json_record(chain):
    made = {
        "torsions": Torsions.from_fields(chain.n_atoms, [[0, 1, 2, 3]], ["t"]),
        "distances": Distances.fit(chain.topology, "all"),
        "contacts": Contacts.fit(chain.topology, "all", r0=0.4),
    }
    assert set(made) == set(FEATURIZERS)
    for featurizer in made.values():
        again = featurizer_from_record(json.loads(json.dumps(featurizer.to_record())))
        assert again == featurizer
        np.testing.assert_array_equal(again.transform(chain.xyz), featurizer.transform(chain.xyz))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda top: Torsions.fit(top, ("phi", "zeta")), "unknown torsion kind"),
        (lambda top: Torsions.fit(top), "no phi/psi/chi1 torsions"),
        (lambda top: Distances.fit(top, "index 0"), "picks 1 atom"),
        (lambda top: Distances.fit(top, "all", cutoff=0.5), "needs frames"),
        (lambda top: Contacts.fit(top, "all", r0=0.0), "must be positive"),
        (lambda top: featurizer_from_record({"kind": "angles"}), "unknown featurizer"),
        (lambda top: featurizer_from_record({"kind": "distances", "atoms": 3}), "bad distances"),
        (
            lambda top: featurizer_from_record(
                {"kind": "distances", "atoms": 3, "pairs": [[0, 5]], "names": ["x"]}
            ),
            "outside 0..2",
        ),
    ],
)
def test_bad_featurizer_input_is_one_clear_error(chain, make, message):
    with pytest.raises(ValueError, match=message):
        make(chain.topology)


def test_frames_of_another_molecule_are_refused(chain):
    with pytest.raises(ValueError, match="do not match the featurizer's"):
        Distances.fit(chain.topology, "all").transform(chain.xyz[:, :5])
