/* lt_known: the messages a sync scope has announced on mail.raw.v1 and not
 * since reported deleted (mail_known_messages, migrations/0012), per
 * (tenant, account, scope, provider): what change tracking compares a
 * provider's listing with (docs/delivery-protocol.md, "Known messages").
 *
 * The set moves with the delivery protocol. A batch collects its additions
 * and removals in an lt_known_delta_t; lt_known_stage() writes them under
 * the batch's pending row (same key) before the Kafka commit, and
 * lt_watermark_pending_apply() / _discard() apply or drop them with the
 * row (lt_known_apply_staged / lt_known_drop_staged, inside their
 * transaction). So the set never holds a message whose event was not
 * committed and never lacks one whose event was.
 *
 * Ownership: a delta owns copies of the ids given to it; not thread-safe. */
#ifndef LT_KNOWN_H
#define LT_KNOWN_H

#include <stddef.h>

#include "lt_db.h"
#include "lt_err.h"
#include "lt_watermark.h"

typedef struct lt_known_delta_s lt_known_delta_t;

lt_known_delta_t *lt_known_delta_new(void);
void lt_known_delta_destroy(lt_known_delta_t *d);
/* The message was announced (its event is in the batch). */
void lt_known_delta_add(lt_known_delta_t *d, const char *provider_message_id);
/* The message's state is now `state` (e.g. the IMAP flags the batch
 * published, canonical text): present with it afterwards. */
void lt_known_delta_set(lt_known_delta_t *d, const char *provider_message_id, const char *state);
/* The message was reported deleted (its change is in the batch). */
void lt_known_delta_del(lt_known_delta_t *d, const char *provider_message_id);
/* Forget the scope's whole set (a UIDVALIDITY change): what the batch
 * added before is forgotten too. */
void lt_known_delta_forget(lt_known_delta_t *d);
size_t lt_known_delta_count(const lt_known_delta_t *d);
/* Empty the delta (the batch was committed, or aborted). */
void lt_known_delta_reset(lt_known_delta_t *d);

/* Write d as the staged changes of key's pending row, replacing any staged
 * before (a batch that never got its pending row). Run it before
 * lt_watermark_pending_put() of the same batch. */
lt_err_t lt_known_stage(lt_db_t *db, const lt_watermark_key_t *key, const lt_known_delta_t *d,
                        char *errstr, size_t errstr_size);
/* Apply / drop key's staged changes. For lt_watermark_pending_apply() and
 * _discard(), inside their transaction. */
lt_err_t lt_known_apply_staged(lt_db_t *db, const lt_watermark_key_t *key, char *errstr,
                               size_t errstr_size);
lt_err_t lt_known_drop_staged(lt_db_t *db, const lt_watermark_key_t *key, char *errstr,
                              size_t errstr_size);
/* Stage and apply d at once, in one transaction: a batch without events
 * (nothing to wait for). */
lt_err_t lt_known_apply_now(lt_db_t *db, const lt_watermark_key_t *key, const lt_known_delta_t *d,
                            char *errstr, size_t errstr_size);

/* Every known message of key's scope, in no particular order; fn gets a
 * borrowed id and state (NULL: none recorded) and must not use db;
 * non-zero stops (LT_OK is still returned). */
typedef int (*lt_known_fn)(const char *provider_message_id, const char *state, void *opaque);
lt_err_t lt_known_each(lt_db_t *db, const lt_watermark_key_t *key, lt_known_fn fn, void *opaque,
                       char *errstr, size_t errstr_size);
/* How many messages key's scope knows. */
lt_err_t lt_known_count(lt_db_t *db, const lt_watermark_key_t *key, long long *out, char *errstr,
                        size_t errstr_size);

#endif
