#include "feature_provider.h"

#include <math.h>
#include <string.h>

#include "kws_feature_tables.h"

// librosa pads a shorter window to the FFT size, centred; these tables have no such padding.
#if KWS_FFT_SIZE != KWS_WINDOW_SAMPLES
#error "the feature provider computes one window per FFT: KWS_FFT_SIZE must equal KWS_WINDOW_SAMPLES"
#endif
#if KWS_HOP_SAMPLES > KWS_WINDOW_SAMPLES || KWS_FFT_BINS != KWS_FFT_SIZE / 2 + 1
#error "inconsistent feature geometry in kws_settings.h"
#endif

kws_status kws_feature_provider_init(kws_feature_provider *provider)
{
    if (provider == NULL) {
        return KWS_ERR_INVALID_ARGUMENT;
    }
    provider->filled = 0;
    size_t length = sizeof(provider->fft_state.bytes);
    provider->fft = kiss_fftr_alloc(KWS_FFT_SIZE, 0, provider->fft_state.bytes, &length);
    return provider->fft != NULL ? KWS_OK : KWS_ERR_FFT_INIT;
}

// One frame of the window: scale, window, |rfft|^2, sparse mel, log floor, DCT.
static void compute_frame(kws_feature_provider *provider, float features[KWS_MFCC_COUNT])
{
    for (int i = 0; i < KWS_WINDOW_SAMPLES; ++i) {
        // int16 / 32768 is exact in float, as training.data.to_float.
        provider->frame[i] = ((float)provider->window[i] / 32768.0f) * kKwsWindow[i];
    }
    kiss_fftr(provider->fft, provider->frame, provider->spectrum);
    float *power = provider->frame;  // the windowed samples are no longer needed
    for (int k = 0; k < KWS_FFT_BINS; ++k) {
        power[k] = provider->spectrum[k].r * provider->spectrum[k].r +
                   provider->spectrum[k].i * provider->spectrum[k].i;
    }
    float log_mel[KWS_MEL_BANDS];
    for (int band = 0; band < KWS_MEL_BANDS; ++band) {
        const float *weights = &kKwsMelWeights[kKwsMelOffset[band]];
        const float *bins = &power[kKwsMelStart[band]];
        float energy = 0.0f;
        for (int i = 0; i < kKwsMelLength[band]; ++i) {
            energy += weights[i] * bins[i];
        }
        // Absolute floor, as librosa.power_to_db(ref=1, amin=log_floor, top_db=None).
        log_mel[band] = 10.0f * log10f(energy > KWS_LOG_FLOOR ? energy : KWS_LOG_FLOOR);
    }
    for (int c = 0; c < KWS_MFCC_COUNT; ++c) {
        const float *row = &kKwsDct[c * KWS_MEL_BANDS];
        float sum = 0.0f;
        for (int band = 0; band < KWS_MEL_BANDS; ++band) {
            sum += row[band] * log_mel[band];
        }
        features[c] = sum;
    }
}

size_t kws_feature_provider_consume(kws_feature_provider *provider, const int16_t *samples,
                                    size_t count, float features[KWS_MFCC_COUNT],
                                    bool *frame_ready)
{
    size_t wanted = KWS_WINDOW_SAMPLES - provider->filled;
    size_t taken = count < wanted ? count : wanted;
    memcpy(&provider->window[provider->filled], samples, taken * sizeof(int16_t));
    provider->filled += taken;
    *frame_ready = provider->filled == KWS_WINDOW_SAMPLES;
    if (*frame_ready) {
        compute_frame(provider, features);
        // Keep the overlap: the next frame starts one hop later.
        memmove(provider->window, &provider->window[KWS_HOP_SAMPLES],
                (KWS_WINDOW_SAMPLES - KWS_HOP_SAMPLES) * sizeof(int16_t));
        provider->filled = KWS_WINDOW_SAMPLES - KWS_HOP_SAMPLES;
    }
    return taken;
}
