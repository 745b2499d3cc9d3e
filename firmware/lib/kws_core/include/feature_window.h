// int8 quantization of feature frames into the model's input window: KWS_FRAME_COUNT frames of
// KWS_MFCC_COUNT values, oldest frame first, as the model was trained on one-second clips.
#ifndef KWS_FEATURE_WINDOW_H
#define KWS_FEATURE_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#include "kws_settings.h"

#ifdef __cplusplus
extern "C" {  // the Arduino edge is C++
#endif

#define KWS_FEATURE_WINDOW_SIZE (KWS_FRAME_COUNT * KWS_MFCC_COUNT)

typedef struct {
    int8_t data[KWS_FEATURE_WINDOW_SIZE];
    uint32_t frames;  // frames pushed so far, saturating at KWS_FRAME_COUNT
} kws_feature_window;

// One feature to the model's int8 input, bit-equal to training.features.quantize.
int8_t kws_quantize_feature(float value);

void kws_feature_window_init(kws_feature_window *window);

// Drops the oldest frame and appends `features`, quantized, as the newest.
void kws_feature_window_push(kws_feature_window *window, const float features[KWS_MFCC_COUNT]);

// True once KWS_FRAME_COUNT frames have been pushed: before that the window is not one second.
bool kws_feature_window_full(const kws_feature_window *window);

#ifdef __cplusplus
}
#endif

#endif
