"""The introduction's summary figure: every transfer case of every part of the book, residual cosine against the
CE the base SAE adds, with the seed's two pairs marked as theirs. A static matplotlib version (PNG and SVG, and the
PDF) and an interactive plotly one (hover for the case, drag to zoom) from the same points."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from sae_transfer.core import plotting  # noqa: F401 (sets the book's figure theme on import)

X, Y = "residual cosine", "delta CE"
OTHER = "finetune, other data"
#: How each kind of case is drawn (plotly marker symbol, size, opacity); the part of the book sets the colour.
STYLE = {"the base itself": ("diamond", 11, 0.95), "finetune, own domain": ("circle", 10, 0.9),
         OTHER: ("circle", 6, 0.45)}
MPL_MARKER = {"diamond": "D", "circle": "o"}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
X_LABEL, Y_LABEL = "residual cosine with the base (SAE layer)", "CE added by the base SAE (nats)"


def transfer_map(points: pd.DataFrame, seed: tuple):
    """``points``: one row per case with ``part``, ``finetune``, ``step``, ``dataset``, ``kind``, X and Y
    (``summaries.transfer_points``); ``seed``: the seed's pairs as (label, X, Y), drawn as stars."""
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    color = {part: COLORS[i % len(COLORS)] for i, part in enumerate(points["part"].unique())}
    for (part, kind), g in points.groupby(["part", "kind"], sort=False):
        symbol, size, alpha = STYLE[kind]
        ax.scatter(g[X], g[Y], s=size ** 2 / 2, marker=MPL_MARKER[symbol], alpha=alpha, color=color[part],
                   label=f"{part}: {kind}")
    for label, x, y in seed:
        ax.scatter([x], [y], marker="*", s=180, color="black", zorder=5)
        ax.annotate(label, (x, y), xytext=(-8, 10), textcoords="offset points", fontsize=8,
                    ha="right" if x > 0.9 else "left")
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL)
    ax.set_yscale("symlog", linthresh=0.1)  # delta CE can be negative: splicing may lower a finetune's loss
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def transfer_map_interactive(points: pd.DataFrame, seed: tuple):
    """The same points as a plotly Figure; the book embeds it without a network (plotly.js ships in the build)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    color = {part: COLORS[i % len(COLORS)] for i, part in enumerate(points["part"].unique())}
    for (part, kind), g in points.groupby(["part", "kind"], sort=False):
        symbol, size, alpha = STYLE[kind]
        fig.add_trace(go.Scatter(
            x=g[X], y=g[Y], mode="markers", name=f"{part}: {kind}",
            marker={"symbol": symbol, "size": size, "opacity": alpha, "color": color[part]},
            customdata=g[["finetune", "step", "dataset"]].to_numpy(),
            hovertemplate=(f"<b>{part}</b><br>%{{customdata[0]}} at step %{{customdata[1]}} on %{{customdata[2]}}"
                           "<br>residual cosine %{x:.3f}<br>delta CE %{y:.3f} nats<extra></extra>")))
    fig.add_trace(go.Scatter(
        x=[x for _, x, _ in seed], y=[y for _, _, y in seed], mode="markers+text",
        name="the seed's pairs (theirs)", text=[label for label, _, _ in seed],
        textposition=["top right" if x < 0.9 else "top left" for _, x, _ in seed],
        marker={"symbol": "star", "size": 14, "color": "black"},
        hovertemplate="%{text}<br>residual cosine %{x:.3f}<br>delta CE %{y:.2f} nats<extra></extra>"))
    fig.update_layout(xaxis_title=X_LABEL, yaxis_title=Y_LABEL, template="plotly_white",
                      height=560, margin={"l": 60, "r": 20, "t": 20, "b": 50},
                      legend={"font": {"size": 11}, "orientation": "h", "y": -0.2})
    return fig
