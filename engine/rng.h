/* rng.h: the engine's one random number generator (splitmix64 over a 64-bit state).
 * Every random choice (initialisation, dropout, shuffling, augmentation) draws from a
 * state derived from the run's seed, so one seed reproduces a run bit for bit. */
#ifndef SGDRD_RNG_H
#define SGDRD_RNG_H

#include <math.h>
#include <stdint.h>

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Advances *s past k draws of rng_next (splitmix64's state moves by a constant per draw):
 * a data-parallel rank draws its shard's part of a stream the whole batch would draw. */
static inline void rng_skip(uint64_t *s, uint64_t k)
{
    *s += k * 0x9E3779B97F4A7C15ull;
}

/* Uniform in [0, 1) with 24 bits of precision. */
static inline float rng_uniform(uint64_t *s)
{
    return (float)(rng_next(s) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n); n > 0. */
static inline uint32_t rng_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(((rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

/* Standard normal (Box-Muller, one value per call). */
static inline float rng_normal(uint64_t *s)
{
    double u1 = ((double)(rng_next(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* An independent stream for a named purpose (e.g. seed ^ "init", epoch number). */
static inline uint64_t rng_derive(uint64_t seed, uint64_t stream)
{
    uint64_t s = seed ^ (stream * 0xD1B54A32D192ED03ull);
    return rng_next(&s);
}

#endif
