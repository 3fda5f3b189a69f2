"""The known-answers chapter's prose, written from its headline numbers (``tables.headline``): every claim is
read from a number, so the page says what this run found, whatever it found."""

from __future__ import annotations

from typing import Any

from sae_transfer.core import verdict as V
from sae_transfer.studies.known_answers.scores import EXPECTED, LABELS, MATCHED
from sae_transfer.studies.known_answers.tables import RULE_TOOK, TRUSTED

#: Fewer features than this given a label, and its precision is not called trustworthy or not.
MIN_LABELLED = 10


def _est(h: dict[str, Any], key: str) -> str:
    if key not in h:
        return "not measured (no feature got the label)"
    if f"{key}_lo" in h and f"{key}_hi" in h:
        return f"{h[key]:.2f} [{h[f'{key}_lo']:.2f}, {h[f'{key}_hi']:.2f}]"
    return f"{h[key]:.2f}"


def trust(h: dict[str, Any], lab: str) -> str:
    """``trustworthy`` when the precision's whole interval is at or above ``TRUSTED``; ``not trustworthy`` when
    its whole interval is below; ``undecided`` otherwise; ``never given`` when no feature got the label, ``too few
    to tell`` when fewer than ``MIN_LABELLED`` did (an interval over a handful of features says little)."""
    key = f"{lab}_precision"
    if key not in h:
        return "never given"
    if h[f"{lab}_n_pred"] < MIN_LABELLED:
        return f"too few to tell: {h[f'{lab}_n_pred']} labelled"
    lo, hi = h.get(f"{key}_lo", h[key]), h.get(f"{key}_hi", h[key])
    return "trustworthy" if lo >= TRUSTED else "not trustworthy" if hi < TRUSTED else "undecided"


def labels(h: dict[str, Any]) -> str:
    """Each label's precision and recall at the default difficulty, and whether it can be trusted."""
    parts = []
    for lab in (*LABELS, "new"):
        parts.append(f"**{lab}**: precision {_est(h, f'{lab}_precision')}, recall {_est(h, f'{lab}_recall')} "
                     f"({trust(h, lab)})")
    return (f"At the default difficulty ({h['share']:.0%} of {h['n_features']} features changed, shifted ones turned "
            f"by {h['angle']:g}°, {h['n_new']} new), per label, with 95% intervals over the scored features: "
            + "; ".join(parts) + f". A label is called trustworthy here when its precision's whole interval is at "
            f"or above {TRUSTED:g}.")


def errors(h: dict[str, Any]) -> str:
    """Where the labels go wrong: for each true class, the wrong labels its features got, largest first."""
    said = []
    for t in ("kept", "shifted", "rarer", "lost"):
        row = {c: h[f"conf_{t}_{c}"] for c in ("kept", "shifted", "lost", "unmatched") if f"conf_{t}_{c}" in h}
        total = sum(row.values())
        wrong = sorted(((n, c) for c, n in row.items() if c != EXPECTED[t] and n), reverse=True)
        if total and wrong:
            said.append(f"of the {total} {t}, " + " and ".join(f"{n} {'was' if n == 1 else 'were'} labelled {c}"
                                                              for n, c in wrong))
    return ("Where the labels go wrong: " + "; ".join(said) + ".") if said else "No feature got a wrong label."


def dictionaries(h: dict[str, Any]) -> str:
    cc_vs = ("at least as close to the truth as" if min(h["mcc_cc_base"], h["mcc_cc_ft"]) >= h["mcc_sae"] - 0.02
             else "further from the truth than")
    return (f"The base SAE recovers the true dictionary with MCC {h['mcc_sae']:.2f} (sae_lens's one-to-one matching) "
            f"and detects features with F1 {h['f1_sae']:.2f}; {h['matched']} of its {h['of']} features lie within "
            f"cosine {MATCHED:g} of a true feature, and only those are scored below. Its recipe at another seed shares "
            f"{h['seed_shared']:.0%} of its features at that cosine (MCC {h['mcc_seeds']:.2f} between the two): how "
            f"far feature matching agrees with itself with nothing changed at all. The crosscoder's two sides reach "
            f"MCC {h['mcc_cc_base']:.2f} "
            f"(base) and {h['mcc_cc_ft']:.2f} (finetune), {cc_vs} the single SAE's.")


def null(h: dict[str, Any]) -> str:
    """What the methods say of a finetune identical to its base: every one should say nothing changed (a feature
    left unmatched is not a claim of change: no crosscoder latent was close enough to judge it)."""
    changed = h["null_shifted"] + h["null_lost"]
    quiet = h["null_new"] == 0 and changed == 0 and h["null_verdict"] == "transfers"
    unmatched = (f" ({h['null_unmatched']} left unmatched: no crosscoder latent close enough to judge them)"
                 if h["null_unmatched"] else "")
    return (f"On the null finetune (the base itself), the crosscoder calls {h['null_new']} of its {h['null_live']} "
            f"live latents new, the diffing labels call {h['null_kept']} of the matched features kept, "
            f"{h['null_shifted']} shifted and {h['null_lost']} lost{unmatched}, and `check` says "
            f"**{h['null_verdict']}**: "
            + ("every method says nothing changed, as it should." if quiet else
               "not every method says nothing changed, so what they report on a real pair includes that much "
               "noise."))


def similarity(h: dict[str, Any]) -> str:
    auc = f"{h['auroc']:.2f}" + (f" [{h['auroc_lo']:.2f}, {h['auroc_hi']:.2f}]" if "auroc_lo" in h else "")
    reading = ("separates them well" if h.get("auroc_lo", h["auroc"]) >= 0.9 else
               "separates them better than chance" if h.get("auroc_lo", h["auroc"]) > 0.5 else
               "does not separate them better than chance here")
    return (f"The feature chapter's activation similarity, read as a score for \"this feature changed\", has an "
            f"AUROC of {auc} for the truly changed features (shifted, rarer, lost) against the kept ones: it "
            f"{reading}.")


def verdict(h: dict[str, Any]) -> str:
    """How `check`'s verdict follows the true changed mass over the severity grid."""
    spans = [f"{h[f'n_severity_{v}']} {v} (changed mass {_span(h[f'mass_{v}_min'], h[f'mass_{v}_max'])})"
             for v in V.VERDICTS if h.get(f"n_severity_{v}")]
    order = [v for v in V.VERDICTS if h.get(f"n_severity_{v}")]
    monotone = all(h[f"mass_{a}_max"] <= h[f"mass_{b}_min"] for a, b in zip(order, order[1:]))
    return ("Over the severity grid `check`'s verdict (EV drop and activation similarity; no unembedding here, so "
            "no CE criterion) gives " + ", ".join(spans) + ". "
            + ("The verdict worsens as the true changed mass grows, with no overlap between verdicts."
               if monotone else "The verdicts overlap in changed mass: the verdict is not a function of it alone."))


def _span(lo: float, hi: float) -> str:
    return f"{lo:.0%}" if f"{lo:.0%}" == f"{hi:.0%}" else f"{lo:.0%}–{hi:.0%}"


def _listed(labs: list[str]) -> str:
    return ", ".join(labs) if len(labs) < 3 else ", ".join(labs[:-1]) + " and " + labs[-1]


def readings(h: dict[str, Any], absent: str) -> dict[str, str]:
    """The page's paragraphs; those that report the labels' scores say ``absent`` instead when the methods had
    nothing to be scored on (``h["worked"]`` false)."""
    out = {"dictionaries": dictionaries(h), "null": null(h), "verdict": verdict(h)}
    for name, write in (("labels", labels), ("errors", errors), ("similarity", similarity)):
        out[name] = write(h) if h["worked"] else absent
    return out


def in_short(h: dict[str, Any], absent: str, real_h: dict[str, Any] | None = None,
             trained_h: dict[str, Any] | None = None) -> str:
    """The box atop the page: the first level's labels and verdict, then the real level's planted edit and trained
    finetune in a sentence each."""
    return (_in_short(h, absent) + (" " + _real_short(real_h) if real_h else "")
            + (" " + _trained_short(trained_h) if trained_h else ""))


def _trained_short(h: dict[str, Any]) -> str:
    r = {k[8:]: v for k, v in h.items() if k.startswith("trained_")}
    if not r.get("took"):
        return "Finetuned on text with planted token patterns, the model did not learn them: nothing is scored there."
    return (f"Finetuned on text with planted token patterns (learnt: a trigger's target at probability "
            f"{r['rule_planted']:.2f}), the base SAE's unexplained variance is {r['ratio_planted']:.1f} times higher "
            f"on the planted positions than elsewhere ({r['ratio_control']:.1f} on a control finetune), and `check` "
            f"says {r['verdict_planted']} ({r['verdict_control']} on the control).")


def _real_short(h: dict[str, Any]) -> str:
    r = {k[5:]: v for k, v in h.items() if k.startswith("real_")}
    if not r.get("worked"):
        return "On a real model the crosscoder did not train: its labels are not scored."
    found = _listed([f"{r[f'{lab}_recall']:.0%} of the {lab}" for lab in ("shifted", "lost", "new")
                     if f"{lab}_recall" in r])
    return (f"Planted in a real model (`{r['base']}`), the diffing labels find {found} features (activation "
            f"similarity AUROC {r['auroc']:.2f}), while `check` says {r['verdict']} with {r['mass']:.0%} of the "
            f"activation mass changed and {r['null_verdict']} on the null finetune.")


def _in_short(h: dict[str, Any], absent: str) -> str:
    if not h["worked"]:
        return f"{absent} {verdict(h)}"
    good = [lab for lab in (*LABELS, "new") if trust(h, lab) == "trustworthy"]
    bad = [lab for lab in (*LABELS, "new") if trust(h, lab) in ("not trustworthy", "never given")]
    few = [lab for lab in (*LABELS, "new") if trust(h, lab).startswith("too few")]
    unsure = [lab for lab in (*LABELS, "new") if trust(h, lab) == "undecided"]
    return ("On a planted finetune whose every feature change is known, "
            + (f"{'the label' if len(good) == 1 else 'the labels'} {_listed(good)} can be trusted (precision at "
               f"least {TRUSTED:g})" if good else f"no label reaches a precision of {TRUSTED:g}")
            + (f"; {_listed(bad)} cannot at this difficulty" if bad else "")
            + (f"; too few features were labelled {_listed(few)} to judge" if few else "")
            + (f"; undecided: {_listed(unsure)}" if unsure else "") + ". "
            + f"Activation similarity ranks changed features with AUROC {h['auroc']:.2f}; "
            f"`check` says {h['default_verdict']} with {h['default_mass']:.0%} of the activation mass changed, "
            f"and {h['null_verdict']} on the null finetune.")


def real(h: dict[str, Any]) -> str:
    """The second level in words: the labels' scores on a real model's planted finetune, why activation similarity
    sees what it sees there, and ``check``'s verdicts, null included; says so without a second level."""
    r = {k[5:]: v for k, v in h.items() if k.startswith("real_")}
    if not r:
        return "Not measured: no real model was given (`base` empty)."
    setting = (f"On `{r['base']}`, at its SAE's hook `{r['hook']}` on `{r['dataset']}`, the planted finetune changed "
               f"{r['n_changed']} of the SAE's living features ({r['share']:.0%}: shifted by {r['angle']:g}°, "
               f"rarer, lost) and added {r['n_new']} new ones.")
    if not r["worked"]:
        return (f"{setting} The crosscoder did not train (held-out FVU {r['fvu_max']:.2f}): no label is scored. "
                + _real_check(r))
    parts = [f"**{lab}**: precision {_est(r, f'{lab}_precision')}, recall {_est(r, f'{lab}_recall')} "
             f"({trust(r, lab)})" for lab in (*LABELS, "new")]
    sims = ", ".join(f"{t} {r[f'sim_{t}']:.2f}" for t in ("kept", "shifted", "rarer", "lost") if f"sim_{t}" in r)
    return (f"{setting} Per label, over the {r['n_scored']} features that fire: " + "; ".join(parts) + ". "
            f"Activation similarity ranks the changed features below the kept ones with AUROC {_est(r, 'auroc')} "
            f"(median similarity by true class: {sims}). " + _strength(r)
            + f"The crosscoder's base-side decoders match the SAE's at MCC {r['mcc_cc_base']:.2f}"
            + (": a changed term that no latent holds alone moves no latent's decoder norms, and the diffing labels "
               "find few of the changes. " if all(r.get(f"{lab}_recall", 0) < 0.5 for lab in ("shifted", "lost", "new"))
               else ". ")
            + _real_check(r))


def _strength(r: dict[str, Any]) -> str:
    """What share of its mean activation a lost feature keeps: near 0 when the SAE's encoder reads mainly the
    feature's own term, near 1 when it reads what surrounds it (which the edit leaves)."""
    if "kept_act_lost" not in r:
        return ""
    others = ", ".join(f"{t} {r[f'kept_act_{t}']:.2f}" for t in ("kept", "shifted", "rarer") if f"kept_act_{t}" in r)
    return (f"A lost feature, whose own term is gone from the finetune's stream, keeps a median "
            f"{r['kept_act_lost']:.0%} of its mean activation there ({others} for the other classes): "
            + ("the SAE's encoder reads mostly what surrounds a feature's term, not the term, so the feature fires "
               "on as before and its activation similarity cannot see the term go. "
               if r["kept_act_lost"] >= 0.5 else
               "the SAE's encoder reads mainly the feature's own term, so its activations show the loss. "))


def _real_check(r: dict[str, Any]) -> str:
    return (f"`check`, run on the planted finetune as a model (its loss included), says {r['verdict']} with "
            f"{r['mass']:.0%} of the activation mass changed, and {r['null_verdict']} on the null finetune, where "
            f"the crosscoder called {r['null_new']} of its {r['null_live']} live latents new.")


def trained(h: dict[str, Any]) -> str:
    """The trained finetune in words: whether the plant took, where the stream moved, and where each method points
    against the control; says so when nothing was trained or the plant did not take."""
    r = {k[8:]: v for k, v in h.items() if k.startswith("trained_")}
    if not r:
        return "Not measured: no real model was given (`base` empty), or `pattern_tokens` is 0."
    took = (f"After {r['steps']} steps on text where each of {r['n_patterns']} trigger tokens is always followed by "
            f"its own target and what follows {r['n_patterns']} other tokens is drawn at random, the planted finetune "
            f"gives a trigger's target probability {r['rule_planted']:.2f} (the control {r['rule_control']:.4f}, "
            f"the base {r['rule_base']:.4f}); after a removed token its next-token entropy is "
            f"{r['entropy_planted']:.2f} nats (the control {r['entropy_control']:.2f}, uniform "
            f"{r['log_vocab']:.2f}). ")
    if not r["took"]:
        return (took + f"The planted rule did not take (its target's probability stayed below {RULE_TOOK:g}, or "
                "not ten times the control's): there is no known change to score the methods against. Train longer "
                "(`pattern_steps`) or at a higher `pattern_lr`.")
    moved = min(r["moved_added"], r["moved_removed"]) > 2 * r["moved_other"]
    where = (f"The stream at the SAE's hook moved, planted finetune against control, by a median "
             f"{r['moved_added']:.2f} of its norm at a trigger and {r['moved_removed']:.2f} at a removed token, "
             f"against {r['moved_other']:.2f} elsewhere: "
             + ("the change is where it was planted. " if moved else
                "not clearly more where it was planted (less than twice elsewhere's). "))
    sees = r["ratio_planted"] > 1.5 * r["ratio_control"]
    sae = (f"The base SAE's unexplained variance on planted positions is {r['ratio_planted']:.1f} times that "
           f"elsewhere on the planted finetune, {r['ratio_control']:.1f} times on the control: "
           + ("the SAE's error shows where the finetune changed. " if sees else
              "the SAE's error does not single out the planted positions. "))
    sim = ""
    if "sim" in r:
        lo, hi = r.get("sim_lo", float("nan")), r.get("sim_hi", float("nan"))
        trend = ("grows with" if lo > 0 else "shrinks as" if hi < 0 else "does not clearly follow")
        sim = (f"Feature by feature, the activation similarity a feature loses on the planted finetune beyond the "
               f"control {trend} the share of its firing on planted positions (Spearman {_est(r, 'sim')}, over "
               f"{r['n_features']} features). ")
    labels = ""
    if "labels" in r:
        lo, hi = r.get("labels_lo", float("nan")), r.get("labels_hi", float("nan"))
        more = ("fire more on planted positions than" if lo > 0.5 else "fire less on planted positions than"
                if hi < 0.5 else "fire on planted positions no more clearly than")
        labels = (f"The {r['labels_changed']} features the crosscoder calls changed on the planted finetune but kept "
                  f"on the control {more} the {r['labels_kept']} it keeps on both (AUROC {_est(r, 'labels')}). ")
    new = (f"It finds {r['new_planted']} new latents on the planted finetune ({r['new_on_plant']} firing mostly on "
           f"planted positions; {r['tokens_found']} of the {r['tokens_seen']} planted tokens in the text found) and "
           f"{r['new_control']} on the control. "
           if r["new_planted"] or r["new_control"] else
           "It finds no new latent on either finetune: a rule learnt on a few tokens is written by latents it "
           "already has. ")
    check = (f"`check` says {r['verdict_planted']} on the planted finetune and {r['verdict_control']} on the "
             f"control (EV drop {r['ev_planted']:.3f} against {r['ev_control']:.3f}): "
             + ("the plant alone moves its verdict. " if r["verdict_planted"] != r["verdict_control"] else
                "the plant, on a few tokens of the text, does not move its verdict. "))
    return took + where + sae + sim + labels + new + check
