// The firmware's model_runner (TFLM with its CMSIS-NN kernels, the exported model) under QEMU on int8
// feature windows from a file: writes each window's int8 scores and prints the instructions per inference.
//     infer_windows WINDOWS.i8 SCORES.i8        (host_tools/board_qemu.py)
#include <stdio.h>

#include "feature_window.h"
#include "instruction_clock.h"
#include "model_runner.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: infer_windows WINDOWS.i8 SCORES.i8\n");
        return 2;
    }
    instruction_clock_start();
    const char *message = nullptr;
    if (model_runner_begin(&message) != KWS_OK) {
        fprintf(stderr, "model_runner_begin: %s\n", message);
        return 1;
    }
    FILE *in = fopen(argv[1], "rb");
    FILE *out = fopen(argv[2], "wb");
    if (in == nullptr || out == nullptr) {
        fprintf(stderr, "infer_windows: cannot open %s or %s\n", argv[1], argv[2]);
        return 1;
    }
    static int8_t window[KWS_FEATURE_WINDOW_SIZE];
    int8_t scores[KWS_LABEL_COUNT];
    unsigned count = 0;
    uint64_t total = 0, least = UINT64_MAX, most = 0;
    while (fread(window, 1, sizeof(window), in) == sizeof(window)) {
        uint64_t start = instruction_clock_now();
        bool ok = model_runner_invoke(window, scores);
        uint64_t used = instruction_clock_now() - start;
        if (!ok) {
            fprintf(stderr, "model_runner_invoke failed on window %u\n", count);
            return 1;
        }
        fwrite(scores, 1, sizeof(scores), out);
        total += used;
        least = used < least ? used : least;
        most = used > most ? used : most;
        ++count;
    }
    fclose(out);
    // newlib-nano's printf has no 64-bit integers; doubles hold these counts exactly
    printf("inferences=%u instructions_total=%.0f instructions_min=%.0f instructions_max=%.0f\n", count,
           (double)total, (double)least, (double)most);
    return 0;
}
