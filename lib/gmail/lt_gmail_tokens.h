/* lt_gmail_tokens: OAuth access tokens shared by the Gmail clients of one
 * process, so that a token outlives the command that obtained it.
 *
 * Google's access tokens live about an hour; incremental commands come every
 * few minutes. Without this cache every command would ask the token endpoint
 * again. A token is kept until the time its client gave it (a minute before
 * it expires) and dropped when the API rejects it (401).
 *
 * Keys: the SHA-256 of the token endpoint, client id, refresh token and
 * mailbox, so a changed grant (re-authorised account, rotated client) never
 * meets an old token, and no secret is kept in the clear beside the token.
 * Tokens live in memory only: never written to the database or logs.
 *
 * Bounded: at most `capacity` entries; a full cache first forgets expired
 * tokens, then the one that expires soonest.
 *
 * Thread-safe: one cache is shared by all the worker's slots (a mutex). */
#ifndef LT_GMAIL_TOKENS_H
#define LT_GMAIL_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "lt_gmail_json.h" /* LT_GMAIL_TOKEN_MAX */

#define LT_GMAIL_TOKEN_KEY_SIZE 32

typedef struct lt_gmail_tokens_s lt_gmail_tokens_t;

/* capacity >= 1. */
lt_gmail_tokens_t *lt_gmail_tokens_new(size_t capacity);
/* Wipes every token. NULL is fine. */
void lt_gmail_tokens_destroy(lt_gmail_tokens_t *t);

/* The key of one grant; every string may be NULL (as ""). */
void lt_gmail_tokens_key(const char *token_url, const char *client_id, const char *refresh_token,
                         const char *user, uint8_t key[LT_GMAIL_TOKEN_KEY_SIZE]);

/* A token still usable at now_ms (a monotonic clock): copied into
 * access[LT_GMAIL_TOKEN_MAX + 1] with its end; 0. None: -1 (access = ""). */
int lt_gmail_tokens_get(lt_gmail_tokens_t *t, const uint8_t key[LT_GMAIL_TOKEN_KEY_SIZE],
                        int64_t now_ms, char *access, int64_t *until_ms);

/* Keep `access` for the key until until_ms (replaces an older one). An
 * access token longer than LT_GMAIL_TOKEN_MAX is not kept. */
void lt_gmail_tokens_put(lt_gmail_tokens_t *t, const uint8_t key[LT_GMAIL_TOKEN_KEY_SIZE],
                         const char *access, int64_t until_ms, int64_t now_ms);

/* The API rejected `access`: forget it, unless the key already holds a newer
 * token (another client refreshed in between). */
void lt_gmail_tokens_drop(lt_gmail_tokens_t *t, const uint8_t key[LT_GMAIL_TOKEN_KEY_SIZE],
                          const char *access);

/* Entries held now (for tests and metrics). */
size_t lt_gmail_tokens_count(lt_gmail_tokens_t *t);

#endif
