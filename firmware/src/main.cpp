// Always-on keyword spotter for the Arduino Nano 33 BLE Sense: microphone -> ring buffer ->
// streaming MFCC -> int8 window -> TFLM model every KWS_INFERENCE_EVERY_HOPS hops -> recognizer
// -> serial protocol (firmware/PROTOCOL.md) and the built-in LED. Everything but the Arduino and
// TFLM calls is the portable core (lib/kws_core), which the tests run on the host and under QEMU.
#include <Arduino.h>

#include "app_config.h"
#include "audio_provider.h"
#include "audio_ring_buffer.h"
#include "command_recognizer.h"
#include "feature_provider.h"
#include "feature_window.h"
#include "model_runner.h"
#include "serial_protocol.h"

namespace {

int16_t g_ring_storage[KWS_AUDIO_RING_SAMPLES];
kws_audio_ring g_ring;
kws_feature_provider g_features;
kws_feature_window g_window;
kws_recognizer g_recognizer;
char g_line[320];  // the BOOT record is the longest, about 250 characters with 12 labels

// A set-up failure: reported again every KWS_ERROR_REPEAT_MS instead of running.
int g_fatal_code = KWS_OK;
const char *g_fatal_message = nullptr;
uint32_t g_last_error_ms = 0;

uint32_t g_frames_since_inference = 0;
uint32_t g_led_off_ms = 0;
bool g_led_on = false;

struct {
    uint32_t since_ms;
    uint32_t inferences;
    uint32_t inference_total_us;
    uint32_t inference_max_us;
    uint32_t frames;
    uint32_t feature_total_us;
} g_stats;

void send(kws_status formatted)
{
    if (formatted == KWS_OK) {
        Serial.print(g_line);
        Serial.print("\r\n");
    }
}

void send_error(int code, const char *message)
{
    send(kws_format_error(g_line, sizeof(g_line), code, message, nullptr));
}

void fail(int code, const char *message)
{
    g_fatal_code = code;
    g_fatal_message = message;
    g_last_error_ms = millis();
    send_error(code, message);
}

void set_led(bool on)
{
    g_led_on = on;
    digitalWrite(LED_BUILTIN, on ? HIGH : LOW);
}

kws_status setup_core()
{
    if (kws_audio_ring_init(&g_ring, g_ring_storage, KWS_AUDIO_RING_SAMPLES) != KWS_OK) {
        fail(KWS_ERR_INVALID_ARGUMENT, "audio: KWS_AUDIO_RING_SAMPLES must be a power of two");
        return KWS_ERR_INVALID_ARGUMENT;
    }
    kws_status status = kws_feature_provider_init(&g_features);
    if (status != KWS_OK) {
        fail(status, "features: kissfft does not fit KWS_FFT_STATE_BYTES");
        return status;
    }
    kws_feature_window_init(&g_window);
    kws_recognizer_config config = kws_recognizer_default_config();
    status = kws_recognizer_init(&g_recognizer, &config);
    if (status != KWS_OK) {
        fail(status, "recognizer: invalid KWS_AVERAGE_WINDOW_MS/THRESHOLD/MINIMUM_COUNT build flags");
        return status;
    }
    send(kws_format_boot(g_line, sizeof(g_line), &config, nullptr));
    return KWS_OK;
}

// Every sample waiting in the ring becomes features, so the window always ends at the newest audio.
void drain_audio()
{
    int16_t chunk[KWS_HOP_SAMPLES];
    size_t count;
    while ((count = kws_audio_ring_read(&g_ring, chunk, KWS_HOP_SAMPLES)) > 0) {
        for (size_t done = 0; done < count;) {
            float features[KWS_MFCC_COUNT];
            bool ready;
            uint32_t start = micros();
            done += kws_feature_provider_consume(&g_features, chunk + done, count - done, features, &ready);
            if (ready) {
                kws_feature_window_push(&g_window, features);
                g_stats.feature_total_us += micros() - start;
                ++g_stats.frames;
                ++g_frames_since_inference;
            }
        }
    }
}

void infer()
{
    int8_t scores[KWS_LABEL_COUNT];
    uint32_t start = micros();
    bool ok = model_runner_invoke(g_window.data, scores);
    uint32_t elapsed_us = micros() - start;
    g_frames_since_inference = 0;
    if (!ok) {
        send_error(KWS_ERR_INFERENCE, "model: Invoke failed");
        return;
    }
    ++g_stats.inferences;
    g_stats.inference_total_us += elapsed_us;
    if (elapsed_us > g_stats.inference_max_us) {
        g_stats.inference_max_us = elapsed_us;
    }
    uint32_t now = millis();
    kws_recognition result;
    kws_status status = kws_recognizer_process(&g_recognizer, scores, now, &result);
    if (status != KWS_OK) {
        send_error(status, "recognizer: result time went backwards");
        return;
    }
    if (result.detected) {
        send(kws_format_detection(g_line, sizeof(g_line), now, result.label, result.score, elapsed_us, nullptr));
        set_led(true);
        g_led_off_ms = now + KWS_LED_ON_MS;
    }
}

void send_stats(uint32_t now)
{
    uint32_t period_ms = now - g_stats.since_ms;
    kws_stats_record record;
    record.uptime_ms = now;
    record.inferences_per_second = 1000.0f * static_cast<float>(g_stats.inferences) / static_cast<float>(period_ms);
    record.inference_mean_us = g_stats.inferences ? g_stats.inference_total_us / g_stats.inferences : 0;
    record.inference_max_us = g_stats.inference_max_us;
    record.feature_mean_us = g_stats.frames ? g_stats.feature_total_us / g_stats.frames : 0;
    record.audio_overruns = kws_audio_ring_overruns(&g_ring);
    send(kws_format_stats(g_line, sizeof(g_line), &record, nullptr));
    g_stats = {};
    g_stats.since_ms = now;
}

}  // namespace

void setup()
{
    Serial.begin(115200);
    uint32_t start = millis();
    while (!Serial && millis() - start < 3000) {  // wait briefly for a monitor, never forever
    }
    pinMode(LED_BUILTIN, OUTPUT);
    set_led(false);
    Serial.print("kws-mcu keyword spotter, Arduino Nano 33 BLE Sense\r\n");  // not a record: parsers skip it
    if (setup_core() != KWS_OK) {
        return;
    }
    const char *message = nullptr;
    kws_status status = model_runner_begin(&message);
    if (status != KWS_OK) {
        fail(status, message);
        return;
    }
    // The microphone starts last, so no audio piles up in the ring during set-up.
    if (!audio_provider_begin(&g_ring)) {
        fail(KWS_ERR_AUDIO, "audio: PDM.begin(1, 16000) failed; is this a Nano 33 BLE Sense?");
        return;
    }
    g_stats.since_ms = millis();
}

void loop()
{
    uint32_t now = millis();
    if (g_fatal_message != nullptr) {
        if (now - g_last_error_ms >= KWS_ERROR_REPEAT_MS) {
            g_last_error_ms = now;
            send_error(g_fatal_code, g_fatal_message);
            set_led(!g_led_on);  // a slow blink says "not running" without a serial monitor
        }
        return;
    }
    drain_audio();
    if (kws_feature_window_full(&g_window) && g_frames_since_inference >= KWS_INFERENCE_EVERY_HOPS) {
        infer();
    }
    now = millis();
    if (g_led_on && static_cast<int32_t>(now - g_led_off_ms) >= 0) {
        set_led(false);
    }
    if (now - g_stats.since_ms >= KWS_STAT_PERIOD_MS) {
        send_stats(now);
    }
}
