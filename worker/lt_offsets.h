/* lt_offsets: which command offset of a partition may be committed.
 *
 * Commands of one partition can finish out of order (different accounts run
 * concurrently). The committable offset of a partition is the lowest offset
 * still in flight, or one past the highest finished offset when none is in
 * flight: committing it can never skip an unfinished command. Not
 * thread-safe: the caller holds its lock. */
#ifndef LT_OFFSETS_H
#define LT_OFFSETS_H

#include <stdint.h>

#include "lt_err.h"

typedef struct lt_offsets_s lt_offsets_t;

lt_offsets_t *lt_offsets_new(void);
void lt_offsets_destroy(lt_offsets_t *o);

/* A command at (partition, offset) was taken from the consumer. */
void lt_offsets_start(lt_offsets_t *o, int32_t partition, int64_t offset);
/* It finished (succeeded, dead-lettered or failed finally). */
void lt_offsets_done(lt_offsets_t *o, int32_t partition, int64_t offset);
/* Forget a partition (revoked or lost). */
void lt_offsets_drop(lt_offsets_t *o, int32_t partition);

/* Offset to commit for the partition (the next one to read); -1 when
 * nothing is known about it. */
int64_t lt_offsets_committable(const lt_offsets_t *o, int32_t partition);
/* The committable offset when it moved past the last one committed, else
 * -1: a commit only when there is something new to commit (an idle worker
 * sends no OffsetCommit, which during a rebalance could fail with an old
 * generation and cost the assignment). */
int64_t lt_offsets_to_commit(const lt_offsets_t *o, int32_t partition);
/* The commit of `offset` succeeded. */
void lt_offsets_committed(lt_offsets_t *o, int32_t partition, int64_t offset);
/* Number of commands in flight in the partition. */
int lt_offsets_in_flight(const lt_offsets_t *o, int32_t partition);

#endif
