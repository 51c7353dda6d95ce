"""Hugging Face models that several parts of stic share: loading, placement and identity digests.

The caption package (VLM captioner) and the text package (VLM and float LM caption coders) both
build on these; neither imports the other.
"""
