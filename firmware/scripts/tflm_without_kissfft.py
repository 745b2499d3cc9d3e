# PlatformIO pre-script (platformio.ini `extra_scripts`): leaves the TFLM library's own copy of kissfft
# out of the board build.
#
# Chirale_TensorFLowLite ships third_party/kissfft/kiss_fft.c and tools/kiss_fftr.c as ordinary
# sources. Upstream TFLM only #includes them inside `namespace kissfft_fixed16` (microfrontend's
# kiss_fft_int16.cpp, which stays); compiled on their own they define kiss_fft_alloc, kiss_fftr and
# the rest as global C symbols. The Arduino Mbed builder links every library with --whole-archive,
# so they clash with the pinned kissfft 131.1.0 that kws_core uses ("multiple definition of
# `kiss_fft_alloc'"). Nothing in TFLM calls those global copies, so the two units are dropped.
#
# A pre-script, because library builders copy the environment when they are created: a build
# middleware registered here reaches every library's sources.
Import("env")  # noqa: F821  (SCons injects Import)

TFLM_KISSFFT_UNITS = "*/third_party/kissfft/*.c"


def skip_unit(node):
    return None  # a middleware that returns None removes the source from the build


env.AddBuildMiddleware(skip_unit, TFLM_KISSFFT_UNITS)  # noqa: F821
