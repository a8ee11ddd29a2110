// SPDX-License-Identifier: MIT
/* Watchdog decisions for the kernel data path (see kwatch.h). */
#include "kwatch.h"

enum kwatch_parser_action kwatch_parser_step(struct kwatch_parser *w, uint64_t now_ms, uint64_t received,
					     uint64_t parsed, uint64_t stuck_ms)
{
	bool parsed_moved = parsed != w->parsed, received_moved = received != w->received;
	enum kwatch_parser_action a = KWATCH_PARSER_OK;

	if (parsed_moved || received_moved || received <= parsed) {
		if (w->kicks && parsed_moved && !received_moved) {
			w->waited_ms = now_ms - w->idle_since;
			a = KWATCH_PARSER_KICK_HELPED;
		}
		w->kicks = 0;
		/* bytes waiting: nothing has moved since now */
		w->idle = received > parsed;
		w->idle_since = now_ms;
		w->next_kick = now_ms + KWATCH_IDLE_MS;
	} else if (w->idle && now_ms - w->idle_since >= stuck_ms) {
		a = KWATCH_PARSER_STUCK;
	} else if (w->idle && now_ms >= w->next_kick) {
		w->kicks++;
		w->next_kick = now_ms + KWATCH_IDLE_MS;
		a = KWATCH_PARSER_KICK;
	}
	w->received = received;
	w->parsed = parsed;
	return a;
}

bool kwatch_mailbox_step(struct kwatch_mailbox *w, uint64_t now_ms, uint64_t in_mailbox, uint64_t read,
			 bool reads_paused)
{
	bool act = false;

	if (in_mailbox <= read || read != w->read || reads_paused) {
		w->idle = false;
	} else if (!w->idle) {
		w->idle = true;
		w->idle_since = now_ms;
	} else if (now_ms - w->idle_since >= KWATCH_IDLE_MS) {
		act = true;
		w->idle = false; /* once per second at most */
	}
	w->read = read;
	return act;
}

bool kwatch_session_need_measure(struct kwatch_session *w, uint64_t redir)
{
	if (redir != w->redir) { /* moving */
		w->redir = redir;
		w->clean = false;
		w->idle = false;
		w->warned = false;
		return false;
	}
	return !w->clean;
}

enum kwatch_session_action kwatch_session_step(struct kwatch_session *w, uint64_t now_ms, int64_t held,
					       uint32_t outq, uint64_t stall_ms)
{
	if (held <= 0) {
		w->clean = true; /* every redirected byte is in the send queue */
		w->idle = false;
		w->warned = false;
		return KWATCH_SESSION_OK;
	}
	if (outq || held != w->held || !w->idle) { /* slow consumer, moving, or first look */
		w->held = held;
		w->idle = !outq;
		w->idle_since = now_ms;
		w->warned = false;
		return KWATCH_SESSION_OK;
	}
	if (now_ms - w->idle_since >= stall_ms)
		return KWATCH_SESSION_ABORT;
	if (!w->warned && now_ms - w->idle_since >= KWATCH_IDLE_MS) {
		w->warned = true;
		return KWATCH_SESSION_WARN;
	}
	return KWATCH_SESSION_OK;
}

void kwatch_session_reset(struct kwatch_session *w)
{
	w->idle = false;
	w->warned = false;
}
