"""The "In short" boxes and the introduction's findings: subjects picked from the results, words from the numbers."""

import json

from sae_transfer.book.chapters import chapter_names
from sae_transfer.book import findings
from sae_transfer.studies.answerability import prose as answerability
from sae_transfer.studies.diffing import prose as diffing
from sae_transfer.studies.residuals import prose as residuals
from sae_transfer.studies.sae_metrics import prose as sae_metrics


def test_residuals_names_the_finetune_that_moved_most():
    h = {"cos_code_code": 0.91, "cos_math_math": 0.80, "summary_where": "the middle layer (blocks.1.hook_resid_post)"}
    text = residuals.in_short(h, {"zoo:code": "zoo:code", "zoo:math": "zoo:math"})
    assert text.startswith("At the middle layer (blocks.1.hook_resid_post), `math` moved furthest") and "0.800" in text and "0.910" in text
    assert "0.67 for Gemma-2b / Python" in text  # the seed's, quoted as theirs


def test_sae_metrics_words_follow_the_verdict_thresholds():
    h = {"ev_token_base_code": 0.80, "ev_token_code_code": 0.30, "ev_token_base_math": 0.80,
         "ev_token_math_math": 0.795, "delta_ce_code_code": 0.9, "delta_ce_math_math": 0.1,
         "delta_ce_base_code": 0.2, "delta_ce_base_math": 0.2, "ce_recovered_base_code": 0.9,
         "ce_recovered_code_code": 0.5, "ce_recovered_base_math": 0.9, "ce_recovered_math_math": 0.89}
    text = sae_metrics.in_short(h, [("zoo:code", "zoo:code"), ("zoo:math", "zoo:math")])
    assert "**reconstructs far worse than on the base (EV drop 0.500, over 0.2)** on `code`" in text
    assert ("**reconstructs as well as on the base (EV drop 0.005, CE recovered drop 0.010, within `check`'s "
            "thresholds)** on `math`") in text
    # two of the three criteria: the page says what its numbers say, never the verdict
    assert not any(word in text for word in ("transfers", "is degraded", "is broken"))
    assert "up to 0.900 nats" in text and "(`code`)" in text


def test_answerability_says_gains_when_a_carried_probe_improves():
    h = {"residual_in": 0.9, "residual_out": 0.7, "sae1_in": 0.6, "sae1_out": 0.55, "drop_residual": -0.01,
         "drop_sae1": 0.02}
    text = answerability.in_short(h)
    assert "residual probe gains 0.010 AUROC" in text and "one-feature probe loses 0.020 AUROC" in text


def test_answerability_box_says_when_the_probe_is_at_chance():
    h = {"residual_in": 0.83, "residual_out": 0.51, "sae1_in": 0.6, "sae1_out": 0.5, "drop_residual": 0.01,
         "drop_sae1": 0.0}
    text = answerability.in_short(h)
    assert text.endswith("The residual probe is near chance in other domains (within 0.1 of 0.5): no linear probe "
                         "finds answerability there at this layer, and what the finetunes change there says nothing.")
    assert "near chance" not in answerability.in_short({**h, "residual_out": 0.75})


def test_diffing_box_says_when_the_crosscoder_cannot_tell_models_apart():
    h = {"worst_ft": "code", "worst_kept_pct": 40.0, "worst_lost_pct": 5.0, "n_pairs": 1, "total_new": 0,
         "has_floor": True, "has_ceiling": False, "floor_shared_pct": 100.0}
    assert diffing.in_short(h).endswith("But the crosscoder calls 100% of its latents shared with an unrelated twin "
                                        "too: at this budget it does not tell one model's directions from "
                                        "another's, so what it calls shared, lost or new says little.")
    assert "But" not in diffing.in_short({**h, "floor_shared_pct": 40.0})


def test_diffing_with_no_new_latents_and_no_floor():
    h = {"worst_ft": "code", "worst_kept_pct": 40.0, "worst_lost_pct": 5.0, "n_pairs": 1, "total_new": 0,
         "has_floor": False, "has_ceiling": False}
    assert diffing.in_short(h) == ("Against a crosscoder of base and finetune, code keeps 40% of the base SAE's "
                                    "firing features and loses 5%. The crosscoder finds no latent new in any "
                                    "finetune.")


def _results(chapter, numbers, title="T"):
    return {"meta": {"title": title, "params": {"zoo": "smoke"}}, "numbers": numbers, "tables": {}}


RECON = {"recon_ev_drop_code": 0.154, "recon_ce_recovered_drop_code": -0.001, "recon_base_ev_code": 0.715,
         "recon_dataset_code": "code", "n_tokens_measured": 8192}


def test_findings_keep_the_chapter_order_and_skip_what_no_part_ran():
    parts = {"On the toy zoo": {"features": _results("features", {"in_short": "F."}, "Feature transfer"),
                                "sae_metrics": _results("sae_metrics", {"in_short": "S.", **RECON}, "SAE metrics")},
             "On SmolLM2-135M-Instruct": {"sae_metrics": _results("sae_metrics", {"in_short": "R.", **RECON},
                                                                  "SAE metrics")}}
    links = {p: {c: f"{p[:2]}/{c}.ipynb" for c in chapters} for p, chapters in parts.items()}
    found = findings.findings(parts, links)
    assert [f["chapter"] for f in found] == ["sae_metrics", "features"]
    md = findings.findings_markdown(found)
    assert md.splitlines()[0] == "1. **Does the base SAE still work on a finetune?**"
    assert md.splitlines()[2].startswith("   - *On SmolLM2-135M-Instruct:* By `check`'s thresholds, each finetune on "
                                         "its own data, the base SAE **is degraded (EV drop 0.154, over 0.02)** on "
                                         "`code`")
    assert md.splitlines()[2].endswith("([SAE metrics](On/sae_metrics.html))")
    # each box's budget beside it: the same quantity at two budgets reads as two measurements, not a contradiction
    assert md.splitlines()[4].endswith("F. ([Feature transfer](On/features.html))")  # no n_tokens recorded: none said
    parts["On the toy zoo"]["features"]["meta"]["params"]["n_tokens"] = 32768
    md = findings.findings_markdown(findings.findings(parts, links))
    assert md.splitlines()[4].endswith("F. ([Feature transfer](On/features.html); 32,768 evaluation tokens)")
    assert findings.findings_markdown([]) == "No chapter of this build has a summary yet."


def test_the_book_gives_one_verdict_a_finetune_from_the_three_criteria():
    """The introduction's verdict joins the SAE-metric chapter's two reconstruction criteria with the features
    chapter's activation similarity on the same data, and names the criterion that decided it: a finetune whose
    reconstruction is only degraded but whose features no longer fire alike is broken."""
    sae_metrics = _results("sae_metrics", RECON)
    features = {**_results("features", {"regular_sim_code": 0.45, "dataset_code": "code"}),
                "meta": {"title": "F", "params": {"zoo": "smoke", "n_tokens": 4096}}}
    text = findings.verdict_text({"sae_metrics": sae_metrics, "features": features})
    assert "the base SAE **is broken (regular activation sim 0.450, under 0.7)** on `code`" in text
    assert "on 8,192 tokens a dataset, from the SAE-metric chapter; the regular features' activation similarity " \
           "on 4,096 tokens, from the features chapter" in text
    alone = findings.verdict_text({"sae_metrics": sae_metrics})
    assert "**is degraded (EV drop 0.154, over 0.02)** on `code`" in alone
    assert alone.endswith("For `code` the features chapter has no activation similarity on the same data: that "
                          "verdict rests on two of the three criteria.")
    other_data = {**features, "numbers": {"regular_sim_code": 0.45, "dataset_code": "prose"}}
    assert "rests on two of the three" in findings.verdict_text({"sae_metrics": sae_metrics, "features": other_data})
    assert findings.verdict_text({"features": features}) is None


def test_transfer_points_mark_the_base_and_each_finetune_own_domain(smoke_card):
    cases = [{"name": "none", "step": 0, "dataset": "code", "residual cosine": 1.0, "delta CE": 0.1},
             {"name": "code", "step": 8, "dataset": "code", "residual cosine": 0.8, "delta CE": 0.4},
             {"name": "code", "step": 8, "dataset": "prose", "residual cosine": 0.9, "delta CE": 0.2},
             {"name": "math", "step": 8, "dataset": "math", "residual cosine": 0.97, "delta CE": 0.15}]
    parts = {"On the toy zoo": {"predict": {"meta": {"params": {"zoo": "smoke"}}, "tables": {"cases": cases}}},
             "Other": {"residuals": {"meta": {"params": {"zoo": "smoke"}}}}}  # no predict chapter: no points
    pts = findings.transfer_points(parts)
    assert list(pts["kind"]) == ["the base itself", "finetune, own domain", "finetune, other data",
                                 "finetune, own domain"]
    assert set(pts["part"]) == {"On the toy zoo"} and pts["delta CE"].tolist() == [0.1, 0.4, 0.2, 0.15]
    assert findings.transfer_points({}).empty


def test_load_runs_labels_parts_by_what_they_run_on(tmp_path, smoke_card):
    for part, zoo in (("a", "smoke"), ("b", "smollm2-smoke")):
        (tmp_path / part).mkdir()
        (tmp_path / part / "results.json").write_text(json.dumps(
            {"meta": {"params": {"zoo": zoo}, "title": "Residuals"}, "numbers": {}, "tables": {}}))
    runs = {"Chapters": {"residuals": {"run_dir": str(tmp_path / "a"), "page": "chapters/residuals.ipynb"}},
            "Real": {"residuals": {"run_dir": str(tmp_path / "b"), "page": "smollm2-smoke/residuals.ipynb"}}}
    parts, links = findings.load_runs(runs)
    assert list(parts) == ["On the toy zoo", "On SmolLM2-135M-Instruct"]
    assert links["On SmolLM2-135M-Instruct"]["residuals"] == "smollm2-smoke/residuals.ipynb"


def test_a_crosscoder_that_did_not_train_reports_no_classes():
    """FVU at or over 1 (151% as a user met it): the page and the box say the method failed, not what it found."""
    from sae_transfer.studies.diffing import tables

    h = {"worst_ft": "code", "worst_kept_pct": 40.0, "worst_lost_pct": 5.0, "n_pairs": 1, "total_new": 3,
         "has_floor": False, "has_ceiling": False, "fvu_max": 1.51, "fvu_max_pct": 151.0, "trained": False}
    box = diffing.in_short(h)
    assert box.startswith("The crosscoder did not train (it leaves 151% of the variance unexplained)")
    assert "keeps" not in box and "new in" not in box
    text = tables.describe(h)
    assert text["summary"].startswith("The crosscoder did not train") and "keeps 40%" not in text["summary"]
    assert text["new"] == "" and "not reported as findings" in text["features"]


def test_the_bos_sentence_is_this_models_own():
    """Written from the measured norms: a zoo-like BOS (smaller) and a large model's (sixteen times the mean)."""
    def results(bos: float, peak: float) -> dict:
        return {"base": {"json:/u/t.jsonl": {"norms": {"bos": bos, "mean": 2.0, "max": peak}}}}

    small = sae_metrics.norm_reading(results(1.0, 5.0))
    assert "is 1, 0.5 times the mean norm of the other tokens (2): *smaller* than" in small
    assert "2.5 times that mean" in small and "Neither is a massive activation" in small
    large = sae_metrics.norm_reading(results(32.0, 5.0))
    assert "16 times the mean" in large and "*larger* than" in large and "massive activations of large" in large


def test_only_the_toy_base_is_said_never_to_have_been_asked_to_answer():
    assert "never asked to answer anything" in answerability.capacity(True)
    real = answerability.capacity(False)
    assert "never asked" not in real and "zoo" not in real and real.startswith("Where the in-domain AUROC")


def test_the_introduction_says_which_chapters_the_second_part_runs():
    main = {c: _results(c, {}, t) for c, t in (("residuals", "Residual activations"), ("sizes", "Across model sizes"))}
    assert findings.parts_reading({"On the toy zoo": main, "On SmolLM2": {"residuals": main["residuals"]}}) == \
        "The part on SmolLM2 runs 1 of the 2 chapters again (all but *Across model sizes*)."
    assert findings.parts_reading({"On the toy zoo": main}) == ""
    languages = {"meta": {"title": "Across languages"}}
    assert findings.parts_reading({"On the toy zoo": main, "On SmolLM2": {"residuals": main["residuals"],
                                                                         "languages": languages}}) == \
        "The part on SmolLM2 runs 1 of the 2 chapters again (all but *Across model sizes*), and *Across languages*, " \
        "which only it holds."



def test_the_introduction_lists_the_chapters_and_families_this_book_holds():
    """Written from the runs: a chapter no part ran is not listed (no link leads nowhere, and a book of the real
    family alone states nothing of the toy zoo); each family's finetunes come from its zoo's recipe."""
    def run(title: str, zoo: str) -> dict:
        return {"meta": {"title": title, "params": {"zoo": zoo}}}

    toy = {"zoo": run("The model zoo", "smoke"), "sizes": run("Across model sizes", "smoke")}
    real = {"zoo": run("The model zoo", "smollm2-smoke"), "languages": run("Across languages", "smollm2-smoke")}
    links = {"On the toy zoo": {c: f"chapters/{c}.ipynb" for c in toy},
             "On SmolLM2-135M-Instruct": {c: f"smollm2-smoke/{c}.ipynb" for c in real}}
    both = {"On the toy zoo": toy, "On SmolLM2-135M-Instruct": real}
    listed = findings.chapter_list(both, links).splitlines()
    assert listed[0].startswith("1. *The model zoo* ([on the toy zoo](chapters/zoo.html), "
                                "[on SmolLM2-135M-Instruct](smollm2-smoke/zoo.html)): the models")
    assert listed[1].startswith("2. *Across model sizes* ([on the toy zoo](chapters/sizes.html)): ")
    assert listed[2].startswith("3. *Across languages* ([on SmolLM2-135M-Instruct](smollm2-smoke/languages.html))")
    assert len(listed) == 3 and "diffing" not in "".join(listed)
    text = findings.book_reading(both, links)
    assert text.startswith("This book runs on two families: the toy zoo, small models the project trains itself")
    assert "SmolLM2-135M-Instruct, a real pretrained model fetched by package name, with 3 finetunes (`code`, " \
           "`math`, `french`)" in text and "[last page](compare.html)" in text
    alone = {"On SmolLM2-135M-Instruct": real}
    assert findings.chapter_list(alone, links) == (
        "1. [The model zoo](smollm2-smoke/zoo.html): " + findings.ABOUT["zoo"] + "\n"
        "2. [Across languages](smollm2-smoke/languages.html): " + findings.ABOUT["languages"])
    text = findings.book_reading(alone, links)
    assert text.startswith("This book runs on one family: SmolLM2") and "toy" not in text and "compare" not in text
    assert set(findings.ABOUT) == set(chapter_names())
