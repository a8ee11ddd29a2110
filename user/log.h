/* SPDX-License-Identifier: MIT */
/* One-line logging to stderr: "revsock[<role>] <level>: <message>". */
#ifndef REVSOCK_LOG_H
#define REVSOCK_LOG_H

#include "config.h"

extern enum log_level log_threshold;
void log_set_role(const char *role);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_info(...) do { if (log_threshold >= LOG_LVL_INFO) log_msg(LOG_LVL_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_threshold >= LOG_LVL_DEBUG) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
