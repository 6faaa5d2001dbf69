"""`vaetraj bias`: enhanced sampling in OpenMM along a model's latent coordinates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from vaetraj.cli._options import (
    OUTPUT_OPTIONS,
    ModelOption,
    config_from,
    config_options,
    with_options,
)
from vaetraj.cli._runtime import finish_report, progress_bar, run_command
from vaetraj.configs import BiasConfig


@with_options(config_options(BiasConfig), OUTPUT_OPTIONS)
def bias_command(
    structure: Path | None = typer.Argument(
        None,
        metavar="[STRUCTURE]",
        help="Topology and starting positions (.pdb, .cif); none: the built-in 3D polymer.",
    ),
    model: Path = ModelOption,
    forcefield: str = typer.Option(
        "amber14-all.xml,implicit/obc2.xml",
        "--forcefield",
        help="OpenMM force-field files, comma-separated (no cutoff without a box, PME "
        "with one; bonds to hydrogen constrained).",
    ),
    system: Path | None = typer.Option(
        None, "--system", help="A serialized OpenMM System (.xml) instead of --forcefield."
    ),
    output: Path = typer.Option(
        Path("bias.h5"), "-o", "--output", help="CVs, bias, c(t) and weights per frame (.h5)."
    ),
    trajectory: Path = typer.Option(
        Path("biased.dcd"), "--trajectory", help="The frames (.dcd, .xtc, .h5, ...), with time."
    ),
    slowest: Path | None = typer.Option(
        None,
        "--slowest",
        metavar="KINETICS.h5",
        help="Bias along the slowest VAMP coordinate of `vaetraj kinetics -o` (one CV) instead of --cv.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Go on from the checkpoint an interrupted run left."
    ),
    **o: Any,
) -> None:
    """Bias an OpenMM simulation along latent coordinates: well-tempered
    metadynamics, an umbrella restraint, or steering; writes the frames, the CVs, the
    bias and the weights that undo it (needs pip install 'vaetraj[openmm]').

    Examples:

      vaetraj bias ala2.pdb -m model.h5 --cv 0,1 --steps 2500000 -o bias.h5

      vaetraj bias ala2.pdb -m model.h5 --method umbrella --center 1.5 --k 200

      vaetraj bias ala2.pdb -m model.h5 --slowest kinetics.h5 --steps 2500000

      vaetraj bias -m polymer3d.h5 --steps 20000      # the built-in 3D polymer
    """

    def body():
        from vaetraj.openmm._force import openmm_module

        openmm_module()  # the one-line refusal before anything else is read
        from vaetraj.openmm._force import prefer_synchronous_jax

        prefer_synchronous_jax()
        from vaetraj.openmm._systems import file_setup, polymer_setup
        from vaetraj.openmm.run import bias_file
        from vaetraj.pipeline.model import load_model

        config = config_from(BiasConfig, o)
        loaded = load_model(model)
        if structure is None:
            setup = polymer_setup()
        else:
            fields = tuple(part.strip() for part in forcefield.split(",") if part.strip())
            setup = file_setup(structure, fields, system, hydrogen_mass=config.hydrogen_mass)
        with progress_bar(not o["json_output"]) as bar:
            progress = None if bar is None else (lambda done, total: bar(done, total, "frames"))
            report = bias_file(setup, loaded, config, output, trajectory, resume=resume,
                               overwrite=o["overwrite"], progress=progress, slowest=slowest)  # fmt: skip
        return finish_report(report, json_output=o["json_output"], title="vaetraj bias")

    run_command(body, json_output=o["json_output"], debug=o["debug"])
