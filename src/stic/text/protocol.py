"""The one interface every caption coder (LM arithmetic coder or baseline) implements."""

from typing import Protocol, runtime_checkable


@runtime_checkable
class TextCoder(Protocol):
    #: short human name, e.g. "lm:smollm2-135m" or "zlib"; shown in errors and `stic info`
    name: str
    #: id written in the container's caption section (see stic.codecs)
    codec_id: int
    # Optional attributes (not annotated: isinstance checks only the required ones):
    # `thread_independent` (default False): the decoded text cannot depend on threads or on what
    # else the process runs meanwhile, so the decoder may decode it beside the image (stic.pipeline);
    # `needs_image` (default False): the coder predicts the caption seeing x̂ (stic.text.vlm_coder).

    def fingerprint(self) -> bytes:
        """4 bytes identifying everything that changes the bits (model, tokenizer, preamble,
        quantisation); b"" for coders without a model."""

    def encode(self, text: str) -> bytes:
        """Code `text` exactly; raise InputError for text that cannot be coded."""

    def decode(self, data: bytes) -> str:
        """Inverse of encode; raise FormatError on data that is not a valid stream."""
