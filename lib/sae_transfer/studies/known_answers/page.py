"""What the known-answers page records from ``measure``'s data: its headline numbers, paragraphs, tables and
figures, handed to the page's ``Report`` (so the notebook holds one call, no bookkeeping)."""

from __future__ import annotations

from sae_transfer.studies.known_answers import figures, prose, tables


def record(rep, data: dict) -> None:
    """Glue every number, paragraph, table and figure of the page; what a method that did not work would show is
    replaced by the reason (``Report.findings``)."""
    h = rep.headline(tables.headline(data))
    rh = rep.headline(tables.real_headline(data["planted"]))
    th = rep.headline(tables.trained_headline(data["trained"]))
    absent = tables.not_reported(h)
    rep.text("in_short", prose.in_short(h, absent, rh, th))
    rep.texts("reading", prose.readings(h, absent))
    rep.table("planted", tables.planted(data), digits=2)
    rep.table("dictionaries", tables.dictionaries(data))
    default = data["default"]
    rep.findings(h["worked"], absent,
                 {"labels": (lambda: tables.labels(default), 2),
                  "confusion": (lambda: tables.confusion(default), 3),
                  "latent_confusion": (lambda: tables.latent_confusion(default), 3),
                  "breaking_points": (lambda: tables.breaking_points(data), 2)},
                 {"sweeps": (lambda: figures.sweeps(data), "Precision and recall of each label along each sweep."),
                  "similarity": (lambda: figures.similarity_by_truth(default), "Activation similarity by true class.")})
    rep.figure("verdict", figures.verdict_against_truth(data), "check's criteria against the true changed mass.")
    rep.text("reading_real", prose.real(rh))
    real = data["planted"]
    rep.findings(bool(rh.get("real_worked")), "Not measured: no real model was given, or its crosscoder did not train.",
                 {"real_labels": (lambda: tables.labels(real["default"]), 2),
                  "real_confusion": (lambda: tables.confusion(real["default"]), 3)}, {})
    rep.findings(real is not None, "Not measured: no real model was given.",
                 {"real_verdicts": (lambda: tables.real_verdicts(real), 3)}, {})
    trained = data["trained"]
    rep.text("reading_trained", prose.trained(th))
    rep.findings(trained is not None, "Not measured: no real model was given, or `pattern_tokens` is 0.",
                 {"trained_behaviour": (lambda: tables.trained_behaviour(trained), 3)}, {})
    rep.findings(bool(th.get("trained_took")), "Not scored: the planted rule did not take.",
                 {"trained_positions": (lambda: tables.trained_positions(trained), 2),
                  "trained_methods": (lambda: tables.trained_methods(trained), 2)}, {})
