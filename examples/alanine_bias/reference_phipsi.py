"""The reference for the alanine dipeptide bias loop: well-tempered metadynamics along
phi and psi themselves (OpenMM's `app.Metadynamics` over two `CustomTorsionForce`s).

Same set-up as the shared data (AMBER ff14SB + OBC2, no cutoff, bonds to H
constrained, hydrogen mass 3 amu, 4 fs, Langevin 300 K, 1/ps). Writes an .npz with,
per saved frame (every --report steps): time (ps), phi, psi (rad), the bias V(s, t)
at that frame (kJ/mol) and c(t) (kJ/mol), the Tiwary-Parrinello offset; and at the
end the free-energy surface -(T + dT)/dT V(phi, psi) on the bias grid.

    python examples/alanine_bias/reference_phipsi.py --ns 20 -o reference.npz

Takes about 0.4 ms a step on one CPU thread (20 ns: 5,000,000 steps, about 35 min).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import openmm as mm
from openmm import app, unit

DATA = "../shared/data/alanine-dipeptide/ala2.pdb"
TEMPERATURE = 300.0
BOLTZMANN = 0.0083144626  # kJ/mol/K


def torsion(atoms: list[int]) -> mm.CustomTorsionForce:
    force = mm.CustomTorsionForce("theta")
    force.addTorsion(*atoms, [])
    return force


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdb", default=DATA)
    parser.add_argument("--ns", type=float, default=20.0)
    parser.add_argument("--report", type=int, default=250)
    parser.add_argument("--bias-factor", type=float, default=6.0)
    parser.add_argument("--height", type=float, default=1.2)
    parser.add_argument("--width", type=float, default=0.35)
    parser.add_argument("--pace", type=int, default=125)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", default="1")
    parser.add_argument("-o", "--output", default="reference.npz")
    args = parser.parse_args(argv)

    pdb = app.PDBFile(args.pdb)
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    system = forcefield.createSystem(
        pdb.topology,
        nonbondedMethod=app.NoCutoff,
        constraints=app.HBonds,
        hydrogenMass=3 * unit.amu,
    )
    atoms = {(a.residue.index, a.name): a.index for a in pdb.topology.atoms()}
    phi = [atoms[(0, "C")], atoms[(1, "N")], atoms[(1, "CA")], atoms[(1, "C")]]
    psi = [atoms[(1, "N")], atoms[(1, "CA")], atoms[(1, "C")], atoms[(2, "N")]]
    variables = [
        app.BiasVariable(torsion(t), -math.pi, math.pi, args.width, periodic=True)
        for t in (phi, psi)
    ]
    meta = app.Metadynamics(
        system, variables, TEMPERATURE, args.bias_factor, args.height, args.pace
    )
    integrator = mm.LangevinMiddleIntegrator(TEMPERATURE, 1.0, 0.004)
    integrator.setRandomNumberSeed(args.seed)
    platform = mm.Platform.getPlatformByName("CPU")
    simulation = app.Simulation(
        pdb.topology, system, integrator, platform, {"Threads": args.threads}
    )
    simulation.context.setPositions(pdb.positions)
    simulation.minimizeEnergy()
    simulation.context.setVelocitiesToTemperature(TEMPERATURE, args.seed)

    group = {meta._force.getForceGroup()}
    beta = 1.0 / (BOLTZMANN * TEMPERATURE)
    gamma = args.bias_factor
    reports = int(round(args.ns * 1000 / 0.004)) // args.report
    out = {k: np.empty(reports) for k in ("time", "phi", "psi", "bias", "ct")}
    started = time.perf_counter()
    for i in range(reports):
        meta.step(simulation, args.report)
        cv = meta.getCollectiveVariables(simulation)
        state = simulation.context.getState(getEnergy=True, groups=group)
        grid = meta._totalBias[:-1, :-1]  # periodic: the last row/column repeat the first
        top = grid.max()
        ct = (
            top  # shifted by the grid's top for a stable log-sum-exp
            + (
                np.log(np.sum(np.exp(gamma * beta * (grid - top) / (gamma - 1))))
                - np.log(np.sum(np.exp(beta * (grid - top) / (gamma - 1))))
            )
            / beta
        )
        out["time"][i] = simulation.currentStep * 0.004
        out["phi"][i], out["psi"][i] = cv[0], cv[1]
        out["bias"][i] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        out["ct"][i] = ct
        if (i + 1) % max(1, reports // 20) == 0:
            print(
                f"{out['time'][i] / 1000:.2f} ns, {time.perf_counter() - started:.0f} s", flush=True
            )
    fes = np.asarray(meta.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole))
    np.savez(args.output, fes=fes, **out)


if __name__ == "__main__":
    main()
