#include "audio_provider.h"

#include <PDM.h>

#include "kws_settings.h"

namespace {

kws_audio_ring *g_ring = nullptr;
int16_t g_block[KWS_PDM_BLOCK_SAMPLES];

// Runs in the PDM interrupt. The Mbed core's PDM driver disables the peripheral when a buffer
// completes while the previous one is still unread, so every byte is read here, always: a block
// the full ring cannot take is dropped and counted by kws_audio_ring_write, never left behind.
void on_pdm_data()
{
    int pending = PDM.available();
    while (pending > 0) {
        int wanted = pending < static_cast<int>(sizeof(g_block)) ? pending : static_cast<int>(sizeof(g_block));
        int got = PDM.read(g_block, wanted);
        if (got <= 0) {
            return;
        }
        kws_audio_ring_write(g_ring, g_block, static_cast<size_t>(got) / sizeof(int16_t));
        pending -= got;
    }
}

}  // namespace

bool audio_provider_begin(kws_audio_ring *ring)
{
    g_ring = ring;
    PDM.onReceive(on_pdm_data);
    PDM.setBufferSize(sizeof(g_block));
    PDM.setGain(KWS_PDM_GAIN);
    return PDM.begin(1, KWS_SAMPLE_RATE) != 0;  // one channel: mono
}
