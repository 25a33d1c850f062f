/* One-pass CPU updates of minbert.optim's AdamW and SophiaG (float32).

   Each function updates `count` flat float32 segments (whole tensors or pieces of them): weight,
   gradient and the optimizer's state are read once and written once, element by element, where
   the same update written as tensor operations sweeps memory once per operation. The arithmetic is
   the tensor operations', in their order and roundings: compiled without contracting a * b + c into
   one rounding, except where torch's own CPU kernels do (lerp_ and addcmul_ use a fused multiply-add).
   So SophiaG's result is bit for bit the multi-tensor path's, and AdamW's too but where torch's CPU
   sqrt of a long tensor is not correctly rounded (sqrtf here is). minbert/optim_kernels.py compiles
   this file and splits the segments between threads. */

#include <math.h>
#include <stdint.h>

#define BLOCK ((int64_t)1 << 30) /* elements counted in 32-bit integers at a time */

static inline float lerp(float self, float end, float weight) {
    /* torch.lerp's formula, with its vectorised kernel's fused multiply-add: exact at both ends */
    return weight < 0.5f ? fmaf(weight, end - self, self) : fmaf(weight - 1.0f, end - self, end);
}

void adamw_update(int64_t count, float *const *w, const float *const *g, float *const *m, float *const *v,
                  const int64_t *n, const double *step_size, const double *bias2_sqrt, double decay,
                  double beta1, double beta2, double eps) {
    const float f_decay = (float)decay, f_weight = (float)(1.0 - beta1), f_beta2 = (float)beta2;
    const float f_rest2 = (float)(1.0 - beta2), f_eps = (float)eps;
    for (int64_t t = 0; t < count; t++) {
        float *restrict W = w[t], *restrict M = m[t], *restrict V = v[t];
        const float *restrict G = g[t];
        const float f_step = (float)-step_size[t], f_bias2 = (float)bias2_sqrt[t];
        const int64_t size = n[t];
        for (int64_t i = 0; i < size; i++) { /* weight decay first (x 1 without it: exact) */
            const float gi = G[i];
            const float mi = lerp(M[i], gi, f_weight);
            const float vi = fmaf(f_rest2 * gi, gi, V[i] * f_beta2); /* addcmul_'s fused multiply-add */
            const float denom = sqrtf(vi) / f_bias2 + f_eps;
            M[i] = mi;
            V[i] = vi;
            W[i] = W[i] * f_decay + f_step * mi / denom;
        }
    }
}

/* counts[0]: clipped coordinates, counts[1]: coordinates with an estimate (h > 0), counts[2]: both */
void sophia_update(int64_t count, float *const *w, const float *const *g, float *const *m,
                   const float *const *h, const int64_t *n, const double *scale, double decay, double beta1,
                   double lr, int64_t *counts) {
    const float f_decay = (float)decay, f_weight = (float)(1.0 - beta1), f_lr = (float)-lr;
    int64_t clipped = 0, estimated = 0, both = 0;
    for (int64_t t = 0; t < count; t++) {
        float *restrict W = w[t], *restrict M = m[t];
        const float *restrict G = g[t], *restrict H = h[t];
        const float f_scale = (float)scale[t];
        for (int64_t begin = 0; begin < n[t]; begin += BLOCK) {
            const int64_t end = begin + BLOCK < n[t] ? begin + BLOCK : n[t];
            int32_t block_clipped = 0, block_estimated = 0, block_both = 0; /* 32-bit: the loop vectorises */
            for (int64_t i = begin; i < end; i++) {
                const float mi = lerp(M[i], G[i], f_weight);
                float ratio = fabsf(mi) / (H[i] * f_scale + 1e-15f);
                ratio = ratio > 1.0f ? 1.0f : ratio; /* a NaN stays NaN, as torch.clamp keeps it */
                const int32_t is_clipped = ratio == 1.0f, has_estimate = H[i] > 0.0f;
                block_clipped += is_clipped;
                block_estimated += has_estimate;
                block_both += has_estimate ? is_clipped : 0; /* written so, GCC vectorises the loop */
                const float sign = (float)((mi > 0.0f) - (mi < 0.0f));
                M[i] = mi;
                W[i] = fmaf(f_lr * sign, ratio, W[i] * f_decay); /* addcmul_'s fused multiply-add */
            }
            clipped += block_clipped;
            estimated += block_estimated;
            both += block_both;
        }
    }
    counts[0] = clipped;
    counts[1] = estimated;
    counts[2] = both;
}
