/* The committable offset never skips an unfinished command. */
#include "lt_offsets.h"
#include "lt_test.h"

int main(void)
{
    lt_offsets_t *o = lt_offsets_new();
    CHECK_INT(lt_offsets_committable(o, 0), -1);

    lt_offsets_start(o, 0, 10);
    lt_offsets_start(o, 0, 11);
    lt_offsets_start(o, 0, 12);
    lt_offsets_start(o, 1, 5);
    CHECK_INT(lt_offsets_committable(o, 0), 10);
    CHECK_INT(lt_offsets_in_flight(o, 0), 3);

    /* 12 and 11 finish first: 10 still runs, nothing past it may commit. */
    lt_offsets_done(o, 0, 12);
    lt_offsets_done(o, 0, 11);
    CHECK_INT(lt_offsets_committable(o, 0), 10);
    lt_offsets_done(o, 0, 10);
    CHECK_INT(lt_offsets_committable(o, 0), 13);
    CHECK_INT(lt_offsets_in_flight(o, 0), 0);

    /* Partitions are independent. */
    CHECK_INT(lt_offsets_committable(o, 1), 5);
    lt_offsets_done(o, 1, 5);
    CHECK_INT(lt_offsets_committable(o, 1), 6);

    /* A new command after a gap. */
    lt_offsets_start(o, 0, 20);
    CHECK_INT(lt_offsets_committable(o, 0), 20);

    /* Commit only what is new. */
    CHECK_INT(lt_offsets_to_commit(o, 0), 20);
    lt_offsets_committed(o, 0, 20);
    CHECK_INT(lt_offsets_to_commit(o, 0), -1);
    CHECK_INT(lt_offsets_committable(o, 0), 20);
    lt_offsets_done(o, 0, 20);
    CHECK_INT(lt_offsets_to_commit(o, 0), 21);
    lt_offsets_committed(o, 0, 21);
    lt_offsets_committed(o, 0, 15); /* never backwards */
    CHECK_INT(lt_offsets_to_commit(o, 0), -1);
    CHECK_INT(lt_offsets_to_commit(o, 9), -1);

    lt_offsets_drop(o, 0);
    CHECK_INT(lt_offsets_committable(o, 0), -1);
    CHECK_INT(lt_offsets_to_commit(o, 0), -1);
    CHECK_INT(lt_offsets_committable(o, 1), 6);
    lt_offsets_done(o, 7, 1); /* unknown partition: ignored */
    CHECK_INT(lt_offsets_committable(o, 7), -1);
    lt_offsets_destroy(o);
    return lt_test_done("test_offsets");
}
