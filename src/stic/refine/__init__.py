"""Refiners: turn the blurry decoded image x̂ (and the caption) into the final image.

One protocol (`Refiner.refine(x̂, caption, seed)`), three backends: identity, the offline
Real-ESRGAN GAN refiner, and a text-conditioned diffusion refiner (diffusers). `get_refiner`
builds one by name; `refiner_for_section` rebuilds the one a file names.
"""
