"""Static pages a reader can browse: one HTML page per shown crosscoder latent and a sortable index, written from
``diffing.measure``'s plain data. No server, no network: inline CSS, inline SVG histograms and a few lines of inline
JavaScript that sort the index.

Why not sae-dashboard / sae_vis: they draw SAE features of one model (a crosscoder latent has two decoders and
two models' data), and sae-dashboard 0.8 pins ``transformers<4.57`` and ``safetensors<0.5``, older than this
project's."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from sae_transfer.core.io import write_text_atomic
from sae_transfer.core.labels import slug
from sae_transfer.methods import crosscoder_classes as dc
from sae_transfer.studies.diffing.tables import pair_rows

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.4rem}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:1.2rem}
.ctx{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;white-space:pre-wrap;border-bottom:1px solid
#eee;padding:.25rem 0}
.ctx .v{color:#777;display:inline-block;width:4.2rem}
mark{background:#ffd27a;border-radius:2px;padding:0 1px}
table{border-collapse:collapse;font-size:.9rem}th,td{padding:.3rem .6rem;border-bottom:1px solid #e5e5e5;
text-align:right}th{cursor:pointer;background:#f6f6f6;position:sticky;top:0}td.l,th.l{text-align:left}
.tag{display:inline-block;padding:.1rem .45rem;border-radius:.6rem;font-size:.8rem;color:#fff}
.tok{font-family:ui-monospace,monospace;background:#f1f1f1;margin:0 .15rem;padding:0 .2rem;border-radius:2px}
"""
TAG = {"shared": "#4c9f70", "base-only": "#c8553d", "finetune-only": "#3d7ec8", "between": "#8a6fb0",
       "dead": "#9aa5b1"}
SORT_JS = """
document.querySelectorAll('th').forEach((th,i)=>th.addEventListener('click',()=>{
 const tb=th.closest('table').tBodies[0];const rows=[...tb.rows];const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
 rows.sort((a,b)=>{const x=a.cells[i].dataset.v??a.cells[i].textContent,y=b.cells[i].dataset.v??b.cells[i].textContent;
 const nx=parseFloat(x),ny=parseFloat(y);const c=(isNaN(nx)||isNaN(ny))?x.localeCompare(y):nx-ny;return asc?c:-c;});
 rows.forEach(r=>tb.appendChild(r));}));
"""


def _page(title: str, body: str, script: str = "") -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}{f'<script>{script}</script>' if script else ''}</body></html>")


def _context(text: str) -> str:
    """A context from ``features.context_text`` (the token wrapped in ⟦ ⟧) as HTML with the token marked."""
    before, _, rest = text.partition("⟦")
    token, _, after = rest.partition("⟧")
    return f"{html.escape(before)}<mark>{html.escape(token)}</mark>{html.escape(after)}"


def _histogram(counts: list[int], edges: list[float], color: str) -> str:
    """An inline SVG bar chart of a latent's log10 activations."""
    w, h = 320, 90
    top = max(max(counts), 1)
    bw = w / len(counts)
    bars = "".join(f"<rect x='{i * bw:.1f}' y='{h - 70 * c / top:.1f}' width='{bw - 1:.1f}' height='{70 * c / top:.1f}'"
                   f" fill='{color}'/>" for i, c in enumerate(counts) if c)
    labels = "".join(f"<text x='{(e - edges[0]) / (edges[-1] - edges[0]) * w:.0f}' y='{h + 12}' font-size='10' "
                     f"text-anchor='middle'>1e{e:.0f}</text>" for e in edges if float(e).is_integer())
    return (f"<svg width='{w + 30}' height='{h + 16}' viewBox='-15 0 {w + 30} {h + 16}' role='img' "
            f"aria-label='activation histogram'>{bars}<line x1='0' y1='{h}' x2='{w}' y2='{h}' stroke='#999'/>"
            f"{labels}</svg>")


def _tokens(tokens: list[str]) -> str:
    return " ".join(f"<span class='tok'>{html.escape(repr(t)[1:-1])}</span>" for t in tokens)


def latent_page(label: str, r: dict, i: int, classes: list[str], ratio: np.ndarray, index_href: str) -> str:
    j = r["pages"]["latents"][i]
    lat = r["latents"]
    cls = classes[j]
    norms = lat["norms"][j]
    head = (f"<p><a href='{index_href}'>← all latents</a></p><h1>Latent {j} · {html.escape(label)} "
            f"<span class='tag' style='background:{TAG[cls]}'>{cls}</span></h1>"
            f"<p>relative decoder norm <b>{lat['rel_norm'][j]:.3f}</b> · decoder norms base {norms[0]:.3f}, finetune "
            f"{norms[1]:.3f} · decoder cosine {lat['decoder_cos'][j]:.3f} · latent-scaling ratio "
            f"{ratio[j]:.3f} · closest base-SAE feature {lat['sae_match'][j]} (cosine {lat['sae_match_cos'][j]:.3f})"
            "</p>")
    cols = []
    for k, (d, stats) in enumerate(r["data"].items()):
        ctx = "".join(f"<div class='ctx'><span class='v'>{c['activation']:.2f}</span>{_context(c['text'])}</div>"
                      for c in r["pages"]["contexts"][d][i]) or "<p>never fires here</p>"
        hist = _histogram(stats["hist"][i], stats["hist_edges"], ["#555", "#3d7ec8"][min(k, 1)])
        cols.append(f"<div><h2>On {html.escape(d)} (fires on {100 * stats['density'][j]:.3f}% of tokens)</h2>"
                    f"{hist}<h3>Top contexts</h3>{ctx}</div>")
    logits = "".join(f"<div><h2>Logit effect through the {m}</h2><p>promotes {_tokens(v['promoted'])}</p>"
                     f"<p>suppresses {_tokens(v['suppressed'])}</p></div>"
                     for m, v in r["pages"]["logits"][i].items())
    return _page(f"latent {j} · {label}", head + f"<div class='cols'>{''.join(cols)}</div>"
                 f"<div class='cols'>{logits}</div>")


def write_pages(result: dict, out: Path) -> Path:
    """Write ``out/index.html`` and ``out/<pair>/latent-<j>.html`` for every shown latent of every pair; returns
    the index. Files are written atomically; pages of a previous run that are no longer shown are left alone."""
    out = Path(out)
    rows = []
    for label, r in pair_rows(result):
        classes = dc.latent_classes(r)
        ratio = dc.scaling_ratio(r)
        new = dc.new_latents(r, classes)
        pair_dir = slug(label)
        for i, j in enumerate(r["pages"]["latents"]):
            href = f"{pair_dir}/latent-{j}.html"
            write_text_atomic(out / href, latent_page(label, r, i, classes, ratio, "../index.html"))
            density = max(d["density"][j] for d in r["data"].values())
            shown_class = "new in finetune" if new[j] else classes[j]
            rows.append(f"<tr><td class='l'>{html.escape(label)}</td><td data-v='{j}'><a href='{href}'>{j}</a></td>"
                        f"<td class='l'>{shown_class}</td><td>{r['latents']['rel_norm'][j]:.3f}</td>"
                        f"<td>{r['latents']['decoder_cos'][j]:.3f}</td><td data-v='{density}'>{100 * density:.3f}</td>"
                        f"<td>{r['latents']['sae_match_cos'][j]:.3f}</td></tr>")
    head = "".join(f"<th{' class=l' if c in ('pair', 'class') else ''}>{c}</th>" for c in (
        "pair", "latent", "class", "relative norm", "decoder cosine", "fires on % of tokens", "closest SAE feature cos"))
    # the book copies these pages beside the chapter's page (``diffing-pages`` next to ``diffing.html``)
    body = (f"<p><a href='../diffing.html'>← the chapter</a></p><h1>Crosscoder latents: {len(rows)} pages</h1>"
            "<p>Relative norm: ||d_ft|| / (||d_base|| + ||d_ft||), "
            "0 base-only, 1 finetune-only. Click a column to sort.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    write_text_atomic(out / "index.html", _page("crosscoder latents", body, SORT_JS))
    return out / "index.html"
