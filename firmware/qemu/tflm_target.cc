// TFLM's target hook for QEMU. On the board the TFLM library's system_setup.cpp sends DebugLog to
// Arduino's Serial; here its messages (allocation failures, missing ops) go to semihosting stderr.
#include <stdio.h>

#include "tensorflow/lite/micro/debug_log.h"

extern "C" void DebugLog(const char *s)
{
    fputs(s, stderr);
}
