#include "common/jsonfmt.h"

#include <math.h>

json_t *jsonfmt_seconds(double seconds)
{
	return jsonfmt_real3(seconds);
}

json_t *jsonfmt_real3(double v)
{
	if (!isfinite(v))
		return json_real(0);
	return json_real(round(v * 1000.0) / 1000.0);
}

char *jsonfmt_dumps(const json_t *o)
{
	return json_dumps(o, JSONFMT_FLAGS);
}
