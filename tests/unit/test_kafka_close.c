/* lt_kafka_destroy() of a consumer the caller already closed (the worker
 * leaves its group at the end of lt_worker_run() and destroys the handle
 * later) closes nothing twice: no "consumer close: Local: Broker handle
 * destroyed" warning. And a consumer not closed before is still closed by
 * it (consumer_closed afterwards is not observable, so this checks the
 * log is quiet both ways). No broker: 127.0.0.1:1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lt_buf.h"
#include "lt_config.h"
#include "lt_kafka.h"
#include "lt_log.h"
#include "lt_test.h"

/* Run fn with stderr captured; the capture in a new buffer. */
static lt_buf_t *captured(void (*fn)(const lt_config_t *), const lt_config_t *cfg)
{
    char path[] = "/tmp/test_kafka_close.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        exit(1);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(cfg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lt_buf_t *b = lt_buf_new(1 << 20);
    char chunk[4096];
    lseek(fd, 0, SEEK_SET);
    ssize_t r;
    while ((r = read(fd, chunk, sizeof(chunk))) > 0)
        lt_buf_append(b, chunk, (size_t)r);
    close(fd);
    unlink(path);
    return b;
}

static rd_kafka_t *consumer(const lt_config_t *cfg)
{
    char err[1024];
    rd_kafka_t *rk = lt_kafka_consumer_new(cfg, "test-kafka-close", err, sizeof(err));
    CHECK_MSG(rk != NULL, "%s", err);
    return rk;
}

static void close_then_destroy(const lt_config_t *cfg)
{
    rd_kafka_t *rk = consumer(cfg);
    if (!rk)
        return;
    lt_warn(NULL, "marker before close");
    CHECK_INT(rd_kafka_consumer_close(rk), RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK(rd_kafka_consumer_closed(rk));
    lt_kafka_destroy(rk);
}

static void destroy_only(const lt_config_t *cfg)
{
    rd_kafka_t *rk = consumer(cfg);
    if (rk)
        lt_kafka_destroy(rk);
}

int main(void)
{
    char err[1024];
    setenv("LATTICE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1", 1);
    CHECK_INT(lt_log_setup("test_kafka_close", "info", "text", err, sizeof(err)), LT_OK);
    lt_config_t *cfg = lt_config_load(LT_PROG_WORKER, err, sizeof(err));
    CHECK_MSG(cfg != NULL, "%s", err);
    if (!cfg)
        return lt_test_done("test_kafka_close");

    lt_buf_t *b = captured(close_then_destroy, cfg);
    /* the capture works: the marker line is there */
    CHECK_MSG(strstr(lt_buf_str(b), "marker before close") != NULL, "capture: %s", lt_buf_str(b));
    CHECK_MSG(strstr(lt_buf_str(b), "consumer close") == NULL, "closed twice: %s",
              lt_buf_str(b));
    lt_buf_destroy(b);

    b = captured(destroy_only, cfg);
    CHECK_MSG(strstr(lt_buf_str(b), "consumer close") == NULL, "close failed: %s",
              lt_buf_str(b));
    lt_buf_destroy(b);

    lt_config_destroy(cfg);
    return lt_test_done("test_kafka_close");
}
