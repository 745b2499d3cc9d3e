#include "feature_window.h"

#include <math.h>
#include <string.h>

int8_t kws_quantize_feature(float value)
{
    // float32 throughout, dividing by the scale (not multiplying by its inverse) and rounding
    // with floor(x + 0.5): the same operations, in the same order, as the Python side.
    float steps = floorf(value / KWS_INPUT_SCALE + 0.5f) + (float)KWS_INPUT_ZERO_POINT;
    if (!(steps >= -128.0f)) {  // also catches NaN, whose conversion to int would be undefined
        return -128;
    }
    if (steps > 127.0f) {
        return 127;
    }
    return (int8_t)steps;
}

void kws_feature_window_init(kws_feature_window *window)
{
    memset(window->data, 0, sizeof(window->data));
    window->frames = 0;
}

void kws_feature_window_push(kws_feature_window *window, const float features[KWS_MFCC_COUNT])
{
    // Shifting 490 bytes every 20 ms costs less than indexing a circular window at every
    // inference, and leaves `data` ready to copy into the model's input tensor as it is.
    memmove(window->data, &window->data[KWS_MFCC_COUNT],
            (KWS_FEATURE_WINDOW_SIZE - KWS_MFCC_COUNT) * sizeof(int8_t));
    int8_t *newest = &window->data[KWS_FEATURE_WINDOW_SIZE - KWS_MFCC_COUNT];
    for (int i = 0; i < KWS_MFCC_COUNT; ++i) {
        newest[i] = kws_quantize_feature(features[i]);
    }
    if (window->frames < KWS_FRAME_COUNT) {
        ++window->frames;
    }
}

bool kws_feature_window_full(const kws_feature_window *window)
{
    return window->frames >= KWS_FRAME_COUNT;
}
