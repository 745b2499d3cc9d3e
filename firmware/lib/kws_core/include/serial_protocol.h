// Serial protocol formatter: one record per line, versioned, plain ASCII (firmware/PROTOCOL.md;
// host_tools/protocol.py parses it). Every formatter writes a complete line, without the line
// terminator (the transport appends "\r\n"), into the caller's buffer and never past `size`:
// when the line does not fit it writes "" and returns KWS_ERR_BUFFER_TOO_SMALL, so a cut-off
// record is never sent.
#ifndef KWS_SERIAL_PROTOCOL_H
#define KWS_SERIAL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "command_recognizer.h"
#include "kws_status.h"

#ifdef __cplusplus
extern "C" {  // the Arduino edge is C++
#endif

#define KWS_PROTOCOL_VERSION 2

typedef struct {
    uint32_t uptime_ms;
    float inferences_per_second;
    uint32_t inference_mean_us;
    uint32_t inference_max_us;
    uint32_t feature_mean_us;  // one feature frame: FFT, mel, log, DCT and quantization
    uint32_t audio_overruns;   // kws_audio_ring_overruns
} kws_stats_record;

// On success each returns KWS_OK and stores the line's length in *length (may be NULL).

// What BOOT reports besides the exported constants: the settings in use, which a build flag or the
// application may have changed from the exported defaults.
typedef struct {
    const kws_recognizer_config *recognizer;
    uint32_t inference_every_hops;
    uint32_t microphone_gain;
} kws_boot_settings;

// Protocol version, model and manifest hashes, labels, feature settings, quantization, and the
// recognizer, cadence and microphone settings in use.
kws_status kws_format_boot(char *buf, size_t size, const kws_boot_settings *settings, size_t *length);

kws_status kws_format_detection(char *buf, size_t size, uint32_t time_ms, int label, float score,
                                uint32_t inference_us, size_t *length);

kws_status kws_format_stats(char *buf, size_t size, const kws_stats_record *stats, size_t *length);

// `message` is free text; characters outside printable ASCII become '?'.
kws_status kws_format_error(char *buf, size_t size, int code, const char *message, size_t *length);

#ifdef __cplusplus
}
#endif

#endif
