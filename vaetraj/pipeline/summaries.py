"""Each command's report in words: the (label, text) rows of the table the command
prints, as `Report.rows()` gives them (JAX-free: reports' fields only)."""

from __future__ import annotations


def _inputs_text(report) -> str:
    """What the network took, as the summary's frames row says it."""
    if report.representation == "table":
        return f"({report.features} features)"
    if report.representation == "featurized":
        return f"({report.features} features, {report.featurizer} of {report.atoms} atoms)"
    return f"({report.atoms} atoms in {report.dims}D)"


def train_rows(report) -> list[tuple[str, str]]:
    rows = [
        (
            "output",
            f"{report.output}"
            + ("  (FAILED: see the error below)" if report.status == "failed" else ""),
        ),
        (
            "frames",
            f"{report.train_frames} training, {report.val_frames} validation"
            + (
                f" (blocks of {report.trajectories} trajectories) "
                if report.trajectories > 1
                else " "
            )
            + _inputs_text(report),
        ),
        *_lag_rows(report),
        (
            "epochs",
            f"{report.epochs_run} run, best {report.best_epoch}, kept {report.kept_epoch}"
            + (" (stopped early)" if report.stopped_early else ""),
        ),
        (
            "loss (kept epoch)",
            f"train {report.train_loss:.4g}"
            + (f", validation {report.val_loss:.4g}" if report.val_loss is not None else ""),
        ),
    ]
    rows += _quality_rows(report)
    if report.recoveries:
        rows.append(
            (
                "recoveries",
                f"{len(report.recoveries)} (rolled back; learning rate now {report.final_lr:.2g})",
            )
        )
    rows += [
        ("throughput", f"{report.frames_per_s:,.0f} frames/s on {report.devices} device(s)"),
        ("wall time", f"{report.wall_time_s:.1f} s"),
    ]
    return rows


def _lag_rows(report) -> list[tuple[str, str]]:
    """The lag of a time-lagged model, in frames and (when known) ps; the frame time."""
    step = report.frame_time_ps
    if report.lag:
        time = f" = {report.lag * step:.4g} ps" if step else " (frame time unknown)"
        return [("lag", f"{report.lag} frames{time}: frame t is encoded, frame t+lag decoded")]
    return [("frame time", f"{step:.4g} ps")] if step else []


def _quality_rows(report) -> list[tuple[str, str]]:
    """What the kept model is worth: reconstruction, variance, KL, density."""
    table = report.representation != "aligned"  # errors over features, not atoms
    plural = "s" if report.latent_dim > 1 else ""
    yardstick = f"PCA with {report.latent_dim} component{plural}"
    later = ""
    if report.lag:  # a time-lagged model is scored on the frames it predicts
        yardstick = f"linear prediction through {report.latent_dim} dimension{plural}"
        later = f" of frame t+{report.lag}"
    kl = ", ".join(f"{value:.3g}" for value in report.kl_per_dim)
    return [
        (
            ("prediction RMS error" if table else f"prediction RMSD ({report.units})") + later
            if report.lag
            else ("recon RMS error" if table else f"recon RMSD ({report.units})"),
            f"train {report.recon_rmsd_train:.4g}"
            + (
                f", validation {report.recon_rmsd_val:.4g} ({report.val_gap:.2f}x)"
                if report.recon_rmsd_val is not None and report.val_gap is not None
                else ""
            ),
        ),
        (
            "variance explained" + later,
            f"train {report.explained_variance_train:.1%} ({yardstick}: "
            f"{report.pca_explained_variance:.1%})"
            + (
                f", validation {report.explained_variance_val:.1%}"
                + (
                    f" ({yardstick}: {report.pca_explained_variance_val:.1%})"
                    if report.pca_explained_variance_val is not None
                    else ""
                )
                if report.explained_variance_val is not None
                else ""
            ),
        ),
        *(
            [
                (
                    "linear memory",
                    f"{report.predictable_share:.0%} of what PCA explains of frame t "
                    f"is predicted at frame t+{report.lag}",
                )
            ]
            if report.lag and report.predictable_share is not None
            else []
        ),  # fmt: skip
        ("KL per dim", kl),
        ("active units", f"{report.active_units} of {report.latent_dim}"),
        (
            "latent density",
            f"{report.density_components}-component Gaussian mixture "
            f"({report.density_points:,} draws)",
        ),
    ]


def optimize_rows(report) -> list[tuple[str, str]]:
    units = report.units
    goal = f"reach {report.target:g}" if report.target is not None else f"{report.direction}imize"
    rows = [
        ("output", report.output),
        ("objective", f"{report.objective}: {goal}"),
        (
            "best",
            f"{report.best_value:.4g} {units} (restart {report.best_restart}, step "
            f"{report.best_step})",
        ),
        (
            "model's samples",
            f"{report.sample_value_range[0]:.4g} to {report.sample_value_range[1]:.4g}",
        ),
    ]
    if report.train_rg_min is not None:
        rows.append(
            (
                f"R_g ({units})",
                f"{report.rg:.4g} (training frames: {report.train_rg_min:.4g} to "
                f"{report.train_rg_max:.4g})",
            )
        )
    if report.nearest_frame_rmsd is not None:
        rows.append(("nearest training frame", f"RMSD {report.nearest_frame_rmsd:.4g} {units}"))
    if report.plausible is not None:
        rows += _geometry_rows(report)
    rows += [
        (
            "trust region",
            "off"
            if report.trust_threshold is None
            else f"{'inside' if report.inside_trust_region else 'outside'} "
            f"(log p {report.best_log_density:.3g}, threshold {report.trust_threshold:.3g})",
        ),
        (
            "restarts",
            f"{report.restarts} x {report.steps} steps ({report.data_starts} from training "
            f"frames); the descent alone {report.optimize_time_s:.2f} s",
        ),
        ("time", f"{report.wall_time_s:.1f} s (the whole command)"),
    ]
    return rows


def _geometry_rows(report) -> list[tuple[str, str]]:
    """The best structure's energy check, energy, refinement and bonds."""
    units = report.units
    rows: list[tuple[str, str]] = []
    failing = [kind for kind, failed in report.failures.items() if failed]
    verdict = "pass" if report.plausible else f"FAIL ({', '.join(failing)})"
    if report.contacts_colder_than_md:
        verdict += (
            "; contacts colder than the MD frames' 1st percentile (allowed: compacting makes more)"
        )
    rows.append(
        (
            "energy check",
            verdict
            + f" ({report.plausible_candidates} of {report.candidates} candidates pass"
            + (
                f"; {report.redrawn} of them redraws of the best points)" if report.redrawn else ")"
            ),
        )
    )
    low, high = report.train_energy_range
    rows.append(
        ("energy (kT)", f"{report.energy:.3g} (MD frames' p1 to p99: {low:.3g} to {high:.3g})")
    )
    if report.refined:
        rows.append(
            (
                "refined",
                f"moved {report.moved:.3g} {units} RMSD (tether "
                f"{report.tether_width:g}x the decoder's error)",
            )
        )
    rows.append(
        (
            "bonds",
            f"{report.min_bond:.3g} to {report.max_bond:.3g}, mean {report.mean_bond:.3g} "
            f"(training frames' mean {report.train_mean_bond:.3g}); closest non-bonded "
            f"{report.closest_nonbonded:.3g}",
        )
    )
    return rows


def evaluate_rows(report) -> list[tuple[str, str]]:
    units = report.units
    featurized = report.representation == "featurized"
    w1 = (
        f"per feature mean {report.w1_pairwise_mean:.3g} (max {report.w1_pairwise_max:.3g})"
        if featurized
        else f"pairwise mean {report.w1_pairwise_mean:.3g} (max {report.w1_pairwise_max:.3g}), "
        f"R_g {report.w1_rg:.3g}"
    )
    rows = [
        ("data", f"{report.data} ({report.frames:,} frames)"),
        (
            "recon RMS error (features)" if featurized else f"recon RMSD ({units})",
            f"{report.recon_rmsd:.4g}",
        ),
        (
            "ELBO (nats/frame)",
            f"{report.elbo:.4g} = log-lik {report.reconstruction_log_likelihood:.4g} "
            f"- KL {report.kl:.4g}",
        ),
        (f"IWAE log p(x), K={report.iwae_samples}", f"{report.iwae_log_likelihood:.4g}"),
        ("KL per dim", ", ".join(f"{v:.3g}" for v in report.kl_per_dim)),
        ("active units", f"{report.active_units} of {report.latent_dim}"),
        (
            "sample W1" + ("" if featurized else f" ({units})"),
            f"{w1}  [{report.samples} from the {report.prior} prior]",
        ),
    ]
    if report.sample_plausible_fraction is not None:
        rows += [
            (
                "energy check",
                f"samples {report.sample_plausible_fraction:.1%} pass, data "
                f"{report.data_plausible_fraction:.1%}"
                + (
                    f" (samples before refinement {report.raw_sample_plausible_fraction:.1%})"
                    if report.raw_sample_plausible_fraction is not None
                    else ""
                ),
            ),
            (
                f"mean bond ({units})",
                f"samples {report.sample_mean_bond:.4g}, data {report.data_mean_bond:.4g}",
            ),
        ]
    rows += [
        ("prior holes", f"{report.prior_hole_fraction:.1%} of N(0, I) mass"),
        ("wall time", f"{report.wall_time_s:.1f} s"),
    ]
    return rows


def kinetics_rows(report) -> list[tuple[str, str]]:
    def in_time(values):
        frames = ", ".join(f"{v:.4g}" for v in values)
        if report.implied_timescales_ps is None:
            return f"{frames} frames"
        return f"{frames} frames = " + ", ".join(
            f"{v:.4g}" for v in report.implied_timescales_ps
        ) + " ps"  # fmt: skip

    rows = [
        ("latent", f"{report.latent} ({report.frames:,} frames, {report.trajectories} "
                   f"{'trajectory' if report.trajectories == 1 else 'trajectories'})"),
        (f"VAMP-2 at lag {report.lag}", f"{report.vamp2:.4f}"),
        ("Markov model", f"{report.active_states} of {report.clusters} clusters connected "
                         f"({report.active_fraction:.1%} of frames)"),
        ("implied timescales", in_time(report.implied_timescales)),
        (f"{report.states} metastable states", ", ".join(
            f"{w:.1%} ({n:,} frames)"
            for w, n in zip(report.stationary_weights, report.state_frames, strict=True))),
        ("Chapman-Kolmogorov", "not run" if report.ck_max_error is None else
         f"largest error {report.ck_max_error:.3f} over lags {report.ck_lags}"),
    ]  # fmt: skip
    if report.reweighted_populations is not None:
        rows.append(("reweighted populations", ", ".join(
            f"{p:.1%}" for p in report.reweighted_populations) + f" (weights {report.weights})"))  # fmt: skip
    if report.output:
        rows.append(("written", report.output))
    if report.figures:
        rows.append(("figures", ", ".join(report.figures)))
    return rows


def encode_rows(report) -> list[tuple[str, str]]:
    ranges = ", ".join(
        f"[{low:.3g}, {high:.3g}]"
        for low, high in zip(report.mean_min, report.mean_max, strict=True)
    )
    rows = [
        ("output", report.output),
        (
            "frames",
            f"{report.frames:,} ({report.atoms} features)"
            if report.alignment == "features"
            else f"{report.frames:,} ({report.atoms} atoms, featurized: {report.featurizer})"
            if report.featurizer
            else f"{report.frames:,} ({report.atoms} atoms, aligned: {report.alignment})",
        ),
        ("latent mean range", ranges),
        ("mean posterior std", ", ".join(f"{s:.3g}" for s in report.std_mean)),
        *(
            [(f"R_g ({report.units})", f"{report.rg_min:.4g} to {report.rg_max:.4g}")]
            if report.rg_min is not None
            else []
        ),
    ]
    if report.recon_rmsd_mean is not None:
        label = (
            "recon RMS error"
            if report.alignment in ("features", "featurized")
            else f"recon RMSD ({report.units})"
        )
        rows.append((label, f"{report.recon_rmsd_mean:.4g}"))
    rows += [
        ("throughput", f"{report.frames_per_s:,.0f} frames/s"),
        ("wall time", f"{report.wall_time_s:.1f} s"),
    ]
    return rows


def align_rows(report) -> list[tuple[str, str]]:
    rows = [
        ("output", report.output),
        ("frames", f"{report.frames}"),
        ("atoms", f"{report.atoms} in {report.dims}D ({report.weights} weights)"),
        (
            "method",
            f"{report.method}"
            + (f", reference {report.reference}" if report.method == "kabsch" else ""),
        ),
        (
            f"RMSD ({report.units})",
            f"min {report.rmsd_min:.4g}, mean {report.rmsd_mean:.4g}, max {report.rmsd_max:.4g} ({report.rmsd_of})",
        ),
    ]
    if report.method == "principal":
        rows += [
            ("ambiguous frames", f"{report.ambiguous_frames} (nearly degenerate axes or sign)"),
            (
                "axis swaps",
                f"{report.axis_swaps} between consecutive frames, {report.sign_flips} sign flips",
            ),
        ]
    rows.append(("wall time", f"{report.wall_time_s:.2f} s"))
    return rows


def plot_rows(report) -> list[tuple[str, str]]:
    return [("figure", path) for path in report.figures]


def _refined_row(report, units: str) -> str:
    """How far refinement moved the structures, and the decoder's own pass rate."""
    checked = report.raw_checked
    of = f" of {checked} checked" if checked is not None and checked < report.structures else ""
    return (
        f"moved {report.moved_median:.3g} {units} RMSD (median, max {report.moved_max:.3g}); "
        f"{report.raw_plausible_fraction:.1%}{of} were inside before"
    )


def _forcefield_rows(report) -> list[tuple[str, str]]:
    """`--relax openmm`: the force field's energies beside the MD frames'."""
    field = report.forcefield
    if field is None:
        return []
    low, high = field["energy_p5_p95_kj_mol"]
    text = f"median {field['energy_median_kj_mol']:.1f} (p5 to p95: {low:.1f} to {high:.1f})"
    if field["md_energy_p1_p99_kj_mol"] is not None:
        md_low, md_high = field["md_energy_p1_p99_kj_mol"]
        text += (
            f"; {field['inside_md_range']:.1%} inside the MD frames' p1 to p99 "
            f"({md_low:.1f} to {md_high:.1f}, {field['md_frames']} frames)"
        )
    return [("force field", field["forcefield"]), ("its energy (kJ/mol)", text)]


def structure_rows(report) -> list[tuple[str, str]]:
    units = report.units
    rows = [
        ("output", report.output),
        (
            ("rows", f"{report.structures:,} ({report.features} features)")
            if report.features is not None
            else ("structures", f"{report.structures:,} ({report.atoms} atoms in {report.dims}D)")
        ),
    ]
    if report.prior is not None:
        rows.append(
            (
                "drawn from",
                f"{report.prior} prior, temperature {report.temperature:g}, seed {report.seed}",
            )
        )
    if report.plausible_fraction is not None:
        if report.refined:
            rows.append(("refined", _refined_row(report, units)))
        failing = ", ".join(
            f"{kind} {share:.1%}" for kind, share in report.failures.items() if share > 0
        )
        low, high = report.train_energy_range
        distances = ", ".join(f"{name} {value:.2g}" for name, value in report.distances.items())
        rows += [
            (
                "energy check",
                f"{report.plausible_fraction:.1%} inside the held-out MD frames' ranges "
                f"(MD frames: {report.train_plausible_fraction:.1%})"
                + (f"; outside: {failing}" if failing else ""),
            ),
            (
                "energy (kT)",
                f"median {report.energy_median:.3g} (MD frames' p1 to p99: {low:.3g} to "
                f"{high:.3g})",
            ),
            ("W1 to MD (spreads)", distances or "none"),
            *_forcefield_rows(report),
            (
                f"mean bond ({units})",
                f"{report.mean_bond:.4g} (training frames: {report.train_mean_bond:.4g})",
            ),
            (
                f"R_g ({units})",
                f"{report.rg_min:.4g} to {report.rg_max:.4g} (training frames: "
                f"{report.train_rg_min:.4g} to {report.train_rg_max:.4g})",
            ),
        ]
    rows.append(("wall time", f"{report.wall_time_s:.1f} s"))
    return rows
