"""The registries' model caches are explicit objects: bounded, listable, clearable, one load per key."""

import threading

import pytest

from stic.models.cache import ModelCache, clear_model_caches, loaded_models


@pytest.fixture
def cache():
    from stic.models import cache as module

    made = ModelCache("test models", maxsize=2)
    yield made
    del module._CACHES["test models"]


def test_loads_once_per_key_and_drops_the_least_recently_used(cache):
    loads = []
    load = lambda key: lambda: loads.append(key) or object()  # noqa: E731
    a = cache.get("a", load("a"))
    assert cache.get("a", load("a")) is a
    cache.get("b", load("b"))
    cache.get("a", load("a"))  # a is now the most recent
    cache.get("c", load("c"))  # drops b
    assert cache.keys() == ["a", "c"] and loads == ["a", "b", "c"]
    assert loaded_models()["test models"] == ["a", "c"]


def test_a_failed_load_stores_nothing_and_clear_empties_every_cache(cache):
    def fail():
        raise OSError("missing weights")

    with pytest.raises(OSError):
        cache.get("x", fail)
    assert cache.keys() == []
    cache.get("y", object)
    clear_model_caches()
    assert cache.keys() == []


def test_two_threads_asking_at_once_share_one_load(cache):
    started, loads = threading.Event(), []

    def slow():
        loads.append(1)
        started.wait(1)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(2)]
    for thread in threads:
        thread.start()
    started.set()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and results[0] is results[1]


def test_the_registries_caches_are_listed_by_name():
    import stic.metrics  # noqa: F401
    import stic.models.vlm  # noqa: F401
    import stic.refine.esrgan  # noqa: F401
    import stic.refine.registry  # noqa: F401
    import stic.text.registry  # noqa: F401

    names = set(loaded_models())
    assert {"caption language models", "vision-language models", "diffusion pipelines", "refiner networks",
            "metric networks"} <= names  # fmt: skip


def test_a_second_cache_of_one_name_is_refused(cache):
    with pytest.raises(ValueError, match="exists already"):
        ModelCache("test models", maxsize=1)
