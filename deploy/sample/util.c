#include "util.h"

static int is_prime(unsigned long x)
{
	if (x < 2)
		return 0;
	for (unsigned long d = 2; d * d <= x; d++)
		if (x % d == 0)
			return 0;
	return 1;
}

unsigned long sum_of_primes(unsigned n)
{
	unsigned long sum = 0;
	for (unsigned long x = 2; n > 0; x++) {
		if (is_prime(x)) {
			sum += x;
			n--;
		}
	}
	return sum;
}

uint32_t crc32_of(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t crc = 0xFFFFFFFFu;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}
