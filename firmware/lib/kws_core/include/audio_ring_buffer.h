// Lock-free single-producer / single-consumer ring buffer of int16 audio samples.
//
// Producer: the PDM interrupt callback (kws_audio_ring_write). Consumer: the main loop
// (kws_audio_ring_read). Neither ever blocks: when a whole block does not fit, the producer
// drops it and counts an overrun, so a slow main loop loses audio but never stalls the
// microphone interrupt.
#ifndef KWS_AUDIO_RING_BUFFER_H
#define KWS_AUDIO_RING_BUFFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kws_status.h"

// The C++ edge (the PDM callback) includes this header too: C++ before C++23 has no <stdatomic.h>,
// and GCC gives std::atomic<uint_least32_t> the layout of C's atomic_uint_least32_t (both lock-free
// 32-bit words), so both languages agree on sizeof(kws_audio_ring). The edge only passes pointers.
#ifdef __cplusplus
#include <atomic>
typedef std::atomic<uint_least32_t> kws_atomic_u32;
#else
#include <stdatomic.h>
typedef atomic_uint_least32_t kws_atomic_u32;
#endif

#ifdef __cplusplus
extern "C" {  // the Arduino edge is C++
#endif

typedef struct {
    int16_t *samples;  // caller's storage, `capacity` samples
    uint32_t mask;     // capacity - 1 (capacity is a power of two)
    // Free-running indices: fill = write_index - read_index (mod 2^32), so all `capacity`
    // slots are usable and "full" and "empty" are never confused.
    kws_atomic_u32 write_index;      // written by the producer only
    kws_atomic_u32 read_index;       // written by the consumer only
    kws_atomic_u32 overruns;         // blocks dropped; written by the producer only
    kws_atomic_u32 dropped_samples;  // samples in those blocks
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

#ifdef __cplusplus
}
#endif

#endif
