// Memory ordering (why acquire/release is enough, and needed, on a single-core Cortex-M4):
// the producer (interrupt) fills slots and then publishes them with a release store of
// write_index; the consumer's acquire load of write_index therefore sees those samples.
// Symmetrically the consumer releases slots with a release store of read_index, so the
// producer never overwrites a slot still being copied out. On one core the hardware already
// observes its own accesses in order; what the atomics really stop is the compiler moving
// sample copies across the index update (on Cortex-M they cost a DMB, a few cycles). Aligned
// 32-bit loads and stores are single-copy atomic on ARMv7-M, so these atomics are lock-free
// and safe to use from an interrupt handler.
#include "audio_ring_buffer.h"

#include <string.h>

// How many of `count` samples starting at free-running `index` fit before the storage wraps.
static size_t run_before_wrap(const kws_audio_ring *ring, uint32_t index, size_t count)
{
    size_t room = ring->mask + 1 - (index & ring->mask);
    return room < count ? room : count;
}

kws_status kws_audio_ring_init(kws_audio_ring *ring, int16_t *storage, size_t capacity)
{
    if (ring == NULL || storage == NULL || capacity < 2 || capacity > (1UL << 31) ||
        (capacity & (capacity - 1)) != 0) {
        return KWS_ERR_INVALID_ARGUMENT;
    }
    ring->samples = storage;
    ring->mask = (uint32_t)(capacity - 1);
    atomic_init(&ring->write_index, 0);
    atomic_init(&ring->read_index, 0);
    atomic_init(&ring->overruns, 0);
    atomic_init(&ring->dropped_samples, 0);
    return KWS_OK;
}

bool kws_audio_ring_write(kws_audio_ring *ring, const int16_t *samples, size_t count)
{
    uint32_t write = atomic_load_explicit(&ring->write_index, memory_order_relaxed);
    uint32_t read = atomic_load_explicit(&ring->read_index, memory_order_acquire);
    uint32_t free_slots = ring->mask + 1 - (write - read);
    if (count > free_slots) {
        // Only this side writes the counters, so a relaxed read-modify-write cannot race.
        atomic_store_explicit(&ring->overruns,
                              atomic_load_explicit(&ring->overruns, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&ring->dropped_samples,
                              atomic_load_explicit(&ring->dropped_samples, memory_order_relaxed) +
                                  (uint32_t)count,
                              memory_order_relaxed);
        return false;
    }
    size_t first = run_before_wrap(ring, write, count);
    memcpy(&ring->samples[write & ring->mask], samples, first * sizeof(int16_t));
    memcpy(ring->samples, samples + first, (count - first) * sizeof(int16_t));
    atomic_store_explicit(&ring->write_index, write + (uint32_t)count, memory_order_release);
    return true;
}

size_t kws_audio_ring_read(kws_audio_ring *ring, int16_t *out, size_t max_count)
{
    uint32_t read = atomic_load_explicit(&ring->read_index, memory_order_relaxed);
    uint32_t write = atomic_load_explicit(&ring->write_index, memory_order_acquire);
    size_t count = write - read;
    if (count > max_count) {
        count = max_count;
    }
    size_t first = run_before_wrap(ring, read, count);
    memcpy(out, &ring->samples[read & ring->mask], first * sizeof(int16_t));
    memcpy(out + first, ring->samples, (count - first) * sizeof(int16_t));
    atomic_store_explicit(&ring->read_index, read + (uint32_t)count, memory_order_release);
    return count;
}

size_t kws_audio_ring_available(kws_audio_ring *ring)
{
    uint32_t write = atomic_load_explicit(&ring->write_index, memory_order_acquire);
    return write - atomic_load_explicit(&ring->read_index, memory_order_relaxed);
}

uint32_t kws_audio_ring_overruns(kws_audio_ring *ring)
{
    return atomic_load_explicit(&ring->overruns, memory_order_relaxed);
}

uint32_t kws_audio_ring_dropped_samples(kws_audio_ring *ring)
{
    return atomic_load_explicit(&ring->dropped_samples, memory_order_relaxed);
}
