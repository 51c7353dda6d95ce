"""Training settings in one dataclass, importable without torch (the CLI reads its defaults)."""

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    out: str
    model: dict = field(default_factory=lambda: {"architecture": "mbt2018-mean", "N": 64, "M": 96})
    lmbda: float = 0.00012  # stic-q2's final lambda
    crop: int = 128
    batch: int = 8
    lr: float = 4e-4
    aux_lr: float = 1e-3
    minutes: float = 60.0  # total wall-clock budget, summed over resumes
    max_steps: int = 10**9
    lr_drop_at: float = 0.85  # fraction of the budget after which lr /= 10
    datasets: tuple = ("urban100", "unsplash", "coco_mini")
    seed: int = 0
    threads: int = 2
    checkpoint_minutes: float = 4.0
    val_crop: int = 512
    init_from: str | None = None  # fine-tune: start from another run's weights
    clip: float = 1.0
    perceptual: dict = field(default_factory=dict)  # metric name -> weight, e.g. {"lpips-alex": 1.0}
    #: "all", or "decoder": only the synthesis transform learns, so the bitstream (and rate) of the
    #: init model is kept bit for bit and only the reconstruction changes
    trainable: str = "all"
