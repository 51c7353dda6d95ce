"""CompressAI is imported without its point-cloud dependencies (stic._light_compressai), and the
packages lent stand-ins during that import are the real ones afterwards; an image-only file
decodes without importing torch at all."""

import subprocess
import sys

import fuzz_cases as fc
import numpy as np
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


def test_an_image_only_file_decodes_without_torch(tmp_path):
    """`stic decode` of an image-only file (shipped model, its refiner) never imports torch (~1.5 s
    of a cold start): symbols in numpy with CompressAI's rANS extension alone, float networks on
    ONNX Runtime; the same pixels as in a process that holds the torch model."""
    from stic import pipeline

    image = fc.sample_image(64, 96, 7)
    encoded = pipeline.encode(image, model="stic-q2")  # its default refiner
    path = tmp_path / "a.stic"
    path.write_bytes(encoded.data)
    code = f"""
import sys
from stic.cli import main
main(["decode", {str(path)!r}, "-o", {str(tmp_path / "a.png")!r}])
assert "torch" not in sys.modules, "torch was imported"
assert "compressai.ans" in sys.modules and "compressai" not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    decoded = np.asarray(Image.open(tmp_path / "a.png"))
    held = pipeline.decode(encoded.data).image  # in this process, where torch is loaded
    assert np.array_equal(decoded, held)
