// The device's processing loop, portable: audio ring buffer -> streaming MFCC -> int8 window ->
// the model every `inference_every_hops` hops once the window holds a second -> command recognizer
// -> protocol lines (BOOT, DET, STAT every `stat_period_ms`, ERR). What is not portable is the
// caller's, given as callbacks: the model invocation, the clocks and the line output. The board
// (firmware/src/main.cpp) gives TFLM, millis()/micros() and Serial; the host simulator
// (host_tools/simulate.py) gives TFLM's Python runtime, the audio's sample time and a file or pty,
// so both run this very code.
#ifndef KWS_PIPELINE_H
#define KWS_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audio_ring_buffer.h"
#include "command_recognizer.h"
#include "feature_provider.h"
#include "feature_window.h"
#include "kws_status.h"

#ifdef __cplusplus
extern "C" {  // the Arduino edge is C++
#endif

// The BOOT record is the longest line: about 280 characters and the labels.
#define KWS_PIPELINE_LINE_BYTES (320 + KWS_LABELS_TEXT_BYTES)

typedef struct {
    // One inference on `feature_count` (KWS_FEATURE_WINDOW_SIZE) int8 features into `score_count`
    // (KWS_LABEL_COUNT) int8 scores; false when it failed or the sizes are not the model's (reported
    // as ERR code=8, and the loop goes on). The sizes are passed so no callee trusts an unchecked one.
    bool (*invoke)(void *context, const int8_t *features, size_t feature_count, int8_t *scores,
                   size_t score_count);
    uint32_t (*now_ms)(void *context);  // device time: DET t=, STAT up_ms and period, recognizer
    uint32_t (*now_us)(void *context);  // for durations only (modular differences)
    void (*send)(void *context, const char *line);  // one complete record, without "\r\n"
    void *context;                      // passed to every callback
} kws_pipeline_platform;

typedef struct {
    kws_recognizer_config recognizer;
    uint32_t inference_every_hops;  // >= 1
    uint32_t stat_period_ms;        // >= 1
    uint32_t microphone_gain;       // reported in BOOT; the audio source applies it
} kws_pipeline_config;

// Sums since the last STAT record.
typedef struct {
    uint32_t since_ms;
    uint32_t inferences;
    uint32_t inference_total_us;
    uint32_t inference_max_us;
    uint32_t frames;
    uint32_t feature_total_us;
} kws_pipeline_stats;

typedef struct {
    kws_pipeline_platform platform;
    kws_pipeline_config config;
    kws_audio_ring ring;  // the microphone writes here (kws_audio_ring_write)
    kws_feature_provider features;
    kws_feature_window window;
    kws_recognizer recognizer;
    kws_pipeline_stats stats;
    uint32_t frames_since_inference;
    char line[KWS_PIPELINE_LINE_BYTES];
} kws_pipeline;

// Sets up every stage (the ring in the caller's `ring_storage` of `ring_capacity` samples, a power
// of two) and sends the BOOT record. On failure returns the status and points *message at why;
// kws_pipeline_send_error can still report it (the platform is stored first).
kws_status kws_pipeline_init(kws_pipeline *pipeline, int16_t *ring_storage, size_t ring_capacity,
                             const kws_pipeline_config *config, const kws_pipeline_platform *platform,
                             const char **message);

// One pass of the loop: every sample waiting in the ring becomes features (so the window always
// ends at the newest audio); then one inference when the window is full and at least
// inference_every_hops frames came since the last; then a STAT record when stat_period_ms have
// passed. Returns true when it sent a detection.
bool kws_pipeline_step(kws_pipeline *pipeline);

// A STAT record now, for the time since the last one (nothing when no time has passed): what a
// stream that ends sends last, so a reader's device time reaches its end (the host simulator).
void kws_pipeline_send_stats(kws_pipeline *pipeline);

void kws_pipeline_send_error(kws_pipeline *pipeline, int code, const char *message);

#ifdef __cplusplus
}
#endif

#endif
