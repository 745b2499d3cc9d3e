// Status codes of the portable core. The serial protocol's ERR record reports them as `code=`
// (firmware/PROTOCOL.md), so values are stable: append new codes, never renumber.
#ifndef KWS_STATUS_H
#define KWS_STATUS_H

typedef enum {
    KWS_OK = 0,
    KWS_ERR_INVALID_ARGUMENT = 1,    // a NULL pointer, a bad size or an out-of-range setting
    KWS_ERR_FFT_INIT = 2,            // kissfft could not be set up in the static state buffer
    KWS_ERR_TIME_WENT_BACKWARDS = 3, // the recognizer got a result older than the previous one
    KWS_ERR_BUFFER_TOO_SMALL = 4,    // a protocol line did not fit the caller's buffer
    // Reported by the board's edge (firmware/src), never returned by the core:
    KWS_ERR_MODEL_SETUP = 5,         // TFLM could not set up the model (schema, missing op, arena)
    KWS_ERR_MODEL_MISMATCH = 6,      // the model's input/output tensors disagree with kws_settings.h
    KWS_ERR_AUDIO = 7,               // the PDM microphone did not start
    KWS_ERR_INFERENCE = 8            // TFLM's Invoke failed
} kws_status;

#endif
