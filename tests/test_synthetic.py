"""The planted finetunes (``data.synthetic``) hold the truth they claim, and the known-answers scores read it
right (``studies.known_answers.scores``)."""

import math

import numpy as np
import pytest
import torch

from sae_transfer.data.synthetic import Edits, PlantedPair, World, changed_mass
from sae_transfer.studies.known_answers import scores as S

WORLD = World(n_features=48, d_model=16, seed=3)


def draws(pair, n_batches=4, seed=0):
    return list(pair.paired(n_batches, 8, 32, seed))


def test_the_null_finetune_is_the_base_draw_for_draw():
    pair = PlantedPair(WORLD, Edits(share=0.0, new=0.0))
    assert set(pair.truth) == {"kept"} and torch.equal(pair.D_base, pair.D_ft)
    mass = torch.zeros(2, dtype=torch.float64)
    for b in draws(pair):
        assert torch.equal(b["x_base"], b["x_ft"]) and torch.equal(b["a_base"], b["a_ft"])
        mass += changed_mass(b["a_base"].flatten(0, 1), b["a_ft"].flatten(0, 1), pair.D_base, pair.D_ft)
    assert mass[0] == 0 and mass[1] > 0


def test_each_planted_class_is_what_it_claims():
    edits = Edits(share=0.6, angle=30.0, rarer_keep=0.25, new=0.25, seed=1)
    pair = PlantedPair(WORLD, edits)
    counts = {c: pair.truth.count(c) for c in ("kept", "shifted", "rarer", "lost", "new")}
    # 60% of 48 = 29 changed: 9 rarer, 9 lost, the remaining 11 shifted; 25% of 48 = 12 new
    assert counts == {"kept": 19, "shifted": 11, "rarer": 9, "lost": 9, "new": 12}
    cos = (pair.D_base * pair.D_ft).sum(-1)
    shifted = pair.indices("shifted")
    assert torch.allclose(cos[shifted], torch.full((11,), math.cos(math.radians(30))), atol=1e-5)
    others = [i for i in range(pair.n_total) if i not in shifted]
    assert torch.equal(pair.D_base[others], pair.D_ft[others])
    fires = torch.zeros(2, pair.n_total)
    for b in draws(pair, n_batches=30):
        ab, af = b["a_base"].flatten(0, 1), b["a_ft"].flatten(0, 1)
        fires += torch.stack([(ab > 0).sum(0), (af > 0).sum(0)])
        assert torch.allclose(b["x_base"], b["a_base"] @ pair.D_base)
        assert torch.allclose(b["x_ft"], b["a_ft"] @ pair.D_ft)
    assert fires[1, pair.indices("lost")].sum() == 0 and fires[0, pair.indices("new")].sum() == 0
    assert fires[1, pair.indices("new")].sum() > 0
    kept = pair.indices("kept") + pair.indices("shifted")
    assert torch.equal(fires[0, kept], fires[1, kept])  # same tokens, same activations
    rarer = pair.indices("rarer")
    share = fires[1, rarer].sum() / fires[0, rarer].sum()
    assert abs(share - 0.25) < 0.05


def test_every_finetune_of_a_world_shares_its_base():
    """The base SAE is trained once per world: each edit must leave the base's directions and frequencies alone,
    and a larger share must change a superset of what a smaller one changes."""
    small, large = PlantedPair(WORLD, Edits(share=0.1, new=0.05)), PlantedPair(WORLD, Edits(share=0.5, new=0.5))
    n = WORLD.n_features
    assert torch.equal(small.D_base[:n], large.D_base[:n]) and torch.equal(small.p_base[:n], large.p_base[:n])
    changed = lambda p: {i for i in range(n) if p.truth[i] != "kept"}  # noqa: E731
    assert changed(small) < changed(large)
    assert torch.equal(small.D_base[n:], large.D_base[n:n + small.n_total - n])  # the first new ones agree


def test_the_same_seeds_give_the_same_bytes():
    a, b = PlantedPair(WORLD, Edits(seed=2)), PlantedPair(WORLD, Edits(seed=2))
    assert a.truth == b.truth and torch.equal(a.D_ft, b.D_ft)
    assert all(torch.equal(x["x_ft"], y["x_ft"]) for x, y in zip(draws(a, seed=5), draws(b, seed=5)))
    assert not torch.equal(draws(a, seed=5)[0]["x_ft"], draws(a, seed=6)[0]["x_ft"])
    assert PlantedPair(WORLD, Edits(seed=3)).truth != a.truth


def test_changed_mass_of_a_shifted_feature_is_the_chord():
    D = torch.eye(3)
    theta = math.radians(60)
    Dft = D.clone()
    Dft[0] = torch.tensor([math.cos(theta), math.sin(theta), 0.0])
    a = torch.tensor([[2.0, 1.0, 0.0]])
    moved, total = changed_mass(a, a, D, Dft)
    assert math.isclose(float(moved), 2 * 2 * math.sin(theta / 2), rel_tol=1e-6) and float(total) == 3.0
    lost = torch.tensor([[0.0, 1.0, 0.0]])
    assert changed_mass(a, lost, D, D).tolist() == [2.0, 3.0]


def test_bad_edits_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"share=1.5: use a value in \[0, 1\]"):
        PlantedPair(WORLD, Edits(share=1.5))


def test_auroc_is_sklearns_and_precision_recall_count_right():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = (rng.random(60) < 0.4).astype(float)
    s = np.round(rng.normal(size=60) + y, 1)  # rounded: ties, which both count as half
    assert math.isclose(float(S.auroc(y, s)), roc_auc_score(y, s), rel_tol=1e-12)
    pred = np.array(["kept", "kept", "shifted", "unmatched", "kept"])
    exp = np.array(["kept", "shifted", "shifted", "shifted", "kept"])
    pr = S.precision_recall(pred, exp, "kept", 200, 0)
    assert pr["precision"]["value"] == pytest.approx(2 / 3) and pr["recall"]["value"] == 1.0
    assert pr["precision"]["lo"] <= 2 / 3 <= pr["precision"]["hi"]
    shifted = S.precision_recall(pred, exp, "shifted", 200, 0)
    assert shifted["precision"]["value"] == 1.0 and shifted["recall"]["value"] == pytest.approx(1 / 3)
    assert S.precision_recall(pred, exp, "lost", 200, 0)["precision"]["value"] is None  # nothing labelled lost


def test_mcc_is_one_on_the_true_dictionary_and_matching_follows_the_cosine():
    pair = PlantedPair(WORLD, Edits())
    D = pair.D_base[pair.base_features]
    assert S.mcc(D, D, 200, 0)["value"] == pytest.approx(1.0, abs=1e-6)
    from sae_lens.synthetic import mean_correlation_coefficient
    noisy = D + 0.5 * torch.randn(D.shape, generator=torch.Generator().manual_seed(0))
    ours = S.mcc(noisy[:40], D, 200, 0)
    assert ours["value"] == pytest.approx(mean_correlation_coefficient(noisy[:40], D), abs=1e-6)
    assert 0.3 < ours["lo"] <= ours["value"] <= ours["hi"] < 1
    idx, cos = S.best_match(-D[[4, 7]], D)  # a sign flip is the same direction
    assert idx.tolist() == [4, 7] and np.allclose(cos, 1.0, atol=1e-6)


def test_a_world_the_sae_did_not_learn_is_reported_as_such(tmp_path, monkeypatch):
    """An SAE trained on a few thousand draws finds few true features: the page says so, with the number, in
    place of label scores (nothing of a method that did not work is shown as a finding)."""
    import dataclasses

    from sae_transfer.studies.known_answers import measure as known
    from sae_transfer.studies.known_answers import prose, tables
    from sae_transfer.studies.known_answers.study import Study

    monkeypatch.setenv("SAE_TRANSFER_CACHE", str(tmp_path))
    params = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
              for f in dataclasses.fields(Study)}
    params.update(n_features=32, d_model=16, sae_samples=4096, train_tokens=8192, n_tokens=2048, severities=[],
                  angles=[], token_sweep=[], features_per_dim=[], n_boot=100, base="")
    data = known.measure(known.KnownStudy.of(params))
    h = tables.headline(data)
    assert not h["worked"] and h["matched"] < 16
    absent = tables.not_reported(h)
    assert absent.startswith(f"Not reported: the base SAE found {h['matched']} of 32 true features")
    said = prose.readings(h, absent)
    assert said["labels"] == said["similarity"] == absent
    assert prose.in_short(h, absent).startswith(absent)


def test_the_wrong_labels_are_said_largest_first():
    from sae_transfer.studies.known_answers import prose

    h = {"conf_kept_kept": 130, "conf_kept_shifted": 11, "conf_kept_lost": 0, "conf_kept_unmatched": 2,
         "conf_rarer_kept": 0, "conf_rarer_shifted": 9, "conf_rarer_lost": 0, "conf_rarer_unmatched": 0,
         "conf_lost_kept": 0, "conf_lost_shifted": 9, "conf_lost_lost": 1, "conf_lost_unmatched": 10,
         "conf_shifted_kept": 1, "conf_shifted_shifted": 5}
    assert prose.errors(h) == ("Where the labels go wrong: of the 143 kept, 11 were labelled shifted and 2 were "
                               "labelled unmatched; of the 6 shifted, 1 was labelled kept; of the 20 lost, 10 were "
                               "labelled unmatched and 9 were labelled shifted.")
    assert prose.errors({"conf_kept_kept": 5}) == "No feature got a wrong label."
