// Always-on keyword spotter for the Arduino Nano 33 BLE Sense: microphone -> ring buffer ->
// streaming MFCC -> int8 window -> TFLM model every KWS_INFERENCE_EVERY_HOPS hops -> recognizer
// -> serial protocol (firmware/PROTOCOL.md) and the built-in LED. The loop itself is the portable
// core's kws_pipeline (lib/kws_core), which the tests and host_tools/simulate.py run on the host;
// this file only gives it the Arduino and TFLM calls.
#include <Arduino.h>

#include "audio_provider.h"
#include "kws_pipeline.h"
#include "model_runner.h"

namespace {

int16_t g_ring_storage[KWS_AUDIO_RING_SAMPLES];
kws_pipeline g_pipeline;

// A set-up failure: reported again every KWS_ERROR_REPEAT_MS instead of running.
int g_fatal_code = KWS_OK;
const char *g_fatal_message = nullptr;
uint32_t g_last_error_ms = 0;

uint32_t g_led_off_ms = 0;
bool g_led_on = false;

bool invoke(void *, const int8_t *features, size_t feature_count, int8_t *scores, size_t score_count)
{
    // model_runner_begin checked the model's tensors against these sizes
    return feature_count == KWS_FEATURE_WINDOW_SIZE && score_count == KWS_LABEL_COUNT &&
           model_runner_invoke(features, scores);
}

uint32_t now_ms(void *)
{
    return millis();
}

uint32_t now_us(void *)
{
    return micros();
}

void send(void *, const char *line)
{
    Serial.print(line);
    Serial.print("\r\n");
}

void fail(int code, const char *message)
{
    g_fatal_code = code;
    g_fatal_message = message;
    g_last_error_ms = millis();
    kws_pipeline_send_error(&g_pipeline, code, message);
}

void set_led(bool on)
{
    g_led_on = on;
    digitalWrite(LED_BUILTIN, on ? HIGH : LOW);
}

}  // namespace

void setup()
{
    Serial.begin(115200);  // the only begin: model_runner.cpp leaves out TFLM's InitializeTarget (a second one)
    uint32_t start = millis();
    while (!Serial && millis() - start < 3000) {  // wait briefly for a monitor, never forever
    }
    pinMode(LED_BUILTIN, OUTPUT);
    set_led(false);
    Serial.print("kws-mcu keyword spotter, Arduino Nano 33 BLE Sense\r\n");  // not a record: parsers skip it
    const kws_pipeline_platform platform = {invoke, now_ms, now_us, send, nullptr};
    const kws_pipeline_config config = {kws_recognizer_default_config(), KWS_INFERENCE_EVERY_HOPS, KWS_STAT_PERIOD_MS,
                                       KWS_PDM_GAIN};
    const char *message = nullptr;
    kws_status status = kws_pipeline_init(&g_pipeline, g_ring_storage, KWS_AUDIO_RING_SAMPLES, &config, &platform,
                                          &message);  // sends BOOT
    if (status == KWS_OK) {
        status = model_runner_begin(&message);
    }
    if (status != KWS_OK) {
        fail(status, message);
        return;
    }
    // The microphone starts last, so no audio piles up in the ring during set-up.
    if (!audio_provider_begin(&g_pipeline.ring)) {
        fail(KWS_ERR_AUDIO, "audio: PDM.begin(1, 16000) failed; is this a Nano 33 BLE Sense?");
    }
}

void loop()
{
    uint32_t now = millis();
    if (g_fatal_message != nullptr) {
        if (now - g_last_error_ms >= KWS_ERROR_REPEAT_MS) {
            g_last_error_ms = now;
            kws_pipeline_send_error(&g_pipeline, g_fatal_code, g_fatal_message);
            set_led(!g_led_on);  // a slow blink says "not running" without a serial monitor
        }
        return;
    }
    if (kws_pipeline_step(&g_pipeline)) {
        set_led(true);
        g_led_off_ms = millis() + KWS_LED_ON_MS;
    }
    if (g_led_on && static_cast<int32_t>(millis() - g_led_off_ms) >= 0) {
        set_led(false);
    }
}
