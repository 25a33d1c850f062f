/* Dropout's mask applied in one pass, for minbert.dropout (float32 and bfloat16), forward and backward
   alike: out[i] = draws[i] >= threshold ? x[i] * scale : 0, with the 16-bit draws minbert.dropout takes
   from torch's generator (the backward applies the same draws to the gradient).

   As tensor operations the same mask costs three passes each way (the comparison, torch.where and the
   scaling, then the scaling and torch.where again for the gradient); here x, the draws and the output
   are each touched once. The arithmetic is theirs: torch.where(keep, x, 0).mul_(scale) multiplies a
   float32 element by the scale rounded to float32, and a bfloat16 element in float32 with the result
   rounded to the nearest even bfloat16, as torch's CPU kernels do; a dropped element is +0. */

#include <stdint.h>
#include <string.h>

void dropout_float32(int64_t n, const int16_t *restrict draws, int16_t threshold, const float *restrict x,
                     float scale, float *restrict out) {
    for (int64_t i = 0; i < n; i++)
        out[i] = draws[i] >= threshold ? x[i] * scale : 0.0f;
}

static inline float bfloat16_to_float(uint16_t value) {
    const uint32_t bits = (uint32_t)value << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t float_to_bfloat16(float f) { /* round to nearest even; a NaN stays a (quiet) NaN */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return 0x7fc0;
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

void dropout_bfloat16(int64_t n, const int16_t *restrict draws, int16_t threshold, const uint16_t *restrict x,
                      float scale, uint16_t *restrict out) {
    for (int64_t i = 0; i < n; i++)
        out[i] = draws[i] >= threshold ? float_to_bfloat16(bfloat16_to_float(x[i]) * scale) : 0;
}
