/* Small helpers for the kiln sample build. */
#ifndef KILN_SAMPLE_UTIL_H
#define KILN_SAMPLE_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Sum of the first n prime numbers. */
unsigned long sum_of_primes(unsigned n);

/* CRC-32 (IEEE 802.3, as used by zlib) of a byte buffer. */
uint32_t crc32_of(const void *data, size_t len);

#endif
