"""The atlas chapter's figures: each case's transfer against each predictor. Plain data in (``atlas.jsonl``'s
rows), Figures out."""

from __future__ import annotations

import matplotlib.pyplot as plt

from sae_transfer.core import plotting
from sae_transfer.core import verdict as V
from sae_transfer.core.labels import short
from sae_transfer.studies.atlas.measure import PREDICTORS

#: The two criteria drawn, with their verdict thresholds as lines.
OUTCOMES = (V.EV_DROP, V.REGULAR_ACT_SIM)


def transfer_against_predictors(rows: list[dict]):
    """Rows: the EV drop and the regular features' activation similarity (each with its 95% interval); columns:
    the predictors every case has. One colour per finetune (its checkpoints joined in training order), one marker
    per dataset."""
    keys = [k for k in PREDICTORS if rows and all(r.get(k) is not None for r in rows)]
    fig, axes = plotting.panels(len(keys) * len(OUTCOMES), width=3.3, height=2.9, cols=len(keys))
    series = list(dict.fromkeys(r["finetune"].split("@")[0] for r in rows))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    colours = dict(zip(series, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    markers = dict(zip(datasets, "osD^v<>" * 4))
    for i, crit in enumerate(OUTCOMES):
        for j, key in enumerate(keys):
            ax = axes[i * len(keys) + j]
            for name in series:
                for ds in datasets:
                    pts = sorted((r for r in rows if r["finetune"].split("@")[0] == name and r["dataset"] == ds),
                                 key=lambda r: r["step"])
                    if not pts:
                        continue
                    x, y = [r[key] for r in pts], [r[crit.key] for r in pts]
                    err = [[v - (r[f"{crit.key}_lo"] if r[f"{crit.key}_lo"] is not None else v) for v, r in zip(y, pts)],
                           [(r[f"{crit.key}_hi"] if r[f"{crit.key}_hi"] is not None else v) - v for v, r in zip(y, pts)]]
                    ax.errorbar(x, y, yerr=err, color=colours[name], marker=markers[ds], ms=4, lw=0.8, capsize=2,
                                label=f"{short(name)} on {short(ds)}")
            for level in (crit.keep, crit.breaks):
                ax.axhline(level, color="0.5", ls="--", lw=0.7)
            if key == "steps_x_lr":  # compute spans decades; step 0 (the base itself) would sit at 0
                positive = [r[key] for r in rows if r[key] > 0]
                if len(positive) == len(rows):
                    ax.set_xscale("log")
                elif positive:
                    ax.set_xscale("symlog", linthresh=min(positive))
                    ax.set_xlim(left=0)
            ax.set_xlabel(PREDICTORS[key])
            ax.set_ylabel(crit.label if j == 0 else "")
            ax.tick_params(axis="x", labelrotation=30)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(3, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, 1.0 + 0.04 * -(-len(labels) // 3)), frameon=False)
    fig.tight_layout()
    return fig
