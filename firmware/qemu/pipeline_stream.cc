// main.cpp's device loop under QEMU: kws_pipeline with the firmware's model_runner as its model, fed a
// raw int16 16 kHz stream in PDM blocks as the microphone interrupt would, one loop pass per block (as
// host_tools/simulate.py does, so both print the same records). Device time is the samples heard;
// durations (DET us=, STAT *_us) are instructions at 64 MHz and one instruction a cycle.
//     pipeline_stream AUDIO.raw        (host_tools/board_qemu.py)
// Prints the protocol records, then one `# counts` line with the instructions of the PDM interrupt's
// ring writes, of the loop's passes and of the inferences within them.
#include <stdio.h>

#include "instruction_clock.h"
#include "kws_pipeline.h"
#include "model_runner.h"

namespace {

constexpr uint32_t kInstructionsPerMicrosecond = 64;  // nRF52840 at 64 MHz, one cycle an instruction
int16_t g_ring_storage[KWS_AUDIO_RING_SAMPLES];
kws_pipeline g_pipeline;
uint64_t g_samples = 0;
uint64_t g_inference_instructions = 0;
uint32_t g_inferences = 0;

bool invoke(void *, const int8_t *features, size_t feature_count, int8_t *scores, size_t score_count)
{
    uint64_t start = instruction_clock_now();
    bool ok = feature_count == KWS_FEATURE_WINDOW_SIZE && score_count == KWS_LABEL_COUNT &&
              model_runner_invoke(features, scores);
    g_inference_instructions += instruction_clock_now() - start;
    ++g_inferences;
    return ok;
}

uint32_t now_ms(void *)
{
    return static_cast<uint32_t>(g_samples * 1000u / KWS_SAMPLE_RATE);
}

uint32_t now_us(void *)
{
    return static_cast<uint32_t>(instruction_clock_now() / kInstructionsPerMicrosecond);
}

void send(void *, const char *line)
{
    printf("%s\r\n", line);
}

}  // namespace

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: pipeline_stream AUDIO.raw\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    if (in == nullptr) {
        fprintf(stderr, "pipeline_stream: cannot open %s\n", argv[1]);
        return 1;
    }
    instruction_clock_start();
    const kws_pipeline_platform platform = {invoke, now_ms, now_us, send, nullptr};
    const kws_pipeline_config config = {kws_recognizer_default_config(), KWS_INFERENCE_EVERY_HOPS, KWS_STAT_PERIOD_MS,
                                       KWS_PDM_GAIN};
    const char *message = nullptr;
    kws_status status = kws_pipeline_init(&g_pipeline, g_ring_storage, KWS_AUDIO_RING_SAMPLES, &config, &platform,
                                          &message);
    if (status == KWS_OK) {
        status = model_runner_begin(&message);
    }
    if (status != KWS_OK) {
        kws_pipeline_send_error(&g_pipeline, status, message);
        return 1;
    }
    static int16_t block[KWS_PDM_BLOCK_SAMPLES];
    uint64_t ring_instructions = 0, loop_instructions = 0;
    size_t count;
    while ((count = fread(block, sizeof(int16_t), KWS_PDM_BLOCK_SAMPLES, in)) > 0) {
        uint64_t start = instruction_clock_now();
        kws_audio_ring_write(&g_pipeline.ring, block, count);
        uint64_t written = instruction_clock_now();
        g_samples += count;
        kws_pipeline_step(&g_pipeline);
        ring_instructions += written - start;
        loop_instructions += instruction_clock_now() - written;
    }
    kws_pipeline_send_stats(&g_pipeline);
    // newlib-nano's printf has no 64-bit integers; doubles hold these counts exactly
    printf("# counts samples=%.0f ring_write=%.0f loop=%.0f inferences=%u inference=%.0f overruns=%u\n",
           (double)g_samples, (double)ring_instructions, (double)loop_instructions, (unsigned)g_inferences,
           (double)g_inference_instructions, (unsigned)kws_audio_ring_overruns(&g_pipeline.ring));
    return 0;
}
