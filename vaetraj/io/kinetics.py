"""Kinetics files (format `vaetraj-kinetics`, version 1), written by `vaetraj kinetics`.

.h5   /cluster, /metastable (frames,) int32: each frame's k-means cluster and its
      metastable state (-1: a cluster outside the Markov model's connected set);
      /slowest (frames,) float64: each frame's value of the first VAMP singular
      function of the latent means at the lag (the slowest linear coordinate);
      /slowest_coefficients (1 + latent,): its offset and weights on the means;
      /cluster_centers (clusters, latent); /active_clusters (states,) the clusters of
      the connected set, in the order of /transition_matrix (states, states),
      /stationary_distribution (states,) and /memberships (states, metastable);
      /its/lags (lags,) and /its/timescales (lags, processes) in frames, NaN where a
      lag's model has fewer processes; /ck/lags, /ck/predictions and /ck/estimates
      (lags, metastable, metastable) when the Chapman-Kolmogorov test ran; attrs
      format, format_version, latent (path), lag, states, seed, vamp2, frame_time_ps
      (when known), vaetraj_version, created.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from vaetraj._version import __version__
from vaetraj.errors import UsageError
from vaetraj.io._atomic import atomic_output, write_h5_bytes

KINETICS_FORMAT = "vaetraj-kinetics"
KINETICS_FORMAT_VERSION = 1


def check_kinetics_suffix(path: Path) -> None:
    if path.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(
            f"kinetics output must be .h5, got '{path.suffix or path.name}'", path=path
        )


def write_kinetics(
    path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any], overwrite: bool
) -> None:
    """The arrays by dataset name ("its/lags" makes a group) and the attributes (None
    values left out; lists and dicts as JSON), written atomically."""
    check_kinetics_suffix(path)
    attrs = {
        "format": KINETICS_FORMAT,
        "format_version": KINETICS_FORMAT_VERSION,
        **attrs,
        "vaetraj_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    def fill(handle) -> None:
        for name, values in arrays.items():
            handle.create_dataset(name, data=values)
        for name, value in attrs.items():
            if value is not None:
                handle.attrs[name] = json.dumps(value) if isinstance(value, (list, dict)) else value

    # built in memory, then written with plain writes: a full disk is an OSError (exit
    # 74), not an HDF5 failure that printed "Exception ignored" tracebacks as it closed
    with atomic_output(path, overwrite=overwrite) as tmp:
        write_h5_bytes(tmp, fill)
