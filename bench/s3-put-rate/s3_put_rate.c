/* s3_put_rate: N signed PUTs of SIZE-byte objects with P in flight through the
 * project's S3 client (lib/storage/lt_s3.c: SigV4 by libcurl, real payload
 * SHA-256 in x-amz-content-sha256, one connection per thread), as the worker's
 * upload threads do. Prints one line:
 *   puts=N size=SIZE inflight=P secs=S put_per_s=R server_cpu_s=C server_cpu_ms_per_put=M
 *   client_cpu_s=K errors=E load=L
 * The server's CPU (utime + stime of SERVER_PID from /proc/PID/stat, and of
 * every further PID given) is read before and after.
 *
 *   s3_put_rate ENDPOINT BUCKET N SIZE INFLIGHT PREFIX [SERVER_PID...]
 * Keys from the environment: S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY,
 * S3_REGION (default us-east-1). Objects are PREFIX/<i>, each with its own
 * content (a counter in the first bytes), so no two payloads hash alike. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "lt_clock.h"
#include "lt_s3.h"

typedef struct {
    lt_s3_t *s3;
    const char *prefix;
    size_t size;
    long n;
    atomic_long *next;
    atomic_long *errors;
} job_t;

static double proc_cpu_s(const char *pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *p = strrchr(buf, ')'); /* comm may hold spaces */
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ") ": state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void *run(void *arg) {
    job_t *j = arg;
    unsigned char *data = malloc(j->size);
    char key[256], err[512];
    for (size_t i = 0; i < j->size; i++)
        data[i] = (unsigned char)('a' + (i * 7 + (size_t)j) % 26);
    for (;;) {
        long i = atomic_fetch_add(j->next, 1);
        if (i >= j->n)
            break;
        snprintf((char *)data, j->size < 32 ? j->size : 32, "%031ld", i);
        snprintf(key, sizeof(key), "%s/%ld", j->prefix, i);
        if (lt_s3_put(j->s3, &(lt_s3_object_t){.key = key, .content_type = "message/rfc822"}, data,
                      j->size, NULL, err, sizeof(err)) != LT_OK) {
            if (atomic_fetch_add(j->errors, 1) < 3)
                fprintf(stderr, "PUT %s: %s\n", key, err);
        }
    }
    free(data);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s ENDPOINT BUCKET N SIZE INFLIGHT PREFIX [SERVER_PID...]\n", argv[0]);
        return 2;
    }
    const char *akid = getenv("S3_ACCESS_KEY_ID"), *sk = getenv("S3_SECRET_ACCESS_KEY");
    const char *region = getenv("S3_REGION") ? getenv("S3_REGION") : "us-east-1";
    if (!akid || !sk) {
        fprintf(stderr, "S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY not set\n");
        return 2;
    }
    long n = atol(argv[3]), size = atol(argv[4]), p = atol(argv[5]);
    if (n < 1 || size < 32 || p < 1 || p > 256) {
        fprintf(stderr, "bad N / SIZE (>= 32) / INFLIGHT\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char err[512];
    lt_s3_t *base = lt_s3_new(&(lt_s3_config_t){.endpoint = argv[1],
                                                .region = region,
                                                .bucket = argv[2],
                                                .access_key_id = akid,
                                                .secret_access_key = sk,
                                                .addressing = LT_S3_PATH_STYLE,
                                                .timeout_s = 60},
                              err, sizeof(err));
    if (!base) {
        fprintf(stderr, "lt_s3_new: %s\n", err);
        return 1;
    }
    if (lt_s3_ensure_bucket(base, err, sizeof(err)) != LT_OK) {
        fprintf(stderr, "bucket: %s\n", err);
        return 1;
    }
    atomic_long next = 0, errors = 0;
    job_t *jobs = calloc((size_t)p, sizeof(*jobs));
    pthread_t *th = calloc((size_t)p, sizeof(*th));
    for (long t = 0; t < p; t++) {
        jobs[t] = (job_t){t == 0 ? base : lt_s3_dup(base), argv[6], (size_t)size, n, &next, &errors};
        /* open each connection before the clock starts */
        lt_s3_head(jobs[t].s3, "s3cost-warmup-none", NULL, NULL, NULL, err, sizeof(err));
    }
    double cpu0 = 0, cpu1 = 0;
    for (int a = 7; a < argc; a++)
        cpu0 += proc_cpu_s(argv[a]);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = lt_now_s();
    for (long t = 0; t < p; t++)
        pthread_create(&th[t], NULL, run, &jobs[t]);
    for (long t = 0; t < p; t++)
        pthread_join(th[t], NULL);
    double secs = lt_now_s() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    for (int a = 7; a < argc; a++)
        cpu1 += proc_cpu_s(argv[a]);
    double ccpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                           ru0.ru_stime.tv_sec) +
                  (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                           ru0.ru_stime.tv_usec) / 1e6;
    double load[1] = {0};
    getloadavg(load, 1);
    double scpu = argc > 7 ? cpu1 - cpu0 : -1;
    printf("puts=%ld size=%ld inflight=%ld secs=%.2f put_per_s=%.0f server_cpu_s=%.2f "
           "server_cpu_ms_per_put=%.3f client_cpu_s=%.2f errors=%ld load=%.2f\n",
           n, size, p, secs, (double)n / secs, scpu, scpu >= 0 ? scpu * 1000.0 / (double)n : -1,
           ccpu, (long)errors, load[0]);
    for (long t = 0; t < p; t++)
        lt_s3_destroy(jobs[t].s3);
    free(jobs);
    free(th);
    curl_global_cleanup();
    return errors ? 1 : 0;
}
