"""The architecture of a VAE: a frozen, validated, JSON round-tripped config."""

from __future__ import annotations

import dataclasses
import json
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


# each field's rule: a test of its value and what it demands (ConfigError names the field)
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
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
        for name, (ok, rule) in _RULES.items():
            if not ok(getattr(self, name)):
                raise ConfigError(name, rule, getattr(self, name))

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
