"""Weights are read from safetensors or with torch.load(weights_only=True): a malicious pickle
checkpoint (one whose unpickling would create a marker file) is refused everywhere stic loads
weights, and the marker never appears. A scan of src/ keeps new loaders to the same rule."""

import ast
import json
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src" / "stic"


class _CreatesMarker:
    """Unpickling this calls open(path, "w"): arbitrary code, here harmless and visible."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"weight": _CreatesMarker(marker)}, path)
    return path


def test_the_malicious_checkpoint_really_runs_code_when_unpickled(tmp_path):
    """Control: a plain unpickler does create the marker, so the tests below can fail."""
    evil = _malicious_checkpoint(tmp_path / "evil.pt", tmp_path / "marker")
    torch.load(evil, weights_only=False)
    assert (tmp_path / "marker").exists()


def test_training_checkpoint_with_malicious_optimizer_state(tmp_path):
    from stic.image.architectures import build_model
    from stic.train.checkpoint import load_checkpoint, save_checkpoint

    model = build_model({"architecture": "bmshj2018-hyperprior", "N": 8, "M": 8})
    optimizer = torch.optim.Adam(model.parameters())
    save_checkpoint(tmp_path / "run", model, {"main": optimizer}, {"step": 1}, {"architecture": "bmshj2018-hyperprior"})
    _malicious_checkpoint(tmp_path / "run" / "optim.pt", tmp_path / "marker")
    from stic.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="holds more than tensors"):
        load_checkpoint(tmp_path / "run", model, {"main": optimizer})
    assert not (tmp_path / "marker").exists()


def test_image_model_folder_with_a_pickle_for_weights(tmp_path):
    from stic.errors import ModelNotFoundError
    from stic.image.registry import load_image_codec

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model": {"architecture": "bmshj2018-hyperprior", "N": 8, "M": 8}}))
    _malicious_checkpoint(folder / "model.safetensors", tmp_path / "marker")
    with pytest.raises(ModelNotFoundError, match="not a safetensors file"):
        load_image_codec(str(folder))
    (folder / "model.safetensors").rename(folder / "model.pt")  # a pickle under its usual name is not even looked at
    with pytest.raises(ModelNotFoundError, match="no image model"):
        load_image_codec(str(folder))
    assert not (tmp_path / "marker").exists()


def test_language_model_directory_with_pickled_weights(tmp_path):
    import shutil

    from tiny_lm import tiny_folder

    from stic.errors import ModelNotFoundError
    from stic.text.lm import load_lm

    shutil.copytree(tiny_folder(), tmp_path, dirs_exist_ok=True)
    (tmp_path / "model.safetensors").unlink()
    _malicious_checkpoint(tmp_path / "pytorch_model.bin", tmp_path / "marker")
    for engine in ("exact", "auto"):
        with pytest.raises(ModelNotFoundError, match="refusing language model"):
            load_lm(str(tmp_path), engine=engine)
    assert not (tmp_path / "marker").exists()


def test_cli_refuses_a_malicious_image_model_with_one_line(tmp_path, capsys):
    from PIL import Image

    from stic.cli import main

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model": {"architecture": "bmshj2018-hyperprior", "N": 8, "M": 8}}))
    _malicious_checkpoint(folder / "model.safetensors", tmp_path / "marker")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert main(["encode", str(tmp_path / "a.png"), "--model", str(folder), "--text-coder", "zlib", "--refiner", "none"]) == 1
    assert capsys.readouterr().err.startswith("stic: error: cannot read image model weights")
    assert not (tmp_path / "marker").exists()


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_every_loader_in_src_is_weights_only():
    """torch.load / load_state_dict_from_url need weights_only=True; np.load must not allow
    pickles; pickle itself is used only by the SHA-256-pinned, numpy-only unpickler."""
    problems, checked = [], 0
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(SRC)
        for call, name in _calls(tree):
            keywords = {k.arg: k.value for k in call.keywords}
            if name.endswith(("torch.load", "load_state_dict_from_url")):
                checked += 1
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where}:{call.lineno} {name} without weights_only=True")
            if name.endswith(("np.load", "numpy.load")):
                value = keywords.get("allow_pickle")
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    problems.append(f"{where}:{call.lineno} np.load with allow_pickle")
            if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "joblib.load") and str(where) != "metrics/weights.py":
                problems.append(f"{where}:{call.lineno} {name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ClassDef)
                and str(where) != "metrics/weights.py"
                and any(ast.unparse(base).endswith("Unpickler") for base in node.bases)
            ):
                problems.append(f"{where}:{node.lineno} an Unpickler subclass")
    assert problems == []
    assert checked >= 5  # the scan does see the loaders there are (metrics, training, CompressAI zoo)
