// Lock-free single-producer / single-consumer ring buffer of int16 audio samples.
//
// Producer: the PDM interrupt callback (kws_audio_ring_write). Consumer: the main loop
// (kws_audio_ring_read). Neither ever blocks: when a whole block does not fit, the producer
// drops it and counts an overrun, so a slow main loop loses audio but never stalls the
// microphone interrupt.
#ifndef KWS_AUDIO_RING_BUFFER_H
#define KWS_AUDIO_RING_BUFFER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kws_status.h"

typedef struct {
    int16_t *samples;  // caller's storage, `capacity` samples
    uint32_t mask;     // capacity - 1 (capacity is a power of two)
    // Free-running indices: fill = write_index - read_index (mod 2^32), so all `capacity`
    // slots are usable and "full" and "empty" are never confused.
    atomic_uint_least32_t write_index;     // written by the producer only
    atomic_uint_least32_t read_index;      // written by the consumer only
    atomic_uint_least32_t overruns;        // blocks dropped; written by the producer only
    atomic_uint_least32_t dropped_samples; // samples in those blocks
} kws_audio_ring;

// `capacity` must be a power of two between 2 and 2^31.
kws_status kws_audio_ring_init(kws_audio_ring *ring, int16_t *storage, size_t capacity);

// Producer side. Stores all `count` samples, or none (returns false, counts an overrun) when
// they do not fit: a dropped block leaves a gap at a block boundary, never inside one.
bool kws_audio_ring_write(kws_audio_ring *ring, const int16_t *samples, size_t count);

// Consumer side. Copies up to `max_count` of the oldest samples into `out`; returns how many.
size_t kws_audio_ring_read(kws_audio_ring *ring, int16_t *out, size_t max_count);

// Samples waiting for the consumer (exact from the consumer, a lower bound from elsewhere).
size_t kws_audio_ring_available(kws_audio_ring *ring);

uint32_t kws_audio_ring_overruns(kws_audio_ring *ring);
uint32_t kws_audio_ring_dropped_samples(kws_audio_ring *ring);

#endif
