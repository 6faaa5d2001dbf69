"""`vaetraj bias`: enhanced sampling in OpenMM along a model's latent coordinates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vaetraj.cli._options import (
    OUTPUT_OPTIONS,
    ModelOption,
    OptionGroup,
    config_from,
    config_options,
    with_options,
)
from vaetraj.cli._runtime import finish_report, progress_bar, run_command
from vaetraj.configs import BiasConfig

BIAS_FILES: OptionGroup = {
    "forcefield": (Annotated[str, typer.Option(help="OpenMM force-field files, comma-separated (no cutoff without a box, PME with one; bonds to hydrogen constrained).")], "amber14-all.xml,implicit/obc2.xml"),
    "system": (Annotated[Path | None, typer.Option(help="A serialized OpenMM System (.xml) instead of --forcefield.")], None),
    "output": (Annotated[Path, typer.Option("-o", "--output", help="CVs, bias, c(t) and weights per frame (.h5).")], Path("bias.h5")),
    "trajectory": (Annotated[Path, typer.Option(help="The frames (.dcd keeps its frame time; .xtc rounds to 0.001 nm).")], Path("biased.dcd")),
    "slowest": (Annotated[Path | None, typer.Option(metavar="KINETICS.h5", help="Bias along the slowest VAMP coordinate of `vaetraj kinetics -o` (one CV) instead of --cv.")], None),
    "resume": (Annotated[bool, typer.Option(help="Go on from the checkpoint an interrupted run left.")], False),
}  # fmt: skip


@with_options(config_options(BiasConfig), BIAS_FILES, OUTPUT_OPTIONS)
def bias_command(
    structure: Path | None = typer.Argument(
        None,
        metavar="[STRUCTURE]",
        help="Topology and starting positions (.pdb, .cif); none: the built-in 3D polymer.",
    ),
    model: Path = ModelOption,
    **o: Any,
) -> None:
    """Bias an OpenMM simulation along latent coordinates: well-tempered
    metadynamics, an umbrella restraint, or steering; writes the frames, the CVs, the
    bias and the weights that undo it (needs OpenMM: pip install openmm, or vaetraj's openmm extra).

    Examples:

      vaetraj bias ala2.pdb -m model.h5 --cv 0,1 --steps 2500000 -o bias.h5

      vaetraj bias ala2.pdb -m model.h5 --method umbrella --center 1.5 --k 200

      vaetraj bias ala2.pdb -m model.h5 --slowest kinetics.h5 --steps 2500000

      vaetraj bias -m polymer3d.h5 --steps 20000      # the built-in 3D polymer
    """

    def body():
        from vaetraj.openmm._force import openmm_module, prefer_synchronous_jax

        openmm_module()  # the one-line refusal before anything else is read
        prefer_synchronous_jax()
        from vaetraj.openmm.run import bias_file
        from vaetraj.pipeline.model import load_model

        config = config_from(BiasConfig, o)
        loaded = load_model(model)
        setup = _setup(structure, o, config)
        with progress_bar(not o["json_output"]) as bar:
            progress = None if bar is None else (lambda done, total: bar(done, total, "frames"))
            report = bias_file(setup, loaded, config, o["output"], o["trajectory"],
                               resume=o["resume"], overwrite=o["overwrite"], progress=progress,
                               slowest=o["slowest"])  # fmt: skip
        return finish_report(report, json_output=o["json_output"], title="vaetraj bias")

    run_command(body, json_output=o["json_output"], debug=o["debug"])


def _setup(structure: Path | None, o: dict, config: BiasConfig):
    """What is simulated: the structure with its force field or System, or the
    built-in 3D polymer."""
    from vaetraj.openmm._systems import file_setup, polymer_setup

    if structure is None:
        return polymer_setup()
    fields = tuple(part.strip() for part in o["forcefield"].split(",") if part.strip())
    return file_setup(structure, fields, o["system"], hydrogen_mass=config.hydrogen_mass)
