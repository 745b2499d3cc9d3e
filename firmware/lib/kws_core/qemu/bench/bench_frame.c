// Instruction counts of the feature pipeline on Cortex-M4F under QEMU (host_tools/footprint.py).
// Run with `-icount shift=0`: QEMU's virtual clock then advances a fixed time per executed
// instruction, and SysTick counts that clock, so SysTick ticks measure instructions. A loop of a
// known instruction count calibrates ticks per instruction. Prints instructions per 20 ms hop.
#include <stdio.h>

#include "audio_ring_buffer.h"
#include "feature_provider.h"
#include "feature_window.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define FRAMES 20
#define CALIBRATION_LOOPS 1000000u

static int16_t ring_storage[4096];
static kws_audio_ring ring;
static kws_feature_provider provider;
static kws_feature_window window;

static uint32_t ticks_since(uint32_t start)
{
    return (start - SYST_CVR) & 0xFFFFFFu;  // SysTick counts down, 24 bits
}

// Exactly two instructions per iteration (subs, bne).
static void spin(uint32_t loops)
{
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(loops));
}

int main(void)
{
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 5u;  // enabled, processor clock, no interrupt
    uint32_t start = SYST_CVR;
    spin(CALIBRATION_LOOPS);
    double per_instruction = (double)ticks_since(start) / (2.0 * CALIBRATION_LOOPS);

    kws_audio_ring_init(&ring, ring_storage, 4096);
    kws_feature_provider_init(&provider);
    kws_feature_window_init(&window);
    int16_t hop[KWS_HOP_SAMPLES], out[KWS_HOP_SAMPLES];
    uint32_t seed = 12345u;
    float features[KWS_MFCC_COUNT];
    bool ready = false;
    double ring_ticks = 0, frame_ticks = 0, fft_ticks = 0, window_ticks = 0;
    for (int frame = 0; frame < FRAMES + 2; ++frame) {
        for (int i = 0; i < KWS_HOP_SAMPLES; ++i) {  // noise-like audio: no shortcut through zeros
            seed = seed * 1664525u + 1013904223u;
            hop[i] = (int16_t)(seed >> 20);
        }
        start = SYST_CVR;
        kws_audio_ring_write(&ring, hop, KWS_HOP_SAMPLES);
        size_t count = kws_audio_ring_read(&ring, out, KWS_HOP_SAMPLES);
        uint32_t ring_cost = ticks_since(start);
        start = SYST_CVR;
        kws_feature_provider_consume(&provider, out, count, features, &ready);
        uint32_t frame_cost = ticks_since(start);
        start = SYST_CVR;
        kws_feature_window_push(&window, features);
        uint32_t window_cost = ticks_since(start);
        start = SYST_CVR;
        kiss_fftr(provider.fft, provider.frame, provider.spectrum);  // the FFT alone, for the breakdown
        uint32_t fft_cost = ticks_since(start);
        if (frame >= 2) {  // the first hop only fills the window
            ring_ticks += ring_cost;
            frame_ticks += frame_cost;
            window_ticks += window_cost;
            fft_ticks += fft_cost;
        }
    }
    printf("ring=%.0f frame=%.0f fft=%.0f window=%.0f\n", ring_ticks / FRAMES / per_instruction,
           frame_ticks / FRAMES / per_instruction, fft_ticks / FRAMES / per_instruction,
           window_ticks / FRAMES / per_instruction);
    return 0;
}
