"""The planted finetune of a real model (``data.planted``): its edit is exactly the planted terms, the null edit is
the identity, and the hooked model applies it once, where the SAE's stream is written."""

import pytest
import torch

from sae_transfer.data.planted import PlantedFinetune
from sae_transfer.data.synthetic import Edits
from sae_transfer.models.hooks import writer_hook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def side(smoke_card):
    from sae_transfer.data.tokens import TokenSpec, token_windows
    from sae_transfer.models.pairs import load_one_side

    one = load_one_side("zoo:base-s", "zoo:base-s", None, "smoke")
    tokens = token_windows(TokenSpec("zoo:prose", 4096, 64, 8, 5), one.tokenizer, "smoke")[:8]
    stop = int(one.hook.split(".")[1]) + (one.hook.endswith("post"))
    x = one.base(tokens, stop_at_layer=stop).float()
    return one, tokens, x, stop


def test_the_edit_is_the_planted_terms_and_nothing_else(side):
    one, tokens, x, _ = side
    plant = PlantedFinetune(one.sae, Edits(share=0.3, angle=45.0, new=0.1, seed=0), x[:, 1:].flatten(0, 1))
    counts = plant.describe()["counts"]
    assert counts["shifted"] > 0 and counts["lost"] > 0 and counts["rarer"] > 0 and counts["new"] > 0
    a_base, a_ft = plant.coefficients(x, tokens)
    x_ft = plant.edit(x, tokens)
    f = one.sae.encode(x)
    lost = plant.indices("lost")
    # a lost feature's term, as the SAE writes it, is gone; a kept one's term is left
    assert torch.allclose(a_base[..., lost] @ plant.D_base[lost], f[..., lost] @ one.sae.W_dec[lost], atol=1e-4)
    assert (a_ft[:, 1:][..., lost] == 0).all()
    kept = plant.indices("kept")
    assert torch.equal(a_ft[..., kept], a_base[..., kept])
    # position 0 (BOS) is never edited, and the edit is the planted terms' difference
    assert torch.equal(x_ft[:, 0], x[:, 0])
    delta = a_ft @ plant.D_ft - a_base @ plant.D_base
    assert torch.allclose(x_ft - x, delta, atol=1e-4) and delta[:, 1:].abs().sum() > 0
    # a rarer feature keeps its term on about rarer_keep of the tokens it fires on
    rarer = plant.indices("rarer")
    fired = a_base[:, 1:][..., rarer] > 0
    kept_share = (a_ft[:, 1:][..., rarer][fired] > 0).float().mean()
    assert 0.05 < kept_share < 0.7
    # shifted directions turned by the angle
    shifted = plant.indices("shifted")
    cos = (plant.D_base[shifted] * plant.D_ft[shifted]).sum(-1)
    assert torch.allclose(cos, torch.full_like(cos, 2 ** -0.5), atol=1e-5)


def test_the_null_edit_is_the_base_and_the_hooked_model_edits_once(side):
    one, tokens, x, stop = side
    cal = x[:, 1:].flatten(0, 1)
    null = PlantedFinetune(one.sae, Edits(share=0.0, new=0.0), cal)
    assert torch.equal(null.edit(x, tokens), x)
    assert torch.allclose(null.model(one.base, one.hook)(tokens), one.base(tokens), atol=1e-5)
    plant = PlantedFinetune(one.sae, Edits(share=0.3, new=0.1), cal)
    model = plant.model(one.base, one.hook)
    assert writer_hook(one.hook).endswith("hook_resid_post")
    x_ft = model(tokens, stop_at_layer=stop).float()
    assert torch.allclose(x_ft, plant.edit(x, tokens), atol=1e-4)
    # resuming from the stream runs no edit: the clean continuation of the edited stream is the finetune's output
    assert torch.allclose(model(x_ft, start_at_layer=stop), model(tokens), atol=1e-4)
    assert not torch.allclose(model(tokens), one.base(tokens), atol=1e-3)
    # the base model is left as it was
    assert torch.allclose(one.base(tokens, stop_at_layer=stop).float(), x)


def test_the_written_directions_are_the_decoder_in_the_models_units(side):
    from sae_transfer.data.planted import written_directions

    one, _, x, _ = side
    W = written_directions(one.sae, x[:, 1:].flatten(0, 1))
    assert torch.allclose(W, one.sae.W_dec.detach().float(), atol=1e-5)  # an SAE that scales nothing: W_dec


@pytest.mark.parametrize("extra, message", [
    (["-p", "planted_tokens", "1024"], "planted_tokens=1024 gives check fewer than 8 batches of 8 windows of 64 "
                                       "tokens; use planted_tokens >= 4096"),
    (["-p", "sae", "zoo:nope"], "sae='zoo:nope': no SAE 'nope' in zoo profile 'smoke'"),
    (["-p", "pattern_steps", "100000"], "pattern_steps=100000 trains on 1600000 windows of 64 tokens but the training "
                                        "split of dataset='zoo:prose' holds"),
])
def test_the_real_level_refuses_bad_input_in_one_line_before_any_work(smoke_card, extra, message):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "sae_transfer", "run", "known_answers", "--profile", "smoke", *extra],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr


def test_the_edit_sits_on_the_block_that_writes_the_stream():
    assert writer_hook("blocks.2.hook_resid_pre") == "blocks.1.hook_resid_post"
    assert writer_hook("blocks.1.hook_resid_post") == "blocks.1.hook_resid_post"
    assert writer_hook("blocks.0.hook_resid_pre") is None and writer_hook("blocks.1.hook_mlp_out") is None
