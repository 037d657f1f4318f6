/* The sensor: a temperature that drifts slowly around 21 °C with a little
 * deterministic noise, so every written value can be recomputed from its
 * sequence number and timestamp when the run is verified. */
#include "loadgen.h"

double sensor_temp(uint64_t seq)
{
	/* A slow triangle, one cycle a minute at 1 kHz (no libm needed), plus
	 * noise from a hash of seq. */
	double slow = 3.0 * ((double)llabs((int64_t)(seq % 60000) - 30000) / 15000.0 - 1.0);
	uint64_t h = seq * 0x9E3779B97F4A7C15ULL;
	h ^= h >> 29;
	double noise = (double)(h % 100) / 100.0 - 0.5;
	return 21.0 + slow + noise * 0.2;
}

char *sensor_value(uint64_t seq, int64_t unix_us)
{
	return xasprintf("%lld:%.2f", (long long)unix_us, sensor_temp(seq));
}
