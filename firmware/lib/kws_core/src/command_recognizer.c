#include "command_recognizer.h"

#include <string.h>

static const bool kIsKeyword[KWS_LABEL_COUNT] = KWS_KEYWORD_MASK;

kws_recognizer_config kws_recognizer_default_config(void)
{
    kws_recognizer_config config = {
        .average_window_ms = KWS_AVERAGE_WINDOW_MS,
        .detection_threshold = KWS_DETECTION_THRESHOLD,
        .suppression_ms = KWS_SUPPRESSION_MS,
        .minimum_count = KWS_MINIMUM_COUNT,
    };
    return config;
}

kws_status kws_recognizer_init(kws_recognizer *recognizer, const kws_recognizer_config *config)
{
    if (recognizer == NULL || config == NULL || config->average_window_ms == 0 ||
        !(config->detection_threshold > 0.0f && config->detection_threshold <= 1.0f) ||
        config->minimum_count == 0 || config->minimum_count > KWS_RECOGNIZER_CAPACITY) {
        return KWS_ERR_INVALID_ARGUMENT;
    }
    memset(recognizer, 0, sizeof(*recognizer));
    recognizer->config = *config;
    return KWS_OK;
}

static const kws_recognizer_entry *entry_at(const kws_recognizer *recognizer, uint32_t i)
{
    return &recognizer->history[(recognizer->oldest + i) % KWS_RECOGNIZER_CAPACITY];
}

static void append(kws_recognizer *recognizer, const int8_t scores[KWS_LABEL_COUNT], uint32_t time_ms)
{
    if (recognizer->count == KWS_RECOGNIZER_CAPACITY) {
        recognizer->oldest = (recognizer->oldest + 1) % KWS_RECOGNIZER_CAPACITY;
        --recognizer->count;
    }
    kws_recognizer_entry *entry =
        &recognizer->history[(recognizer->oldest + recognizer->count) % KWS_RECOGNIZER_CAPACITY];
    entry->time_ms = time_ms;
    memcpy(entry->scores, scores, sizeof(entry->scores));
    ++recognizer->count;
}

kws_status kws_recognizer_process(kws_recognizer *recognizer, const int8_t scores[KWS_LABEL_COUNT],
                                  uint32_t time_ms, kws_recognition *result)
{
    result->detected = false;
    result->label = -1;
    result->score = 0.0f;
    if (recognizer->count > 0 &&
        (int32_t)(time_ms - entry_at(recognizer, recognizer->count - 1)->time_ms) < 0) {
        recognizer->count = 0;
        recognizer->has_detection = false;
        return KWS_ERR_TIME_WENT_BACKWARDS;
    }
    append(recognizer, scores, time_ms);
    while (time_ms - entry_at(recognizer, 0)->time_ms > recognizer->config.average_window_ms) {
        recognizer->oldest = (recognizer->oldest + 1) % KWS_RECOGNIZER_CAPACITY;
        --recognizer->count;
    }
    if (recognizer->count < recognizer->config.minimum_count) {
        return KWS_OK;
    }
    int32_t best_sum = 0;
    for (int label = 0; label < KWS_LABEL_COUNT; ++label) {
        if (!kIsKeyword[label]) {
            continue;
        }
        int32_t sum = 0;
        for (uint32_t i = 0; i < recognizer->count; ++i) {
            sum += entry_at(recognizer, i)->scores[label];
        }
        if (result->label < 0 || sum > best_sum) {
            best_sum = sum;
            result->label = label;
        }
    }
    // Integer sums are exact; the average is then formed in float32 in a fixed order, which the
    // Python reference (tests/test_firmware_recognizer.py) repeats bit for bit.
    float mean = (float)best_sum / (float)recognizer->count;
    result->score = (mean - (float)KWS_OUTPUT_ZERO_POINT) * KWS_OUTPUT_SCALE;
    bool suppressed = recognizer->has_detection &&
                      time_ms - recognizer->last_detection_ms < recognizer->config.suppression_ms;
    if (!suppressed && result->score >= recognizer->config.detection_threshold) {
        result->detected = true;
        recognizer->has_detection = true;
        recognizer->last_detection_ms = time_ms;
    }
    return KWS_OK;
}
