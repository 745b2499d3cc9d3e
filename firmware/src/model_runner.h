// Edge: the exported int8 model under TensorFlow Lite Micro.
#pragma once

#include <stdint.h>

#include "kws_settings.h"
#include "kws_status.h"

// Sets up the interpreter and checks the model's tensors against kws_settings.h. On failure
// returns KWS_ERR_MODEL_SETUP or KWS_ERR_MODEL_MISMATCH and points *message at why.
kws_status model_runner_begin(const char **message);

// One inference on KWS_FRAME_COUNT x KWS_MFCC_COUNT int8 features; false when Invoke fails.
bool model_runner_invoke(const int8_t *features, int8_t scores[KWS_LABEL_COUNT]);
