"""VAE kernels: config, per-frame encode/decode/loss, KL, normalization, latent density."""

from vaetraj.configs import (
    ACTIVATIONS,
    DEFAULT_LATENT_DIM,
    LIKELIHOODS,
    POSTERIORS,
    ModelConfig,
)
from vaetraj.model._codec import decode_data, encode_data, normalize
from vaetraj.model._density import (
    GaussianMixture,
    MixtureFit,
    compute_aggregate_log_density,
    compute_mixture_log_density,
    fit_gaussian_mixture,
    sample_mixture,
)
from vaetraj.model._diagnostics import (
    ExplainedVariance,
    compute_active_units,
    compute_explained_variance,
    compute_pca_explained_variance,
    compute_pca_held_out_explained_variance,
    compute_prediction_explained_variance,
    count_active_units,
)
from vaetraj.model._kl import compute_kl_diagonal, compute_kl_full
from vaetraj.model._likelihood import (
    compute_elbo_terms,
    compute_importance_weighted_bound,
    compute_log_likelihood,
)
from vaetraj.model._mlp import apply_mlp, init_mlp
from vaetraj.model._normalize import (
    Moments,
    Normalization,
    compute_moments,
    fit_normalization,
    normalization_from_moments,
    summed_squares,
    working_float,
)
from vaetraj.model._vae import (
    LossTerms,
    Posterior,
    compute_kl,
    compute_loss_terms,
    compute_negative_log_likelihood,
    decode_frame,
    encode_frame,
    init_vae,
    sample_posterior,
)

__all__ = [
    "summed_squares",
    "working_float",
    "ExplainedVariance",
    "Moments",
    "compute_moments",
    "normalization_from_moments",
    "decode_data",
    "encode_data",
    "normalize",
    "ACTIVATIONS",
    "DEFAULT_LATENT_DIM",
    "LIKELIHOODS",
    "POSTERIORS",
    "GaussianMixture",
    "LossTerms",
    "MixtureFit",
    "ModelConfig",
    "Normalization",
    "Posterior",
    "apply_mlp",
    "compute_active_units",
    "count_active_units",
    "compute_aggregate_log_density",
    "compute_explained_variance",
    "compute_pca_explained_variance",
    "compute_pca_held_out_explained_variance",
    "compute_prediction_explained_variance",
    "compute_elbo_terms",
    "compute_importance_weighted_bound",
    "compute_kl",
    "compute_kl_diagonal",
    "compute_kl_full",
    "compute_loss_terms",
    "compute_log_likelihood",
    "compute_mixture_log_density",
    "compute_negative_log_likelihood",
    "decode_frame",
    "encode_frame",
    "fit_gaussian_mixture",
    "fit_normalization",
    "init_mlp",
    "init_vae",
    "sample_mixture",
    "sample_posterior",
]
