// An instruction clock for programs under QEMU's mps2-an386 run with `-icount shift=0`: QEMU's virtual
// time then advances one nanosecond per executed instruction, and SysTick counts that time, so SysTick
// ticks measure instructions (the same method as lib/kws_core/qemu/bench/bench_frame.c).
#ifndef KWS_QEMU_INSTRUCTION_CLOCK_H
#define KWS_QEMU_INSTRUCTION_CLOCK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Starts SysTick and calibrates ticks per instruction with a loop of known length.
void instruction_clock_start(void);

// Instructions executed since instruction_clock_start. Must be called at least every 600 M
// instructions (SysTick is a 24-bit counter; QEMU's runs at 25 MHz, 40 instructions a tick).
uint64_t instruction_clock_now(void);

#ifdef __cplusplus
}
#endif

#endif
