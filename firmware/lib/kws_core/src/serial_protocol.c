#include "serial_protocol.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static const char *const kLabels[KWS_LABEL_COUNT] = KWS_LABELS;

// A line under construction in the caller's buffer; appending stops at the first overflow.
typedef struct {
    char *buf;
    size_t size;
    size_t length;
    bool overflow;
} line_writer;

static void line_append(line_writer *line, const char *format, ...)
{
    if (line->overflow) {
        return;
    }
    size_t room = line->size - line->length;
    va_list args;
    va_start(args, format);
    int written = vsnprintf(line->buf + line->length, room, format, args);
    va_end(args);
    if (written < 0 || (size_t)written >= room) {
        line->overflow = true;
        return;
    }
    line->length += (size_t)written;
}

static kws_status line_start(line_writer *line, char *buf, size_t size, const char *type)
{
    if (buf == NULL || size == 0) {
        return KWS_ERR_INVALID_ARGUMENT;
    }
    *line = (line_writer){.buf = buf, .size = size, .length = 0, .overflow = false};
    line_append(line, "KWS%d %s", KWS_PROTOCOL_VERSION, type);
    return KWS_OK;
}

static kws_status line_finish(line_writer *line, size_t *length)
{
    if (line->overflow) {
        line->buf[0] = '\0';
        return KWS_ERR_BUFFER_TOO_SMALL;
    }
    if (length != NULL) {
        *length = line->length;
    }
    return KWS_OK;
}

// Labels are values in `key=value` and items of a comma list. Their characters ([A-Za-z0-9_'-] and
// single spaces, training/config.py check_label) keep every line splittable on ' ', '=' and ','
// once a space is sent as '+' ("hey nano" -> hey+nano).
static bool append_label(line_writer *line, const char *label)
{
    if (*label == '\0') {
        return false;
    }
    for (; *label != '\0'; ++label) {
        char c = *label;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '\'' || c == ' ')) {
            return false;
        }
        line_append(line, "%c", c == ' ' ? '+' : c);
    }
    return true;
}

kws_status kws_format_boot(char *buf, size_t size, const kws_boot_settings *settings, size_t *length)
{
    line_writer line;
    if (settings == NULL || settings->recognizer == NULL || line_start(&line, buf, size, "BOOT") != KWS_OK) {
        return KWS_ERR_INVALID_ARGUMENT;
    }
    line_append(&line, " proto=%d model=%.16s manifest=%.16s labels=", KWS_PROTOCOL_VERSION, KWS_MODEL_SHA256,
                KWS_MANIFEST_SHA256);
    for (int i = 0; i < KWS_LABEL_COUNT; ++i) {
        if (i > 0) {
            line_append(&line, ",");
        }
        if (!append_label(&line, kLabels[i])) {
            buf[0] = '\0';
            return KWS_ERR_INVALID_ARGUMENT;
        }
    }
    line_append(&line, " rate=%d window=%d hop=%d fft=%d mels=%d mfcc=%d frames=%d",
                KWS_SAMPLE_RATE, KWS_WINDOW_SAMPLES, KWS_HOP_SAMPLES, KWS_FFT_SIZE,
                KWS_MEL_BANDS, KWS_MFCC_COUNT, KWS_FRAME_COUNT);
    line_append(&line, " in_scale=%.9g in_zp=%d out_scale=%.9g out_zp=%d",
                (double)KWS_INPUT_SCALE, KWS_INPUT_ZERO_POINT, (double)KWS_OUTPUT_SCALE,
                KWS_OUTPUT_ZERO_POINT);
    const kws_recognizer_config *config = settings->recognizer;
    line_append(&line, " avg_ms=%lu threshold=%.9g suppress_ms=%lu min_count=%lu every=%lu gain=%lu",
                (unsigned long)config->average_window_ms, (double)config->detection_threshold,
                (unsigned long)config->suppression_ms, (unsigned long)config->minimum_count,
                (unsigned long)settings->inference_every_hops, (unsigned long)settings->microphone_gain);
    return line_finish(&line, length);
}

kws_status kws_format_detection(char *buf, size_t size, uint32_t time_ms, int label, float score,
                                uint32_t inference_us, size_t *length)
{
    line_writer line;
    if (label < 0 || label >= KWS_LABEL_COUNT || line_start(&line, buf, size, "DET") != KWS_OK) {
        return KWS_ERR_INVALID_ARGUMENT;
    }
    line_append(&line, " t=%lu label=", (unsigned long)time_ms);
    if (!append_label(&line, kLabels[label])) {
        buf[0] = '\0';
        return KWS_ERR_INVALID_ARGUMENT;
    }
    line_append(&line, " score=%.3f us=%lu", (double)score, (unsigned long)inference_us);
    return line_finish(&line, length);
}

kws_status kws_format_stats(char *buf, size_t size, const kws_stats_record *stats, size_t *length)
{
    line_writer line;
    if (stats == NULL || line_start(&line, buf, size, "STAT") != KWS_OK) {
        return KWS_ERR_INVALID_ARGUMENT;
    }
    line_append(&line, " up_ms=%lu ips=%.2f inf_mean_us=%lu inf_max_us=%lu feat_mean_us=%lu overruns=%lu",
                (unsigned long)stats->uptime_ms, (double)stats->inferences_per_second,
                (unsigned long)stats->inference_mean_us, (unsigned long)stats->inference_max_us,
                (unsigned long)stats->feature_mean_us, (unsigned long)stats->audio_overruns);
    return line_finish(&line, length);
}

kws_status kws_format_error(char *buf, size_t size, int code, const char *message, size_t *length)
{
    line_writer line;
    if (message == NULL || line_start(&line, buf, size, "ERR") != KWS_OK) {
        return KWS_ERR_INVALID_ARGUMENT;
    }
    // msg is the last field and runs to the end of the line, so it may contain spaces and '='.
    line_append(&line, " code=%d msg=", code);
    for (; *message != '\0'; ++message) {
        char c = *message;
        line_append(&line, "%c", (c >= ' ' && c <= '~') ? c : '?');
    }
    return line_finish(&line, length);
}
