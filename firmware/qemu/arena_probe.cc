// The smallest tensor arena in which this TFLM build (CMSIS-NN kernels, Cortex-M4) allocates and runs the
// exported model: a binary search over 16-byte steps, with a fresh interpreter and the generated resolver
// each time, as model_runner.cpp sets them up. Prints `arena_min=BYTES arena_used=BYTES null_writes=ATTEMPTS`.
//
// TFLM (this library version) writes a whole TfLiteTensor through a null pointer when the arena runs out
// exactly at an input or output tensor struct: MicroAllocator::AllocatePersistentTfLiteTensor does not
// check its allocation before filling it. Under QEMU address 0 holds this program's vector table and
// start-up code, so the first bytes there are saved, restored after every attempt, and the attempts that
// wrote there are counted (on the board, address 0 is flash).
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kws_model_data.h"
#include "kws_settings.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

constexpr size_t kStep = 16;
constexpr size_t kLargest = (4 * (KWS_ARENA_BYTES + KWS_ARENA_MARGIN_BYTES) + kStep - 1) / kStep * kStep;
alignas(16) uint8_t g_arena[kLargest];
tflite::MicroMutableOpResolver<KWS_OP_COUNT> g_resolver;
constexpr size_t kLowWords = 32;  // more than a TfLiteTensor (64 bytes on Cortex-M4)
uint32_t g_low[kLowWords];
unsigned g_null_writes = 0;

volatile uint32_t *address_zero()
{
    uintptr_t zero = 0;
    __asm volatile("" : "+r"(zero));  // hidden from the compiler, which may assume null is never dereferenced
    return reinterpret_cast<volatile uint32_t *>(zero);
}

// 0 when the model cannot be allocated and run in `bytes` of arena, else the bytes TFLM used.
size_t try_arena(size_t bytes)
{
    tflite::MicroInterpreter interpreter(tflite::GetModel(g_kws_model), g_resolver, g_arena, bytes);
    if (interpreter.AllocateTensors() != kTfLiteOk) {
        return 0;
    }
    TfLiteTensor *input = interpreter.input(0);
    memset(input->data.int8, input->params.zero_point, input->bytes);
    return interpreter.Invoke() == kTfLiteOk ? interpreter.arena_used_bytes() : 0;
}

size_t arena_used(size_t bytes)
{
    volatile uint32_t *low = address_zero();
    for (size_t i = 0; i < kLowWords; ++i) {
        g_low[i] = low[i];
    }
    size_t used = try_arena(bytes);
    bool wrote = false;
    for (size_t i = 0; i < kLowWords; ++i) {
        wrote = wrote || low[i] != g_low[i];
        low[i] = g_low[i];
    }
    g_null_writes += wrote;
    return used;
}

}  // namespace

int main()
{
    KWS_REGISTER_OPS(g_resolver);
    if (arena_used(kLargest) == 0) {
        fprintf(stderr, "arena_probe: the model does not run even in %u bytes\n", (unsigned)kLargest);
        return 1;
    }
    size_t fails = 0, runs = kLargest;  // invariant: arena_used(fails) == 0, arena_used(runs) > 0
    while (runs - fails > kStep) {
        size_t middle = (fails + runs) / 2 / kStep * kStep;
        (arena_used(middle) ? runs : fails) = middle;
    }
    size_t used = arena_used(runs);
    printf("arena_min=%u arena_used=%u null_writes=%u\n", (unsigned)runs, (unsigned)used, g_null_writes);
    return 0;
}
