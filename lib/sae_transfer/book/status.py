"""The book's status page: what produced the pages a reader is looking at, written from each chapter run's
``results.json`` (generated, git-ignored)."""

from __future__ import annotations

import json

from sae_transfer.core.io import write_text_atomic


def write_status_page(book, results: list[dict], failed: list[dict] = ()) -> None:
    """``book/status.md``: each chapter's run, from its results.json, and every failure (generated, git-ignored)."""
    rows = ["| chapter | wall time | peak memory | device | commit | executed |", "|---|---|---|---|---|---|"]
    params = []
    for r in results:
        m, page = r["meta"], r["page"].removeprefix("book/")
        title = m["title"] + (f" ({r['part']})" if len(book.parts) > 1 else "")
        rows.append(f"| [{title}]({page}.ipynb) | {m['wall_seconds']:.0f} s | {m['peak_rss_mb']:.0f} MB "
                    f"| {m['device']} | `{m['commit'][:12]}` | {m['started']} |")
        params.append(f"- [{title}]({page}.ipynb): "
                      + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in sorted(m["params"].items())))
    failures = []
    if failed:
        failures = ["## Failed chapters", "", "| chapter | error |", "|---|---|",
                    *[f"| [{f['title']}]({f['page'].removeprefix('book/')}.ipynb) | {f['error'].replace('|', '/')} |"
                      for f in failed], ""]
    versions = results[0]["meta"]["versions"] if results else {}
    text = "\n".join([
        "# Status of this build", "",
        f"Every chapter below was executed by `{book.command}`"
        + ("" if len(book.parts) < 2 else ", each part with the parameters of its own profile ("
           + "; ".join(f"{p.caption}: `{p.profile}`" for p in book.parts if p.profile) + ")")
        + "; this page is written from each run's `results.json`, so it says what produced the pages you are "
        "reading.", "",
        *rows, "", "Parameters of each run:", "", *params, "", *failures, "Package versions of the run:", "",
        "| package | version |", "|---|---|", *[f"| {k} | {v} |" for k, v in versions.items()], ""])
    write_text_atomic(book.book_dir / "status.md", text)
