// Command recognizer: turns the int8 scores of successive inferences into detections, by the
// rules of TFLM micro_speech's RecognizeCommands, made precise:
//  * a result at time t is in the window at time `now` while now - t <= average_window_ms;
//  * no decision until the window holds at least minimum_count results;
//  * the keyword (a label marked in KWS_KEYWORD_MASK) with the highest average probability
//    (ties: the lower label index) is detected when that average >= detection_threshold;
//  * after a detection at time T nothing is detected while now - T < suppression_ms;
//  * timestamps must not decrease (equal is fine); one that does is rejected with
//    KWS_ERR_TIME_WENT_BACKWARDS and the history and suppression are cleared, because averages
//    over a broken time base mean nothing. Time is uint32 milliseconds compared by modular
//    difference, so the wrap after 49.7 days is not mistaken for going backwards.
// The history holds at most KWS_RECOGNIZER_CAPACITY results; beyond that the oldest go first.
#ifndef KWS_COMMAND_RECOGNIZER_H
#define KWS_COMMAND_RECOGNIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "kws_settings.h"
#include "kws_status.h"

#ifdef __cplusplus
extern "C" {  // the Arduino edge is C++
#endif

#define KWS_RECOGNIZER_CAPACITY 64

typedef struct {
    uint32_t average_window_ms;  // > 0
    float detection_threshold;   // average probability, in (0, 1]
    uint32_t suppression_ms;
    uint32_t minimum_count;      // 1 .. KWS_RECOGNIZER_CAPACITY
} kws_recognizer_config;

typedef struct {
    bool detected;  // a new detection of `label`
    int label;      // the best keyword, or -1 before minimum_count results are in the window
    float score;    // its average probability (0 when label is -1)
} kws_recognition;

typedef struct {
    uint32_t time_ms;
    int8_t scores[KWS_LABEL_COUNT];
} kws_recognizer_entry;

typedef struct {
    kws_recognizer_config config;
    kws_recognizer_entry history[KWS_RECOGNIZER_CAPACITY];  // circular, oldest at `oldest`
    uint32_t oldest;
    uint32_t count;
    bool has_detection;
    uint32_t last_detection_ms;
} kws_recognizer;

// The defaults exported from training/config.py DetectionConfig (kws_settings.h).
kws_recognizer_config kws_recognizer_default_config(void);

kws_status kws_recognizer_init(kws_recognizer *recognizer, const kws_recognizer_config *config);

// Adds one inference's output scores (int8, quantized with KWS_OUTPUT_SCALE/ZERO_POINT).
kws_status kws_recognizer_process(kws_recognizer *recognizer, const int8_t scores[KWS_LABEL_COUNT],
                                  uint32_t time_ms, kws_recognition *result);

#ifdef __cplusplus
}
#endif

#endif
