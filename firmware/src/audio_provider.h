// Edge: the BLE Sense's PDM microphone, 16 kHz mono, into the core's ring buffer.
#pragma once

#include "audio_ring_buffer.h"

// Starts the microphone; from then on its interrupt writes every block into `ring`. False when the
// PDM peripheral does not start.
bool audio_provider_begin(kws_audio_ring *ring);
