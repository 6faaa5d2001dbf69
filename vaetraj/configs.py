"""The configs of reading and aligning trajectories, of featurizing them, of a model, of
its training, of `optimize` and of `kinetics`: frozen, validated, JSON round-tripped.
A field declared with `option` is also a command-line option (its help and flag are
on the field; `vaetraj.cli._options.config_options` builds the option).

JAX-free, so that the command line takes its defaults and choices from them without
paying for JAX at start-up (`vaetraj --help`). A field out of range raises
`ConfigError` naming the field; the CLI prints the option instead."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaetraj.errors import ConfigError, UsageError

ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "softplus", "elu")
LIKELIHOODS = ("mse", "gaussian", "gaussian-learned", "categorical")
POSTERIORS = ("diagonal", "full")
# The latent size when none is given (fewer for an input of at most 4 features). The
# textbook's 2 is for pictures: its decoder averages so many conformations per latent
# point that it cannot give a structure more compact than the training frames; 4 can,
# and explains more (textbook polymer: 64% of held-out variance against 49%;
# docs/pages/method.md, "Choosing the latent size").
DEFAULT_LATENT_DIM = 4


Rules = dict[str, tuple[Callable[[Any], bool], str]]


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    show_default: bool = True,
    cli_type: Any = None,
    minimum: int | None = None,
) -> Any:
    """A config field that is also a command-line option: its help, its flag (default
    --field-name) and, for a text field, its choices. The CLI builds the option from
    the field (`vaetraj.cli._options.config_options`), default included; cli_type: the
    option's type where the field's is not one the command line takes (a union);
    minimum: the least whole number the command line takes (checked as it parses)."""
    metadata = {"help": help, "flag": flag, "choices": choices, "metavar": metavar,
                "show_default": show_default, "cli_type": cli_type, "minimum": minimum}  # fmt: skip
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(field: dataclasses.Field) -> str:
    """The command-line option of a config field."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def cli_fields(config_class: type) -> list[dataclasses.Field]:
    """The fields of a config that are command-line options (declared with `option`)."""
    return [f for f in dataclasses.fields(config_class) if "help" in f.metadata]


def check_rules(config: Any, rules: Rules) -> None:
    """Raise ConfigError for the first field of `config` whose value breaks its rule:
    rules map a field to (a test of its value, what the rule demands)."""
    for name, (ok, rule) in rules.items():
        if not ok(getattr(config, name)):
            raise ConfigError(name, rule, getattr(config, name))


# each field's rule: a test of its value and what it demands (ConfigError names the field)
_MODEL_RULES: Rules = {
    "hidden": (lambda v: v >= 1, "must be at least 1"),
    "layers": (lambda v: v >= 2, "must be at least 2 (one hidden layer)"),
    "activation": (lambda v: v in ACTIVATIONS, f"must be one of {', '.join(ACTIVATIONS)}"),
    "likelihood": (lambda v: v in LIKELIHOODS, f"must be one of {', '.join(LIKELIHOODS)}"),
    "decoder_std": (lambda v: v > 0, "must be positive"),
    "posterior": (lambda v: v in POSTERIORS, f"must be one of {', '.join(POSTERIORS)}"),
}


@dataclass(frozen=True)
class ModelConfig:
    """Encoder and decoder MLPs of a (beta-)VAE on flattened, normalized frames.

    features: input size (atoms * dims). latent_dim None: DEFAULT_LATENT_DIM, or
    features - 1 when that is smaller (set once features is known). layers counts
    weight layers as the textbook does: 4 layers = 3 hidden layers of `hidden` units,
    in the encoder and in the decoder alike. likelihood: "mse" (sum of squared errors,
    the textbook's), "gaussian" (fixed decoder_std, in normalized units) or
    "gaussian-learned" (the decoder also predicts a per-feature std, as in the AEVB
    notes) or "categorical" (the features are one class indicator each, e.g. one-hot
    rows: the decoder gives softmax probabilities over them, the textbook's class VAE).
    posterior: "diagonal" or "full" (a Cholesky factor of the covariance).
    """

    features: int | None = None
    latent_dim: int | None = option(
        None,
        "Latent dimensions (default 4; fewer for an input of at most 4 features; the "
        "textbook's is 2).",
        show_default=False,
    )
    hidden: int = option(256, "Units per hidden layer.")
    layers: int = option(4, "Weight layers per network, as the textbook counts: 4 = 3 hidden.")
    activation: str = option("relu", "Hidden-layer activation.", choices=ACTIVATIONS)
    likelihood: str = option(
        "mse",
        "mse: sum of squared errors; gaussian: fixed --decoder-std; gaussian-learned: the "
        "decoder predicts a std per feature; categorical: one-hot rows (with --features).",
        choices=LIKELIHOODS,
    )
    decoder_std: float = option(1.0, "Decoder std for --likelihood gaussian (normalized units).")
    posterior: str = option(
        "diagonal", "diagonal, or full (Cholesky) covariance.", choices=POSTERIORS
    )

    def __post_init__(self) -> None:
        if self.latent_dim is None and self.features is not None:
            # resolved once, as __init__ would have (the dataclass is frozen)
            latent = min(DEFAULT_LATENT_DIM, max(1, self.features - 1))
            object.__setattr__(self, "latent_dim", latent)
        if self.features is not None and self.features < 1:
            raise UsageError(f"a model needs at least 1 input feature, got {self.features}")
        if self.latent_dim is not None:
            self._check_latent()
        check_rules(self, _MODEL_RULES)

    def _check_latent(self) -> None:
        latent, features = self.latent_dim, self.features
        assert latent is not None
        if latent < 1:
            raise ConfigError("latent_dim", "must be at least 1", latent)
        if features is not None and features > 1 and not latent < features:
            raise ConfigError(
                "latent_dim", f"must be at least 1 and below the {features} input features", latent
            )
        if features == 1 and latent != 1:
            raise ConfigError("latent_dim", "must be 1 for one input feature", latent)

    @property
    def size(self) -> tuple[int, int]:
        """(features, latent_dim) of a config whose features are known (a model's)."""
        if self.features is None or self.latent_dim is None:
            raise ValueError("the config's features are not set yet")
        return self.features, self.latent_dim

    @property
    def encoder_outputs(self) -> int:
        d = self.size[1]
        return d + (d * (d + 1) // 2 if self.posterior == "full" else d)

    @property
    def decoder_outputs(self) -> int:
        return self.size[0] * (2 if self.likelihood == "gaussian-learned" else 1)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls(**json.loads(text))


OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")
KEEP = ("best", "last")
LR_SCALINGS = ("fan-in", "uniform")


# each field's rule: a test of its value and what it demands (ConfigError names the field)
_TRAIN_RULES: Rules = {
    "epochs": (lambda v: v >= 1, "must be at least 1"),
    "batch_size": (lambda v: v >= 1, "must be at least 1"),
    "lr": (lambda v: v > 0, "must be positive"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"must be one of {', '.join(OPTIMIZERS)}"),
    "schedule": (lambda v: v in SCHEDULES, f"must be one of {', '.join(SCHEDULES)}"),
    "final_lr_fraction": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "warmup_epochs": (lambda v: v is None or v >= 0, "must be zero or more"),
    "clip_norm": (lambda v: v is None or v > 0, "must be positive"),
    "lr_scaling": (lambda v: v in LR_SCALINGS, f"must be one of {', '.join(LR_SCALINGS)}"),
    "weight_decay": (lambda v: v >= 0, "must be zero or more"),
    "input_noise": (lambda v: v >= 0, "must be zero or more"),
    "beta": (lambda v: v >= 0, "must be zero or more"),
    "kl_warmup": (lambda v: v >= 0, "must be zero or more"),
    "samples": (lambda v: v >= 1, "must be at least 1"),
    "val_fraction": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "val_blocks": (lambda v: v >= 1, "must be at least 1"),
    "lag": (lambda v: v >= 0, "must be zero or more"),
    "keep": (lambda v: v in KEEP, f"must be one of {', '.join(KEEP)}"),
    "patience": (lambda v: v is None or v >= 1, "must be at least 1"),
    "max_recoveries": (lambda v: v >= 0, "must be zero or more"),
    "min_explained": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "checkpoint_every": (lambda v: v >= 0, "must be zero (never) or more"),
    "density_components": (lambda v: v >= 1, "must be at least 1"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings. The defaults were chosen by measurement on a grid of
    molecules (24 to 642 features, 98 to 8000 frames; docs/pages/commands/train.md) so
    that one set trains all of them. The textbook's are epochs 250, batch 32, beta 0.01
    (ours too) and adam at a constant 1e-2 with no regularization; ours differ in:

    - weight_decay 1.0, input_noise 0.5 and keep "best" on contiguous validation
      blocks: they keep the network from memorizing its training frames, and together
      they keep the networks of large molecules alive (at the textbook's rate, without
      them, molecules of hundreds of atoms end with a decoder that ignores z);
    - lr 1e-3, warmed up linearly over warmup_epochs (default: 5, at most a tenth of
      the epochs), then cosine-decayed to final_lr_fraction of lr;
    - lr_scaling "fan-in" (below), a margin for molecules of many atoms.

    `TrainConfig.textbook()` is the textbook's procedure.

    lr_scaling: "fan-in" lowers the rate of the first encoder layer by hidden/features
    when the frame has more features than a hidden layer has units, so that one step
    moves its outputs as far as it moves a hidden layer's, whatever the molecule's size;
    "uniform" gives every layer `lr`.
    weight_decay: decoupled weight decay (AdamW's) on the weight matrices, not the biases.
    input_noise: std of Gaussian noise added to the frames the encoder sees in
    training, in units of each feature's std over the training frames; the
    reconstruction is scored against the clean frame (a denoising VAE). The encoder then maps a frame and its thermal neighbours alike, which is what
    makes it encode frames it was not trained on well. 0: off.
    kl_warmup: epochs over which beta ramps linearly from 0 (0: no ramp).
    samples: reparameterized draws per frame averaged in the reconstruction term.
    val_fraction, val_blocks: the share of each trajectory held out to validate, as
    val_blocks contiguous blocks spread over it (see `split_blocks`).
    lag: frames between what the encoder sees and what the decoder reconstructs: a
    time-lagged VAE encodes x(t) and reconstructs x(t + lag), so its latent space keeps
    what predicts the future (the slow processes). Pairs never cross from one input
    trajectory to the next (`lagged_pairs`). 0: the plain VAE.
    keep: "best" keeps the parameters of the epoch with the lowest validation loss (at
    the final beta), "last" those of the last epoch.
    patience: stop when the validation loss has not improved for this many epochs (None:
    run all epochs).
    max_recoveries: loss spikes or non-finite steps the run may recover from (roll back
    the epoch, halve the rate) before it stops as diverged.
    min_explained: a model whose reconstructions explain less than this share of the
    training variance that PCA with latent_dim components explains is a failed training
    (0 accepts any model, e.g. to study posterior collapse).
    density_components: Gaussians in the latent density fitted after training.
    """

    epochs: int = option(250, "Passes over the training frames.")
    batch_size: int = option(32, "Frames per gradient step.")
    lr: float = option(1e-3, "Peak learning rate.")
    optimizer: str = option(
        "adam", "optax optimizer (sgd: with Nesterov momentum).", choices=OPTIMIZERS
    )
    schedule: str = option("cosine", "cosine: decay to 1% of --lr; constant.", choices=SCHEDULES)
    final_lr_fraction: float = 0.01
    warmup_epochs: int | None = option(
        None,
        "Epochs of linear learning-rate warm-up from 0. Default: 5, at most a tenth of --epochs.",
    )
    clip_norm: float | None = option(None, "Clip the global gradient norm to this.")
    lr_scaling: str = option(
        "fan-in",
        "fan-in: the first layer's rate times hidden/features when features are more (same "
        "defaults for any molecule size); uniform: --lr for every layer.",
        choices=LR_SCALINGS,
    )
    weight_decay: float = option(
        1.0,
        "Decoupled (AdamW) weight decay on the weight matrices, times the rate per step; "
        "0 for none.",
    )
    input_noise: float = option(
        0.5,
        "Std of the noise on the (standardized) frames the encoder sees in training; the "
        "loss scores the clean frame (denoising). 0: off.",
    )
    beta: float = option(0.01, "Weight of the KL term.")
    kl_warmup: int = option(0, "Epochs over which beta ramps up from 0 (against collapse).")
    samples: int = option(1, "Reparameterized draws per frame.")
    val_fraction: float = option(
        0.1, "Share of each trajectory held out to validate (and pick the kept epoch)."
    )
    val_blocks: int = option(5, "Contiguous blocks per trajectory the held-out frames form.")
    lag: int = option(
        0,
        "Time-lagged VAE: encode frame t, reconstruct frame t + LAG (frames as read, after "
        "--stride; pairs never cross input files). 0: the plain VAE.",
    )
    keep: str = option("best", "Parameters kept: best (validation) epoch, or last.", choices=KEEP)
    patience: int | None = option(None, "Stop after this many epochs without validation gain.")
    max_recoveries: int = option(
        5,
        "Divergences (loss spike, non-finite step) rolled back at half the rate before "
        "training stops (exit 3).",
    )
    min_explained: float = option(
        0.5,
        "Fail (exit 3) when the model explains less than this share of what PCA with as "
        "many components explains; 0 accepts any model.",
    )
    seed: int = option(
        0, "Seed of initialization, split, batches and draws: same seed, same model."
    )
    checkpoint_every: int = option(10, "Epochs between checkpoints (0: only on interrupt).")
    density_components: int = option(8, "Gaussians in the fitted latent density.")

    def __post_init__(self) -> None:
        check_rules(self, _TRAIN_RULES)

    def beta_at(self, epoch: int) -> float:
        """beta for 0-based `epoch`, ramped linearly over the first kl_warmup epochs."""
        if self.kl_warmup == 0:
            return self.beta
        return self.beta * min(1.0, (epoch + 1) / self.kl_warmup)

    @classmethod
    def textbook(cls, **changes: Any) -> TrainConfig:
        """The textbook chapter's procedure: adam at a constant 1e-2 for every layer, no
        warm-up, no weight decay or input noise, the last epoch kept; `changes` on top
        (its epochs 250, batch 32 and beta 0.01 are the defaults already). On the
        command line: --lr 1e-2 --schedule constant --warmup-epochs 0 --lr-scaling
        uniform --weight-decay 0 --input-noise 0 --keep last."""
        textbook = {
            "lr": 1e-2,
            "schedule": "constant",
            "warmup_epochs": 0,
            "lr_scaling": "uniform",
            "weight_decay": 0.0,
            "input_noise": 0.0,
            "keep": "last",
        }
        return cls(**{**textbook, **changes})

    @property
    def warmup(self) -> int:
        """Warm-up epochs: warmup_epochs, or by default 5 but at most a tenth of the run
        (a short run is not all warm-up)."""
        if self.warmup_epochs is None:
            return min(5, self.epochs // 10)
        return min(self.warmup_epochs, self.epochs)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls(**json.loads(text))


REFINE_HELP = (
    "Relax each decoded structure to the training data's bonds, angles, contacts and "
    "handedness before it is judged or written (the decoder's mean has short bonds and "
    "overlapping atoms)."
)
# how long the processes of a run may take to find each other (train --join-timeout)
JOIN_TIMEOUT_S = 300.0
# the latent optimizer's objectives (vaetraj.optim makes each one)
OBJECTIVES = ("rg", "end-to-end", "distance", "rmsd")
# optimize's refinement tether, in units of the decoder's per-atom error (sample's: 3)
OPTIMIZE_TETHER_WIDTH = 1.0


# each field's rule (ConfigError names the field; the CLI prints its option)
_OPTIMIZE_RULES: Rules = {
    "objective": (lambda v: v in OBJECTIVES, f"must be one of {', '.join(OBJECTIVES)}"),
    "direction": (lambda v: v in ("min", "max"), "must be min or max"),
    "target": (lambda v: v is None or math.isfinite(v), "must be a finite number"),
    "restarts": (lambda v: v >= 1, "must be at least 1"),
    "learning_rate": (lambda v: v > 0, "must be positive"),
    "trust_weight": (lambda v: v >= 0, "must be 0 or more"),
    "tether_width": (lambda v: v > 0 and math.isfinite(v), "must be positive"),
    "data_starts": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "trust_quantile": (lambda v: 0 < v < 1, "must be in (0, 1)"),
}


@dataclass(frozen=True)
class OptimizeConfig:
    """objective: rg, end-to-end, distance (between two selections) or rmsd (to a
    target structure). direction min or max; target: reach this value instead.
    trust_weight 0 turns the trust region off (the textbook's plain descent)."""

    objective: str = option("rg", "rg, end-to-end, distance (--group-a/--group-b) or rmsd.")
    direction: str = option(
        "min", "Minimize or maximize the objective (without --target).", choices=("min", "max")
    )
    target: float | None = option(None, "Reach this value instead of minimizing or maximizing.")
    restarts: int = option(64, "Starting points, optimized at once.")
    steps: int = option(500, "Adam steps (a multiple of 10).")
    learning_rate: float = option(0.05, "Adam learning rate in latent units.", flag="--lr")
    trust_weight: float = option(
        10.0, "Weight of the latent-density penalty (0: plain descent, the textbook's)."
    )
    trust_quantile: float = option(
        0.01, "The trust region is log p(z) above this quantile of the density's own draws."
    )
    record_every: int = 10
    seed: int = option(0, "Seed of the starting points.")
    refine: bool = option(
        True,
        REFINE_HELP,
        flag="--refine/--no-refine",
    )
    # the refinement's, x the decoder's error
    tether_width: float = option(
        OPTIMIZE_TETHER_WIDTH,
        "How far refinement may move a candidate, in units of the decoder's own per-atom "
        "error (sample's refinement uses 3).",
    )
    data_starts: float = option(
        0.5,
        "Share of restarts that start at the training frames scoring best on the objective "
        "(the rest are density draws).",
    )

    def __post_init__(self) -> None:
        check_rules(self, _OPTIMIZE_RULES)
        every = self.record_every
        if every < 1:
            raise ConfigError("record_every", "must be at least 1", every)
        if self.steps < every or self.steps % every:
            raise ConfigError("steps", f"must be a positive multiple of {every}", self.steps)


_KINETICS_RULES: Rules = {
    "lag": (lambda v: v >= 1, "must be at least 1"),
    "clusters": (lambda v: v >= 2, "must be at least 2"),
    "states": (lambda v: v >= 2, "must be at least 2"),
    "frame_time": (lambda v: v is None or 0 < v < math.inf, "must be a positive number"),
}


@dataclass(frozen=True)
class KineticsConfig:
    """lag: frames between the two ends of a pair. clusters: k-means centres. states:
    metastable sets (PCCA+ and the Chapman-Kolmogorov test). lags: the implied-timescale
    test's lags (None: about ten from 1 to 5 x lag). frame_time: ps per frame (None:
    the latent file's, as `encode` recorded it from its inputs; timescales in frames
    only when neither gives one)."""

    lag: int = option(help="Frames between the two ends of a pair (as encoded, after --stride).")
    clusters: int = option(100, "k-means clusters of the latent means.")
    states: int = option(2, "Metastable states (PCCA+, CK test).")
    lags: tuple[int, ...] | None = option(
        None, "Implied-timescale lags, e.g. 1,2,5,10,20 (default: up to 5x --lag)."
    )
    seed: int = option(0, "Seed of the k-means initialization.")
    frame_time: float | None = option(
        None,
        "Picoseconds per latent frame, for timescales in ps too (default: the one encode "
        "recorded from its inputs, if any).",
        metavar="PS",
    )

    def __post_init__(self) -> None:
        check_rules(self, _KINETICS_RULES)
        if self.states > self.clusters:
            raise ConfigError(
                "states", f"must not exceed clusters ({self.clusters})", self.states,
                also=("clusters",),
            )  # fmt: skip
        if self.lags is not None and any(lag < 1 for lag in self.lags):
            raise ConfigError("lags", "must each be at least 1", list(self.lags))


FEATURIZATIONS = ("torsions", "distances", "contacts")
TORSION_KINDS = ("phi", "psi", "omega", "chi1", "chi2", "chi3", "chi4")

_FEATURIZE_RULES: Rules = {
    "kind": (lambda v: v in FEATURIZATIONS, f"must be one of {', '.join(FEATURIZATIONS)}"),
    "torsions": (
        lambda v: bool(v) and all(kind in TORSION_KINDS for kind in v),
        f"must name one or more of {', '.join(TORSION_KINDS)}",
    ),
    "cutoff": (lambda v: v is None or 0 < v < math.inf, "must be a positive distance (nm)"),
    "contact_r0": (lambda v: 0 < v < math.inf, "must be a positive distance (nm)"),
}


@dataclass(frozen=True)
class FeaturizeConfig:
    """Features vaetraj computes from the frames to train on (`train --featurize`),
    each invariant to rigid motions, so no alignment comes before them.

    kind: "torsions" (sin and cos of each dihedral named in `torsions`, mdtraj's
    definitions), "distances" (nm, between the atoms of `pair_select` at least 3 bonds
    apart) or "contacts" (1 / (1 + (r / contact_r0)^6) of the same pairs).
    pair_select: the atoms paired (None: "name CA"). cutoff (nm): keep only the pairs
    closer than it in at least one training frame (None: all pairs).
    """

    kind: str = option(
        "torsions",
        "Train on features computed from raw DATA (needs a topology), not on aligned "
        "coordinates: torsions (sin, cos), distances (nm) or contacts. They ignore rigid "
        "motions; decode and sample then give feature tables, optimize refuses.",
        flag="--featurize",
        choices=FEATURIZATIONS,
    )
    torsions: tuple[str, ...] = option(
        ("phi", "psi", "chi1"),
        f"--featurize torsions: comma-separated kinds of {', '.join(TORSION_KINDS)}.",
    )
    pair_select: str | None = option(
        None,
        "--featurize distances/contacts: mdtraj selection of the atoms paired (default "
        '"name CA"), pairs 3 or more bonds apart.',
    )
    cutoff: float | None = option(
        None, "--featurize distances/contacts: keep pairs closer than this (nm) in some frame."
    )
    contact_r0: float = option(
        0.45, "--featurize contacts: distance (nm) of half contact, 1/(1+(r/r0)^6)."
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "torsions", tuple(self.torsions))
        check_rules(self, _FEATURIZE_RULES)
        if self.kind == "torsions":
            for name in ("pair_select", "cutoff"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        name, "is for distances and contacts, not torsions", getattr(self, name)
                    )


ALIGN_METHODS = ("principal", "kabsch", "none")


@dataclass(frozen=True)
class ReadOptions:
    """How to read trajectory files. stride keeps every Nth frame of each file;
    frame_time: ps between a file's frames before the stride, for files that do not
    record it (None: what the files say, if anything)."""

    top: str | os.PathLike | None = option(
        None, "Topology (PDB, ...) for formats without one.", cli_type=Path
    )
    select: str | None = option(None, "mdtraj selection, e.g. 'name CA' or 'not element H'.")
    stride: int = option(1, "Keep every Nth frame of each file.", minimum=1)
    key: str | None = option(None, "Array name in an .npz holding several.")
    allow_partial: bool = option(False, "Keep the whole frames of a file that ends inside a frame.")
    frame_time: float | None = option(
        None,
        "Picoseconds between the input files' frames (before --stride), for files that do "
        "not record it (mdtraj's DCDs, arrays). Default: what the files record.",
        metavar="PS",
    )

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ConfigError("stride", "must be at least 1", self.stride)
        if self.frame_time is not None and not (
            math.isfinite(self.frame_time) and self.frame_time > 0
        ):
            raise ConfigError("frame_time", "must be a positive number of ps", self.frame_time)


@dataclass(frozen=True)
class AlignConfig:
    """How frames are aligned.

    method: "principal" (centre, rotate onto principal axes), "kabsch" (centre,
    superpose onto a reference) or "none" (centre only).
    reference (kabsch): a frame index, "mean" (iterate to the average structure), or
    a structure file; None means frame 0 (text of digits is an index).
    equal_masses: weight every atom alike even when the topology gives masses.
    degeneracy_tol: a principal-axis frame whose relative eigenvalue gap or sign moment
    is below this is counted as ambiguous.
    mean_tol (in the data's units): the iterative mean stops when it moves less than this
    RMSD; mean_max_iterations bounds the passes.
    """

    method: str = option(
        "principal",
        "principal: principal axes; kabsch: superpose on a reference; none: centre only.",
        choices=ALIGN_METHODS,
    )
    reference: int | str | None = option(
        None,
        "kabsch: frame INDEX, 'mean' (iterate to the average), or a structure FILE. "
        "Default: frame 0.",
        cli_type=str,
    )
    equal_masses: bool = option(
        False, "Weight all atoms alike even when the topology gives masses."
    )
    degeneracy_tol: float = 1e-2
    mean_tol: float = 1e-5
    mean_max_iterations: int = 50

    def __post_init__(self) -> None:
        if isinstance(self.reference, str) and self.reference.strip().isdigit():
            object.__setattr__(self, "reference", int(self.reference))
        if self.method not in ALIGN_METHODS:
            raise ConfigError("method", f"must be one of {', '.join(ALIGN_METHODS)}", self.method)
        if self.reference is not None and self.method != "kabsch":
            raise ConfigError(
                "reference", "only applies to method kabsch", self.reference, also=("method",)
            )
        if not 0 < self.degeneracy_tol < 1:
            raise ConfigError("degeneracy_tol", "must be in (0, 1)", self.degeneracy_tol)
        if self.mean_tol <= 0:
            raise ConfigError("mean_tol", "must be positive", self.mean_tol)
        if self.mean_max_iterations < 1:
            raise ConfigError("mean_max_iterations", "must be at least 1", self.mean_max_iterations)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AlignConfig:
        return cls(**json.loads(text))


PRIORS = ("density", "standard")
_EVALUATE_RULES: Rules = {
    "iwae_samples": (lambda v: v >= 1, "must be at least 1"),
    "samples": (lambda v: v is None or v >= 1, "must be at least 1"),
    "prior": (lambda v: v in PRIORS, f"must be one of {', '.join(PRIORS)}"),
}


@dataclass(frozen=True)
class EvaluateConfig:
    """iwae_samples: K posterior draws per frame for the importance-weighted bound;
    samples: conformations drawn for the fidelity measures (default: as many as frames,
    at most 2,000 refined or 10,000 unrefined); prior: where those come from; seed:
    every random draw; refine: refine the samples as `sample` does."""

    iwae_samples: int = option(
        64, "K draws per frame of the importance-weighted bound.", flag="--iwae-samples -k"
    )
    samples: int | None = option(
        None,
        "Conformations drawn for fidelity (default: frames, <= 2000; <= 10000 with --no-refine).",
    )
    prior: str = option("density", "Where samples come from.", choices=PRIORS)
    seed: int = option(0, "Seed of the posterior and prior draws.")
    refine: bool = option(
        True,
        REFINE_HELP,
        flag="--refine/--no-refine",
    )

    def __post_init__(self) -> None:
        check_rules(self, _EVALUATE_RULES)


RELAX_CHOICES = ("statistical", "openmm")
_SAMPLE_RULES: Rules = {
    "n": (lambda v: v >= 1, "must be at least 1"),
    "prior": (lambda v: v in PRIORS, f"must be one of {', '.join(PRIORS)}"),
    "temperature": (lambda v: 0 < v < math.inf, "must be positive"),
    "relax": (lambda v: v in RELAX_CHOICES, f"must be one of {', '.join(RELAX_CHOICES)}"),
}


@dataclass(frozen=True)
class SampleConfig:
    """How `sample` draws and makes structures (`decode` takes refine and relax): n
    points from the latent density or N(0, I), every std times temperature, refined on
    the training frames' statistical potential or (relax "openmm") the AMBER force
    field."""

    n: int = option(1000, "Number of conformations.", flag="-n --n")
    prior: str = option(
        "density",
        "density: the mixture fitted to the encoded training frames; standard: N(0, I).",
        choices=PRIORS,
    )
    temperature: float = option(1.0, "Multiplies every latent std (below 1: nearer the modes).")
    seed: int = option(0, "Random seed; the same seed gives the same samples.")
    refine: bool = option(True, REFINE_HELP, flag="--refine/--no-refine")
    relax: str = option(
        "statistical",
        "What refinement samples: the training frames' statistical potential, or (openmm) "
        "the AMBER ff14SB force field with OBC2 implicit solvent, for all-atom proteins and "
        "peptides in nm (needs OpenMM: pip install openmm, or vaetraj's openmm extra); the energy check judges both.",
        choices=RELAX_CHOICES,
    )

    def __post_init__(self) -> None:  # relax "openmm" without refine: `generate` refuses
        check_rules(self, _SAMPLE_RULES)


BIAS_METHODS = ("metad", "umbrella", "steer")

_BIAS_RULES: Rules = {
    "method": (lambda v: v in BIAS_METHODS, f"must be one of {', '.join(BIAS_METHODS)}"),
    "cv": (lambda v: 1 <= len(v) <= 2 and len(set(v)) == len(v) and min(v) >= 0,
           "must name one or two different latent dimensions (0, 1, ...)"),
    "steps": (lambda v: v >= 1, "must be at least 1"),
    "report": (lambda v: v >= 1, "must be at least 1"),
    "pace": (lambda v: v >= 1, "must be at least 1"),
    "bias_factor": (lambda v: v > 1, "must be above 1"),
    "height": (lambda v: v > 0, "must be positive"),
    "k": (lambda v: v > 0, "must be positive"),
    "checkpoint_every": (lambda v: v >= 0, "must be zero (none) or more"),
    "temperature": (lambda v: v is None or v > 0, "must be positive"),
    "time_step": (lambda v: v is None or v > 0, "must be positive"),
    "friction": (lambda v: v > 0, "must be positive"),
    "hydrogen_mass": (lambda v: v is None or v >= 0, "must be zero (the force field's) or more"),
    "width": (lambda v: v is None or all(w > 0 for w in v), "must be positive"),
}  # fmt: skip


@dataclass(frozen=True)
class BiasConfig:
    """A biased OpenMM run along latent coordinates (`vaetraj bias`): metad, well-tempered
    metadynamics (OpenMM's `app.Metadynamics`); umbrella, a harmonic restraint at
    `center`; steer, that restraint's centre moved from `center[0]` to `center[1]`.
    None for temperature, time_step and hydrogen_mass: the system's own (300 K, 4 fs
    and 3 amu for a force field; the built-in polymer's own units)."""

    method: str = option(
        "metad",
        "metad: well-tempered metadynamics; umbrella: a harmonic "
        "restraint at --center; steer: its centre moved from the first "
        "--center value to the second over the run.",
        choices=BIAS_METHODS,
    )
    cv: tuple[int, ...] = option(
        (0,), "The latent dimensions biased: one, or two (metad, umbrella), e.g. 0 or 0,1."
    )
    steps: int = option(250_000, "MD steps (250,000 of 4 fs: 1 ns).", minimum=1)
    report: int = option(250, "Steps between saved frames.", minimum=1)
    temperature: float | None = option(
        None, "K (default: 300, or the built-in polymer's).", show_default=False, cli_type=float
    )
    time_step: float | None = option(
        None,
        "ps (default: 0.004 with --hydrogen-mass 3, or the built-in polymer's).",
        show_default=False,
        cli_type=float,
    )
    friction: float = option(1.0, "Langevin friction, 1/ps.")
    hydrogen_mass: float | None = option(
        None,
        "amu: hydrogen mass repartitioning (default 3; 0: the force field's masses).",
        show_default=False,
        cli_type=float,
    )
    bias_factor: float = option(6.0, "metad: the well-tempered bias factor.")
    height: float = option(1.2, "metad: the first Gaussians' height, kJ/mol.")
    width: tuple[float, ...] | None = option(
        None,
        "metad: Gaussian width per CV, latent units (default: 1/40 of the CV's range).",
        show_default=False,
    )
    pace: int = option(
        125, "metad: steps between Gaussians; steer: between moves of the centre.", minimum=1
    )
    cv_range: tuple[float, ...] | None = option(
        None,
        "LO,HI per CV: the bias grid's extent "
        "(default: the model's latent density, "
        "padded by half its span).",
        show_default=False,
    )
    center: tuple[float, ...] | None = option(
        None, "umbrella: the centre per CV; steer: start,end of the one CV.", show_default=False
    )
    k: float = option(
        100.0, "umbrella, steer: the restraint's force constant, kJ/mol per latent unit squared."
    )
    seed: int = option(0, "Seed of the velocities and the thermostat.")
    checkpoint_every: int = option(25_000, "Steps between checkpoints (0: none).", minimum=0)

    def __post_init__(self) -> None:
        check_rules(self, _BIAS_RULES)
        count = len(self.cv)
        if self.method == "steer" and count != 1:
            raise ConfigError("cv", "must be one latent dimension for steer", list(self.cv))
        wanted = {"umbrella": count, "steer": 2}.get(self.method)
        if wanted is not None and (self.center is None or len(self.center) != wanted):
            raise ConfigError("center", f"must give {wanted} value(s) for {self.method}",
                              None if self.center is None else list(self.center))  # fmt: skip
        if self.width is not None and len(self.width) != count:
            raise ConfigError("width", f"must give one width per CV ({count})", list(self.width))
        if self.cv_range is not None and len(self.cv_range) != 2 * count:
            raise ConfigError("cv_range", f"must give LO,HI per CV ({2 * count} values)",
                              list(self.cv_range))  # fmt: skip
        edges = self.cv_range or ()
        if any(lo >= hi for lo, hi in zip(edges[0::2], edges[1::2], strict=True)):
            raise ConfigError("cv_range", "must have LO below HI", list(self.cv_range or ()))


class PolymerConfigError(ConfigError, ValueError):
    """A field of `PolymerConfig` out of range (a ValueError too, as it always was)."""

    def __init__(self, field: str, rule: str, value: object) -> None:
        super().__init__(field, rule, value)
        self.args = (f"PolymerConfig.{field} {rule}, got {value!r}",)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class PolymerConfig:
    """Everything that defines a polymer simulation except the random seed.

    The defaults give a chain with the statistics of the textbook's trajectory (2D:
    mean bond 0.73 against 0.72, mean R_g 1.12 against 1.11, angles spread widely) but
    with a Lennard-Jones core and stiffer bonds, so no two beads overlap.
    """

    beads: int = option(12, "Beads in the chain.")
    dim: int = option(2, "2 or 3 dimensions.")
    frames: int = option(2048, "Frames to record.")
    stride: int = option(200, "Integration steps between recorded frames.")
    equilibration: int = 20_000
    temperature: float = option(1.0, "kT in reduced units.")
    dt: float = 0.005
    friction: float = 1.0
    bond_k: float = 50.0
    bond_length: float = 0.7
    angle_k: float = 0.2
    angle: float = math.pi
    lj_epsilon: float = 1.0
    lj_sigma: float = 0.35
    lj_cutoff: float = 2.5  # in units of lj_sigma

    def __post_init__(self) -> None:
        checks = {
            "beads": self.beads >= 3,
            "dim": self.dim in (2, 3),
            "frames": self.frames >= 1,
            "stride": self.stride >= 1,
            "equilibration": self.equilibration >= 0,
            "temperature": self.temperature > 0,
            "dt": self.dt > 0,
            "friction": self.friction > 0,
            "bond_k": self.bond_k > 0,
            "bond_length": self.bond_length > 0,
            "angle_k": self.angle_k >= 0,
            "angle": 0 < self.angle <= math.pi,
            "lj_epsilon": self.lj_epsilon >= 0,
            "lj_sigma": self.lj_sigma > 0,
            "lj_cutoff": self.lj_cutoff > 1,
        }
        rules = {
            "beads": "at least 3",
            "dim": "2 or 3",
            "angle": "in (0, pi]",
            "lj_cutoff": "above 1 (it is in units of sigma)",
            "equilibration": "zero or more",
            "angle_k": "zero or more",
            "lj_epsilon": "zero or more",
        }
        for name, ok in checks.items():
            if not ok:
                rule = rules.get(name, "at least 1" if name in ("frames", "stride") else "positive")
                raise PolymerConfigError(name, f"must be {rule}", getattr(self, name))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PolymerConfig:
        return cls(**json.loads(text))


# every config whose fields are command-line options
CONFIGS = (ReadOptions, AlignConfig, FeaturizeConfig, ModelConfig, TrainConfig, OptimizeConfig,
           KineticsConfig, EvaluateConfig, SampleConfig, PolymerConfig, BiasConfig)  # fmt: skip


def renamed_flags() -> dict[str, str]:
    """The fields whose option is not --field-name, and their options (for messages)."""
    return {
        field.name: flag_of(field).split("/")[0].split(" ")[0]
        for config in CONFIGS
        for field in cli_fields(config)
        if field.metadata["flag"]
    }
