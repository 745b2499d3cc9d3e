// Settings of the device application (the model's own are in generated/kws_settings.h). Plain C,
// so host_tools/footprint.py compiles it to measure the static RAM. Each can be overridden with -D.
#ifndef KWS_APP_CONFIG_H
#define KWS_APP_CONFIG_H

#include "kws_settings.h"

// Inference cadence: one inference every this many 20 ms hops (200 ms). The DS-CNN needs about
// 1.5 M multiply-accumulates: at an estimated 3-8 Cortex-M4 cycles per MAC with CMSIS-NN that is
// 70-190 ms at 64 MHz (host_tools/footprint.py), so every hop is impossible; every 10 hops still
// gives the recognizer 5 results per 1 s averaging window (it needs KWS_MINIMUM_COUNT = 3) and
// keeps the worst case under the period. Lower it once STAT shows inf_max_us well below 200 ms.
#ifndef KWS_INFERENCE_EVERY_HOPS
#define KWS_INFERENCE_EVERY_HOPS 10
#endif

// Ring buffer between the PDM interrupt and the loop: 4096 samples = 256 ms of audio, more than
// one inference period (200 ms) plus a PDM block, so the loop can be busy with an inference while
// audio keeps arriving. A power of two, as kws_audio_ring_init requires.
#ifndef KWS_AUDIO_RING_SAMPLES
#define KWS_AUDIO_RING_SAMPLES 4096
#endif

// PDM block: 256 samples = 16 ms per interrupt (the Mbed core's default 512-byte buffer).
#ifndef KWS_PDM_BLOCK_SAMPLES
#define KWS_PDM_BLOCK_SAMPLES 256
#endif

// Microphone gain (the PDM library's default for the BLE Sense is 20).
#ifndef KWS_PDM_GAIN
#define KWS_PDM_GAIN 20
#endif

// Tensor arena = KWS_ARENA_BYTES + this margin. KWS_ARENA_BYTES is the smallest arena in which
// TFLM's Python runtime (x86-64, reference kernels) ran the model. On the board CMSIS-NN kernels
// ask for scratch buffers the reference kernels do not (about 1 KB for this DS-CNN's depthwise and
// first convolutions), and another TFLM version may keep more persistent state; 4 KB covers both
// with room, costs 1.6% of the nRF52840's 256 KB, and an arena that is still too small is reported
// (ERR code=5), never a crash.
#ifndef KWS_ARENA_MARGIN_BYTES
#define KWS_ARENA_MARGIN_BYTES 4096
#endif

#ifndef KWS_STAT_PERIOD_MS
#define KWS_STAT_PERIOD_MS 5000
#endif

// A set-up failure is repeated this often, so a monitor opened later still sees why nothing runs.
#ifndef KWS_ERROR_REPEAT_MS
#define KWS_ERROR_REPEAT_MS 2000
#endif

// The built-in LED stays on this long after a detection.
#ifndef KWS_LED_ON_MS
#define KWS_LED_ON_MS 1000
#endif

#endif
