"""The configs of a model, of its training, of `optimize` and of `kinetics`: frozen,
validated, JSON round-tripped.

JAX-free, so that the command line takes its defaults and choices from them without
paying for JAX at start-up (`vaetraj --help`). A field out of range raises
`ConfigError` naming the field; the CLI prints the option instead."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
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
    latent_dim: int | None = None
    hidden: int = 256
    layers: int = 4
    activation: str = "relu"
    likelihood: str = "mse"
    decoder_std: float = 1.0
    posterior: str = "diagonal"

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

    epochs: int = 250
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "cosine"
    final_lr_fraction: float = 0.01
    warmup_epochs: int | None = None
    clip_norm: float | None = None
    lr_scaling: str = "fan-in"
    weight_decay: float = 1.0
    input_noise: float = 0.5
    beta: float = 0.01
    kl_warmup: int = 0
    samples: int = 1
    val_fraction: float = 0.1
    val_blocks: int = 5
    lag: int = 0
    keep: str = "best"
    patience: int | None = None
    max_recoveries: int = 5
    min_explained: float = 0.5
    seed: int = 0
    checkpoint_every: int = 10
    density_components: int = 8

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

    objective: str = "rg"
    direction: str = "min"
    target: float | None = None
    restarts: int = 64
    steps: int = 500
    learning_rate: float = 0.05
    trust_weight: float = 10.0
    trust_quantile: float = 0.01
    record_every: int = 10
    seed: int = 0
    refine: bool = True
    tether_width: float = OPTIMIZE_TETHER_WIDTH  # the refinement's, x the decoder's error
    data_starts: float = 0.5  # the share of restarts that start from training frames

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

    lag: int
    clusters: int = 100
    states: int = 2
    lags: tuple[int, ...] | None = None
    seed: int = 0
    frame_time: float | None = None

    def __post_init__(self) -> None:
        check_rules(self, _KINETICS_RULES)
        if self.states > self.clusters:
            raise UsageError(f"--states {self.states} must not exceed --clusters {self.clusters}")
        if self.lags is not None and any(lag < 1 for lag in self.lags):
            raise UsageError(f"--lags must be at least 1, got {list(self.lags)}")


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

    kind: str = "torsions"
    torsions: tuple[str, ...] = ("phi", "psi", "chi1")
    pair_select: str | None = None
    cutoff: float | None = None
    contact_r0: float = 0.45

    def __post_init__(self) -> None:
        object.__setattr__(self, "torsions", tuple(self.torsions))
        check_rules(self, _FEATURIZE_RULES)
        if self.kind == "torsions":
            for name in ("pair_select", "cutoff"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        name, "is for distances and contacts, not torsions", getattr(self, name)
                    )
