/* kiln sample: a tiny multi-file C program built by the quickstart. */
#include <stdio.h>
#include <string.h>

#include "util.h"

int main(void)
{
	const char *msg = "hello from kiln";

	printf("%s\n", msg);
	printf("sum of the first 100 primes = %lu, crc32(\"%s\") = %08x\n",
	       sum_of_primes(100), msg, (unsigned)crc32_of(msg, strlen(msg)));
	return 0;
}
