#include "instruction_clock.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_MASK 0xFFFFFFu
#define CALIBRATION_LOOPS 4000000u

static uint32_t last_value;
static uint64_t elapsed_ticks;
static double ticks_per_instruction = 1.0;

static uint64_t ticks_now(void)
{
    uint32_t value = SYST_CVR;
    elapsed_ticks += (last_value - value) & SYST_MASK;  // SysTick counts down and wraps at 24 bits
    last_value = value;
    return elapsed_ticks;
}

// Exactly two instructions per iteration (subs, bne).
static void spin(uint32_t loops)
{
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(loops));
}

void instruction_clock_start(void)
{
    SYST_RVR = SYST_MASK;
    SYST_CVR = 0;
    SYST_CSR = 5u;  // enabled, processor clock, no interrupt
    last_value = SYST_CVR;
    elapsed_ticks = 0;
    uint64_t start = ticks_now();
    spin(CALIBRATION_LOOPS);
    ticks_per_instruction = (double)(ticks_now() - start) / (2.0 * CALIBRATION_LOOPS);
    elapsed_ticks = 0;
}

uint64_t instruction_clock_now(void)
{
    return (uint64_t)((double)ticks_now() / ticks_per_instruction);
}
