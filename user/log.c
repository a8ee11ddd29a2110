// SPDX-License-Identifier: MIT
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_threshold = LOG_LVL_WARNING;
static char log_role[32] = "revsock";

void log_set_role(const char *role)
{
	snprintf(log_role, sizeof(log_role), "%s", role);
}

static const char *const level_names[] = {
	[LOG_LVL_NONE] = "none", [LOG_LVL_ERROR] = "error", [LOG_LVL_WARNING] = "warning",
	[LOG_LVL_INFO] = "info", [LOG_LVL_DEBUG] = "debug",
};

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	va_list ap;
	int n;

	if (lvl > log_threshold)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(line, sizeof(line), "%ld.%03ld %s %s: ", (long)ts.tv_sec,
		     ts.tv_nsec / 1000000, log_role, level_names[lvl]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, (size_t)n, stderr);
}
