#include "kws_pipeline.h"

#include <string.h>

#include "serial_protocol.h"

static void send_if_formatted(kws_pipeline *pipeline, kws_status formatted)
{
    if (formatted == KWS_OK) {  // a line that did not fit is never sent cut off
        pipeline->platform.send(pipeline->platform.context, pipeline->line);
    }
}

void kws_pipeline_send_error(kws_pipeline *pipeline, int code, const char *message)
{
    send_if_formatted(pipeline, kws_format_error(pipeline->line, sizeof(pipeline->line), code, message, NULL));
}

static kws_status init_failed(const char **message, const char *why, kws_status status)
{
    *message = why;
    return status;
}

kws_status kws_pipeline_init(kws_pipeline *pipeline, int16_t *ring_storage, size_t ring_capacity,
                             const kws_pipeline_config *config, const kws_pipeline_platform *platform,
                             const char **message)
{
    if (pipeline == NULL || platform == NULL || message == NULL) {
        return KWS_ERR_INVALID_ARGUMENT;
    }
    memset(pipeline, 0, sizeof(*pipeline));
    pipeline->platform = *platform;
    if (config == NULL || config->inference_every_hops == 0 || config->stat_period_ms == 0) {
        return init_failed(message, "pipeline: KWS_INFERENCE_EVERY_HOPS and KWS_STAT_PERIOD_MS must be >= 1",
                           KWS_ERR_INVALID_ARGUMENT);
    }
    pipeline->config = *config;
    if (kws_audio_ring_init(&pipeline->ring, ring_storage, ring_capacity) != KWS_OK) {
        return init_failed(message, "audio: KWS_AUDIO_RING_SAMPLES must be a power of two", KWS_ERR_INVALID_ARGUMENT);
    }
    kws_status status = kws_feature_provider_init(&pipeline->features);
    if (status != KWS_OK) {
        return init_failed(message, "features: kissfft does not fit KWS_FFT_STATE_BYTES", status);
    }
    kws_feature_window_init(&pipeline->window);
    status = kws_recognizer_init(&pipeline->recognizer, &config->recognizer);
    if (status != KWS_OK) {
        return init_failed(message, "recognizer: invalid KWS_AVERAGE_WINDOW_MS/THRESHOLD/MINIMUM_COUNT build flags",
                           status);
    }
    pipeline->stats.since_ms = platform->now_ms(platform->context);
    const kws_boot_settings boot = {&config->recognizer, config->inference_every_hops, config->microphone_gain};
    send_if_formatted(pipeline, kws_format_boot(pipeline->line, sizeof(pipeline->line), &boot, NULL));
    return KWS_OK;
}

static uint32_t now_us(const kws_pipeline *pipeline)
{
    return pipeline->platform.now_us(pipeline->platform.context);
}

static void drain_audio(kws_pipeline *pipeline)
{
    int16_t chunk[KWS_HOP_SAMPLES];
    size_t count;
    while ((count = kws_audio_ring_read(&pipeline->ring, chunk, KWS_HOP_SAMPLES)) > 0) {
        for (size_t done = 0; done < count;) {
            float features[KWS_MFCC_COUNT];
            bool ready;
            uint32_t start = now_us(pipeline);
            done += kws_feature_provider_consume(&pipeline->features, chunk + done, count - done, features, &ready);
            if (ready) {
                kws_feature_window_push(&pipeline->window, features);
                pipeline->stats.feature_total_us += now_us(pipeline) - start;
                ++pipeline->stats.frames;
                ++pipeline->frames_since_inference;
            }
        }
    }
}

static bool infer(kws_pipeline *pipeline)
{
    int8_t scores[KWS_LABEL_COUNT];
    const kws_pipeline_platform *platform = &pipeline->platform;
    uint32_t start = now_us(pipeline);
    bool ok = platform->invoke(platform->context, pipeline->window.data, sizeof(pipeline->window.data), scores,
                               sizeof(scores));
    uint32_t elapsed_us = now_us(pipeline) - start;
    pipeline->frames_since_inference = 0;
    if (!ok) {
        kws_pipeline_send_error(pipeline, KWS_ERR_INFERENCE, "model: Invoke failed");
        return false;
    }
    kws_pipeline_stats *stats = &pipeline->stats;
    ++stats->inferences;
    stats->inference_total_us += elapsed_us;
    if (elapsed_us > stats->inference_max_us) {
        stats->inference_max_us = elapsed_us;
    }
    uint32_t now = platform->now_ms(platform->context);
    kws_recognition result;
    kws_status status = kws_recognizer_process(&pipeline->recognizer, scores, now, &result);
    if (status != KWS_OK) {
        kws_pipeline_send_error(pipeline, status, "recognizer: result time went backwards");
        return false;
    }
    if (result.detected) {
        send_if_formatted(pipeline, kws_format_detection(pipeline->line, sizeof(pipeline->line), now, result.label,
                                                         result.score, elapsed_us, NULL));
    }
    return result.detected;
}

static void send_stats(kws_pipeline *pipeline, uint32_t now)
{
    const kws_pipeline_stats *stats = &pipeline->stats;
    uint32_t period_ms = now - stats->since_ms;
    kws_stats_record record = {
        .uptime_ms = now,
        .inferences_per_second = 1000.0f * (float)stats->inferences / (float)period_ms,
        .inference_mean_us = stats->inferences ? stats->inference_total_us / stats->inferences : 0,
        .inference_max_us = stats->inference_max_us,
        .feature_mean_us = stats->frames ? stats->feature_total_us / stats->frames : 0,
        .audio_overruns = kws_audio_ring_overruns(&pipeline->ring),
    };
    send_if_formatted(pipeline, kws_format_stats(pipeline->line, sizeof(pipeline->line), &record, NULL));
    memset(&pipeline->stats, 0, sizeof(pipeline->stats));
    pipeline->stats.since_ms = now;
}

bool kws_pipeline_step(kws_pipeline *pipeline)
{
    drain_audio(pipeline);
    bool detected = false;
    if (kws_feature_window_full(&pipeline->window) &&
        pipeline->frames_since_inference >= pipeline->config.inference_every_hops) {
        detected = infer(pipeline);
    }
    uint32_t now = pipeline->platform.now_ms(pipeline->platform.context);
    if (now - pipeline->stats.since_ms >= pipeline->config.stat_period_ms) {
        send_stats(pipeline, now);
    }
    return detected;
}

void kws_pipeline_send_stats(kws_pipeline *pipeline)
{
    uint32_t now = pipeline->platform.now_ms(pipeline->platform.context);
    if (now != pipeline->stats.since_ms) {  // an empty period has no rate: the last STAT already said it
        send_stats(pipeline, now);
    }
}
