"""`TrainReport`: what a training run did, as `train` returns it, `--json` prints it,
the model file keeps its summary and `rows` words it for the command's table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainReport:
    """What a training run did: the summary printed, stored in the model, --json'd.

    explained_variance_*: 1 - (squared reconstruction error) / (squared deviation from
    the training mean), of the kept model on training and validation frames;
    pca_explained_variance: the same for PCA with latent_dim components on the training
    frames, the linear yardstick (with a lag: for the best linear prediction through
    latent_dim dimensions of the frames lag later, of which PCA is the lag-0 case; the
    explained variances then score the model's predictions of those frames too);
    predictable_share: with a lag, the yardstick over PCA's share of one frame (how
    much of a frame's linear structure is still there lag frames later; under 0.1 with
    a model no better, the run fails: frames that far apart are nearly independent);
    lag: frames between a pair's input and target (0: a plain VAE); frame_time_ps: ps
    between frames, when the data record it; decoded_variance: the spread of the decoded frames as
    a share of the data's (about 0 when the decoder ignores z); val_gap: validation over
    training reconstruction RMSD. status: "ok", or "failed" for a model that explains
    less than `min_explained` of what PCA does (or gives non-finite output)."""

    frames: int
    train_frames: int
    val_frames: int
    trajectories: int
    atoms: int
    dims: int
    latent_dim: int
    epochs_run: int
    best_epoch: int  # by validation loss at the final beta (training loss without one)
    kept_epoch: int  # whose parameters the model has; the losses below are this epoch's
    stopped_early: bool
    resumed_from_epoch: int | None
    train_loss: float
    val_loss: float | None
    recon_rmsd_train: float
    recon_rmsd_val: float | None
    val_gap: float | None
    explained_variance_train: float
    explained_variance_val: float | None
    pca_explained_variance: float
    decoded_variance: float
    recon_rmsd_per_atom_train: list[float]
    kl_per_dim: list[float]
    active_units: int
    density_components: int
    density_points: int  # the draws the latent density was fitted to
    recoveries: list[dict[str, Any]]
    final_lr: float
    status: str
    units: str
    devices: int  # over all processes
    processes: int
    frames_per_s: float
    wall_time_s: float
    streamed: bool  # the frames streamed from disk (over the memory budget)
    lag: int = 0
    frame_time_ps: float | None = None
    predictable_share: float | None = None  # with a lag: see pca_explained_variance
    pca_explained_variance_val: float | None = None  # PCA of the training frames on validation
    # what the network took: "aligned" frames (atoms x dims inputs), a user's "table"
    # (features x 1), or frames "featurized" by vaetraj (`featurizer`: its kind)
    representation: str = "aligned"
    features: int = 0  # the network's inputs
    featurizer: str | None = None
    output: str | None = None
    checkpoint: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary as (label, text) rows: what `vaetraj train` prints."""
        from vaetraj.pipeline.summaries import train_rows

        return train_rows(self)
