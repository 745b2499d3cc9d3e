// Host-side check program for QEMU: streams an int16 raw file through the ring buffer and the
// feature provider, in odd-sized chunks as the device would, and writes the float32 frames.
//     stream_features IN.raw OUT.f32
#include <stdio.h>

#include "audio_ring_buffer.h"
#include "feature_provider.h"

#define RING_CAPACITY 1024
#define CHUNK 97  // odd, and not a divisor of the hop

static int16_t ring_storage[RING_CAPACITY];
static kws_audio_ring ring;
static kws_feature_provider provider;

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: stream_features IN.raw OUT.f32\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    FILE *out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL || kws_audio_ring_init(&ring, ring_storage, RING_CAPACITY) != KWS_OK ||
        kws_feature_provider_init(&provider) != KWS_OK) {
        fprintf(stderr, "stream_features: cannot open files or set up the core\n");
        return 1;
    }
    int16_t chunk[CHUNK];
    float features[KWS_MFCC_COUNT];
    size_t frames = 0, count;
    while ((count = fread(chunk, sizeof(int16_t), CHUNK, in)) > 0) {
        kws_audio_ring_write(&ring, chunk, count);
        int16_t samples[CHUNK];
        size_t got = kws_audio_ring_read(&ring, samples, CHUNK);
        for (size_t done = 0; done < got;) {
            bool ready;
            done += kws_feature_provider_consume(&provider, samples + done, got - done, features, &ready);
            if (ready) {
                fwrite(features, sizeof(float), KWS_MFCC_COUNT, out);
                ++frames;
            }
        }
    }
    fclose(out);
    printf("frames=%u overruns=%u\n", (unsigned)frames, (unsigned)kws_audio_ring_overruns(&ring));
    return 0;
}
