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
    init_from: str | None = None  # fine-tune: start from another run's (or a shipped model's) weights
    #: with init_from: the synthesis transform g_s starts from this run instead (e.g. a perceptual
    #: decoder re-fitted to its MSE twin's encoder after that twin trained on)
    decoder_from: str | None = None
    clip: float = 1.0
    perceptual: dict = field(default_factory=dict)  # metric name -> weight, e.g. {"lpips-alex": 1.0}
    #: "all", or "decoder": only the synthesis transform learns, so the bitstream (and rate) of the
    #: init model is kept bit for bit and only the reconstruction changes
    trainable: str = "all"
    #: adversarial term (stic.train.adversarial): generator weight, applied after `adversarial_warmup`
    #: steps (the discriminator learns from step 0); 0 turns the discriminator off
    adversarial: float = 0.0
    adversarial_warmup: int = 500
    adversarial_loss: str = "nonsaturating"  # or "hinge"
    disc_lr: float = 1e-4
    disc_channels: int = 64
    #: semantic terms (stic.train.semantic) -> weight: "clip-text" (1 - cosine(image, caption)),
    #: "clip-iqa" (-p("a good photo.")); need CLIP weights (`clip_model`) and captions
    semantic: dict = field(default_factory=dict)
    clip_model: str = "openai/clip-vit-base-patch32"  # transformers model id (cached) or local folder
    captions: str | None = None  # jsonl/json/csv; default $STIC_DATA/coco_mini/pairs.jsonl
    #: perceptual and semantic terms judge x_hat after this frozen offline refiner (e.g.
    #: "realesrgan-compact"); rate and MSE stay on x_hat
    refiner: str | None = None
    device: str = "auto"  # "auto": cuda if available, else cpu
    precision: str = "auto"  # "auto": bf16 autocast on cuda, fp32 on cpu; or "bf16" / "fp32"
    log_every: int = 200  # steps between lines of train.log and losses.jsonl


@dataclass
class ContextConfig:
    """`stic train context` (stic.train.context)."""

    base: str  # a shipped model name or a model folder (stic.image.registry.load_image_codec)
    out: str
    steps: int = 8000
    #: 3x3 / 128 saved as much as 5x5 / 192 on stic-q2 (7.6 % vs 7.4 % of y at 3500 steps) with 45 % of the weights
    kernel: int = 3
    hidden: int = 128
    crop: int = 12  # latent positions (x16 pixels)
    batch: int = 16
    lr: float = 1e-3
    lr_drop_at: float = 0.8  # fraction of the steps after which lr /= 10
    seed: int = 0
    threads: int = 2
    datasets: tuple = ("urban100", "unsplash", "coco_mini")
    checkpoint_minutes: float = 3.0
    val_every: int = 1000
    #: start from this checkerboard model's context (model folder or shipped name), e.g. for a
    #: perceptual twin whose encoder, hence latents, are its MSE twin's; with steps=0 it is only copied
    context_from: str | None = None


@dataclass
class RefinerConfig:
    """`stic train refiner` (stic.train.refiner): a compact ×4 refiner fitted to stic's own decoded images."""

    out: str
    #: the shipped image models whose decoded images (x̂) the refiner learns to restore
    models: tuple = ("stic-q1", "stic-q2", "stic-q3")
    #: starting weights: a .safetensors file, a Real-ESRGAN .pth ({"params": ...}, read tensors-only)
    #: or a run folder; None starts from random weights
    init_from: str | None = None
    num_conv: int = 32  #: general-x4v3's depth (animevideov3 has 16)
    crop: int = 192  #: output crop side (a multiple of 4; the network sees crop / 4)
    batch: int = 4
    lr: float = 5e-5
    minutes: float = 60.0
    max_steps: int = 10**9
    lr_drop_at: float = 0.85
    #: loss weights: LPIPS-Alex, DISTS, colour (L1 of 8x8 block means, 0..1 scale) and adversarial
    losses: dict = field(default_factory=lambda: {"lpips-alex": 1.0, "dists": 1.0, "colour": 2.0})
    adversarial: float = 0.02
    adversarial_warmup: int = 200
    disc_lr: float = 1e-4
    datasets: tuple = ("urban100", "unsplash", "coco_mini")
    seed: int = 0
    threads: int = 2
    checkpoint_minutes: float = 5.0
    val_crop: int = 256
    device: str = "auto"
    precision: str = "auto"
    log_every: int = 50
