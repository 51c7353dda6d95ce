"""Codec ids written into .stic sections, in one table so that ids are never reused.

An id names a *method*; which model's weights it ran with is the section's fingerprint.
Ids are part of the file format (docs/format.md): never renumber, only append.
"""

# caption section
TEXT_RAW = 0  # UTF-8 as is
TEXT_ZLIB = 1
TEXT_BZ2 = 2
TEXT_LZMA = 3  # raw LZMA2 stream, no container
TEXT_BROTLI = 4
TEXT_ZSTD = 5
TEXT_ZSTD_DICT = 6  # zstd with a dictionary trained on a disjoint caption corpus
TEXT_RANK_ZLIB = 7  # the published method's scheme: LM token ranks over 8-token windows + zlib
TEXT_LM_ARITHMETIC = 16  # stic 0.1: range coding over a float LM (machine-bound); no longer read
TEXT_VLM_ARITHMETIC = 17  # the same, with a vision-language model's LM, text only
TEXT_VLM_XHAT_ARITHMETIC = 18  # the same, the VLM also seeing the decoded image x̂
TEXT_LM_EXACT = 19  # range coding over the exact integer LM engine: decodes on every machine
TEXT_LM_FLOAT = 20  # the same over a float LM engine: its fingerprint names the machine class

# image section
IMAGE_LEARNED = 1  # stic's learned codec (CompressAI architectures, our weights), float entropy parameters
IMAGE_LEARNED_EXACT = 2  # the checkerboard models with exact integer entropy parameters (stic >= 0.2)
IMAGE_LEARNED_EXACT_STEP = 3  # the same with y quantised finer: payload = step byte (1..48) + strings

# refine section (no section = no refinement)
REFINE_REALESRGAN_X4 = 1  # Real-ESRGAN x4plus on x̂ downscaled by 4
REFINE_DIFFUSION_IMG2IMG = 2  # text-conditioned diffusion img2img from x̂, tiled
REFINE_REALESRGAN_COMPACT_X4 = 3  # Real-ESRGAN animevideov3 (compact net) on x̂ downscaled by 4
REFINE_REALESRGAN_STIC_X4 = 4  # general-x4v3 fine-tuned on stic's decoded images, on x̂ downscaled by 4
REFINE_REALESRGAN_STIC_Q2_X4 = 5  # the same, tuned on stic-q2's colour-mapped x̂ alone

TEXT_CODEC_NAMES = {
    TEXT_RAW: "raw",
    TEXT_ZLIB: "zlib",
    TEXT_BZ2: "bz2",
    TEXT_LZMA: "lzma",
    TEXT_BROTLI: "brotli",
    TEXT_ZSTD: "zstd",
    TEXT_ZSTD_DICT: "zstd-dict",
    TEXT_RANK_ZLIB: "rank-zlib",
    TEXT_LM_ARITHMETIC: "lm-arithmetic",
    TEXT_VLM_ARITHMETIC: "vlm-arithmetic",
    TEXT_VLM_XHAT_ARITHMETIC: "vlm-xhat-arithmetic",
    TEXT_LM_EXACT: "lm-exact",
    TEXT_LM_FLOAT: "lm-float",
}
PICTURE_V1 = 0  # picture section: flags (grey, original size) + original width and height
PICTURE_NAMES = {PICTURE_V1: "picture-v1"}
COLOUR_LAB_AFFINE = 0  # colour section: an affine map of x̂ in CIELAB, 12 signed bytes (stic.colour)
COLOUR_NAMES = {COLOUR_LAB_AFFINE: "lab-affine"}
IMAGE_CODEC_NAMES = {IMAGE_LEARNED: "learned", IMAGE_LEARNED_EXACT: "learned-exact", IMAGE_LEARNED_EXACT_STEP: "learned-exact-step"}
REFINER_NAMES = {
    REFINE_REALESRGAN_X4: "realesrgan",
    REFINE_DIFFUSION_IMG2IMG: "diffusion",
    REFINE_REALESRGAN_COMPACT_X4: "realesrgan-compact",
    REFINE_REALESRGAN_STIC_X4: "realesrgan-stic",
    REFINE_REALESRGAN_STIC_Q2_X4: "realesrgan-stic-q2",
}
