"""Captioners: where a caption comes from (a VLM, a precomputed file, the user), always fitted to
CLIP's 77-token window so that the refiner sees every word the file pays for."""
