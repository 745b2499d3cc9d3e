"""The audio ring buffer of the firmware core: streaming order, overruns, bad arguments."""
import ctypes

import numpy as np
import pytest

from firmware_build import core  # noqa: F401  (core is a fixture)
from host_tools.core import MIRRORS, int16_pointer

KWS_OK, KWS_ERR_INVALID_ARGUMENT = 0, 1


def make_ring(core, capacity):
    ring, storage = core.new("kws_audio_ring"), np.zeros(capacity, np.int16)
    assert core.audio_ring_init(ring, int16_pointer(storage), capacity) == KWS_OK
    return ring, storage  # the storage must outlive the ring


def write(core, ring, samples):
    samples = np.ascontiguousarray(samples, np.int16)
    return core.audio_ring_write(ring, int16_pointer(samples), len(samples))


def read(core, ring, count):
    out = np.zeros(count, np.int16)
    got = core.audio_ring_read(ring, int16_pointer(out), count)
    return out[:got]


@pytest.mark.parametrize("capacity", [0, 1, 3, 100, 1000])
def test_capacity_must_be_a_power_of_two(core, capacity):
    storage = np.zeros(max(capacity, 1), np.int16)
    assert core.audio_ring_init(core.new("kws_audio_ring"), int16_pointer(storage), capacity) == KWS_ERR_INVALID_ARGUMENT


def test_null_storage_is_rejected(core):
    assert core.audio_ring_init(core.new("kws_audio_ring"), None, 64) == KWS_ERR_INVALID_ARGUMENT


def test_odd_sized_writes_and_reads_keep_every_sample_in_order(core):
    ring, _ = make_ring(core, 64)
    stream = np.random.default_rng(0).integers(-32768, 32768, 20_000).astype(np.int16)
    received, position, sizes = [], 0, [1, 7, 13, 31, 64, 5]
    for step in range(10_000):
        if position < len(stream):
            chunk = stream[position : position + sizes[step % len(sizes)]]
            if write(core, ring, chunk):
                position += len(chunk)
        received.append(read(core, ring, sizes[(step + 2) % len(sizes)]))
        if position == len(stream) and core.audio_ring_available(ring) == 0:
            break
    np.testing.assert_array_equal(np.concatenate(received), stream)


def test_overrun_drops_the_new_block_counts_it_and_recovers(core):
    ring, _ = make_ring(core, 16)
    first, second = np.arange(1, 11, dtype=np.int16), np.arange(100, 106, dtype=np.int16)
    assert write(core, ring, first)
    assert not write(core, ring, np.full(7, -1, np.int16))  # 7 > 6 free: dropped whole
    assert (core.audio_ring_overruns(ring), core.audio_ring_dropped_samples(ring)) == (1, 7)
    assert core.audio_ring_available(ring) == 10
    assert write(core, ring, second)  # exactly fills it: all 16 slots are usable
    assert not write(core, ring, np.full(1, -2, np.int16))
    assert (core.audio_ring_overruns(ring), core.audio_ring_dropped_samples(ring)) == (2, 8)
    # The stored data is untouched by the dropped writes.
    np.testing.assert_array_equal(read(core, ring, 100), np.concatenate([first, second]))
    assert core.audio_ring_available(ring) == 0
    # Drained: full-size writes work again, across the wrap point, and the count stays readable.
    again = np.arange(-16, 0, dtype=np.int16)
    assert write(core, ring, again)
    np.testing.assert_array_equal(read(core, ring, 16), again)
    assert core.audio_ring_overruns(ring) == 2


def test_a_block_larger_than_the_ring_is_an_overrun_not_a_stall(core):
    ring, _ = make_ring(core, 8)
    assert not write(core, ring, np.ones(9, np.int16))
    assert core.audio_ring_overruns(ring) == 1 and core.audio_ring_available(ring) == 0


def test_struct_sizes_match_the_ctypes_mirrors(core):
    for name, mirror in {**MIRRORS, "kws_feature_window": core.FeatureWindow}.items():
        assert ctypes.sizeof(mirror) == core.sizes[name], name
