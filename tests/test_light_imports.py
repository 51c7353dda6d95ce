"""CompressAI is imported without its point-cloud dependencies (stic._light_compressai), and the
packages lent stand-ins during that import are the real ones afterwards."""

import subprocess
import sys

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
