// Streaming MFCC feature provider: one KWS_MFCC_COUNT frame per KWS_HOP_SAMPLES new samples,
// once KWS_WINDOW_SAMPLES are buffered, computing what training/features.py `mfcc` computes
// from the generated tables (kws_feature_tables.h) with kissfft's real FFT.
#ifndef KWS_FEATURE_PROVIDER_H
#define KWS_FEATURE_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiss_fftr.h"
#include "kws_settings.h"
#include "kws_status.h"

#ifdef __cplusplus
extern "C" {  // the Arduino edge is C++
#endif

// Bytes kiss_fftr_alloc needs for a KWS_FFT_SIZE real FFT, with margin: its state header and
// factor table (well under 512 bytes) plus KWS_FFT_SIZE * 5/4 complex values (twiddles of the
// half-size complex FFT, its scratch buffer and the real-FFT twiddles). Init checks the real
// figure and fails with KWS_ERR_FFT_INIT, never overruns, if this is ever too small.
#define KWS_FFT_STATE_BYTES (512 + sizeof(kiss_fft_cpx) * (KWS_FFT_SIZE * 5 / 4))

typedef struct {
    int16_t window[KWS_WINDOW_SAMPLES];  // the newest samples, oldest first
    size_t filled;                       // valid samples in `window`
    kiss_fftr_cfg fft;
    union {  // kissfft's state lives here, not on the heap; the union aligns it
        double align;
        unsigned char bytes[KWS_FFT_STATE_BYTES];
    } fft_state;
    float frame[KWS_FFT_SIZE];            // windowed samples, then reused for the power spectrum
    kiss_fft_cpx spectrum[KWS_FFT_BINS];
} kws_feature_provider;

kws_status kws_feature_provider_init(kws_feature_provider *provider);

// Takes samples from `samples` until a frame is complete or `count` is used up; returns how
// many it took. When a frame is complete it is written to `features` and *frame_ready is set
// (else cleared). Call again with the rest: a chunk can hold several hops.
size_t kws_feature_provider_consume(kws_feature_provider *provider, const int16_t *samples,
                                    size_t count, float features[KWS_MFCC_COUNT],
                                    bool *frame_ready);

#ifdef __cplusplus
}
#endif

#endif
