// Minimal Cortex-M4F start-up for QEMU: a vector table, then the FPU switched on before
// newlib's semihosting crt0 (_start, from --specs=rdimon.specs) runs any float code.
#include <stdint.h>

extern void _start(void);
extern uint32_t __stack;

void reset_handler(void)
{
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20;  // full access to coprocessors 10 and 11: the FPU
    __asm volatile("dsb\n\tisb");
    _start();
}

// The first two entries of the vector table: initial stack pointer, reset handler.
__attribute__((section(".vectors"), used)) static const struct {
    uint32_t *stack;
    void (*reset)(void);
} vectors = {&__stack, reset_handler};
